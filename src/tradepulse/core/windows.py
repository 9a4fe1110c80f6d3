"""Exact sliding windows over the trades of one token.

A window of duration ``W`` evaluated at time ``T`` holds the trades with ``T - W < t <= T``::

               T - W                        T
    ─────────────(───────────────────────────]──────> trade time
      evicted    │ in the window             │ not yet (never: T >= newest trade)

All windows of a token end at the same ``T`` (``T`` is never earlier than the newest
trade), so they are nested: ``start(1min) >= start(5min) >= ... >= start(1hour)``. That
lets every window share one store:

* **Columns.** The retained trades, sorted by time (ties keep arrival order), live in
  parallel lists indexed by position ``i``. A window is a position range ``[start, E)``
  where ``E`` is the number of stored trades and ``start = bisect_right(ts, T - W)``.
* **Sums** (buy/sell/native volume, token amount) are prefix sums kept as double-double
  (``hi + lo``, each step an error-free TwoSum), so a window sum is a difference of two
  prefixes with ~1e-32 relative error in the prefix: no drift, no catastrophic
  cancellation when a huge trade has just left a window of small ones. Every window sum is
  the exact sum rounded once (as ``math.fsum``): the difference comes with a rigorous error
  bound, and the rare window whose rounding that bound leaves open (a sum on or next to a
  rounding midpoint, or tiny next to the prefix) is re-summed with ``math.fsum``. So a sum
  does not depend on where the prefixes restarted (they restart from zero at each
  compaction). Counts are integer prefixes. O(1) per trade, O(1) per window read.
* **High / low**: one monotonic stack of suffix maxima (and one of minima) over the
  positions; the high of ``[start, E)`` is the price at the first stack entry
  ``>= start`` (a bisect). Amortized O(1) per trade, shared by every window.
* **Unique wallets / buyers / sellers** use last-occurrence marks: ``mark[i] = 1`` when
  trade ``i`` is the newest trade of its wallet. The number of distinct wallets in
  ``[start, E)`` is ``sum(mark[start:E])``; each window keeps that count and updates it
  when trades enter (``+1`` unless the wallet's previous trade is already inside) and
  when its start moves (minus the marks it passes). Buyers and sellers share one mark
  list: a buy mark is ``1``, a sell mark ``SELL_UNIT`` (so one ``sum`` counts both).

Work is lazy: ``add`` only checks lateness and duplicates and queues the trade; the queue
is folded into the columns when the token is evaluated. When the queue grows long, the
trades no future window can hold are dropped from it (the threshold doubles with what
remains, so this is amortized O(1) and the queue never holds much more than the longest
window's worth of trades: about what the columns would hold). A
trade older than the newest stored one rolls the columns back to its position and
re-appends the tail: O(tail) for that batch, and every window is corrected exactly.

Only the trades of the longest window are kept, plus the newest one at or before
``T - longest`` (it gives the start price of the longest window).
"""

from __future__ import annotations

import math
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from enum import IntEnum
from operator import attrgetter

import msgspec
import numpy as np

from tradepulse.core.clock import NEVER
from tradepulse.core.columns import extend_dd_prefix, extend_stack, shifted
from tradepulse.core.errors import WindowSpecError
from tradepulse.core.trade import Trade
from tradepulse.core.types import (
    MS_PER_DAY,
    MS_PER_HOUR,
    MS_PER_MINUTE,
    MS_PER_SECOND,
    TsMs,
)

DEFAULT_WINDOWS = "1min,5min,15min,30min,1hour"
SELL_UNIT = 1 << 32
_NO_PREV_SIDE = 1 << 62  # "previous same-side trade" of a trade of the other side: never inside
_PENDING_LIMIT = 4096
_COMPACT_MIN = 2048
_VECTOR_MIN = 48  # batches at least this long are appended with NumPy
_CHUNK = 4096  # trades appended at a time
_by_time = attrgetter("ts_ms")


_AppendRows = Callable[["TokenWindows", list[Trade], list["_Key"]], None]
_MoveWindows = Callable[["TokenWindows", int, int], None]
_Added = tuple[dict[str, list[Trade]], int, int, int]
_AddRows = Callable[
    [dict[str, "TokenWindows"], list[Trade], list[TsMs], Callable[[str], "TokenWindows | None"],
     int],
    _Added,
]  # fmt: skip


_WindowStatsC = Callable[["TokenWindows", "_Window", int, type["WindowStats"]],
                         "WindowStats | None"]  # fmt: skip


