"""The scanner (ARCHITECTURE §6) as a specification: operators, nulls (three-valued logic),
crossings, groups, cooldowns, edge triggers, staleness, symbols, disabled rules, rule
updates, alert contents and the per-token state snapshot.

Tables give each token's metrics by name (missing = null); ``window.<w>.updated_ms``
defaults to the scan time and a token's newest trade to the scan time.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np
import pytest

from tradepulse.core.rules import Rule, parse_rule
from tradepulse.core.scanner import ALERT_NAMESPACE, Alert, RuleTokenState, Scanner, TokenState

Row = Mapping[str, float | None]


def make_rule(conditions: object, *, rid: str = "r", version: int = 1, **fields: Any) -> Rule:
    obj = {"name": f"rule {rid}", "conditions": conditions, "cooldown": 0, **fields}
    return parse_rule(obj, rule_id=rid, version=version)


def cmp(metric: str, op: str, value: float | str) -> dict[str, object]:
    """A comparison; a str value is another metric."""
    rhs = {"metric": value} if isinstance(value, str) else value
    return {"metric": metric, "op": op, "value": rhs}


def scan(
    sc: Scanner, now_ms: int, table: Mapping[str, Row], newest: dict[str, int] | None = None
) -> list[Alert]:
    tokens = list(table)
    cols = {}
    for m in sc.input_metrics:
        default = float(now_ms) if m.endswith(".updated_ms") else None
        vals = [table[t].get(m, default) for t in tokens]
        cols[m] = np.array([math.nan if v is None else v for v in vals], dtype=float)
    newest_ms = np.array([(newest or {}).get(t, now_ms) for t in tokens], dtype=np.int64)
    return sc.scan(now_ms, tokens, cols, newest_ms)


def fired(sc: Scanner, now_ms: int, table: Mapping[str, Row], **kw: Any) -> list[tuple[str, str]]:
    return [(a.rule_id, a.token) for a in scan(sc, now_ms, table, **kw)]


def fires(conditions: object, row: Row) -> bool:
    """Whether a one-rule scanner fires for one token at its first scan."""
    return bool(fired(Scanner([make_rule(conditions)]), 1_000, {"t": row}))


# -- operators and nulls -----------------------------------------------------------------

OPERATOR_CASES = [
    (">", 2, 1, True), (">", 1, 1, False), (">", 0, 1, False),
    ("<", 1, 2, True), ("<", 2, 2, False), ("<", 3, 2, False),
    (">=", 2, 2, True), (">=", 3, 2, True), (">=", 1, 2, False),
    ("<=", 2, 2, True), ("<=", 1, 2, True), ("<=", 3, 2, False),
    ("==", 2, 2, True), ("==", 2, 3, False), ("==", -0.0, 0.0, True),
    ("!=", 2, 3, True), ("!=", 2, 2, False),
]  # fmt: skip


@pytest.mark.parametrize(("op", "left", "right", "expected"), OPERATOR_CASES)
def test_operator_against_number_metric_and_under_not(
    op: str, left: float, right: float, expected: bool
) -> None:
    assert fires(cmp("price", op, right), {"price": left}) is expected
    assert fires(cmp("price", op, "ind.ema_20"), {"price": left, "ind.ema_20": right}) is expected
    assert fires({"not": cmp("price", op, right)}, {"price": left}) is not expected


@pytest.mark.parametrize("op", [">", "<", ">=", "<=", "==", "!="])
@pytest.mark.parametrize(("left", "right"), [(None, 1.0), (1.0, None), (None, None)])
def test_comparison_with_a_null_side_is_unknown_and_neither_it_nor_its_not_fires(
    op: str, left: float | None, right: float | None
) -> None:
    row = {"price": left, "ind.ema_20": right}
    assert not fires(cmp("price", op, "ind.ema_20"), row)
    assert not fires({"not": cmp("price", op, "ind.ema_20")}, row)
    assert not fires({"not": {"not": cmp("price", op, "ind.ema_20")}}, row)


NULL = cmp("ind.rsi_14", ">", 50)  # unknown: the RSI is not warmed up
TRUE = cmp("price", ">", 1)
FALSE = cmp("price", "<", 1)


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param({"all": [NULL, TRUE]}, False, id="all-unknown-true-is-unknown"),
        pytest.param({"not": {"all": [NULL, TRUE]}}, False, id="not-of-unknown-all"),
        pytest.param({"all": [NULL, FALSE]}, False, id="all-unknown-false-is-false"),
        pytest.param({"not": {"all": [NULL, FALSE]}}, True, id="not-of-false-all-fires"),
        pytest.param({"any": [NULL, TRUE]}, True, id="any-unknown-true-is-true"),
        pytest.param({"not": {"any": [NULL, TRUE]}}, False, id="not-of-true-any"),
        pytest.param({"any": [NULL, FALSE]}, False, id="any-unknown-false-is-unknown"),
        pytest.param({"not": {"any": [NULL, FALSE]}}, False, id="not-of-unknown-any"),
        pytest.param([TRUE, {"any": [FALSE, {"not": FALSE}]}], True, id="nested-bare-list"),
        pytest.param({"any": [{"all": [TRUE, FALSE]}, {"not": [TRUE, FALSE]}]}, True,
                     id="not-of-list-is-not-all"),
    ],
)  # fmt: skip
def test_groups_use_three_valued_logic_and_only_true_fires(
    conditions: object, expected: bool
) -> None:
    assert fires(conditions, {"price": 2.0, "ind.rsi_14": None}) is expected


def test_legacy_logic_any_and_all() -> None:
    def legacy(logic: str, row: Row) -> bool:
        r = parse_rule({"name": "x", "conditions": [TRUE, cmp("ind.rsi_14", ">", 70)],
                        "logic": logic, "cooldown": 0})  # fmt: skip
        return bool(fired(Scanner([r]), 1_000, {"t": row}))

    assert legacy("any", {"price": 2.0, "ind.rsi_14": 10.0})
    assert not legacy("all", {"price": 2.0, "ind.rsi_14": 10.0})
    assert legacy("all", {"price": 2.0, "ind.rsi_14": 80.0})


def test_derived_metrics_ratio_is_null_without_sells() -> None:
    ratio = "window.5min.buy_sell_ratio"
    row: dict[str, float | None] = {"window.5min.buy_count": 6.0, "window.5min.sell_count": 0.0}
    assert not fires(cmp(ratio, ">", 0), row)
    assert not fires({"not": cmp(ratio, ">", 0)}, row)
    row["window.5min.sell_count"] = 2.0
    assert fires(cmp(ratio, "==", 3), row)
    net = {"window.1min.buy_volume": 10.0, "window.1min.sell_volume": 4.0}
    assert fires(cmp("window.1min.net_volume", "==", 6), net)
    assert not fires(cmp("window.1min.net_volume", ">", 0), {"window.1min.buy_volume": 1.0})


# -- crossings -------------------------------------------------------------------------

CROSSING_CASES = [
    ("crosses_above", (1, 2), (3, 2), True),
    ("crosses_above", (2, 2), (3, 2), True),  # equal before counts as below
    ("crosses_above", (3, 2), (4, 2), False),  # already above
    ("crosses_above", (1, 2), (2, 2), False),  # touching is not above
    ("crosses_above", (1, 3), (2, 1), True),  # the right side moved
    ("crosses_below", (3, 2), (1, 2), True),
    ("crosses_below", (2, 2), (1, 2), True),
    ("crosses_below", (1, 2), (0, 2), False),
    ("crosses_below", (3, 2), (2, 2), False),
]


@pytest.mark.parametrize(("op", "before", "after", "expected"), CROSSING_CASES)
def test_crossing_compares_with_the_previous_scan(
    op: str, before: tuple[float, float], after: tuple[float, float], expected: bool
) -> None:
    for negate in (False, True):
        cond = cmp("price", op, "ind.ema_20")
        sc = Scanner([make_rule({"not": cond} if negate else cond)])
        first = fired(sc, 1_000, {"t": {"price": before[0], "ind.ema_20": before[1]}})
        assert first == []  # no previous sample: unknown, whatever the polarity
        second = fired(sc, 2_000, {"t": {"price": after[0], "ind.ema_20": after[1]}})
        assert bool(second) is (expected != negate)


def test_crossing_a_number_and_nulls_in_either_sample() -> None:
    sc = Scanner([make_rule(cmp("ind.rsi_14", "crosses_above", 70)),
                  make_rule({"not": cmp("ind.rsi_14", "crosses_above", 70)}, rid="n")])  # fmt: skip
    assert fired(sc, 1_000, {"t": {"ind.rsi_14": None}}) == []
    assert fired(sc, 2_000, {"t": {"ind.rsi_14": 75.0}}) == []  # previous was null
    assert fired(sc, 3_000, {"t": {"ind.rsi_14": 60.0}}) == [("n", "t")]
    assert fired(sc, 4_000, {"t": {"ind.rsi_14": 71.0}}) == [("r", "t")]
    assert fired(sc, 5_000, {"t": {"ind.rsi_14": None}}) == []  # now null


def test_crossing_token_new_since_the_last_scan_has_no_previous_sample() -> None:
    sc = Scanner([make_rule(cmp("price", "crosses_above", 2))])
    assert fired(sc, 1_000, {"a": {"price": 1.0}}) == []
    assert fired(sc, 2_000, {"a": {"price": 3.0}, "b": {"price": 3.0}}) == [("r", "a")]


def test_crossing_previous_sample_is_the_last_scan_that_included_the_token() -> None:
    sc = Scanner([make_rule(cmp("price", "crosses_above", 2))])
    fired(sc, 1_000, {"a": {"price": 1.0}})
    fired(sc, 2_000, {"b": {"price": 5.0}})
    assert fired(sc, 3_000, {"a": {"price": 3.0}, "b": {"price": 6.0}}) == [("r", "a")]


# -- cooldown, edge, staleness, symbols, disabled --------------------------------------


def test_cooldown_per_rule_and_token_by_scan_time() -> None:
    sc = Scanner([make_rule(TRUE, cooldown=10)])
    hot = {"price": 2.0}
    got = {now: fired(sc, now, {"a": hot, **({"b": hot} if now >= 5_000 else {})})
           for now in (0, 5_000, 9_999, 10_000, 14_999, 15_000, 20_000)}  # fmt: skip
    assert got == {
        0: [("r", "a")], 5_000: [("r", "b")], 9_999: [], 10_000: [("r", "a")], 14_999: [],
        15_000: [("r", "b")], 20_000: [("r", "a")],
    }  # fmt: skip


def test_cooldown_zero_fires_every_scan_that_holds() -> None:
    sc = Scanner([make_rule(TRUE, cooldown=0)])
    assert [len(fired(sc, t, {"a": {"price": 2.0}})) for t in (0, 0, 1, 2)] == [1, 1, 1, 1]


def test_edge_fires_on_a_change_to_true_only() -> None:
    sc = Scanner([make_rule(TRUE, trigger="edge")])
    prices = [2.0, 2.0, 0.5, 2.0, 2.0, None, 2.0, 2.0]
    got = [bool(fired(sc, 1_000 * k, {"a": {"price": p}})) for k, p in enumerate(prices)]
    # the first scan has no previous result; unknown -> true is a change
    assert got == [False, False, False, True, False, False, True, False]


def test_edge_suppressed_by_cooldown_is_not_fired_later() -> None:
    sc = Scanner([make_rule(TRUE, trigger="edge", cooldown=100)])
    got = [bool(fired(sc, 1_000 * k, {"a": {"price": p}}))
           for k, p in enumerate([0.5, 2.0, 0.5, 2.0, 2.0])]  # fmt: skip
    assert got == [False, True, False, False, False]
    assert fired(sc, 200_000, {"a": {"price": 2.0}}) == []  # still no edge
    assert fired(sc, 201_000, {"a": {"price": 0.5}}) == []
    assert fired(sc, 202_000, {"a": {"price": 2.0}}) == [("r", "a")]


def test_staleness_limit_is_inclusive_and_a_stale_token_does_not_start_a_cooldown() -> None:
    sc = Scanner([make_rule(TRUE, max_staleness=30, cooldown=60)])
    now = 100_000
    table = {"fresh": {"price": 2.0}, "edge": {"price": 2.0}, "stale": {"price": 2.0}}
    newest = {"fresh": now, "edge": now - 30_000, "stale": now - 30_001}
    assert fired(sc, now, table, newest=newest) == [("r", "fresh"), ("r", "edge")]
    assert fired(sc, now + 1, table, newest={**newest, "stale": now}) == [("r", "stale")]


def test_symbols_restrict_the_tokens() -> None:
    sc = Scanner([make_rule(TRUE, symbols=["b", "zz"]), make_rule(TRUE, rid="all")])
    table = {"a": {"price": 2.0}, "b": {"price": 2.0}}
    assert fired(sc, 0, table) == [("r", "b"), ("all", "a"), ("all", "b")]
    assert fired(sc, 1_000, {"c": {"price": 2.0}, "b": {"price": 2.0}}) == [
        ("r", "b"), ("all", "c"), ("all", "b"),
    ]  # fmt: skip


def test_disabled_rule_never_fires_and_reads_nothing() -> None:
    sc = Scanner([make_rule(cmp("ind.rsi_14", ">", 1), enabled=False), make_rule(TRUE, rid="on")])
    assert sc.input_metrics == ("price",)
    assert fired(sc, 0, {"a": {"price": 2.0, "ind.rsi_14": 50.0}}) == [("on", "a")]


def test_update_rules_keeps_cooldowns_by_id_and_resets_edge_state_of_a_new_version() -> None:
    sc = Scanner([make_rule(TRUE, cooldown=60), make_rule(TRUE, rid="e", trigger="edge")])
    assert fired(sc, 0, {"a": {"price": 0.5}}) == []
    assert fired(sc, 1_000, {"a": {"price": 2.0}}) == [("r", "a"), ("e", "a")]
    sc.update_rules([make_rule(TRUE, cooldown=60, version=2),
                     make_rule(TRUE, rid="e", trigger="edge", version=2)])  # fmt: skip
    assert fired(sc, 2_000, {"a": {"price": 0.5}}) == []
    assert fired(sc, 3_000, {"a": {"price": 2.0}}) == [("e", "a")]  # r still cooling
    sc.update_rules([make_rule(TRUE, cooldown=60, enabled=False)])
    assert fired(sc, 4_000, {"a": {"price": 2.0}}) == []
    sc.update_rules([make_rule(TRUE, cooldown=60)])
    assert fired(sc, 5_000, {"a": {"price": 2.0}}) == []  # the cooldown survived disabling
    assert fired(sc, 61_000, {"a": {"price": 2.0}}) == [("r", "a")]
    with pytest.raises(ValueError, match="two rules have the id 'r'"):
        sc.update_rules([make_rule(TRUE), make_rule(FALSE)])


# -- alerts and inputs ------------------------------------------------------------------


def test_alert_carries_values_bounds_lag_and_deterministic_ids() -> None:
    r = make_rule({"any": [cmp("window.5min.buy_count", ">=", 12),
                           cmp("window.1min.buy_sell_ratio", ">", 1),
                           cmp("price", ">", "ind.ema_20")]},
                  rid="rule-7", version=3)  # fmt: skip
    row: Row = {"window.5min.buy_count": 12.0, "window.1min.buy_count": 3.0,
                "window.1min.sell_count": 0.0, "price": 1.5, "ind.ema_20": None,
                "window.5min.updated_ms": 999_000.0, "window.1min.updated_ms": None}  # fmt: skip
    alerts = [scan(Scanner([r]), 1_000_000, {"tok": row}, newest={"tok": 998_500})
              for _ in range(2)]  # fmt: skip
    assert alerts[0] == alerts[1]  # same input, same alert, same id
    a = alerts[0][0]
    key = json.dumps(["rule-7", 3, "tok", 1_000_000], separators=(",", ":"))
    assert a.id == str(uuid.uuid5(ALERT_NAMESPACE, key))
    assert len(a.trace_id) == 32 and int(a.trace_id, 16) >= 0 and a.trace_id != a.id
    assert (a.rule_id, a.rule_name, a.rule_version, a.token, a.triggered_ms, a.lag_ms) == (
        "rule-7", "rule rule-7", 3, "tok", 1_000_000, 1_500,
    )  # fmt: skip
    assert a.values == {"window.5min.buy_count": 12, "window.1min.buy_sell_ratio": None,
                        "price": 1.5, "ind.ema_20": None}  # fmt: skip
    assert type(a.values["window.5min.buy_count"]) is int
    assert a.window_bounds == {"5min": (699_000, 999_000)}  # 1min: updated_ms is null
    decoded = msgspec.json.decode(msgspec.json.encode(a), type=Alert)
    assert decoded == a


def test_alert_ids_differ_by_rule_version_token_and_time() -> None:
    ids = set()
    for version in (1, 2):
        sc = Scanner([make_rule(TRUE, version=version)])
        for now in (0, 1):
            ids |= {a.id for a in scan(sc, now, {"a": {"price": 2.0}, "b": {"price": 2.0}})}
    assert len(ids) == 8


def test_input_metrics_are_bases_of_derived_metrics_and_window_update_times() -> None:
    sc = Scanner([make_rule([cmp("window.5min.buy_sell_ratio", ">", 1),
                             cmp("window.5min.net_volume", ">", "bar.vwap")])])  # fmt: skip
    assert sc.input_metrics == (
        "window.5min.buy_count", "window.5min.sell_count", "window.5min.buy_volume",
        "window.5min.sell_volume", "bar.vwap", "window.5min.updated_ms",
    )  # fmt: skip


def test_scan_rejects_missing_or_misshapen_inputs_and_duplicate_tokens() -> None:
    sc = Scanner([make_rule(TRUE)])
    one = np.array([1.0])
    with pytest.raises(ValueError, match="no column for metric 'price'"):
        sc.scan(0, ["a"], {}, np.array([0]))
    with pytest.raises(ValueError, match=r"column 'price' has shape \(2,\), expected \(1,\)"):
        sc.scan(0, ["a"], {"price": np.array([1.0, 2.0])}, np.array([0]))
    with pytest.raises(ValueError, match="newest_trade_ms has shape"):
        sc.scan(0, ["a"], {"price": one}, np.array([0, 0]))
    with pytest.raises(ValueError, match="listed twice"):
        sc.scan(0, ["a", "a"], {"price": np.array([1.0, 1.0])}, np.array([0, 0]))
    assert sc.scan(0, [], {}, np.array([], dtype=np.int64)) == []


def test_token_order_does_not_matter() -> None:
    rules = [make_rule(cmp("price", "crosses_above", 2), cooldown=5),
             make_rule(TRUE, rid="e", trigger="edge")]  # fmt: skip
    forward, backward = Scanner(rules), Scanner(rules)
    steps = [{"a": 1.0, "b": 3.0, "c": 0.5}, {"a": 3.0, "b": 1.0, "c": 2.5},
             {"a": 0.5, "b": 4.0, "c": 3.0}]  # fmt: skip
    for k, prices in enumerate(steps):
        table = {t: {"price": p} for t, p in prices.items()}
        reverse = dict(reversed(table.items()))
        got = sorted(fired(forward, 1_000 * k, table))
        assert got == sorted(fired(backward, 1_000 * k, reverse))


# -- per-token state ---------------------------------------------------------------------


def test_token_state_round_trips_through_json_and_restores_the_scan() -> None:
    rules = [make_rule(TRUE, cooldown=60), make_rule(cmp("price", "crosses_above", 2),
                                                     rid="x", trigger="edge")]  # fmt: skip
    sc = Scanner(rules)
    assert sc.token_state("a") == TokenState()
    fired(sc, 0, {"a": {"price": 1.0}})
    fired(sc, 1_000, {"a": {"price": 3.0}})
    state = sc.token_state("a")
    assert state.previous == {"price": 3.0}
    assert state.rules["r"].last_fired_ms == 1_000 and state.rules["x"].held is True
    stored = msgspec.json.decode(msgspec.json.encode(state), type=TokenState)
    assert stored == state
    copy = Scanner(rules)
    copy.restore_token("a", stored)
    step: dict[str, Row] = {"a": {"price": 1.5}}
    assert fired(copy, 2_000, step) == fired(sc, 2_000, step) == []  # r cooling, x fell
    step = {"a": {"price": 2.5}}
    assert fired(copy, 60_999, step) == fired(sc, 60_999, step) == [("x", "a")]
    assert fired(copy, 61_000, step) == fired(sc, 61_000, step) == [("r", "a")]


def test_forget_drops_a_token_and_its_slot_carries_nothing_over() -> None:
    sc = Scanner([make_rule(TRUE, cooldown=60), make_rule(cmp("price", "crosses_above", 2),
                                                          rid="x")])  # fmt: skip
    fired(sc, 0, {"a": {"price": 1.0}})
    sc.forget("a")
    sc.forget("never-seen")
    assert sc.token_state("a") == TokenState()
    assert fired(sc, 1_000, {"b": {"price": 3.0}}) == [("r", "b")]  # no cooldown, no sample
    assert fired(sc, 2_000, {"a": {"price": 3.0}}) == [("r", "a")]


def test_restore_ignores_unknown_rules_and_edge_state_of_another_version() -> None:
    sc = Scanner([make_rule(TRUE, rid="e", trigger="edge", version=2)])
    sc.restore_token("a", TokenState(rules={
        "gone": RuleTokenState(version=1, last_fired_ms=5),
        "e": RuleTokenState(version=1, held=False),
    }))  # fmt: skip
    assert sc.token_state("a") == TokenState()
    assert fired(sc, 0, {"a": {"price": 2.0}}) == []  # no previous result of version 2


def test_state_survives_growth_reordering_and_forgetting_of_many_tokens() -> None:
    sc = Scanner([make_rule(cmp("price", "crosses_above", 2), cooldown=60),
                  make_rule(TRUE, rid="e", trigger="edge")])  # fmt: skip
    old = [f"t{i}" for i in range(1_500)]
    new = [f"n{i}" for i in range(1_500)]
    assert fired(sc, 0, {t: {"price": 1.0} for t in old}) == []
    both = {t: {"price": 3.0} for t in new + old[::-1]}  # slots grow mid-scan, rows reordered
    got = fired(sc, 1_000, both)
    assert sorted(got) == sorted([("r", t) for t in old] + [("e", t) for t in old])
    for t in old[:10]:
        sc.forget(t)
    again = fired(sc, 2_000, {t: {"price": 1.0} for t in old} | {t: {"price": 3.0} for t in new})
    assert again == []  # forgotten tokens start with no sample; cooldowns hold the others
    got = fired(sc, 3_000, {t: {"price": 3.0} for t in old[:20]})
    # r: only the forgotten ones are not cooling; e: every token went false -> true
    assert sorted(got) == sorted([("r", t) for t in old[:10]] + [("e", t) for t in old[:20]])


def test_identical_comparisons_of_different_rules_are_computed_once() -> None:
    one = Scanner([make_rule([TRUE, {"not": FALSE}])])
    two = Scanner([make_rule([TRUE, {"not": FALSE}]), make_rule({"all": [{"not": FALSE}, TRUE]},
                                                                  rid="same")])  # fmt: skip
    assert two.program.steps == one.program.steps == 3  # price > 1, price >= 1, and
    assert Scanner([]).scan(0, ["a"], {}, np.array([0])) == []
