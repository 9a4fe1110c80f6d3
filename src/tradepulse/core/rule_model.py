"""What a validated rule is: the condition tree, ``Rule``, and the catalog of metric names.

``tradepulse.core.rules`` parses JSON into these; ``tradepulse.core.rule_eval`` compiles them.

Metric names: ``window.<window>.<statistic>`` (every statistic of ARCHITECTURE §4, for the
configured windows) plus two derived per window: ``buy_sell_ratio`` = buy_count /
sell_count, null when sell_count is 0 (a ratio to nothing is unknown, not infinite), and
``net_volume`` = buy_volume - sell_volume (USD); ``bar.<field>`` (the forming 1-minute bar);
``ind.<indicator>`` (``INDICATOR_NAMES``); ``price`` (the latest trade price).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal, TypeAlias

import msgspec

from tradepulse.core.indicators import INDICATOR_NAMES
from tradepulse.core.windows import DEFAULT_WINDOWS

Op: TypeAlias = Literal[">", "<", ">=", "<=", "==", "!=", "crosses_above", "crosses_below"]
Trigger: TypeAlias = Literal["level", "edge"]

OPERATORS: tuple[str, ...] = (">", "<", ">=", "<=", "==", "!=", "crosses_above", "crosses_below")
CROSSING_OPERATORS = frozenset({"crosses_above", "crosses_below"})
DEFAULT_WINDOW_NAMES: tuple[str, ...] = tuple(DEFAULT_WINDOWS.split(","))
WINDOW_STATISTICS: tuple[str, ...] = (
    "buy_count", "sell_count", "trade_count", "buy_volume", "sell_volume", "total_volume",
    "native_volume", "unique_wallets", "unique_buyers", "unique_sellers", "start_price",
    "end_price", "high_price", "low_price", "price_change_pct", "vwap", "first_trade_ms",
    "last_trade_ms", "updated_ms",
)  # fmt: skip
DERIVED_WINDOW_METRICS: dict[str, tuple[str, str]] = {
    "buy_sell_ratio": ("buy_count", "sell_count"),
    "net_volume": ("buy_volume", "sell_volume"),
}
BAR_FIELDS: tuple[str, ...] = (
    "open", "high", "low", "close", "volume", "volume_usd", "buy_volume_usd",
    "sell_volume_usd", "trades", "vwap",
)  # fmt: skip
INTEGER_STATISTICS = frozenset({
    "buy_count", "sell_count", "trade_count", "unique_wallets", "unique_buyers",
    "unique_sellers", "first_trade_ms", "last_trade_ms", "updated_ms",
})  # fmt: skip


class MetricRef(msgspec.Struct, frozen=True):
    """The right-hand side of a metric-vs-metric comparison."""

    metric: str


class Comparison(msgspec.Struct, frozen=True):
    metric: str
    op: Op
    value: float | MetricRef


class AllOf(msgspec.Struct, frozen=True):
    items: tuple[Condition, ...]


class AnyOf(msgspec.Struct, frozen=True):
    items: tuple[Condition, ...]


class Not(msgspec.Struct, frozen=True):
    item: Condition


Condition: TypeAlias = "Comparison | AllOf | AnyOf | Not"


class Rule(msgspec.Struct, frozen=True):
    """A validated rule. ``id`` and ``version`` come from the rule store; times are ms."""

    id: str
    version: int
    name: str
    condition: Condition
    cooldown_ms: int
    trigger: Trigger = "level"
    enabled: bool = True
    description: str = ""
    symbols: tuple[str, ...] | None = None
    max_staleness_ms: int | None = None

    def comparisons(self) -> Iterator[Comparison]:
        """Every comparison, depth first, in document order."""
        return _comparisons(self.condition)

    def metrics(self) -> tuple[str, ...]:
        """Every metric the rule reads (both sides of comparisons), first use first."""
        seen: dict[str, None] = {}
        for c in self.comparisons():
            seen[c.metric] = None
            if isinstance(c.value, MetricRef):
                seen[c.value.metric] = None
        return tuple(seen)

    def windows(self) -> tuple[str, ...]:
        """The windows whose metrics the rule reads, first use first."""
        return tuple(dict.fromkeys(w for m in self.metrics() if (w := window_of(m))))

    def to_obj(self) -> dict[str, object]:
        """The canonical JSON form; ``parse_rule(rule.to_obj())`` gives the rule back."""
        obj: dict[str, object] = {"name": self.name}
        if self.description:
            obj["description"] = self.description
        obj |= {"conditions": _cond_obj(self.condition), "cooldown": _seconds(self.cooldown_ms),
                "trigger": self.trigger, "enabled": self.enabled}  # fmt: skip
        if self.symbols is not None:
            obj["symbols"] = list(self.symbols)
        if self.max_staleness_ms is not None:
            obj["max_staleness"] = _seconds(self.max_staleness_ms)
        return obj


def _comparisons(cond: Condition) -> Iterator[Comparison]:
    if isinstance(cond, Comparison):
        yield cond
    elif isinstance(cond, Not):
        yield from _comparisons(cond.item)
    else:
        for item in cond.items:
            yield from _comparisons(item)


def _cond_obj(cond: Condition) -> object:
    if isinstance(cond, Comparison):
        value = {"metric": cond.value.metric} if isinstance(cond.value, MetricRef) else cond.value
        return {"metric": cond.metric, "op": cond.op, "value": value}
    if isinstance(cond, Not):
        return {"not": _cond_obj(cond.item)}
    return {"all" if isinstance(cond, AllOf) else "any": [_cond_obj(c) for c in cond.items]}


def _seconds(ms: int) -> int | float:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def window_of(metric: str) -> str | None:
    """The window a ``window.<window>.<statistic>`` metric reads, else None."""
    return metric.split(".", 2)[1] if metric.startswith("window.") else None


def is_integer_metric(metric: str) -> bool:
    """Whether the metric's values are whole numbers (counts, epoch ms, bar trades)."""
    return metric == "bar.trades" or (
        metric.startswith("window.") and metric.rsplit(".", 1)[-1] in INTEGER_STATISTICS
    )


def metric_error(metric: str, windows: Iterable[str] = DEFAULT_WINDOW_NAMES) -> str | None:
    """Why ``metric`` is not a metric name (given the configured windows), or None."""
    if metric == "price":
        return None
    kind, _, rest = metric.partition(".")
    if kind == "window":
        window, _, stat = rest.partition(".")
        names = tuple(windows)
        if not window or not stat or "." in stat:
            return f"unknown metric {metric!r} (expected window.<window>.<statistic>)"
        if window not in names:
            return f"unknown window {window!r} (configured: {', '.join(names)})"
        if stat not in WINDOW_STATISTICS and stat not in DERIVED_WINDOW_METRICS:
            return f"unknown window statistic {stat!r}"
        return None
    if kind == "bar":
        return None if rest in BAR_FIELDS else f"unknown bar field {rest!r}"
    if kind == "ind":
        return None if rest in INDICATOR_NAMES else f"unknown indicator {rest!r}"
    return (f"unknown metric {metric!r} (expected window.<window>.<statistic>, bar.<field>, "
            "ind.<indicator> or price)")  # fmt: skip
