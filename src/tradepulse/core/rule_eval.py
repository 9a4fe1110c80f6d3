"""Compile rules once into one vectorized program over a table of token metrics.

The table has one row per token and one NumPy float64 column per metric; NaN is null (not
warmed up, empty window, no bar). Evaluation is three-valued (Kleene): a comparison that
reads a null is *unknown*; ``all`` is true when every part is true and false when one is
false; ``any`` the reverse; ``not`` swaps true and false and leaves unknown unknown. Only
TRUE fires, so ``not (rsi > 70)`` does not fire while the RSI is still null.

``crosses_above`` is true when the left side was ≤ the right side at the previous sample
and is > now (``crosses_below``: ≥ then, < now); it is unknown when either sample has a
null, and the very first sample of a token has no previous one (unknown: neither it nor
its ``not`` fires). ``==`` / ``!=`` compare floats exactly.

Compilation: ``not`` is pushed down to the comparisons (De Morgan), so every node is
evaluated for one polarity only: the TRUE mask of a comparison, or its FALSE mask
(``a > b`` is false where ``a <= b``; NaN compares false both ways, which is exactly
"known and not true"; ``==``, ``!=`` and crossings add explicit "known" masks). Identical
nodes of all rules are computed once (comparisons with the same sides and operator, the
same groups), so a scan costs a few NumPy passes per distinct comparison and group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

import numpy as np

from tradepulse.core.rule_model import (
    DERIVED_WINDOW_METRICS,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    MetricRef,
    Not,
    Rule,
)

Mask: TypeAlias = np.ndarray  # bool, one per row
Columns: TypeAlias = Mapping[str, np.ndarray]
_Source: TypeAlias = tuple[str, str | float]  # ("col" | "prev", metric) or ("const", value)
_Step: TypeAlias = Callable[[list[Mask], Columns, Columns, Mask], None]  # writes its out

_ORDER = {">": "greater", "<": "less", ">=": "greater_equal", "<=": "less_equal"}
_NEGATE = {"greater": "less_equal", "less": "greater_equal",
           "greater_equal": "less", "less_equal": "greater"}  # fmt: skip
_UFUNCS: dict[str, np.ufunc] = {
    name: getattr(np, name)
    for name in ("greater", "less", "greater_equal", "less_equal", "equal", "not_equal")
}


def derived_inputs(metric: str) -> tuple[str, ...]:
    """The base columns a metric is computed from (itself when it is not derived)."""
    head, _, stat = metric.rpartition(".")
    pair = DERIVED_WINDOW_METRICS.get(stat) if head.startswith("window.") else None
    return (metric,) if pair is None else tuple(f"{head}.{s}" for s in pair)


def derive(metric: str, cols: Columns) -> np.ndarray:
    """A derived column: ``buy_sell_ratio`` (null when sell_count is 0) or ``net_volume``."""
    a, b = (cols[m] for m in derived_inputs(metric))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if metric.endswith(".buy_sell_ratio"):
            out = np.full(a.shape, np.nan)
            np.divide(a, b, out=out, where=b != 0)
            return out
        return np.subtract(a, b)


class Program:
    """The enabled rules of a rule set, compiled together.

    ``metrics`` are all metrics read; ``input_metrics`` the columns ``columns`` needs
    (derived metrics replaced by their bases, then ``extra_inputs``); ``crossing_metrics``
    the metrics whose previous sample ``held`` needs (in ``prev``)."""

    def __init__(self, rules: Sequence[Rule], extra_inputs: Sequence[str] = ()) -> None:
        self.rules = tuple(rules)
        self._steps: list[_Step] = []
        self._inputs: list[tuple[int, ...]] = []  # the steps each step reads
        self._ids: dict[tuple[object, ...], int] = {}
        self._crossing: dict[str, None] = {}
        self._buffer_of: list[int] = []  # the output buffer of each step
        self._buffer_count = 0
        self._buffers = np.empty((0, 0), bool)
        self._rows = -1  # the row count of ``_vals``
        self._vals: list[Mask] = []
        self.roots = [self._node(rule.condition, True) for rule in self.rules]
        self.metrics = tuple(dict.fromkeys(m for r in self.rules for m in r.metrics()))
        inputs = [i for m in self.metrics for i in derived_inputs(m)]
        self.input_metrics = tuple(dict.fromkeys([*inputs, *extra_inputs]))
        self.crossing_metrics = tuple(self._crossing)
        self._plan()

    @property
    def steps(self) -> int:
        """Distinct vectorized steps per scan (a measure of the work after sharing)."""
        return len(self._steps)

    def columns(self, given: Columns, rows: int) -> dict[str, np.ndarray]:
        """``metrics`` as float64 columns of ``rows`` rows: the given inputs (converted when
        not float64, never copied otherwise) and the derived ones computed from them."""
        cols: dict[str, np.ndarray] = {}
        for m in self.input_metrics:
            if m not in given:
                raise ValueError(f"scan: no column for metric {m!r}")
            col = np.asarray(given[m], dtype=np.float64)
            if col.shape != (rows,):
                raise ValueError(f"scan: column {m!r} has shape {col.shape}, expected ({rows},)")
            cols[m] = col
        for m in self.metrics:
            if m not in cols:
                cols[m] = derive(m, cols)
        return cols

    def held(self, cols: Columns, prev: Columns, rows: int) -> list[Mask]:
        """The TRUE mask of every rule. The masks are the program's own buffers: valid
        until the next call, never to be modified."""
        vals = self._views(rows)
        for step, out in zip(self._steps, vals, strict=True):
            step(vals, cols, prev, out)
        return [vals[i] for i in self.roots]

    def _views(self, rows: int) -> list[Mask]:
        """The output of each step: views of ``rows`` rows of the buffers it was given."""
        if rows != self._rows:
            if rows > self._buffers.shape[1]:
                self._buffers = np.empty((self._buffer_count, max(rows, rows * 5 // 4)), bool)
            views = [b[:rows] for b in self._buffers]
            self._vals = [views[b] for b in self._buffer_of]
            self._rows = rows
        return self._vals

    def _plan(self) -> None:
        """Give every step an output buffer; a buffer is reused once the last step that
        reads it has run (rule results are kept to the end). Reusing memory matters: a
        fresh array per step costs twice the arithmetic in page faults."""
        last_use = list(range(len(self._steps)))
        for j, inputs in enumerate(self._inputs):
            for i in inputs:
                last_use[i] = j
        for i in self.roots:
            last_use[i] = len(self._steps)
        free: list[int] = []
        for j, inputs in enumerate(self._inputs):
            if not free:
                free.append(self._buffer_count)
                self._buffer_count += 1
            self._buffer_of.append(free.pop())
            free.extend(self._buffer_of[i] for i in (*inputs, j) if last_use[i] == j)
        self._buffers = np.empty((self._buffer_count, 0), bool)

    # -- compilation -------------------------------------------------------------------

    def _add(self, key: tuple[object, ...], step: _Step, inputs: tuple[int, ...] = ()) -> int:
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self._steps)
            self._steps.append(step)
            self._inputs.append(inputs)
        return found

    def _node(self, cond: Condition, positive: bool) -> int:
        if isinstance(cond, Not):
            return self._node(cond.item, not positive)
        if isinstance(cond, Comparison):
            return self._comparison(cond, positive)
        kids = [self._node(c, positive) for c in cond.items]
        conjunction = isinstance(cond, AllOf) == positive  # De Morgan for the FALSE mask
        assert isinstance(cond, AllOf | AnyOf)
        return self._combine("and" if conjunction else "or", kids)

    def _combine(self, kind: str, kids: list[int]) -> int:
        ids = tuple(sorted(set(kids)))
        if len(ids) == 1:
            return ids[0]
        ufunc = np.logical_and if kind == "and" else np.logical_or

        def step(vals: list[Mask], _c: Columns, _p: Columns, out: Mask) -> None:
            ufunc(vals[ids[0]], vals[ids[1]], out=out)
            for i in ids[2:]:
                ufunc(out, vals[i], out=out)

        return self._add((kind, ids), step, ids)

    def _compare(self, name: str, left: _Source, right: _Source) -> int:
        ufunc = _UFUNCS[name]
        get_l, get_r = _getter(left), _getter(right)

        def step(_v: list[Mask], cols: Columns, prev: Columns, out: Mask) -> None:
            ufunc(get_l(cols, prev), get_r(cols, prev), out=out)

        return self._add(("cmp", name, left, right), step)

    def _known(self, sources: list[_Source]) -> list[int]:
        """Masks of the rows where each non-constant source is not null."""
        return [self._known_one(src) for src in sources if src[0] != "const"]

    def _known_one(self, src: _Source) -> int:
        get = _getter(src)

        def step(_v: list[Mask], cols: Columns, prev: Columns, out: Mask) -> None:
            np.isnan(get(cols, prev), out=out)
            np.logical_not(out, out=out)

        return self._add(("known", src), step)

    def _comparison(self, c: Comparison, positive: bool) -> int:
        rhs: _Source = (
            ("col", c.value.metric) if isinstance(c.value, MetricRef) else ("const", c.value)
        )
        lhs: _Source = ("col", c.metric)
        if c.op in _ORDER:
            name = _ORDER[c.op]
            return self._compare(name if positive else _NEGATE[name], lhs, rhs)
        if c.op in ("==", "!="):
            if positive == (c.op == "=="):
                return self._compare("equal", lhs, rhs)
            unequal = self._compare("not_equal", lhs, rhs)  # NaN != x: mask the unknowns
            return self._combine("and", [unequal, *self._known([lhs, rhs])])
        return self._crossing_node(c, lhs, rhs, positive)

    def _crossing_node(self, c: Comparison, lhs: _Source, rhs: _Source, positive: bool) -> int:
        """above: prev_l <= prev_r and l > r (below: >= then <); unknown without a sample."""
        for src in (lhs, rhs):
            if src[0] == "col":
                self._crossing[str(src[1])] = None
        p_lhs: _Source = ("prev", lhs[1])
        p_rhs: _Source = rhs if rhs[0] == "const" else ("prev", rhs[1])
        above = c.op == "crosses_above"
        before, now = ("less_equal", "greater") if above else ("greater_equal", "less")
        if positive:
            return self._combine("and", [self._compare(before, p_lhs, p_rhs),
                                         self._compare(now, lhs, rhs)])  # fmt: skip
        either = self._combine("or", [self._compare(_NEGATE[before], p_lhs, p_rhs),
                                      self._compare(_NEGATE[now], lhs, rhs)])  # fmt: skip
        return self._combine("and", [either, *self._known([lhs, rhs, p_lhs, p_rhs])])


def _getter(src: _Source) -> Callable[[Columns, Columns], np.ndarray | float]:
    kind, what = src
    if kind == "const":
        value = float(what)
        return lambda _c, _p: value
    key = str(what)
    if kind == "col":
        return lambda c, _p: c[key]
    return lambda _c, p: p[key]
