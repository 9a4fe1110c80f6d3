"""Dry runs of alert rules: the metric table of a scan, and a scanner that writes its alerts.

``metric_columns`` builds the table ``Scanner.scan`` reads (ARCHITECTURE §6) from what a
process holds per token: its ``TokenWindows`` and its ``TokenBars`` (when bars are kept).
Nothing here knows who calls it: the replay's dry run (``tradepulse replay --rules``) and
a worker's scan build their tables the same way.

``DryRun`` is a ``Scanner`` whose alerts go to a binary stream (when given one), one
msgspec-JSON ``Alert`` per line, counted per rule. ``load_rules`` reads a rules document:
one rule object or a list of them, each identified by its name (version 0), every error
reported with its path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any, BinaryIO

import msgspec
import numpy as np

from tradepulse.core.alerts import Alert
from tradepulse.core.clock import NEVER
from tradepulse.core.rule_model import BAR_FIELDS, WINDOW_STATISTICS, Rule
from tradepulse.core.rules import DEFAULT_WINDOW_NAMES, RuleError, parse_rule
from tradepulse.core.scanner import Scanner
from tradepulse.core.tokenbars import TokenBars
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import TokenWindows

__all__ = ["DryRun", "load_rules", "metric_columns", "reads_bars"]

_Value = float | int | None
_Getter = Any  # an attrgetter: WindowStats or Bar -> value


class _Plan:
    """Which metrics of each kind a table needs, with their getters (checked once)."""

    def __init__(self, metrics: Iterable[str]) -> None:
        self.metrics = tuple(dict.fromkeys(metrics))
        self.windows: list[tuple[str, str, _Getter]] = []  # (metric, window, getter)
        self.bars: list[tuple[str, _Getter]] = []
        self.indicators: list[tuple[str, str]] = []  # (metric, indicator name)
        self.price = False
        for m in self.metrics:
            self._add(m)

    def _add(self, metric: str) -> None:
        kind, _, rest = metric.partition(".")
        window, _, stat = rest.partition(".")
        if metric == "price":
            self.price = True
        elif kind == "window" and window and stat in WINDOW_STATISTICS:
            self.windows.append((metric, window, attrgetter(stat)))
        elif kind == "bar" and rest in BAR_FIELDS:
            self.bars.append((metric, attrgetter(rest)))
        elif kind == "ind" and rest:
            self.indicators.append((metric, rest))
        else:
            raise ValueError(
                f"metric_columns: {metric!r} is not an input metric "
                "(window.<w>.<statistic>, bar.<field>, ind.<name> or price)"
            )


def metric_columns(
    tokens: Sequence[TokenId],
    windows_by_token: Mapping[TokenId, TokenWindows],
    bars_by_token: Mapping[TokenId, TokenBars | None],
    t_ms: TsMs,
    metrics: Iterable[str],
) -> dict[str, np.ndarray]:
    """One float64 column per metric of ``metrics`` (row ``i`` is ``tokens[i]``, NaN =
    null), as ``Scanner.scan`` reads them; pass ``Scanner.input_metrics`` (derived metrics
    such as ``buy_sell_ratio`` are the scanner's to compute and are refused here).

    * ``window.<w>.<stat>``: ``TokenWindows.stats(t_ms)``, i.e. at ``T = max(t_ms, newest
      trade, last T)`` (this moves the windows to ``T``). Null statistics (``vwap``,
      ``first_trade_ms``, ``last_trade_ms`` of an empty window), windows not configured and
      tokens without windows or trades are NaN.
    * ``price``: the latest trade price at or before ``T`` (``end_price``, the same in
      every window).
    * ``bar.<field>``: the forming bar, ``TokenBars.forming(t_ms)`` (NaN when none: no trade
      in a minute not yet final).
    * ``ind.<name>``: ``TokenBars.indicators.values()`` at the newest final bar (NaN until
      warmed up). The caller moves the bars to ``T`` first (``TokenBars.advance``), as the
      worker does before each write; nothing here moves bars.

    Only what is asked for is computed: no window statistics without a ``window.`` or
    ``price`` metric, no bar lookup without ``bar.`` or ``ind.`` metrics. Raises
    ``ValueError`` for any other metric name.
    """
    plan = _Plan(metrics)
    values: dict[str, list[_Value]] = {m: [] for m in plan.metrics}
    if plan.windows or plan.price:
        _window_values(plan, tokens, windows_by_token, t_ms, values)
    if plan.bars or plan.indicators:
        _bar_values(plan, tokens, bars_by_token, t_ms, values)
    return {m: np.array(v, dtype=np.float64) for m, v in values.items()}


def _window_values(
    plan: _Plan,
    tokens: Sequence[TokenId],
    windows_by_token: Mapping[TokenId, TokenWindows],
    t_ms: TsMs,
    values: dict[str, list[_Value]],
) -> None:
    columns = [(values[m], w, get) for m, w, get in plan.windows]
    prices = values["price"] if plan.price else None
    for token in tokens:
        tw = windows_by_token.get(token)
        stats = tw.stats(t_ms) if tw is not None else {}
        for column, window, get in columns:
            ws = stats.get(window)
            column.append(None if ws is None else get(ws))
        if prices is not None:
            prices.append(next(iter(stats.values())).end_price if stats else None)


def _bar_values(
    plan: _Plan,
    tokens: Sequence[TokenId],
    bars_by_token: Mapping[TokenId, TokenBars | None],
    t_ms: TsMs,
    values: dict[str, list[_Value]],
) -> None:
    bar_columns = [(values[m], get) for m, get in plan.bars]
    ind_columns = [(values[m], name) for m, name in plan.indicators]
    for token in tokens:
        tb = bars_by_token.get(token)
        if bar_columns:
            bar = tb.forming(t_ms) if tb is not None else None
            for column, get in bar_columns:
                column.append(None if bar is None else get(bar))
        if ind_columns:
            ind = tb.indicators.values() if tb is not None else {}
            for column, name in ind_columns:
                column.append(ind.get(name))


def reads_bars(rules: Iterable[Rule]) -> bool:
    """Whether an enabled rule reads a ``bar.`` or ``ind.`` metric (bars must be kept)."""
    return any(m.startswith(("bar.", "ind.")) for r in rules if r.enabled for m in r.metrics())


def load_rules(data: bytes, windows: Iterable[str] = DEFAULT_WINDOW_NAMES) -> list[Rule]:
    """The rules of a JSON document: one rule object, or a non-empty list of them.

    Each rule's id is its name (the language has no ``id`` field), version 0. Raises
    ``RuleError`` listing every problem: a rule's errors keep their paths, prefixed with
    its index in a list (``[1].conditions[0].op: unknown operator '=>'``); a name used
    twice is an error at the later rule's ``name``."""
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError as e:
        raise RuleError([f"$: invalid JSON: {e}"]) from e
    if not isinstance(doc, list):
        return [parse_rule(doc, windows=tuple(windows))]
    if not doc:
        raise RuleError(["$: expected a rule or a non-empty array of rules, got []"])
    return _parse_list(doc, tuple(windows))


def _parse_list(doc: list[object], windows: tuple[str, ...]) -> list[Rule]:
    rules: list[Rule] = []
    errors: list[str] = []
    first_of: dict[str, int] = {}
    for i, obj in enumerate(doc):
        try:
            rule = parse_rule(obj, windows=windows)
        except RuleError as e:
            errors += [f"[{i}]{x[1:]}" if x.startswith("$:") else f"[{i}].{x}" for x in e.errors]
            continue
        if rule.name in first_of:
            errors.append(f"[{i}].name: duplicate rule name {rule.name!r} "
                          f"(also [{first_of[rule.name]}])")  # fmt: skip
            continue
        first_of[rule.name] = i
        rules.append(rule)
    if errors:
        raise RuleError(errors)
    return rules


class DryRun:
    """A ``Scanner`` over ``rules`` whose alerts are written to ``out`` as JSON lines
    (``out=None``: only counted and returned).

    ``counts`` holds the alerts per rule id, every rule listed (disabled ones at 0).
    ``needs_bars``: an enabled rule reads ``bar.`` or ``ind.``, so ``scan`` needs bars."""

    def __init__(self, rules: Sequence[Rule], out: BinaryIO | None) -> None:
        self.scanner = Scanner(rules)
        self.metrics = self.scanner.input_metrics
        self.needs_bars = reads_bars(rules)
        self.counts: dict[str, int] = {r.id: 0 for r in rules}
        self._out = out
        self._encoder = msgspec.json.Encoder()

    def scan(
        self,
        t_ms: TsMs,
        tokens: Sequence[TokenId],
        windows_by_token: Mapping[TokenId, TokenWindows],
        bars_by_token: Mapping[TokenId, TokenBars | None],
    ) -> list[Alert]:
        """Scan ``tokens`` at ``now_ms = t_ms`` (tables by ``metric_columns``, newest trade
        times from the windows); write and count the alerts, and return them."""
        if not tokens:
            return []
        cols = metric_columns(tokens, windows_by_token, bars_by_token, t_ms, self.metrics)
        newest = np.fromiter((_newest_ms(windows_by_token, t) for t in tokens), np.int64,
                             len(tokens))  # fmt: skip
        alerts = self.scanner.scan(t_ms, tokens, cols, newest)
        for alert in alerts:
            self.counts[alert.rule_id] += 1
        if alerts and self._out is not None:
            buf = bytearray()
            for alert in alerts:
                self._encoder.encode_into(alert, buf, -1)
                buf += b"\n"
            self._out.write(buf)
        return alerts


def _newest_ms(windows_by_token: Mapping[TokenId, TokenWindows], token: TokenId) -> TsMs:
    tw = windows_by_token.get(token)
    return tw.newest_ms if tw is not None else NEVER
