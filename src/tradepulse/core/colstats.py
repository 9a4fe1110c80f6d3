"""Window statistics of many (token, evaluation time) pairs at once, from columns.

The input is every applied trade of a set of tokens, grouped by token (a *segment* per
token) and, within a segment, sorted by time with ties in arrival order: exactly the
order ``TokenWindows`` stores them in. A *pair* asks for the windows of one segment at
``T``, over the segment's first ``end`` positions (the trades read before ``T`` was
evaluated). The window ``W`` is the positions ``[lo, end)`` with ``t > T - W``::

    segment:  ●  ●  ●   ●    ●  ●   ●  ●   (positions; later ones not read yet)
              └ start       lo┘      end┘
                            (T - W, T]

The statistics are ``TokenWindows``' (ARCHITECTURE §4): the start price is the price at
``lo - 1`` when the segment has a trade there (the latest at or before ``T - W``), else at
``lo``; an empty window reports the latest price. Sums are differences of double-double
prefix sums restarted at each segment, settled as ``core.windows._window_sum`` settles
them: the difference comes with a rigorous error bound, and ``math.fsum`` re-sums the rare
window whose rounding that bound leaves open. Each sum is thus the exact sum rounded once,
whatever the prefix in front of it (the engine's restarts at each compaction and whenever
its store empties; a segment's runs over the whole file). Distinct wallets count the
positions whose previous trade by the same wallet (same side, for buyers and sellers) is
before ``lo``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tradepulse.core.types import TsMs
from tradepulse.core.windows import WindowSpec, WindowStats

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B1 = npt.NDArray[np.bool_]

_U = 2.0**-53  # unit roundoff of a double


@dataclass(frozen=True, slots=True)
class Segments:
    """Applied trades grouped by token (see the module docstring); ``start`` has one entry
    per segment plus the total length."""

    start: I64
    ts_ms: I64
    price: F64
    is_buy: B1
    wallet: I64  # codes
    buy_volume: F64  # volume where a buy, else 0
    sell_volume: F64
    native_amount: F64
    token_amount: F64


@dataclass(frozen=True, slots=True)
class _Prefixes:
    """Double-double prefixes (``hi``, ``lo``; one column per sum: buy, sell, native
    volume, token amount) of each segment, segment ``k`` at rows ``start[k] + k ...``
    (one leading zero row per segment)."""

    hi: F64
    lo: F64
    lo_max: F64  # running maximum of |lo| within the segment
    nbuy: I64  # global prefix count of buys (exact)


def _dd_prefix(x: npt.NDArray[np.float64]) -> tuple[F64, F64]:
    """``[0, x0, x0+x1, ...]`` as double-double: sequential sum plus the running sum of
    each step's exact rounding error (TwoSum), as ``core.columns.extend_dd_prefix``."""
    zero = np.zeros((1, x.shape[1]))
    c = np.cumsum(np.concatenate((zero, x)), axis=0)
    a, s = c[:-1], c[1:]
    bb = s - a
    err = (a - (s - bb)) + (x - bb)
    return c, np.cumsum(np.concatenate((zero, err)), axis=0)


def _prefixes(seg: Segments) -> _Prefixes:
    """The four sums' prefixes, each segment's four columns at once."""
    x = np.stack((seg.buy_volume, seg.sell_volume, seg.native_amount, seg.token_amount), axis=1)
    bounds = seg.start.tolist()
    parts = [_dd_prefix(x[a:b]) for a, b in itertools.pairwise(bounds)]
    hi = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 4))
    lo = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, 4))
    lo_max = (np.concatenate([np.maximum.accumulate(np.abs(p[1]), axis=0) for p in parts])
              if parts else np.zeros((0, 4)))  # fmt: skip
    nbuy = np.concatenate(([0], np.cumsum(seg.is_buy, dtype=np.int64)))
    return _Prefixes(hi, lo, lo_max, nbuy)


