"""One token's bars and indicators, as the worker keeps them beside its windows.

Trades go in (those the window engine applied: new, not duplicates); at each write of the
token the bars that became final, and corrections of final bars, come out and feed the
indicators. They stay ``pending`` until the caller says they were stored (``confirm``):
a write that fails is retried with the same bars, none lost and none repeated.

What trades alone cannot rebuild (which bars were already emitted, with which revision,
and the indicators' history) is the ``snapshot``; it changes only when bars are emitted,
so it is stored with them, in the same atomic write. ``restore`` takes it, the token's
retained trades and its evaluation time ``T``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from tradepulse.core.bars import DEFAULT_GRACE_MS, Bar, BarBuilder, BarBuilderSnapshot
from tradepulse.core.indicators import Indicators, IndicatorsSnapshot
from tradepulse.core.trade import Trade
from tradepulse.core.types import TokenId, TsMs


class TokenBarsSnapshot(msgspec.Struct, frozen=True):
    bars: BarBuilderSnapshot
    indicators: IndicatorsSnapshot


class TokenBars:
    """Bars (``BarBuilder``) and indicators (``Indicators``) of one token."""

    __slots__ = ("builder", "indicators", "pending")

    def __init__(self, builder: BarBuilder, indicators: Indicators) -> None:
        self.builder = builder
        self.indicators = indicators
        self.pending: list[Bar] = []

    @classmethod
    def new(cls, token: TokenId, *, grace_ms: int = DEFAULT_GRACE_MS,
            horizon_ms: int) -> TokenBars:  # fmt: skip
        return cls(BarBuilder(token, grace_ms=grace_ms, horizon_ms=horizon_ms), Indicators(token))

    def add(self, trade: Trade) -> None:
        self.builder.add(trade)

    def add_many(self, trades: Sequence[Trade]) -> None:
        """``add`` of each trade, in order."""
        self.builder.add_many(trades)

    def advance(self, t_ms: TsMs) -> list[Bar]:
        """Move to ``T`` (the token's evaluation time): the final bars not yet confirmed,
        oldest first (the new ones have updated the indicators)."""
        for bar in self.builder.advance(t_ms):
            self.indicators.update(bar)
            self.pending.append(bar)
        return list(self.pending)

    def forming(self, t_ms: TsMs) -> Bar | None:
        return self.builder.forming(t_ms)

    def confirm(self) -> None:
        """The pending bars were stored."""
        self.pending.clear()

    def snapshot(self) -> TokenBarsSnapshot:
        return TokenBarsSnapshot(self.builder.snapshot(), self.indicators.snapshot())

    @classmethod
    def restore(
        cls,
        snapshot: TokenBarsSnapshot,
        trades: Iterable[Trade],
        t_ms: TsMs,
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
        horizon_ms: int,
    ) -> TokenBars:
        """The token's bars as stored with ``snapshot``, continued to ``T = t_ms`` (its
        windows' evaluation time: later writes moved ``T`` without emitting bars, so
        without changing the snapshot)."""
        at = msgspec.structs.replace(snapshot.bars, clock_ms=max(t_ms, snapshot.bars.clock_ms))
        builder = BarBuilder.restore(snapshot.indicators.token, at, trades, grace_ms=grace_ms,
                                     horizon_ms=horizon_ms)  # fmt: skip
        return cls(builder, Indicators.restore(snapshot.indicators))
