"""Replay a trade file through the windows on the event clock and write snapshots.

One file is one partition, so the watermark is the newest trade time read so far. With a
snapshot period ``P`` (epoch-aligned), every multiple ``M`` of ``P`` with
``first trade time <= M < last trade time`` is written when the first trade later than
``M`` is read, before that trade is applied::

     trades:   ●  ●   ●       ●            ●
     time:  ───┼──────┼───────┼─────┼──────┼──>
               M1     M2      M3    M4     (reading this trade writes M4... first)

A snapshot holds one line per token with a trade in ``(M - longest window, M]``, every
window evaluated at ``T = M``. The final snapshot is taken at the largest trade time.

With a ``BarWriter`` the 1-minute bars and indicators are made as the worker makes them:
each trade the windows applied (not a duplicate, not late) goes to its token's bars, and
each evaluation of a token (its snapshot line) moves its bars to the evaluation time ``T``
and writes the bars final by then. At the end every token is moved to the final snapshot's
time, so every bar final by then is written; bars still forming are not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import BinaryIO

import msgspec

from tradepulse.adapters.wire import decode_batch
from tradepulse.core.bars import DEFAULT_GRACE_MS, MINUTE_MS
from tradepulse.core.clock import NEVER
from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.market import Market
from tradepulse.core.tokenbars import TokenBars
from tradepulse.core.trade import Trade
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import AddResult, WindowStats

_CHUNK_BYTES = 1 << 20
RejectHandler = Callable[[int, InvalidTradeError], None]
ProgressHandler = Callable[[int], None]
ApplyTrades = Callable[[list[Trade], TsMs], TsMs]  # (trades, watermark) -> new watermark


class SnapshotLine(msgspec.Struct, frozen=True, gc=False):
    """One output line: every window of ``token`` evaluated at ``ts_ms``."""

    token: TokenId
    ts_ms: TsMs
    final: bool
    windows: dict[str, WindowStats]


class ReplaySummary(msgspec.Struct):
    """What a replay read and did."""

    read: int = 0
    applied: int = 0
    rejected: dict[str, int] = msgspec.field(default_factory=dict)
    duplicates: int = 0
    late: int = 0
    snapshot_lines: int = 0
    last_trade_ms: TsMs | None = None
    bar_lines: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class BarWriter:
    """The final 1-minute bars of a replay and the indicators after each, as JSON lines.

    ``bars_out`` gets every field of each ``Bar`` emitted (a correction of a final bar by a
    late trade is a further line with a higher revision); ``indicators_out`` gets, per bar
    emitted, ``token``, ``open_ms`` and every indicator right after that bar was applied.
    ``open_ms`` is the newest bar of the token (the bar the values refer to): the emitted
    bar's own, unless it corrects an older one, when the line supersedes the newest one's.

    Per token a ``TokenBars`` with the worker's settings: ``grace_ms``, and a horizon of
    the longest window, at least a minute plus the grace.
    """

    def __init__(
        self,
        bars_out: BinaryIO | None,
        indicators_out: BinaryIO | None,
        *,
        longest_ms: int,
        grace_ms: int = DEFAULT_GRACE_MS,
    ) -> None:
        self._bars_out = bars_out
        self._indicators_out = indicators_out
        self._grace_ms = grace_ms
        self._horizon_ms = max(longest_ms, MINUTE_MS + grace_ms)
        self._encoder = msgspec.json.Encoder()
        self.tokens: dict[TokenId, TokenBars] = {}
        self.lines = 0  # bars emitted

    def apply(self, market: Market, trades: list[Trade], watermark_ms: TsMs) -> TsMs:
        """``Market.add_in_order_read`` one trade at a time, giving each trade the windows
        applied to its token's bars. Returns the new watermark."""
        add, tokens = market.add, self.tokens
        for trade in trades:
            watermark_ms = max(watermark_ms, trade.ts_ms)
            if add(trade, watermark_ms) is AddResult.APPLIED:
                (tokens.get(trade.token) or self._new(trade.token)).add(trade)
        return watermark_ms

    def _new(self, token: TokenId) -> TokenBars:
        tb = self.tokens[token] = TokenBars.new(token, grace_ms=self._grace_ms,
                                                horizon_ms=self._horizon_ms)  # fmt: skip
        return tb

    def evaluated(self, token: TokenId, t_ms: TsMs) -> None:
        """``token`` was evaluated at ``T = t_ms``: write its bars final by then.

        What ``TokenBars.advance`` and ``confirm`` do (nothing stays pending: a file write
        is not retried), one bar at a time so that each indicators line holds the values
        right after its bar."""
        tb = self.tokens.get(token)
        if tb is None:
            return
        bars, ind = bytearray(), bytearray()
        for bar in tb.builder.advance(t_ms):
            tb.indicators.update(bar)
            self._encoder.encode_into(bar, bars, -1)
            bars += b"\n"
            if self._indicators_out is not None:
                line = {"token": token, "open_ms": tb.indicators.last_open_ms,
                        **tb.indicators.values()}  # fmt: skip
                self._encoder.encode_into(line, ind, -1)
                ind += b"\n"
            self.lines += 1
        if bars and self._bars_out is not None:
            self._bars_out.write(bars)
        if ind and self._indicators_out is not None:
            self._indicators_out.write(ind)

    def finish(self, t_ms: TsMs) -> None:
        """Move every token (by name) to ``t_ms``, writing the bars final by then."""
        for token in sorted(self.tokens):
            self.evaluated(token, t_ms)