def _window_sums(pre: _Prefixes, s: I64, e: I64) -> tuple[F64, B1]:
    """Per pair, the four sums of prefix rows ``[s, e)`` rounded once, and whether that
    rounding is settled (else the caller uses ``math.fsum``): ``core.windows._window_sum``
    element-wise, with the running maximum of ``|lo|`` in place of its a-priori bound."""
    hi, lo = pre.hi, pre.lo
    a, b = hi[e], hi[s]
    d = a - b
    bb = d - a
    lo_d = lo[e] - lo[s]
    c = ((a - (d - bb)) + (-b - bb)) + lo_d
    r: F64 = d + c
    bb = r - d
    rho = (d - (r - bb)) + (c - bb)
    n = (e - s).astype(np.float64)[:, None]
    err = (2.0 * _U) * ((n * _U) * pre.lo_max[e] + np.abs(lo_d) + np.abs(c))
    with np.errstate(invalid="ignore"):
        ok: B1 = (err == 0.0) | (np.abs(rho) + err < 0.5 * np.abs(r - np.nextafter(r, 0.0)))
    return r, ok


def stable_order(keys: I64) -> I64:
    """``np.argsort(keys, kind="stable")`` for non-negative keys, faster: one plain sort
    of ``key * n + position`` when that fits 63 bits."""
    n = len(keys)
    if n == 0 or int(keys.max()) >= (1 << 62) // max(n, 1):
        return np.argsort(keys, kind="stable")
    order: I64 = np.sort(keys * n + np.arange(n, dtype=np.int64)) % n
    return order


def _previous(keys: I64) -> I64:
    """For each position, the previous position with the same key (-1 if none)."""
    order = stable_order(keys)
    same = keys[order[1:]] == keys[order[:-1]]
    prev = np.full(len(keys), -1, dtype=np.int64)
    prev[order[1:][same]] = order[:-1][same]
    return prev


def window_starts(ts: I64, first: I64, end: I64, cut_ms: I64) -> I64:
    """Per pair, the first position in ``[first, end)`` with time ``> cut_ms`` (``end`` if
    none): a binary search run on every pair at once."""
    lo, hi = first.copy(), end.copy()
    top = len(ts) - 1
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = (lo + hi) // 2
        after = ts[np.minimum(mid, top)] > cut_ms
        hi = np.where(open_ & after, mid, hi)
        lo = np.where(open_ & ~after, mid + 1, lo)


def pair_stats(
    seg: Segments, specs: tuple[WindowSpec, ...], pair_seg: I64, pair_end: I64, pair_t: I64
) -> list[dict[str, WindowStats]]:
    """Every window of every pair ``(segment, end, T)``; see the module docstring."""
    pre = _prefixes(seg)
    n_seg = len(seg.start) - 1
    seg_id = np.repeat(np.arange(n_seg, dtype=np.int64), np.diff(seg.start))
    prev_wallet = _previous(seg_id * (int(seg.wallet.max(initial=0)) + 1) + seg.wallet)
    prev_side = _previous((seg_id * (int(seg.wallet.max(initial=0)) + 1) + seg.wallet) * 2
                          + seg.is_buy)  # fmt: skip
    first = seg.start[pair_seg]
    out: list[dict[str, WindowStats]] = [{} for _ in range(len(pair_seg))]
    for spec in specs:
        lo = window_starts(seg.ts_ms, first, pair_end, pair_t - spec.duration_ms)
        stats = _stats(seg, pre, pair_seg, first, lo, pair_end, pair_t,
                       prev_wallet, prev_side)  # fmt: skip
        for row, st in zip(out, stats, strict=True):
            row[spec.name] = st
    return out


