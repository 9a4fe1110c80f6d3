"""Properties of the scanner against a naive oracle written here from the specification.

The oracle walks each rule's JSON document for each token, one at a time, with Python's
own comparisons and ``None`` as null (three-valued: only TRUE fires), and keeps its state
in plain dicts: the previous sample of each token (the last scan that included it), the
last firing and the previous result of each (rule, token). Random scans vary the token
set and order, nulls, ties, time steps and staleness; values come from a small set so
equalities and crossings happen often.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradepulse.core.rules import Rule, parse_rule
from tradepulse.core.scanner import ALERT_NAMESPACE, Alert, Scanner, TokenState

BASE = ["price", "ind.ema_20", "window.1min.buy_count", "window.1min.sell_count",
        "window.5min.buy_volume", "window.5min.sell_volume"]  # fmt: skip
DERIVED = ["window.1min.buy_sell_ratio", "window.5min.net_volume"]
METRICS = BASE + DERIVED
UPDATED = ["window.1min.updated_ms", "window.5min.updated_ms"]
WHOLE = {"window.1min.buy_count", "window.1min.sell_count"}
WINDOW_MS = {"1min": 60_000, "5min": 300_000}
UNIVERSE = ["a", "b", "c", "d", "e"]
OPS = [">", "<", ">=", "<=", "==", "!=", "crosses_above", "crosses_below"]
value_st = st.sampled_from([math.nan, 0.0, 1.0, 2.0, 3.0, -1.5])

comparison_st = st.fixed_dictionaries({
    "metric": st.sampled_from(METRICS),
    "op": st.sampled_from(OPS),
    "value": st.one_of(st.sampled_from([0.0, 1.0, 2.0, 1.5]),
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
    max_leaves=6,
)


@st.composite
def rule_objs(draw: st.DrawFn, index: int) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "name": f"rule {index}",
        "conditions": draw(condition_st),
        "cooldown": draw(st.sampled_from([0, 1, 2, 5])),
        "trigger": draw(st.sampled_from(["level", "edge"])),
        "enabled": draw(st.booleans() | st.just(True)),
    }
    if draw(st.booleans()):
        obj["logic"] = draw(st.sampled_from(["all", "any"]))
        obj["conditions"] = draw(st.lists(comparison_st, min_size=1, max_size=3))
    if draw(st.integers(0, 3)) == 0:
        obj["symbols"] = draw(st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=3))
    if draw(st.integers(0, 2)) == 0:
        obj["max_staleness"] = draw(st.sampled_from([1, 2.5]))
    return obj


@dataclass(frozen=True)
class Step:
    dt_ms: int
    tokens: list[str]  # in scan order
    rows: dict[str, dict[str, float]]  # token -> metric -> value (NaN = null)
    age_ms: dict[str, int]  # token -> now - newest trade


@st.composite
def steps(draw: st.DrawFn) -> Step:
    tokens = draw(st.permutations(UNIVERSE))[: draw(st.integers(0, 5))]
    rows = {t: {m: draw(value_st) for m in BASE} for t in tokens}
    for t in tokens:
        for m in UPDATED:
            rows[t][m] = draw(st.sampled_from([math.nan, 0.0, 1.0]))  # as an offset, below
    ages = {t: draw(st.sampled_from([0, 999, 1_000, 2_500, 2_501, 9_000])) for t in tokens}
    return Step(draw(st.sampled_from([0, 500, 1_000, 2_000, 5_000])), tokens, rows, ages)


scenario_st = st.tuples(
    st.integers(1, 4).flatmap(lambda n: st.tuples(*(rule_objs(i) for i in range(n)))),
    st.lists(steps(), min_size=1, max_size=8),
)


# -- the oracle -------------------------------------------------------------------------


def all3(parts: list[bool | None]) -> bool | None:
    return False if False in parts else (None if None in parts else True)


def any3(parts: list[bool | None]) -> bool | None:
    return True if True in parts else (None if None in parts else False)


Values = dict[str, float | None]


def truth(cond: Any, now: Values, prev: Values | None) -> bool | None:
    if isinstance(cond, list):
        return all3([truth(c, now, prev) for c in cond])
    if "all" in cond:
        return all3([truth(c, now, prev) for c in cond["all"]])
    if "any" in cond:
        return any3([truth(c, now, prev) for c in cond["any"]])
    if "not" in cond:
        inner = truth(cond["not"], now, prev)
        return None if inner is None else not inner

    def sides(values: dict[str, float | None]) -> tuple[float | None, float | None]:
        v = cond["value"]
        return values[cond["metric"]], (values[v["metric"]] if isinstance(v, dict) else v)

    left, right = sides(now)
    if left is None or right is None:
        return None
    op = cond["op"]
    if op.startswith("crosses"):
        if prev is None:
            return None
        p_left, p_right = sides(prev)
        if p_left is None or p_right is None:
            return None
        if op == "crosses_above":
            return p_left <= p_right and left > right
        return p_left >= p_right and left < right
    return {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right,
            "==": left == right, "!=": left != right}[op]  # fmt: skip


def metrics_read(cond: Any) -> list[str]:
    if isinstance(cond, list):
        return [m for c in cond for m in metrics_read(c)]
    for key in ("all", "any"):
        if key in cond:
            return [m for c in cond[key] for m in metrics_read(c)]
    if "not" in cond:
        return metrics_read(cond["not"])
    v = cond["value"]
    return [cond["metric"], *([v["metric"]] if isinstance(v, dict) else [])]


def row_values(row: dict[str, float]) -> dict[str, float | None]:
    vals: dict[str, float | None] = {m: None if math.isnan(x) else x for m, x in row.items()}
    buys, sells = vals["window.1min.buy_count"], vals["window.1min.sell_count"]
    vals["window.1min.buy_sell_ratio"] = None if buys is None or not sells else buys / sells
    bv, sv = vals["window.5min.buy_volume"], vals["window.5min.sell_volume"]
    vals["window.5min.net_volume"] = None if bv is None or sv is None else bv - sv
    return vals


class Oracle:
    def __init__(self, objs: list[dict[str, Any]]) -> None:
        self.objs = objs
        self.prev: dict[str, dict[str, float | None]] = {}
        self.last: dict[tuple[int, str], int] = {}
        self.held: dict[tuple[int, str], bool] = {}

    def scan(self, now: int, step: Step) -> list[tuple[Any, ...]]:
        values = {t: row_values(step.rows[t]) for t in step.tokens}
        out = []
        for i, obj in enumerate(self.objs):
            if not obj["enabled"]:
                continue
            cond = obj["conditions"]
            if obj.get("logic") == "any":
                cond = {"any": cond}
            for t in step.tokens:
                if "symbols" in obj and t not in obj["symbols"]:
                    continue
                ok = truth(cond, values[t], self.prev.get(t)) is True
                before = self.held.get((i, t))
                self.held[(i, t)] = ok
                if not ok or (obj["trigger"] == "edge" and before is not False):
                    continue
                if "max_staleness" in obj and step.age_ms[t] > obj["max_staleness"] * 1000:
                    continue
                last = self.last.get((i, t))
                if last is not None and now < last + obj["cooldown"] * 1000:
                    continue
                self.last[(i, t)] = now
                out.append(self.alert(i, obj, t, now, values[t], step))
        self.prev.update(values)
        return out

    def alert(self, i: int, obj: dict[str, Any], t: str, now: int,
              values: dict[str, float | None], step: Step) -> tuple[Any, ...]:  # fmt: skip
        read = list(dict.fromkeys(metrics_read(obj["conditions"])))
        shown = {m: (int(values[m]) if m in WHOLE and values[m] is not None else values[m])  # type: ignore[arg-type]
                 for m in read}  # fmt: skip
        bounds = {}
        for w in dict.fromkeys(m.split(".")[1] for m in read if m.startswith("window.")):
            updated = step.rows[t][f"window.{w}.updated_ms"]
            if not math.isnan(updated):
                bounds[w] = (now + int(updated) - WINDOW_MS[w], now + int(updated))
        key = json.dumps([f"r{i}", 7, t, now], separators=(",", ":"))
        return (str(uuid.uuid5(ALERT_NAMESPACE, key)), f"r{i}", obj["name"], t, now, shown,
                bounds, step.age_ms[t])  # fmt: skip


# -- running the scanner ------------------------------------------------------------------


def parse_all(objs: tuple[dict[str, Any], ...]) -> list[Rule]:
    return [parse_rule(o, windows=["1min", "5min"], rule_id=f"r{i}", version=7)
            for i, o in enumerate(objs)]  # fmt: skip


def run_scan(sc: Scanner, now: int, step: Step) -> list[tuple[Any, ...]]:
    cols = {}
    for m in sc.input_metrics:
        col = np.array([step.rows[t][m] for t in step.tokens], dtype=float)
        cols[m] = col + now if m in UPDATED else col  # updated_ms = now + offset
    newest = np.array([now - step.age_ms[t] for t in step.tokens], dtype=np.int64)
    return [as_tuple(a) for a in sc.scan(now, list(step.tokens), cols, newest)]


def as_tuple(a: Alert) -> tuple[Any, ...]:
    assert a.rule_version == 7 and len(a.trace_id) == 32
    return (a.id, a.rule_id, a.rule_name, a.token, a.triggered_ms, a.values, a.window_bounds,
            a.lag_ms)  # fmt: skip


def times(scans: list[Step]) -> list[int]:
    now, out = 1_700_000_000_000, []
    for step in scans:
        now += step.dt_ms
        out.append(now)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario_st)
def test_vectorized_scan_equals_the_naive_oracle(
    scenario: tuple[tuple[dict[str, Any], ...], list[Step]],
) -> None:
    objs, scans = scenario
    sc, oracle = Scanner(parse_all(objs)), Oracle(list(objs))
    for now, step in zip(times(scans), scans, strict=True):
        assert run_scan(sc, now, step) == oracle.scan(now, step)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario_st, st.data())
def test_snapshot_and_restore_continue_like_an_uninterrupted_scanner(
    scenario: tuple[tuple[dict[str, Any], ...], list[Step]], data: st.DataObject
) -> None:
    objs, scans = scenario
    rules = parse_all(objs)
    cut = data.draw(st.integers(0, len(scans)))
    whole, first = Scanner(rules), Scanner(rules)
    at = times(scans)
    for now, step in zip(at[:cut], scans[:cut], strict=True):
        assert run_scan(whole, now, step) == run_scan(first, now, step)
    restarted = Scanner(rules)
    for token in UNIVERSE:  # through JSON, as the worker stores it
        stored = msgspec.json.encode(first.token_state(token))
        restarted.restore_token(token, msgspec.json.decode(stored, type=TokenState))
    for now, step in zip(at[cut:], scans[cut:], strict=True):
        assert run_scan(restarted, now, step) == run_scan(whole, now, step)
