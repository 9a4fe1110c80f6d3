"""The rule language (ARCHITECTURE §6): what is accepted, and every error with its JSON path.

The table of invalid rules lists the exact ``RuleError.errors`` of each: all problems of a
rule are reported at once, in schema order (an object's unknown fields first).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradepulse.core.errors import TradepulseError
from tradepulse.core.indicators import INDICATOR_NAMES
from tradepulse.core.rule_model import BAR_FIELDS, WINDOW_STATISTICS, is_integer_metric
from tradepulse.core.rules import (
    AllOf,
    AnyOf,
    Comparison,
    MetricRef,
    Not,
    RuleError,
    decode_rule,
    metric_error,
    parse_rule,
)

GT = {"metric": "price", "op": ">", "value": 1}


def rule(**fields: Any) -> dict[str, Any]:
    """A valid rule with some fields replaced (``None`` removes a field)."""
    obj: dict[str, Any] = {"name": "r", "conditions": [GT], "cooldown": 60}
    obj.update(fields)
    return {k: v for k, v in obj.items() if v is not None}


def errors_of(obj: object, **kwargs: Any) -> list[str]:
    with pytest.raises(RuleError) as info:
        parse_rule(obj, **kwargs)
    return info.value.errors


INVALID: list[tuple[str, object, list[str]]] = [
    ("not-an-object", [GT], ["$: expected an object, got array"]),
    ("empty-object", {}, ["name: required", "conditions: required", "cooldown: required"]),
    ("unknown-top-level-fields", rule(id="x", extra=1),
     ["id: unknown field", "extra: unknown field"]),
    ("name-type-and-length", rule(name=7), ["name: expected a string, got number"]),
    ("name-empty", rule(name=""), ["name: must be 1..200 characters, got 0"]),
    ("name-too-long", rule(name="x" * 201), ["name: must be 1..200 characters, got 201"]),
    ("name-blank", rule(name="   "), ["name: must not be blank"]),
    ("description-type", rule(description=["a"]), ["description: expected a string, got array"]),
    ("conditions-type", rule(conditions="price > 1"),
     ["conditions: expected a condition (an object or an array), got string"]),
    ("conditions-empty", rule(conditions=[]), ["conditions: must not be empty"]),
    ("the-issue-example",
     rule(conditions=[GT, {"any": [{"metric": "price", "op": "=>", "value": 1}]}]),
     ["conditions[1].any[0].op: unknown operator '=>'"]),
    ("comparison-fields",
     rule(conditions=[{"metric": 3, "op": None, "value": "1", "unit": "usd"}]),
     ["conditions[0].unit: unknown field", "conditions[0].metric: expected a string, got number",
      "conditions[0].op: expected a string, got null",
      'conditions[0].value: expected a number or {"metric": ...}, got string']),
    ("comparison-missing-fields", rule(conditions=[{}]),
     ["conditions[0].metric: required", "conditions[0].op: required",
      "conditions[0].value: required"]),
    ("metric-names",
     rule(conditions={"all": [
         {"metric": "window.2min.buy_count", "op": ">", "value": 1},
         {"metric": "window.5min.buys", "op": ">", "value": 1},
         {"metric": "window.5min", "op": ">", "value": 1},
         {"metric": "bar.opn", "op": ">", "value": 1},
         {"metric": "ind.rsi_7", "op": ">", "value": 1},
         {"metric": "volume", "op": ">", "value": 1},
     ]}),
     ["conditions.all[0].metric: unknown window '2min' (configured: 1min, 5min, 15min, 30min, "
      "1hour)",
      "conditions.all[1].metric: unknown window statistic 'buys'",
      "conditions.all[2].metric: unknown metric 'window.5min' (expected "
      "window.<window>.<statistic>)",
      "conditions.all[3].metric: unknown bar field 'opn'",
      "conditions.all[4].metric: unknown indicator 'rsi_7'",
      "conditions.all[5].metric: unknown metric 'volume' (expected window.<window>.<statistic>, "
      "bar.<field>, ind.<indicator> or price)"]),
    ("value-metric",
     rule(conditions=[{"metric": "price", "op": ">", "value": {"metric": "ind.ema_9", "x": 1}},
                      {"metric": "price", "op": ">", "value": {}}]),
     ["conditions[0].value.x: unknown field",
      "conditions[0].value.metric: unknown indicator 'ema_9'",
      "conditions[1].value.metric: required"]),
    ("value-not-finite-or-bool",
     rule(conditions=[{"metric": "price", "op": ">", "value": float("inf")},
                      {"metric": "price", "op": ">", "value": True},
                      {"metric": "price", "op": ">", "value": 10**400}]),
     ["conditions[0].value: must be finite",
      'conditions[1].value: expected a number or {"metric": ...}, got boolean',
      "conditions[2].value: must be finite"]),
    ("groups",
     rule(conditions={"any": [{"all": []}, {"not": 5}, {"all": {"metric": "price"}},
                              {"all": [GT], "any": [GT]}, {"not": GT, "metric": "price"},
                              {"not": GT, "why": 1}]}),
     ["conditions.any[0].all: must not be empty",
      "conditions.any[1].not: expected a condition (an object or an array), got number",
      "conditions.any[2].all: expected an array of conditions, got object",
      "conditions.any[3]: a group has exactly one of 'all', 'any', 'not', got 'all', 'any'",
      "conditions.any[4]: a condition is a comparison (metric, op, value) or a group "
      "(all, any, not), not both",
      "conditions.any[5].why: unknown field"]),
    ("deep-path",
     rule(conditions=[{"not": {"any": [GT, {"all": [[GT, {"metric": "price", "op": "~",
                                                          "value": 1}]]}]}}]),
     ["conditions[0].not.any[1].all[0][1].op: unknown operator '~'"]),
    ("too-deep", rule(conditions=json.loads('{"not":' * 40 + json.dumps(GT) + "}" * 40)),
     ["conditions" + ".not" * 32 + ": conditions nested deeper than 32 levels"]),
    ("logic", rule(logic="xor"), ["logic: expected 'all' or 'any', got 'xor'"]),
    ("logic-with-a-group", rule(conditions={"all": [GT]}, logic="any"),
     ["logic: only allowed with an array of conditions"]),
    ("cooldown", rule(cooldown=-1), ["cooldown: must be between 0 and 31536000 seconds, got -1"]),
    ("cooldown-type", rule(cooldown="60"), ["cooldown: expected a number of seconds, got string"]),
    ("cooldown-missing", rule(cooldown=None), ["cooldown: required"]),
    ("trigger-enabled", rule(trigger="rising", enabled="yes"),
     ["trigger: expected 'level' or 'edge', got 'rising'",
      "enabled: expected a boolean, got string"]),
    ("symbols", rule(symbols=["ok", 3, ""]),
     ["symbols[1]: expected a string, got number", "symbols[2]: must not be empty"]),
    ("symbols-type", rule(symbols="SOL"), ["symbols: expected an array of strings, got string"]),
    ("symbols-empty", rule(symbols=[]),
     ["symbols: must not be empty (leave it out to cover every token)"]),
    ("max-staleness", rule(max_staleness=0),
     ["max_staleness: must be more than 0 and at most 31536000 seconds, got 0"]),
    ("everything-at-once",
     {"name": "", "conditions": [{"metric": "window.2min.x", "op": "=>"},
                                 {"any": [{"metric": "foo", "op": 3, "value": "a", "zz": 1}]}],
      "logic": "xor", "cooldown": -1, "trigger": "up", "enabled": 1, "symbols": [1],
      "max_staleness": float("nan"), "extra": 1},
     ["extra: unknown field", "name: must be 1..200 characters, got 0",
      "conditions[0].metric: unknown window '2min' (configured: 1min, 5min, 15min, 30min, "
      "1hour)",
      "conditions[0].op: unknown operator '=>'", "conditions[0].value: required",
      "conditions[1].any[0].zz: unknown field",
      "conditions[1].any[0].metric: unknown metric 'foo' (expected window.<window>.<statistic>, "
      "bar.<field>, ind.<indicator> or price)",
      "conditions[1].any[0].op: expected a string, got number",
      'conditions[1].any[0].value: expected a number or {"metric": ...}, got string',
      "logic: expected 'all' or 'any', got 'xor'",
      "cooldown: must be between 0 and 31536000 seconds, got -1",
      "trigger: expected 'level' or 'edge', got 'up'", "enabled: expected a boolean, got number",
      "symbols[0]: expected a string, got number",
      "max_staleness: must be a finite number of seconds"]),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "expected"), [pytest.param(o, e, id=i) for i, o, e in INVALID])
def test_parse_rule_invalid_reports_every_error_with_its_path(
    obj: object, expected: list[str]
) -> None:
    assert errors_of(obj) == expected


def test_rule_error_is_a_tradepulse_error_naming_every_problem() -> None:
    with pytest.raises(TradepulseError) as info:
        parse_rule(rule(name="", cooldown=-1))
    assert isinstance(info.value, RuleError)
    assert str(info.value) == (
        "invalid rule: name: must be 1..200 characters, got 0; "
        "cooldown: must be between 0 and 31536000 seconds, got -1"
    )


def test_windows_parameter_limits_window_metrics() -> None:
    obj = rule(conditions=[{"metric": "window.6h.trade_count", "op": ">", "value": 1}])
    assert parse_rule(obj, windows=["1min", "6h"]).metrics() == ("window.6h.trade_count",)
    assert errors_of(obj) == [
        "conditions[0].metric: unknown window '6h' (configured: 1min, 5min, 15min, 30min, 1hour)"
    ]


def test_parse_rule_defaults_and_units() -> None:
    r = parse_rule(rule(cooldown=1.5), rule_id="id-1", version=4)
    assert (r.id, r.version, r.name, r.description) == ("id-1", 4, "r", "")
    assert (r.cooldown_ms, r.trigger, r.enabled, r.symbols, r.max_staleness_ms) == (
        1500, "level", True, None, None,
    )  # fmt: skip
    assert parse_rule(rule()).id == "r"  # the name when the store gives no id
    full = parse_rule(rule(trigger="edge", enabled=False, symbols=["a", "b", "a"],
                           max_staleness=30, description="why"))  # fmt: skip
    assert (full.trigger, full.enabled, full.symbols, full.max_staleness_ms) == (
        "edge", False, ("a", "b"), 30_000,
    )  # fmt: skip


def test_condition_forms_all_parse_to_the_same_tree() -> None:
    a = {"metric": "window.5min.buy_count", "op": ">=", "value": 10}
    b = {"metric": "price", "op": "crosses_above", "value": {"metric": "ind.ema_20"}}
    tree = AllOf((Comparison("window.5min.buy_count", ">=", 10.0),
                  Comparison("price", "crosses_above", MetricRef("ind.ema_20"))))  # fmt: skip
    for conditions, logic in (([a, b], None), ([a, b], "all"), ({"all": [a, b]}, None)):
        assert parse_rule(rule(conditions=conditions, logic=logic)).condition == tree
    assert parse_rule(rule(conditions=[a, b], logic="any")).condition == AnyOf(tree.items)
    nested = parse_rule(rule(conditions={"not": [a, {"any": [b]}]})).condition
    assert nested == Not(AllOf((tree.items[0], AnyOf((tree.items[1],)))))


def test_rule_metrics_lists_both_sides_once_in_order_of_use() -> None:
    r = parse_rule(rule(conditions=[
        {"metric": "price", "op": ">", "value": {"metric": "ind.vwap_5m"}},
        {"not": {"metric": "window.1min.buy_sell_ratio", "op": ">", "value": 2}},
        {"metric": "ind.vwap_5m", "op": "<", "value": {"metric": "price"}},
    ]))  # fmt: skip
    assert r.metrics() == ("price", "ind.vwap_5m", "window.1min.buy_sell_ratio")
    assert r.windows() == ("1min",)


def test_every_catalogued_metric_is_accepted() -> None:
    names = ["price", *(f"bar.{f}" for f in BAR_FIELDS), *(f"ind.{i}" for i in INDICATOR_NAMES),
             *(f"window.{w}.{s}" for w in ("1min", "1hour")
               for s in (*WINDOW_STATISTICS, "buy_sell_ratio", "net_volume"))]  # fmt: skip
    assert [m for m in names if metric_error(m)] == []
    assert len(INDICATOR_NAMES) == 17
    assert is_integer_metric("window.5min.buy_count") and is_integer_metric("bar.trades")
    assert not is_integer_metric("window.5min.buy_sell_ratio")


def test_decode_rule_reports_malformed_json_at_the_root() -> None:
    assert decode_rule(json.dumps(rule())).name == "r"
    with pytest.raises(RuleError) as info:
        decode_rule(b'{"name": ')
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith("$: invalid JSON: ")


# -- round trip and robustness --------------------------------------------------------------

METRICS = ["price", "ind.rsi_14", "bar.close", "window.5min.buy_sell_ratio", "window.1min.vwap"]
comparison_st = st.fixed_dictionaries({
    "metric": st.sampled_from(METRICS),
    "op": st.sampled_from([">", "<", ">=", "<=", "==", "!=", "crosses_above", "crosses_below"]),
    "value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 5),
                       st.builds(lambda m: {"metric": m}, st.sampled_from(METRICS))),
})  # fmt: skip
condition_st = st.recursive(
    comparison_st,
    lambda kids: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, kids),
        st.lists(kids, min_size=1, max_size=3),
    ),
    max_leaves=8,
)
rule_st = st.builds(
    lambda cond, cooldown, trigger, enabled, symbols, stale: rule(
        conditions=cond, cooldown=cooldown, trigger=trigger, enabled=enabled, symbols=symbols,
        max_staleness=stale),
    condition_st, st.one_of(st.integers(0, 86_400), st.floats(0, 3_600)),
    st.sampled_from(["level", "edge"]), st.booleans(),
    st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=3)),
    st.one_of(st.none(), st.floats(0.001, 3_600)),
)  # fmt: skip


@settings(max_examples=300)
@given(rule_st)
def test_parse_rule_of_to_obj_gives_the_rule_back(obj: dict[str, Any]) -> None:
    r = parse_rule(obj, rule_id="x", version=2)
    again = parse_rule(json.loads(json.dumps(r.to_obj())), rule_id="x", version=2)
    assert again == r


json_st = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.dictionaries(st.sampled_from(["name", "conditions", "metric", "op", "value", "all",
                                         "any", "not", "cooldown", "logic", "symbols", "x"]),
                        kids, max_size=4),
    ),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=500)
@given(json_st)
def test_parse_rule_of_any_json_returns_a_rule_or_raises_rule_error(obj: object) -> None:
    try:
        parse_rule(obj)
    except RuleError as e:
        assert e.errors
        assert all(": " in line for line in e.errors)