def _compiled() -> tuple[_AppendRows, _MoveWindows, _AddRows, _WindowStatsC] | None:
    """The compiled kernels (``_kernels.pyx``) when they were built, else None."""
    try:
        from tradepulse.core._kernels import add_rows, append_rows, move_windows, window_stats
    except ImportError:  # installed without a C compiler: the Python code runs
        return None
    return append_rows, move_windows, add_rows, window_stats


_KERNELS = _compiled()
#: ``TokenWindows._append``, the window moves of ``advance``, the loop of
#: ``Market.add_all`` and a window's statistics in C, or None: the Python code (which gives
#: the same results).
_append_rows = _KERNELS[0] if _KERNELS is not None else None
_move_windows = _KERNELS[1] if _KERNELS is not None else None
_add_rows = _KERNELS[2] if _KERNELS is not None else None
_window_stats_c = _KERNELS[3] if _KERNELS is not None else None
#: Which engine code runs: "compiled" or "python" (reported by the worker's ``/performance``).
WINDOW_KERNEL = "compiled" if _KERNELS is not None else "python"

_UNITS = {
    "ms": 1,
    "s": MS_PER_SECOND,
    "sec": MS_PER_SECOND,
    "second": MS_PER_SECOND,
    "seconds": MS_PER_SECOND,
    "m": MS_PER_MINUTE,
    "min": MS_PER_MINUTE,
    "mins": MS_PER_MINUTE,
    "minute": MS_PER_MINUTE,
    "minutes": MS_PER_MINUTE,
    "h": MS_PER_HOUR,
    "hr": MS_PER_HOUR,
    "hour": MS_PER_HOUR,
    "hours": MS_PER_HOUR,
    "d": MS_PER_DAY,
    "day": MS_PER_DAY,
    "days": MS_PER_DAY,
}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]+)\s*$")


def add_rows(
    tokens: dict[str, TokenWindows],
    trades: list[Trade],
    floors_ms: list[TsMs],
    new_token: Callable[[str], TokenWindows | None],
) -> _Added | None:
    """``TokenWindows.add`` of each trade with its own floor, in order, in compiled code:
    the loop of ``Market.add_all`` (``new_token`` makes and stores the windows of a token
    not in ``tokens``, or gives None for one not owned). Returns the trades applied by
    token and the counts applied, duplicate and late; None where the kernels are not built
    (the caller then runs its Python loop)."""
    if _add_rows is None:
        return None
    return _add_rows(tokens, trades, floors_ms, new_token, _PENDING_LIMIT)


class AddResult(IntEnum):
    """What ``add`` did with a trade."""

    APPLIED = 0
    DUPLICATE = 1
    LATE = 2
    FOREIGN = 3  # (Market only) another shard's token: ignored, not counted


class WindowSpec(msgspec.Struct, frozen=True):
    """A named window duration, e.g. ``WindowSpec("5min", 300_000)``."""

    name: str
    duration_ms: int


def parse_duration_ms(text: str) -> int:
    """``"10s"``, ``"5min"``, ``"1hour"``, ``"250ms"``, ``"1d"`` to milliseconds (> 0)."""
    match = _DURATION_RE.match(text)
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise WindowSpecError(
            f"invalid duration {text!r}: expected a whole number and a unit "
            "(ms, s, min, hour, day), e.g. '5min'"
        )
    value = int(match.group(1)) * unit
    if value <= 0:
        raise WindowSpecError(f"invalid duration {text!r}: must be greater than zero")
    return value


