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
from collections.abc import Callable, Iterable
from typing import BinaryIO

import msgspec

from tradepulse.adapters.wire import decode_trade
from tradepulse.core.clock import NEVER
from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.market import Market
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import WindowSpec, WindowStats

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
    lines: Iterable[tuple[int, bytes]],
    specs: tuple[WindowSpec, ...],
    out: BinaryIO,
    *,
    now_ms: TsMs,
    snapshot_every_ms: int | None = None,
    max_future_skew_ms: int = 5_000,
    on_reject: RejectHandler | None = None,
    on_progress: ProgressHandler | None = None,
) -> ReplaySummary:
    """Replay ``(line_number, raw_json)`` pairs; see the module docstring.

    ``now_ms`` is the wall-clock time trades may not be later than (plus the skew).
    ``on_progress`` receives the number of lines read, every 65,536 lines.
    """
    market = Market(specs)
    writer = SnapshotWriter(market, out)
    summary = ReplaySummary()
    rejected: Counter[str] = Counter()
    longest_ms = specs[-1].duration_ms
    every = snapshot_every_ms
    watermark = NEVER
    boundary = NEVER
    add = market.add
    read = 0
    for read, (line_no, raw) in enumerate(lines, start=1):  # noqa: B007 - read is the count
        try:
            trade = decode_trade(raw, now_ms, max_future_skew_ms)
        except InvalidTradeError as exc:
            rejected[exc.reason] += 1
            if on_reject is not None:
                on_reject(line_no, exc)
            continue
        t = trade.ts_ms
        if every is not None and t > boundary:
            boundary = _emit_due(writer, boundary, t, every, watermark, longest_ms)
        if t > watermark:
            watermark = t
        add(trade, watermark)
        if on_progress is not None and not read & 0xFFFF:
            on_progress(read)
    if watermark != NEVER:
        writer.write(watermark, final=True)
    summary.read = read
    summary.applied, summary.duplicates, summary.late = market.applied, market.duplicates, market.late
    summary.rejected = dict(rejected)
    summary.snapshot_lines = writer.lines
    summary.last_trade_ms = watermark if watermark != NEVER else None
    return summary


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
