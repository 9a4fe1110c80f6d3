"""The columnar replay: ``service.replay.replay``'s output (snapshots, rejections, summary)
computed from NumPy columns instead of one ``Trade`` object per line.

It reads the whole input first (validation and line numbers are the object path's; see
``adapters.wire_columns``), then uses what one file = one partition makes known up front:

* the watermark before each trade is the running maximum of the times read
  (``np.maximum.accumulate``), so a trade is ``late`` iff ``t <= watermark - longest``;
* the snapshot times and the number of trades read before each are known from the
  watermarks (``core.colstats.evaluation_times``);
* a token whose non-late trades arrive in time order with no identity ``(token, tx_hash,
  event_index)`` repeated among them applies every non-late trade (no duplicate, no
  rollback): its windows at ``T`` are ranges of its time-sorted trades, computed for every
  (token, time) pair at once (``core.colstats.pair_stats``).

Any other token (out of order, or with a repeated identity, where what the engine keeps
and forgets decides duplicates) is replayed through its own ``TokenWindows``, fed the same
trades with the same watermarks and evaluated at the same times: the object engine's
result by construction. Lines are written per snapshot time in token-name order, as
``SnapshotWriter`` writes them.
"""

from __future__ import annotations

from typing import BinaryIO

import msgspec
import numpy as np
import numpy.typing as npt

from tradepulse.core.colstats import (
    Segments,
    evaluation_times,
    pair_stats,
    stable_order,
    window_starts,
)
from tradepulse.core.trade import Trade
from tradepulse.core.types import TsMs
from tradepulse.core.windows import AddResult, TokenWindows, WindowSpec, WindowStats
from tradepulse.service.columnar_read import TradeTable, read_table
from tradepulse.service.replay import (
    ProgressHandler,
    RejectHandler,
    ReplaySummary,
    SnapshotLine,
)

I64 = npt.NDArray[np.int64]
_FAR = np.int64(1 << 62)
_WRITE_BYTES = 1 << 20


def replay_columnar(
    stream: BinaryIO,
    specs: tuple[WindowSpec, ...],
    out: BinaryIO,
    *,
    now_ms: TsMs,
    snapshot_every_ms: int | None = None,
    max_future_skew_ms: int = 5_000,
    on_reject: RejectHandler | None = None,
    on_progress: ProgressHandler | None = None,
    path: str | None = None,
    processes: int = 1,
) -> ReplaySummary:
    """What ``replay(stream, Market(specs), out, ...)`` writes and returns, without bars
    or rules; see the module docstring. ``stream`` is the file at ``path`` when given:
    then ``processes`` decode it (``service.columnar_read``)."""
    table = read_table(stream, now_ms, max_future_skew_ms, on_reject=on_reject,
                       on_progress=on_progress, path=path, parts=processes)  # fmt: skip
    summary = ReplaySummary(read=table.read, rejected=dict(table.rejected))
    if not table.chunks or not sum(len(c) for c in table.chunks):
        return summary
    run = _Run(table, specs, snapshot_every_ms)
    lines = run.lines()
    encoder = msgspec.json.Encoder()
    buf = bytearray()
    for line in lines:
        encoder.encode_into(line, buf, -1)
        buf += b"\n"
        if len(buf) >= _WRITE_BYTES:
            out.write(buf)
            buf.clear()
    out.write(buf)
    summary.applied, summary.duplicates, summary.late = run.applied, run.duplicates, run.late
    summary.snapshot_lines = len(lines)
    summary.last_trade_ms = run.final_ms
    return summary


def _needed(
    ts: I64, starts: I64, seg_of: I64, pair_pos: I64, cut_ms: I64
) -> tuple[I64, I64, I64, I64]:
    """The positions the pairs can read: per segment with a pair, from the one before the
    earliest start of a longest window (it gives a start price) to the latest newest
    position. Returns them, the start of each kept segment among them, and each pair's
    segment and newest position renumbered."""
    pair_seg = seg_of[pair_pos]
    lo = window_starts(ts, starts[pair_seg], pair_pos + 1, cut_ms)
    segs, first = np.unique(pair_seg, return_inverse=True)
    need_lo = np.full(len(segs), len(ts), dtype=np.int64)
    np.minimum.at(need_lo, first, lo - 1)
    need_lo = np.maximum(need_lo, starts[segs])
    need_hi = np.zeros(len(segs), dtype=np.int64)
    np.maximum.at(need_hi, first, pair_pos + 1)
    sizes = need_hi - need_lo
    kept_starts = np.concatenate(([0], np.cumsum(sizes)))
    keep = np.repeat(need_lo - kept_starts[:-1], sizes) + np.arange(int(kept_starts[-1]))
    return keep, kept_starts, first, pair_pos - need_lo[first] + kept_starts[first]


