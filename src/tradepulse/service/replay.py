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
each evaluation of a token (its snapshot line, or a scan of it) moves its bars to the
evaluation time ``T`` and writes the bars final by then. At the end every token is moved to
the final snapshot's time, so every bar final by then is written; bars still forming are not.

With a ``DryRun`` (alert rules) the scanner runs at every multiple ``M`` of the scan
interval on the same schedule as snapshots (taken when the first trade later than ``M`` is
read, before it is applied; so ``first trade time <= M < last trade time``; no scan at the
end). A scan's rows are every token known by then, by name (as the worker scans every
token it holds: idle tokens too, which rules exclude with ``max_staleness``), every metric
at ``T = M``; their bars are moved to ``M`` first. Scans are never skipped, idle multiples
included. Snapshots and scans due before one trade run in time order (a snapshot first at
equal times): windows and bars only move forward.
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
from tradepulse.service.dryrun import DryRun

_CHUNK_BYTES = 1 << 20
RejectHandler = Callable[[int, InvalidTradeError], None]
ProgressHandler = Callable[[int], None]
ApplyTrades = Callable[[list[Trade], TsMs], TsMs]  # (trades, watermark) -> new watermark
Action = Callable[[TsMs], None]  # a periodic action at an evaluation time


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
    alerts: dict[str, int] = msgspec.field(default_factory=dict)  # per rule id

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
        bars_out, indicators_out = self._bars_out, self._indicators_out
        for bar in tb.builder.advance(t_ms):
            tb.indicators.update(bar)
            if bars_out is not None:
                self._encoder.encode_into(bar, bars, -1)
                bars += b"\n"
            if indicators_out is not None:
                line = {"token": token, "open_ms": tb.indicators.last_open_ms,
                        **tb.indicators.values()}  # fmt: skip
                self._encoder.encode_into(line, ind, -1)
                ind += b"\n"
            self.lines += 1
        if bars and bars_out is not None:
            bars_out.write(bars)
        if ind and indicators_out is not None:
            indicators_out.write(ind)

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


class RuleScans:
    """The dry run's scans of a replay: ``dry_run`` over every token of the market, by
    name, after moving their bars to ``t_ms``."""

    def __init__(self, market: Market, dry_run: DryRun, bars: BarWriter | None) -> None:
        if dry_run.needs_bars and bars is None:
            raise ValueError("the rules read bar. or ind. metrics: the replay needs a BarWriter")
        self._market = market
        self._dry_run = dry_run
        self._bars = bars

    def __call__(self, t_ms: TsMs) -> None:
        windows = self._market.tokens
        tokens = sorted(windows)
        bars = self._bars
        if bars is not None:
            for name in tokens:
                bars.evaluated(name, t_ms)
        self._dry_run.scan(t_ms, tokens, windows, bars.tokens if bars is not None else {})


class _Periodic:
    """An action at every multiple of ``every_ms``; ``next_ms`` is the next one due."""

    __slots__ = ("action", "every_ms", "next_ms", "skip_idle")

    def __init__(self, every_ms: int, action: Action, skip_idle: bool) -> None:
        self.every_ms = every_ms
        self.action = action
        self.skip_idle = skip_idle
        self.next_ms: TsMs = NEVER


class _Schedule:
    """Epoch-aligned periodic actions on the event clock (see the module docstring).

    ``due`` runs, before a trade at ``t_ms`` is applied, every action due: each multiple
    ``M < t_ms`` of each period from the first trade on, in time order (ties: in the order
    the actions were added). For actions added with ``skip_idle``, multiples where no token
    can have a trade in ``(M - longest, M]`` (every trade so far is at or before
    ``M - longest``) are skipped without looking at the tokens. Returns the next multiple
    due, so callers test one number per trade."""

    def __init__(self, longest_ms: int) -> None:
        self._longest_ms = longest_ms
        self._periodic: list[_Periodic] = []
        self.next_ms: TsMs = NEVER  # NEVER until the first trade

    def __bool__(self) -> bool:
        return bool(self._periodic)

    def add(self, every_ms: int, action: Action, *, skip_idle: bool) -> None:
        self._periodic.append(_Periodic(every_ms, action, skip_idle))

    def due(self, t_ms: TsMs, watermark: TsMs) -> TsMs:
        periodic = self._periodic
        if self.next_ms == NEVER:
            for p in periodic:
                p.next_ms = _multiple_at_or_after(t_ms, p.every_ms)
        else:
            while (p := min(periodic, key=_next_ms)).next_ms < t_ms:
                if p.skip_idle and p.next_ms - self._longest_ms >= watermark:
                    p.next_ms = _multiple_at_or_after(t_ms, p.every_ms)
                    continue
                p.action(p.next_ms)
                p.next_ms += p.every_ms
        self.next_ms = min(p.next_ms for p in periodic)
        return self.next_ms


def _next_ms(p: _Periodic) -> TsMs:
    return p.next_ms


def _multiple_at_or_after(t_ms: TsMs, every_ms: int) -> TsMs:
    return -(-t_ms // every_ms) * every_ms


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
    dry_run: DryRun | None = None,
    scan_every_ms: int = 1_000,
) -> ReplaySummary:
    """Replay the JSON lines of ``stream`` into ``market``; see the module docstring.

    ``now_ms`` is the wall-clock time trades may not be later than (plus the skew).
    ``on_progress`` receives the number of lines read after each chunk. Without ``bars``
    the trades are applied in batches (``Market.add_in_order_read``), with it one by one.
    ``dry_run`` scans every ``scan_every_ms``; rules that read bars need ``bars``.
    """
    writer = SnapshotWriter(market, out, bars)
    apply: ApplyTrades = market.add_in_order_read if bars is None else partial(bars.apply, market)
    schedule = _Schedule(market.specs[-1].duration_ms)
    if snapshot_every_ms is not None:
        schedule.add(snapshot_every_ms, partial(writer.write, final=False), skip_idle=True)
    if dry_run is not None:
        schedule.add(scan_every_ms, RuleScans(market, dry_run, bars), skip_idle=False)
    rejected: Counter[str] = Counter()
    watermark = NEVER
    read = 0
    while lines := stream.readlines(_CHUNK_BYTES):
        trades, bad = decode_batch(lines, read + 1, now_ms, max_future_skew_ms)
        read += len(lines)
        for line_no, exc in bad:
            rejected[exc.reason] += 1
            if on_reject is not None:
                on_reject(line_no, exc)
        if schedule:
            watermark = _apply_on_schedule(apply, schedule, trades, watermark)
        else:
            watermark = apply(trades, watermark)
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
        alerts=dict(dry_run.counts) if dry_run is not None else {},
    )


def _apply_on_schedule(
    apply: ApplyTrades, schedule: _Schedule, trades: list[Trade], watermark: TsMs
) -> TsMs:
    """Apply ``trades``, running each due action just before the first trade past it."""
    start = 0
    boundary = schedule.next_ms
    for i, trade in enumerate(trades):
        if trade.ts_ms > boundary:
            watermark = apply(trades[start:i], watermark)
            start = i
            boundary = schedule.due(trade.ts_ms, watermark)
    return apply(trades[start:], watermark)