def _stats(
    seg: Segments,
    pre: _Prefixes,
    pair_seg: I64,
    first: I64,
    lo: I64,
    end: I64,
    t_eval: I64,
    prev_wallet: I64,
    prev_side: I64,
) -> list[WindowStats]:
    """One window's statistics for every pair (positions ``[lo, end)``)."""
    buys = pre.nbuy[end] - pre.nbuy[lo]
    count = end - lo
    sums, settled = _window_sums(pre, lo + pair_seg, end + pair_seg)
    px = seg.price
    last = px[end - 1]
    start_price = np.where(lo > first, px[np.maximum(lo - 1, 0)], px[np.minimum(lo, len(px) - 1)])
    rows: list[WindowStats] = []
    cols = (lo.tolist(), end.tolist(), t_eval.tolist(), buys.tolist(), count.tolist(),
            last.tolist(), start_price.tolist())  # fmt: skip
    # A side with no trade in the window sums to 0 whatever its prefixes say.
    settled[:, 0] |= buys == 0
    settled[:, 1] |= buys == count
    sum_rows: list[list[float]] = sums.tolist()
    settled_rows: list[bool] = np.asarray(settled.all(axis=1)).tolist()
    ts = seg.ts_ms
    for i, (s, e, t, nb, n, last_p, start_p) in enumerate(zip(*cols, strict=True)):
        if n == 0:
            rows.append(WindowStats(0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, last_p, last_p, last_p,
                                    last_p, 0.0, None, None, None, t))  # fmt: skip
            continue
        ns = n - nb
        if settled_rows[i]:
            bv, sv, nv, am = sum_rows[i]
            bv, sv = (bv if nb else 0.0), (sv if ns else 0.0)
        else:  # rare: some sum on or next to a rounding midpoint
            bv, sv, nv, am = _exact_sums(seg, s, e, nb, ns)
        window = slice(s, e)
        wallets = int(np.count_nonzero(prev_wallet[window] < s))
        side_new = prev_side[window] < s
        buyers = int(np.count_nonzero(side_new & seg.is_buy[window]))
        sellers = int(np.count_nonzero(side_new)) - buyers
        prices = px[window]
        total = bv + sv
        rows.append(WindowStats(
            nb, ns, n, bv, sv, total, nv, wallets, buyers, sellers, start_p, last_p,
            float(prices.max()), float(prices.min()), (last_p - start_p) / start_p * 100.0,
            total / am, int(ts[s]), int(ts[e - 1]), t,
        ))  # fmt: skip
    return rows


def _exact_sums(seg: Segments, s: int, e: int, nb: int, ns: int) -> tuple[float, ...]:
    """The four sums of positions ``[s, e)`` with ``math.fsum`` (rare)."""
    return (
        math.fsum(seg.buy_volume[s:e].tolist()) if nb else 0.0,
        math.fsum(seg.sell_volume[s:e].tolist()) if ns else 0.0,
        math.fsum(seg.native_amount[s:e].tolist()),
        math.fsum(seg.token_amount[s:e].tolist()),
    )


def evaluation_times(watermarks: I64, every_ms: int, longest_ms: int) -> tuple[I64, I64]:
    """Snapshot times on the event clock and, for each, how many trades were read before
    it was taken (see ``service.replay``): every multiple ``M`` of ``every_ms`` with
    ``first trade time <= M < last trade time`` at which some trade read before could still
    be in the longest window (``M - longest < watermark``; the others write nothing).
    ``watermarks`` is the running maximum of the trade times in read order."""
    if len(watermarks) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    steps = np.flatnonzero(np.diff(watermarks)) + 1  # first index of each new watermark
    lows = watermarks[np.concatenate(([0], steps))[:-1]] if len(steps) else watermarks[:0]
    highs = np.minimum(watermarks[steps], lows + longest_ms)
    first_k = -(-lows // every_ms)
    count = np.maximum(-(-highs // every_ms) - first_k, 0)
    offsets = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(count) - count, count
    )
    times = (np.repeat(first_k, count) + offsets) * every_ms
    return times, np.repeat(steps, count)


__all__ = ["Segments", "TsMs", "evaluation_times", "pair_stats", "stable_order", "window_starts"]