def parse_windows(text: str) -> tuple[WindowSpec, ...]:
    """A comma-separated list such as ``"1min,5min,1hour"`` to specs sorted by duration."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise WindowSpecError("the window list is empty: expected e.g. '1min,5min,1hour'")
    specs = sorted((WindowSpec(n, parse_duration_ms(n)) for n in names), key=_by_duration)
    durations = [s.duration_ms for s in specs]
    if len(set(durations)) != len(durations) or len(set(names)) != len(names):
        raise WindowSpecError(f"the window list {text!r} names the same duration twice")
    return tuple(specs)


_Key = str | tuple[str, int]
_U = 2.0**-53  # unit roundoff of a double
_TWO_U = 2.0 * _U


def _key(trade: Trade) -> _Key:
    """Dedup key inside a token: the tx hash alone for event 0 (a str is cheaper to hash
    and is not tracked by the garbage collector), else ``(tx_hash, event_index)``."""
    return trade.tx_hash if not trade.event_index else (trade.tx_hash, trade.event_index)


def _by_duration(spec: WindowSpec) -> int:
    return spec.duration_ms


class WindowStats(msgspec.Struct, frozen=True, gc=False):
    """Statistics of one window at ``updated_ms`` (ARCHITECTURE §4). Volumes are USD
    except ``native_volume``; prices USD; times epoch ms."""

    buy_count: int
    sell_count: int
    trade_count: int
    buy_volume: float
    sell_volume: float
    total_volume: float
    native_volume: float
    unique_wallets: int
    unique_buyers: int
    unique_sellers: int
    start_price: float
    end_price: float
    high_price: float
    low_price: float
    price_change_pct: float
    vwap: float | None
    first_trade_ms: TsMs | None
    last_trade_ms: TsMs | None
    updated_ms: TsMs


class _Window:
    """Incremental state of one window: start position and distinct-wallet counts."""

    __slots__ = ("duration_ms", "name", "sides", "start", "wallets")

    def __init__(self, spec: WindowSpec) -> None:
        self.name = spec.name
        self.duration_ms = spec.duration_ms
        self.start = 0
        self.wallets = 0
        self.sides = 0  # unique buyers + unique sellers * SELL_UNIT


def _window_sum(hi: array[float], lo: array[float], s: int, end: int) -> float | None:
    """The sum of positions ``[s, end)`` from the double-double prefixes, rounded once
    (to nearest, ties to even: what ``math.fsum`` gives), or None when the prefixes cannot
    tell which way it rounds (the caller then sums the window with ``math.fsum``).

    ``(hi[end] + lo[end]) - (hi[s] + lo[s])`` is computed as ``d + c`` with the first
    subtraction error-free (TwoSum). The exact sum differs from ``d + c`` only by the
    rounding of the ``lo`` steps inside the window (each at most ``u * |lo_j|``, and
    ``|lo_j| <= u * end * hi[end]`` since every value is >= 0) and of the two additions
    after it; ``E`` bounds that (with a factor 2 to spare). ``r = fl(d + c)`` is then the
    exact sum rounded once when ``E == 0`` or when ``d + c`` (``r`` plus the exact residual
    ``rho``) is more than ``E`` away from the midpoints around ``r``. So the result does
    not depend on where the prefixes started (compaction, restart) nor on how they were
    summed: ``core.colstats`` gives the same bits."""
    a, b = hi[end], hi[s]
    d = a - b
    bb = d - a
    lo_d = lo[end] - lo[s]
    c = ((a - (d - bb)) + (-b - bb)) + lo_d
    r = d + c
    bb = r - d
    rho = (d - (r - bb)) + (c - bb)
    err = _TWO_U * ((end - s) * _U * end * a + abs(lo_d) + abs(c))
    if err == 0.0 or abs(rho) + err < 0.5 * abs(r - math.nextafter(r, 0.0)):
        return r
    return None


class SyncView(msgspec.Struct, frozen=True):
    """Changes for a mirror of a token's retained trades (see ``TokenWindows.sync_view``).
    Sequence numbers count every trade the token ever stored, in time order."""

    replace_from: int
    head: int
    trades: list[Trade]
    starts: dict[str, int]  # per window: sequence number of its first trade


class TokenWindows:
    """Every configured window of one token; see the module docstring for the algorithm.

    ``add`` is O(1); ``stats(T)`` folds queued trades in (amortized O(1) per trade per
    window) and reads every window in O(log n).
    """

    __slots__ = (
        "_amh", "_aml", "_blast", "_bprev", "_bvh", "_bvl", "_end", "_hstk", "_keys", "_keyset",
        "_late_ms", "_longest_ms", "_lstk", "_nbuy", "_nvh", "_nvl", "_pending",
        "_pending_keys", "_pending_sorted", "_pending_ts", "_prune_at", "_px", "_seq0",
        "_slast", "_smark", "_sprev", "_svh", "_svl", "_synced", "_trades", "_ts", "_wlast",
        "_wmark", "_wprev", "newest_ms", "t_ms", "windows",
    )  # fmt: skip

    def __init__(self, specs: tuple[WindowSpec, ...]) -> None:
        self.windows = [_Window(s) for s in specs]
        self._longest_ms = specs[-1].duration_ms
        self.newest_ms: TsMs = NEVER  # newest trade time seen (queued or stored)
        self.t_ms: TsMs = NEVER  # latest evaluation time; never goes back
        self._late_ms: TsMs = NEVER  # max(newest, t_ms) - longest: at or before is late
        self._pending: list[Trade] = []
        self._pending_ts: list[int] = []
        self._pending_keys: list[_Key] = []
        self._pending_sorted = True  # queue in non-decreasing time order
        self._prune_at = _PENDING_LIMIT  # queue length that triggers the next prune
        self._keyset: set[_Key] = set()
        self._end = 0
        self._seq0 = 0  # sequence number of stored position 0 (positions shift, these do not)
        self._synced = 0  # sequence number of the first stored trade a mirror does not have
        self._reset_columns()

    def _reset_columns(self) -> None:
        # Numbers live in typed arrays (8 bytes each, no Python object per value).
        self._ts = array("q")
        self._px = array("d")
        self._trades: list[Trade] = []
        self._keys: list[_Key] = []
        self._bvh, self._bvl = array("d", [0.0]), array("d", [0.0])
        self._svh, self._svl = array("d", [0.0]), array("d", [0.0])
        self._nvh, self._nvl = array("d", [0.0]), array("d", [0.0])
        self._amh, self._aml = array("d", [0.0]), array("d", [0.0])
        self._nbuy = array("q", [0])
        self._wlast: dict[str, int] = {}
        self._blast: dict[str, int] = {}
        self._slast: dict[str, int] = {}
        self._wprev = array("q")
        self._wmark = array("q")
        self._bprev = array("q")
        self._sprev = array("q")
        self._smark = array("q")
        self._hstk: list[int] = []
        self._lstk: list[int] = []

    # ------------------------------------------------------------------ input

    def add(self, trade: Trade, floor_ms: TsMs) -> AddResult:
        """Queue ``trade`` unless it is late (``t <= T - longest``) or a duplicate."""
        t = trade.ts_ms
        if t <= self._late_ms or t <= floor_ms - self._longest_ms:
            return AddResult.LATE
        key = trade.tx_hash if not trade.event_index else (trade.tx_hash, trade.event_index)
        keyset = self._keyset
        size = len(keyset)
        keyset.add(key)
        if len(keyset) == size:
            return AddResult.DUPLICATE
        self._pending.append(trade)
        self._pending_ts.append(t)
        self._pending_keys.append(key)
        if t >= self.newest_ms:
            self.newest_ms = t
            self._late_ms = t - self._longest_ms
        else:
            self._pending_sorted = False
        if len(self._pending) >= self._prune_at:
            self._prune(max(self._late_ms, floor_ms - self._longest_ms))
            self._prune_at = max(_PENDING_LIMIT, 2 * len(self._pending))
        return AddResult.APPLIED

    def _prune(self, cut_ms: TsMs) -> None:
        """Forget trades at or before ``cut_ms``: every future ``T`` is at least
        ``cut_ms + longest``, so they can only ever give a start price, and only the newest
        of them (ties: the last to arrive) can. When every stored trade is that old, the
        store restarts from that one trade; otherwise queued ones that old are dropped
        unless one is newer than every stored trade that old (then it is kept).

        The queue's times and keys are kept beside it, so a queue in time order is cut
        with one bisect, without reading the (cold) trades themselves."""
        pending_ts = self._pending_ts
        ts = self._ts
        first = pending_ts[0] if self._pending_sorted else min(pending_ts)
        if first > cut_ms and (not ts or ts[-1] > cut_ms):
            return  # nothing is that old (the usual case when evaluated often)
        if self._pending_sorted:
            n_old = bisect_right(pending_ts, cut_ms)
            keep = list(range(n_old, len(pending_ts)))
            carrier = n_old - 1 if n_old else None
        else:
            keep = [i for i, t in enumerate(pending_ts) if t > cut_ms]
            old = [(t, i) for i, t in enumerate(pending_ts) if t <= cut_ms]
            n_old = len(old)
            carrier = max(old)[1] if old else None
        if not n_old and (not ts or ts[-1] > cut_ms):
            return
        pending, keys = self._pending, self._pending_keys
        stored: Trade | None = None
        if ts and ts[-1] <= cut_ms:
            if carrier is None or ts[-1] > pending_ts[carrier]:
                stored, carrier = self._trades[-1], None
            self._restart()
        elif carrier is not None and ts:
            older = bisect_right(ts, cut_ms)
            if older and ts[older - 1] > pending_ts[carrier]:
                carrier = None  # a stored trade is the newer start-price carrier
        # A resend of any trade at or before the cut is late, so its key can go.
        self._keyset.difference_update([keys[i] for i, t in enumerate(pending_ts) if t <= cut_ms]
                                       if not self._pending_sorted else keys[:n_old])  # fmt: skip
        order = ([carrier] if carrier is not None else []) + keep
        self._pending = [pending[i] for i in order]
        self._pending_ts = [pending_ts[i] for i in order]
        self._pending_keys = [keys[i] for i in order]
        if stored is not None:
            self._pending.insert(0, stored)
            self._pending_ts.insert(0, stored.ts_ms)
            self._pending_keys.insert(0, _key(stored))

    def _restart(self) -> None:
        """Empty the store (every stored trade is out of every future window)."""
        self._keyset.difference_update(self._keys)
        self._seq0 += len(self._ts)
        self._synced = self._seq0
        self._reset_columns()
        for win in self.windows:
            win.start, win.wallets, win.sides = 0, 0, 0
        self._end = 0

    # ------------------------------------------------------------------ evaluation

    def advance(self, t_ms: TsMs) -> TsMs:
        """Fold queued trades in and move every window to ``T = max(t_ms, newest, last T)``.

        Returns the ``T`` used.
        """
        t_eval = max(t_ms, self.newest_ms, self.t_ms)
        if self._pending:
            self._prune(t_eval - self._longest_ms)
            if self._pending:
                self._ingest()
        self.t_ms = t_eval
        self._late_ms = t_eval - self._longest_ms
        ts = self._ts
        end = len(ts)
        e0 = self._end
        if _move_windows is not None:
            _move_windows(self, t_eval, e0)
            self._end = end
            self._maybe_compact()
            return t_eval
        entering = e0 < end
        if entering:
            wp = sorted(self._wprev[e0:end])
            bp = sorted(self._bprev[e0:end])
            sp = sorted(self._sprev[e0:end])
        wmark, smark = self._wmark, self._smark
        for win in self.windows:
            s_old = win.start
            # Starts only move forward (a rollback leaves them at or before their place).
            s_new = bisect_right(ts, t_eval - win.duration_ms, s_old)
            if entering:
                win.wallets += bisect_left(wp, s_old)
                win.sides += bisect_left(bp, s_old) + bisect_left(sp, s_old) * SELL_UNIT
            if s_new == s_old + 1:
                win.wallets -= wmark[s_old]
                win.sides -= smark[s_old]
            elif s_new > s_old:
                win.wallets -= sum(wmark[s_old:s_new])
                win.sides -= sum(smark[s_old:s_new])
            win.start = s_new
        self._end = end
        self._maybe_compact()
        return t_eval

    def stats(self, t_ms: TsMs) -> dict[str, WindowStats]:
        """Every window evaluated at ``T = max(t_ms, newest trade, last T)``.

        Empty when the token has no trade at all.
        """
        t_eval = self.advance(t_ms)
        if not self._ts:
            return {}
        if _window_stats_c is not None:
            out: dict[str, WindowStats] = {}
            for win in self.windows:
                stats = _window_stats_c(self, win, t_eval, WindowStats)
                out[win.name] = stats if stats is not None else self._window_stats(win, t_eval)
            return out
        return {win.name: self._window_stats(win, t_eval) for win in self.windows}

    def _window_stats(self, win: _Window, t_eval: TsMs) -> WindowStats:
        """Statistics of positions ``[win.start, E)``.

        Each sum is the exact sum rounded once: a difference of double-double prefixes when
        its error bound settles the rounding (``_window_sum``), else ``math.fsum`` over the
        window (rare: a sum on a rounding midpoint, or values tiny next to the retained
        history). Sums known to be 0 skip both."""
        ts, px = self._ts, self._px
        end, s = len(ts), win.start
        last_price = px[end - 1]
        if s == end:
            return WindowStats(
                0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, last_price, last_price, last_price,
                last_price, 0.0, None, None, None, t_eval,
            )  # fmt: skip
        buys = self._nbuy[end] - self._nbuy[s]
        sells = end - s - buys
        trades = self._trades
        bv = _window_sum(self._bvh, self._bvl, s, end) if buys else 0.0
        if bv is None:
            bv = math.fsum(t.volume_usd for t in trades[s:end] if t.is_buy)
        sv = _window_sum(self._svh, self._svl, s, end) if sells else 0.0
        if sv is None:
            sv = math.fsum(t.volume_usd for t in trades[s:end] if not t.is_buy)
        nv = _window_sum(self._nvh, self._nvl, s, end)
        if nv is None:
            nv = math.fsum(t.native_amount for t in trades[s:end])
        am = _window_sum(self._amh, self._aml, s, end)
        if am is None:
            am = math.fsum(t.token_amount for t in trades[s:end])
        total = bv + sv
        start_price = px[s - 1] if s > 0 else px[s]
        sellers, buyers = divmod(win.sides, SELL_UNIT)
        hstk, lstk = self._hstk, self._lstk
        return WindowStats(
            buys, end - s - buys, end - s, bv, sv, total, nv, win.wallets, buyers, sellers,
            start_price, last_price, px[hstk[bisect_left(hstk, s)]],
            px[lstk[bisect_left(lstk, s)]], (last_price - start_price) / start_price * 100.0,
            total / am, ts[s], ts[end - 1], t_eval,
        )  # fmt: skip

    # ------------------------------------------------------------------ snapshot

    def retained_trades(self) -> list[Trade]:
        """The trades a rebuild needs, in time order (queued ones folded in first)."""
        self.advance(self.t_ms)
        return self._trades[self._retained_from() :]

    def sync_view(self, *, full: bool = False) -> SyncView:
        """What a mirror of the retained trades (the Redis list) must change to match the
        store, as of the last evaluation: keep its trades before sequence number
        ``replace_from``, append ``trades``, drop everything before ``head``.

        ``full`` sends every retained trade (``replace_from == head``), for a mirror that
        lost its data. Call ``mark_synced`` once the mirror has applied the view."""
        seq0 = self._seq0
        head = seq0 + self._retained_from()
        start = head if full else max(self._synced, head)
        starts = {win.name: seq0 + win.start for win in self.windows}
        return SyncView(start, head, self._trades[start - seq0 :], starts)  # positional: cheaper

    def mark_synced(self) -> None:
        """The mirror now holds every stored trade."""
        self._synced = self._seq0 + len(self._ts)

    @classmethod
    def rebuild(
        cls,
        specs: tuple[WindowSpec, ...],
        trades: list[Trade],
        t_ms: TsMs,
        *,
        first_seq: int = 0,
    ) -> TokenWindows:
        """A token with exactly the state it had when ``trades`` (from
        ``retained_trades``) were taken at evaluation time ``t_ms``. ``first_seq`` is the
        sequence number of ``trades[0]`` in the mirror they come from; the mirror is then
        taken as in sync."""
        token = cls(specs)
        for trade in trades:
            token._keyset.add(_key(trade))
            token.newest_ms = max(token.newest_ms, trade.ts_ms)
        token._late_ms = token.newest_ms - token._longest_ms
        token._pending = list(trades)
        token._pending_ts = [t.ts_ms for t in trades]
        token._pending_keys = [_key(t) for t in trades]
        token._pending_sorted = False
        token.advance(t_ms)
        token._seq0 = first_seq + len(trades) - len(token._ts)  # a pruned prefix is gone
        token.mark_synced()
        return token

    def _retained_from(self) -> int:
        return max(0, self.windows[-1].start - 1)

    # ------------------------------------------------------------------ internals

    def _ingest(self) -> None:
        trades, ts_new, keys = self._pending, self._pending_ts, self._pending_keys
        in_order = self._pending_sorted
        self._clear_queue()
        if not in_order:
            order = sorted(range(len(ts_new)), key=ts_new.__getitem__)  # stable
            trades = [trades[i] for i in order]
            ts_new = [ts_new[i] for i in order]
            keys = [keys[i] for i in order]
        ts = self._ts
        if ts and ts_new[0] < ts[-1]:
            pos = bisect_right(ts, ts_new[0])
            tail = self._trades[pos:]
            self._rollback(pos)
            trades = sorted(tail + trades, key=_by_time)  # stable: stored trades first
            ts_new = [t.ts_ms for t in trades]
            keys = [_key(t) for t in trades]
        for lo in range(0, len(trades), _CHUNK):  # chunks stay in the CPU cache
            self._append(trades[lo : lo + _CHUNK], ts_new[lo : lo + _CHUNK], keys[lo : lo + _CHUNK])

    def _clear_queue(self) -> None:
        self._pending, self._pending_ts, self._pending_keys = [], [], []
        self._pending_sorted = True

    def _append(self, trades: list[Trade], ts: list[int], keys: list[_Key]) -> None:
        """Append trades in time order (none older than the newest stored one): the
        compiled kernel when built, else a loop or, for long runs, NumPy (all three give
        the same bits)."""
        if _append_rows is not None:
            _append_rows(self, trades, keys)
        elif len(trades) >= _VECTOR_MIN:
            self._append_vector(trades, ts, keys)
        else:
            self._append_loop(trades, keys)

    def _append_vector(self, trades: list[Trade], ts: list[int], keys: list[_Key]) -> None:
        """The same result as ``_append_loop`` (bit for bit), computed column-wise."""
        i0 = len(self._ts)
        prices = [t.price_usd for t in trades]
        columns = self._sum_columns(trades)
        for x, hi, lo in columns:
            extend_dd_prefix(hi, lo, x)
        is_buy = np.fromiter([t.is_buy for t in trades], dtype=np.bool_, count=len(trades))
        self._nbuy.frombytes((np.cumsum(is_buy, dtype=np.int64) + self._nbuy[-1]).tobytes())
        self._ts.extend(ts)
        self._px.extend(prices)
        self._trades.extend(trades)
        self._keys.extend(keys)
        self._mark_wallets(trades, i0)
        arr = np.asarray(prices)
        extend_stack(self._hstk, self._px, arr, i0, highs=True)
        extend_stack(self._lstk, self._px, arr, i0, highs=False)

    def _sum_columns(
        self, trades: list[Trade]
    ) -> list[tuple[np.ndarray, array[float], array[float]]]:
        n = len(trades)
        is_buy = np.fromiter([t.is_buy for t in trades], dtype=np.bool_, count=n)
        volume = np.fromiter([t.volume_usd for t in trades], dtype=np.float64, count=n)
        zero = np.zeros(n)
        return [
            (np.where(is_buy, volume, zero), self._bvh, self._bvl),
            (np.where(is_buy, zero, volume), self._svh, self._svl),
            (np.fromiter([t.native_amount for t in trades], np.float64, n), self._nvh, self._nvl),
            (np.fromiter([t.token_amount for t in trades], np.float64, n), self._amh, self._aml),
        ]

    def _rebase_sums(self) -> None:
        """Restart the prefix sums at zero from the stored trades, so that the rounding
        left in the ``lo`` parts is bounded by the retained span, not by the uptime."""
        for column in (self._bvh, self._bvl, self._svh, self._svl, self._nvh, self._nvl,
                       self._amh, self._aml):  # fmt: skip
            del column[:]
            column.append(0.0)
        if self._trades:
            for x, hi, lo in self._sum_columns(self._trades):
                extend_dd_prefix(hi, lo, x)

    def _mark_wallets(self, trades: list[Trade], i: int) -> None:
        wlast, blast, slast = self._wlast, self._blast, self._slast
        wprev, wmark, bprev = self._wprev, self._wmark, self._bprev
        sprev, smark = self._sprev, self._smark
        for tr in trades:
            w = tr.wallet
            if tr.is_buy:
                q = blast.get(w, -1)
                blast[w] = i
                bprev.append(q)
                sprev.append(_NO_PREV_SIDE)
                smark.append(1)
            else:
                q = slast.get(w, -1)
                slast[w] = i
                sprev.append(q)
                bprev.append(_NO_PREV_SIDE)
                smark.append(SELL_UNIT)
            if q >= 0:
                smark[q] = 0
            q = wlast.get(w, -1)
            wlast[w] = i
            wprev.append(q)
            wmark.append(1)
            if q >= 0:
                wmark[q] = 0
            i += 1

    def _append_loop(self, trades: list[Trade], keys: list[_Key]) -> None:
        ts_append, px_append = self._ts.append, self._px.append
        tr_append = self._trades.append
        self._keys.extend(keys)
        bvh, bvl, svh, svl = self._bvh, self._bvl, self._svh, self._svl
        nvh, nvl, amh, aml, nbuy = self._nvh, self._nvl, self._amh, self._aml, self._nbuy
        bh, bl, sh, sl = bvh[-1], bvl[-1], svh[-1], svl[-1]
        nh, nl, ah, al, nb = nvh[-1], nvl[-1], amh[-1], aml[-1], nbuy[-1]
        wlast, blast, slast = self._wlast, self._blast, self._slast
        wprev, wmark, bprev = self._wprev, self._wmark, self._bprev
        sprev, smark = self._sprev, self._smark
        px, hstk, lstk = self._px, self._hstk, self._lstk
        i = len(self._ts)
        for tr in trades:
            p = tr.price_usd
            w = tr.wallet
            ts_append(tr.ts_ms)
            px_append(p)
            tr_append(tr)
            x = tr.volume_usd
            if tr.is_buy:
                s = bh + x
                bb = s - bh
                bl += (bh - (s - bb)) + (x - bb)
                bh = s
                nb += 1
                q = blast.get(w, -1)
                blast[w] = i
                bprev.append(q)
                sprev.append(_NO_PREV_SIDE)
                smark.append(1)
                if q >= 0:
                    smark[q] = 0
            else:
                s = sh + x
                bb = s - sh
                sl += (sh - (s - bb)) + (x - bb)
                sh = s
                q = slast.get(w, -1)
                slast[w] = i
                sprev.append(q)
                bprev.append(_NO_PREV_SIDE)
                smark.append(SELL_UNIT)
                if q >= 0:
                    smark[q] = 0
            bvh.append(bh)
            bvl.append(bl)
            svh.append(sh)
            svl.append(sl)
            nbuy.append(nb)
            x = tr.native_amount
            s = nh + x
            bb = s - nh
            nl += (nh - (s - bb)) + (x - bb)
            nh = s
            nvh.append(nh)
            nvl.append(nl)
            x = tr.token_amount
            s = ah + x
            bb = s - ah
            al += (ah - (s - bb)) + (x - bb)
            ah = s
            amh.append(ah)
            aml.append(al)
            q = wlast.get(w, -1)
            wlast[w] = i
            wprev.append(q)
            wmark.append(1)
            if q >= 0:
                wmark[q] = 0
            while hstk and px[hstk[-1]] <= p:
                hstk.pop()
            hstk.append(i)
            while lstk and px[lstk[-1]] >= p:
                lstk.pop()
            lstk.append(i)
            i += 1

    def _rollback(self, pos: int) -> None:
        """Undo positions ``>= pos`` (they are re-appended right after) and correct every
        window's distinct counts so that they describe ``[start, pos)``."""
        trades = self._trades
        tail = trades[pos:]
        w_restored, w_gone = self._unmark(tail, pos, self._wlast, self._wprev, self._wmark, None)
        b_restored, b_gone = self._unmark(tail, pos, self._blast, self._bprev, self._smark, True)
        s_restored, s_gone = self._unmark(tail, pos, self._slast, self._sprev, self._smark, False)
        for lst in (self._ts, self._px, trades, self._keys, self._wprev, self._wmark,
                    self._bprev, self._sprev, self._smark):  # fmt: skip
            del lst[pos:]
        for lst in (self._bvh, self._bvl, self._svh, self._svl, self._nvh, self._nvl,
                    self._amh, self._aml, self._nbuy):  # fmt: skip
            del lst[pos + 1 :]
        self._rebuild_stack(self._hstk, pos, highs=True)
        self._rebuild_stack(self._lstk, pos, highs=False)
        for win in self.windows:
            if win.start > pos:
                win.start, win.wallets, win.sides = pos, 0, 0
                continue
            s = win.start
            win.wallets += len(w_restored) - bisect_left(w_restored, s) - w_gone
            buyers = len(b_restored) - bisect_left(b_restored, s) - b_gone
            sellers = len(s_restored) - bisect_left(s_restored, s) - s_gone
            win.sides += buyers + sellers * SELL_UNIT
        self._end = pos
        self._synced = min(self._synced, self._seq0 + pos)

    @staticmethod
    def _unmark(
        tail: list[Trade],
        pos: int,
        last: dict[str, int],
        prev: array[int],
        mark: array[int],
        side: bool | None,
    ) -> tuple[list[int], int]:
        """Give every wallet of ``tail`` (positions ``pos``...) back the newest trade it had
        before ``pos``. Returns the sorted restored positions and the number of wallets."""
        seen: set[str] = set()
        restored: list[int] = []
        for offset, tr in enumerate(tail):
            if (side is not None and tr.is_buy is not side) or tr.wallet in seen:
                continue
            seen.add(tr.wallet)
            q = prev[pos + offset]
            if q >= 0:
                last[tr.wallet] = q
                mark[q] = 1 if side is None or side else SELL_UNIT
                restored.append(q)
            else:
                del last[tr.wallet]
        restored.sort()
        return restored, len(seen)

    def _rebuild_stack(self, stack: list[int], pos: int, *, highs: bool) -> None:
        """Drop stack entries ``>= pos`` and restore the ones they had popped: the suffix
        extremes of ``[0, pos)`` after the newest survivor."""
        while stack and stack[-1] >= pos:
            stack.pop()
        px = self._px
        floor = stack[-1] if stack else -1
        found: list[int] = []
        best = None
        for i in range(pos - 1, floor, -1):
            p = px[i]
            if best is None or (p > best if highs else p < best):
                found.append(i)
                best = p
        found.reverse()
        stack.extend(found)

    def _maybe_compact(self) -> None:
        """Physically drop trades before the one kept ahead of the longest window once they
        are at least half of the store (amortized O(1) per trade)."""
        cut = self._retained_from()
        if cut < _COMPACT_MIN or cut < len(self._ts) - cut:
            return
        self._keyset.difference_update(self._keys[:cut])
        for lst in (self._ts, self._px, self._trades, self._keys, self._wmark, self._smark,
                    self._nbuy):  # fmt: skip
            del lst[:cut]
        self._rebase_sums()
        self._wprev = shifted(self._wprev, cut)
        self._bprev = shifted(self._bprev, cut)
        self._sprev = shifted(self._sprev, cut)
        for name in ("_wlast", "_blast", "_slast"):
            last: dict[str, int] = getattr(self, name)
            setattr(self, name, {w: i - cut for w, i in last.items() if i >= cut})
        self._hstk = [i - cut for i in self._hstk if i >= cut]
        self._lstk = [i - cut for i in self._lstk if i >= cut]
        for win in self.windows:
            win.start -= cut
        self._end -= cut
        self._seq0 += cut


def _bind_kernels() -> None:
    """Give the compiled kernels the slot offsets of the classes they read (they then load
    a slot directly instead of looking the attribute up through the type)."""
    try:
        from tradepulse.core._kernels import bind
    except ImportError:
        return
    bind(Trade, TokenWindows, _Window)


_bind_kernels()