class SnapshotWriter:
    """Writes the snapshot lines of a market at one evaluation time (and tells ``bars``
    the time each token was evaluated at)."""

    def __init__(self, market: Market, out: BinaryIO, bars: BarWriter | None = None) -> None:
        self._market = market
        self._out = out
        self._bars = bars
        self._encoder = msgspec.json.Encoder()
        self._longest_ms = market.specs[-1].duration_ms
        self.lines = 0

    def write(self, t_ms: TsMs, *, final: bool) -> None:
        """One line per token with a trade in ``(t_ms - longest, t_ms]``."""
        since = t_ms - self._longest_ms
        tokens = self._market.tokens
        buf = bytearray()
        bars = self._bars
        for name in sorted(n for n, tw in tokens.items() if tw.newest_ms > since):
            windows = tokens[name]
            line = SnapshotLine(name, t_ms, final, windows.stats(t_ms))
            self._encoder.encode_into(line, buf, -1)
            buf += b"\n"
            self.lines += 1
            if bars is not None:
                bars.evaluated(name, windows.t_ms)
        self._out.write(buf)


def replay(
    stream: BinaryIO,
    market: Market,
    out: BinaryIO,
    *,
    now_ms: TsMs,
    snapshot_every_ms: int | None = None,
    max_future_skew_ms: int = 5_000,
    on_reject: RejectHandler | None = None,
    on_progress: ProgressHandler | None = None,
    bars: BarWriter | None = None,
) -> ReplaySummary:
    """Replay the JSON lines of ``stream`` into ``market``; see the module docstring.

    ``now_ms`` is the wall-clock time trades may not be later than (plus the skew).
    ``on_progress`` receives the number of lines read after each chunk. Without ``bars``
    the trades are applied in batches (``Market.add_in_order_read``), with it one by one.
    """
    writer = SnapshotWriter(market, out, bars)
    apply: ApplyTrades = market.add_in_order_read if bars is None else partial(bars.apply, market)
    rejected: Counter[str] = Counter()
    longest_ms = market.specs[-1].duration_ms
    watermark = boundary = NEVER
    read = 0
    while lines := stream.readlines(_CHUNK_BYTES):
        trades, bad = decode_batch(lines, read + 1, now_ms, max_future_skew_ms)
        read += len(lines)
        for line_no, exc in bad:
            rejected[exc.reason] += 1
            if on_reject is not None:
                on_reject(line_no, exc)
        if snapshot_every_ms is None:
            watermark = apply(trades, watermark)
        else:
            watermark, boundary = _apply_with_snapshots(
                apply, writer, trades, watermark, boundary, snapshot_every_ms, longest_ms
            )
        if on_progress is not None:
            on_progress(read)
    if watermark != NEVER:
        writer.write(watermark, final=True)
        if bars is not None:
            bars.finish(watermark)
    return ReplaySummary(
        read=read,
        applied=market.applied,
        rejected=dict(rejected),
        duplicates=market.duplicates,
        late=market.late,
        snapshot_lines=writer.lines,
        last_trade_ms=watermark if watermark != NEVER else None,
        bar_lines=bars.lines if bars is not None else 0,
    )


def _apply_with_snapshots(
    apply: ApplyTrades,
    writer: SnapshotWriter,
    trades: list[Trade],
    watermark: TsMs,
    boundary: TsMs,
    every: int,
    longest: int,
) -> tuple[TsMs, TsMs]:
    """Apply ``trades``, writing each due snapshot just before the first trade past it."""
    start = 0
    for i, trade in enumerate(trades):
        if trade.ts_ms > boundary:
            watermark = apply(trades[start:i], watermark)
            start = i
            boundary = _emit_due(writer, boundary, trade.ts_ms, every, watermark, longest)
    return apply(trades[start:], watermark), boundary


def _emit_due(
    writer: SnapshotWriter, boundary: TsMs, t_ms: TsMs, every: int, watermark: TsMs, longest: int
) -> TsMs:
    """Write every due snapshot before a trade at ``t_ms``; return the next boundary.

    The first trade sets the first boundary (the first multiple at or after it). Multiples
    where no token can have a trade in ``(M - longest, M]`` (all trades so far are at or
    before ``M - longest``) are skipped without looking at the tokens.
    """
    if boundary == NEVER:
        return -(-t_ms // every) * every
    while t_ms > boundary:
        if boundary - longest >= watermark:
            boundary = -(-t_ms // every) * every
            break
        writer.write(boundary, final=False)
        boundary += every
    return boundary
