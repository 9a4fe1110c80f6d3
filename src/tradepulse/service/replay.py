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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import BinaryIO

import msgspec

from tradepulse.adapters.wire import decode_batch
from tradepulse.core.clock import NEVER
from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.market import Market
from tradepulse.core.trade import Trade
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import WindowStats

_CHUNK_BYTES = 1 << 20
RejectHandler = Callable[[int, InvalidTradeError], None]
ProgressHandler = Callable[[int], None]


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

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class SnapshotWriter:
    """Writes the snapshot lines of a market at one evaluation time."""

    def __init__(self, market: Market, out: BinaryIO) -> None:
        self._market = market
        self._out = out
        self._encoder = msgspec.json.Encoder()
        self._longest_ms = market.specs[-1].duration_ms
        self.lines = 0

    def write(self, t_ms: TsMs, *, final: bool) -> None:
        """One line per token with a trade in ``(t_ms - longest, t_ms]``."""
        since = t_ms - self._longest_ms
        tokens = self._market.tokens
        buf = bytearray()
        for name in sorted(n for n, tw in tokens.items() if tw.newest_ms > since):
            line = SnapshotLine(name, t_ms, final, tokens[name].stats(t_ms))
            self._encoder.encode_into(line, buf, -1)
            buf += b"\n"
            self.lines += 1
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
) -> ReplaySummary:
    """Replay the JSON lines of ``stream`` into ``market``; see the module docstring.

    ``now_ms`` is the wall-clock time trades may not be later than (plus the skew).
    ``on_progress`` receives the number of lines read after each chunk.
    """
    writer = SnapshotWriter(market, out)
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
            watermark = market.add_in_order_read(trades, watermark)
        else:
            watermark, boundary = _apply_with_snapshots(
                market, writer, trades, watermark, boundary, snapshot_every_ms, longest_ms
            )
        if on_progress is not None:
            on_progress(read)
    if watermark != NEVER:
        writer.write(watermark, final=True)
    return ReplaySummary(
        read=read,
        applied=market.applied,
        rejected=dict(rejected),
        duplicates=market.duplicates,
        late=market.late,
        snapshot_lines=writer.lines,
        last_trade_ms=watermark if watermark != NEVER else None,
    )


def _apply_with_snapshots(
    market: Market,
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
            watermark = market.add_in_order_read(trades[start:i], watermark)
            start = i
            boundary = _emit_due(writer, boundary, trade.ts_ms, every, watermark, longest)
    return market.add_in_order_read(trades[start:], watermark), boundary


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