class _Run:
    """The classification of tokens and the evaluation of both kinds (module docstring)."""

    def __init__(
        self, table: TradeTable, specs: tuple[WindowSpec, ...], every_ms: int | None
    ) -> None:
        self.specs = specs
        self.longest_ms = specs[-1].duration_ms
        self.names = list(table.codes.tokens)
        self.table = table
        self.token = np.concatenate([c.token for c in table.chunks])
        self.ts = np.concatenate([c.ts_ms for c in table.chunks])
        self.watermark = np.maximum.accumulate(self.ts)
        self.final_ms = int(self.watermark[-1])
        if every_ms is None:
            self.snap_ms = self.snap_before = np.zeros(0, dtype=np.int64)
        else:
            self.snap_ms, self.snap_before = evaluation_times(
                self.watermark, every_ms, self.longest_ms
            )
        self.late_mask = self.ts <= self.watermark - self.longest_ms
        self.late = int(np.count_nonzero(self.late_mask))
        self.applied = len(self.ts) - self.late
        self.duplicates = 0

    def lines(self) -> list[SnapshotLine]:
        """Every snapshot line, in output order."""
        live = np.flatnonzero(~self.late_mask)
        by_token = live[stable_order(self.token[live])]
        special = self._special_tokens(live, by_token)
        simple_rows = by_token[~special[self.token[by_token]]]
        rows = self._simple(simple_rows) + self._special(np.flatnonzero(special))
        rank = [0] * len(self.names)
        for position, code in enumerate(sorted(range(len(self.names)), key=self.names.__getitem__)):
            rank[code] = position
        rows.sort(key=lambda row: (row[0], rank[row[1]]))
        n_snap = len(self.snap_ms)
        return [SnapshotLine(self.names[code], self.final_ms if k == n_snap else
                             int(self.snap_ms[k]), k == n_snap, windows)
                for k, code, windows in rows]  # fmt: skip

    def _special_tokens(self, live: I64, by_token: I64) -> npt.NDArray[np.bool_]:
        """Tokens whose non-late trades are out of time order or repeat an identity."""
        special = np.zeros(len(self.names), dtype=np.bool_)
        tok, ts = self.token[by_token], self.ts[by_token]
        back = (tok[1:] == tok[:-1]) & (ts[1:] < ts[:-1])
        special[tok[1:][back]] = True
        keys = self._identity_hashes()[live]
        ordered = np.sort(keys)
        if not (ordered[1:] == ordered[:-1]).any():
            return special  # the usual case, found without the (slower) argsort
        order = np.argsort(keys)  # only which rows repeat a key matters
        repeat = keys[order[1:]] == keys[order[:-1]]
        special[self.token[live[order[1:][repeat]]]] = True
        return special

    def _identity_hashes(self) -> I64:
        """A hash of ``(token, tx_hash, event_index)`` per trade (equal identities, equal
        hashes; a collision only sends a token to the exact per-token path)."""
        identity: I64 = np.concatenate([c.identity for c in self.table.chunks])
        out: I64 = identity * np.int64(8_191) + self.token
        return out

    def _column(self, name: str) -> npt.NDArray[np.float64]:
        return np.concatenate([getattr(c, name) for c in self.table.chunks])

    def _simple(self, rows: I64) -> list[tuple[int, int, dict[str, WindowStats]]]:
        """Lines of the tokens read in time order without repeats (``rows``: their trades,
        grouped by token, in read order)."""
        if not len(rows):
            return []
        tok = self.token[rows]
        starts = np.concatenate(([0], np.flatnonzero(tok[1:] != tok[:-1]) + 1, [len(rows)]))
        ts = self.ts[rows]
        pair_pos, pair_k = self._pairs(rows, ts, starts)
        seg_of = np.repeat(np.arange(len(starts) - 1, dtype=np.int64), np.diff(starts))
        keep, kept_starts, pair_seg, pair_pos = _needed(
            ts, starts, seg_of, pair_pos, self._times(pair_k) - self.longest_ms
        )
        stats = pair_stats(self._segments(rows[keep], kept_starts), self.specs, pair_seg,
                           pair_pos + 1, self._times(pair_k))  # fmt: skip
        codes = tok[keep[kept_starts[:-1]]][pair_seg].tolist()
        return list(zip(pair_k.tolist(), codes, stats, strict=True))

    def _times(self, k: I64) -> I64:
        """Evaluation time of each evaluation index (the last one is the final snapshot)."""
        out: I64 = np.concatenate((self.snap_ms, [self.final_ms]))[k]
        return out

    def _segments(self, rows: I64, starts: I64) -> Segments:
        buy = np.concatenate([c.is_buy for c in self.table.chunks])[rows]
        volume = self._column("volume_usd")[rows]
        zero = np.zeros(len(rows))
        return Segments(
            start=starts, ts_ms=self.ts[rows], price=self._column("price_usd")[rows],
            is_buy=buy, wallet=np.concatenate([c.wallet for c in self.table.chunks])[rows],
            buy_volume=np.where(buy, volume, zero), sell_volume=np.where(buy, zero, volume),
            native_amount=self._column("native_amount")[rows],
            token_amount=self._column("token_amount")[rows],
        )  # fmt: skip

    def _pairs(self, rows: I64, ts: I64, starts: I64) -> tuple[I64, I64]:
        """(newest position read, evaluation index) of every line: a trade is its token's
        newest read for the snapshots taken from its read until the token's next trade is
        read, while it is inside the longest window; the final snapshot has every token
        whose newest trade is inside the longest window."""
        last = starts[1:] - 1
        final = last[ts[last] > self.final_ms - self.longest_ms]
        n_snap = len(self.snap_ms)
        final_k = np.full(len(final), n_snap, dtype=np.int64)
        if not n_snap:
            return final, final_k
        is_last = np.zeros(len(rows), dtype=np.bool_)
        is_last[last] = True
        following = np.append(rows[1:], rows[-1])  # the token's next trade read
        next_read = np.where(is_last, _FAR, self.watermark[following])
        upper = np.minimum(next_read, ts + self.longest_ms)
        a = np.searchsorted(self.snap_ms, self.watermark[rows], side="left")
        count = np.maximum(np.searchsorted(self.snap_ms, upper, side="left") - a, 0)
        pos = np.repeat(np.arange(len(rows), dtype=np.int64), count)
        k = np.repeat(a - (np.cumsum(count) - count), count) + np.arange(len(pos))
        return np.concatenate((pos, final)), np.concatenate((k, final_k))

    def _special(self, codes: I64) -> list[tuple[int, int, dict[str, WindowStats]]]:
        """Lines of the other tokens, each through its own ``TokenWindows``."""
        out: list[tuple[int, int, dict[str, WindowStats]]] = []
        if not len(codes):
            return out
        rows_of = np.flatnonzero(np.isin(self.token, codes))
        grouped = rows_of[stable_order(self.token[rows_of])]  # by token, in read order
        tokens = self.token[grouped]
        starts = np.concatenate(([0], np.flatnonzero(tokens[1:] != tokens[:-1]) + 1))
        for rows in np.split(grouped, starts[1:]):
            out.extend(self._one_token(int(self.token[rows[0]]), rows))
        return out

    def _one_token(self, code: int, rows: I64) -> list[tuple[int, int, dict[str, WindowStats]]]:
        windows = TokenWindows(self.specs)
        snap_ms, before = self.snap_ms.tolist(), self.snap_before.tolist()
        k, n_snap = 0, len(snap_ms)
        out: list[tuple[int, int, dict[str, WindowStats]]] = []
        longest = self.longest_ms
        counts = [0, 0, 0]
        for r, trade in zip(rows.tolist(), self._trades(rows), strict=True):
            while k < n_snap and before[k] <= r:
                if windows.newest_ms > snap_ms[k] - longest:
                    out.append((k, code, windows.stats(snap_ms[k])))
                k += 1
            counts[windows.add(trade, int(self.watermark[r]))] += 1
        for rest in range(k, n_snap):
            if windows.newest_ms > snap_ms[rest] - longest:
                out.append((rest, code, windows.stats(snap_ms[rest])))
        if windows.newest_ms > self.final_ms - longest:
            out.append((n_snap, code, windows.stats(self.final_ms)))
        late_here = int(np.count_nonzero(self.late_mask[rows]))
        self.applied += counts[AddResult.APPLIED] - (len(rows) - late_here)
        self.duplicates += counts[AddResult.DUPLICATE]
        self.late += counts[AddResult.LATE] - late_here
        return out

    def _trades(self, rows: I64) -> list[Trade]:
        """``Trade`` objects of the read rows ``rows``."""
        bounds = np.cumsum([0] + [len(c) for c in self.table.chunks])
        which = np.searchsorted(bounds, rows, side="right") - 1
        trades = []
        wallets = list(self.table.codes.wallets)
        for r, c in zip(rows.tolist(), which.tolist(), strict=True):
            cols, i = self.table.chunks[c], r - int(bounds[c])
            trades.append(Trade(
                self.names[cols.token[i]], wallets[cols.wallet[i]], bool(cols.is_buy[i]),
                float(cols.native_amount[i]), float(cols.token_amount[i]),
                float(cols.price_usd[i]), float(cols.volume_usd[i]), int(cols.ts_ms[i]),
                cols.tx_hash[i], cols.event_index[i],
            ))  # fmt: skip
        return trades
