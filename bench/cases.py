"""Benchmark cases, each run in its own process by ``bench/run.py`` (so peak RSS is its own).

Usage: ``python bench/cases.py CASE FILE [EVERY]`` prints one JSON object on stdout.

* ``engine``: the window engine alone (trades decoded beforehand, not timed), every
  window, the statistics of every touched token every EVERY (default 1,000) trades, then a
  final snapshot.
* ``engine-final``: the same with the final snapshot only.
* ``engine-bars``, ``engine-bars-values``: ``engine`` plus 1-minute bars and indicators as
  the worker keeps them (see ``bench/barcase.py``).
* ``naive``: a naive prototype of the replay (msgspec decode into per-token lists, prefix
  sums evaluated lazily with NumPy at the end; no unique wallets, deduplication,
  validation or out-of-order handling) — the yardstick the replay is compared with.

Each case checks its own result against an independent NumPy computation.
"""

from __future__ import annotations

import gc
import json
import math
import resource
import sys
import time
from pathlib import Path

import msgspec
import numpy as np

from barcase import run_engine_bars
from tradepulse.adapters.wire import decode_trade
from tradepulse.core.market import Market
from tradepulse.core.trade import Trade
from tradepulse.core.windows import DEFAULT_WINDOWS, WindowStats, parse_windows

SNAPSHOT_EVERY = 1_000


def load(path: Path) -> list[Trade]:
    with path.open("rb") as f:
        return [decode_trade(line, now_ms=1 << 62) for line in f]


def check_against_numpy(trades: list[Trade], market: Market, t_ms: int) -> int:
    """Counts and volumes of every window of the 5 busiest tokens at ``t_ms``."""
    by_token: dict[str, list[Trade]] = {}
    for tr in trades:
        by_token.setdefault(tr.token, []).append(tr)
    busiest = sorted(by_token, key=lambda k: -len(by_token[k]))[:5]
    checked = 0
    for token in busiest:
        ts = np.array([t.ts_ms for t in by_token[token]])
        vol = np.array([t.volume_usd for t in by_token[token]])
        stats = market.stats(token, t_ms)
        for spec in market.specs:
            inside = (ts > t_ms - spec.duration_ms) & (ts <= t_ms)
            got: WindowStats = stats[spec.name]
            assert got.trade_count == int(inside.sum()), (token, spec.name)
            assert math.isclose(got.total_volume, math.fsum(vol[inside]), rel_tol=1e-9)
            checked += 1
    return checked


def run_engine(path: Path, *, snapshots: bool, every: int = SNAPSHOT_EVERY) -> dict[str, object]:
    trades = load(path)
    specs = parse_windows(DEFAULT_WINDOWS)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    market = Market(specs)
    touched: set[str] = set()
    evaluations = 0
    started = time.perf_counter()
    for i, tr in enumerate(trades, start=1):
        market.add(tr, tr.ts_ms)
        if snapshots:
            touched.add(tr.token)
            if i % every == 0:
                for token in touched:
                    market.stats(token, tr.ts_ms)
                evaluations += len(touched)
                touched.clear()
    final_ms = max(t.ts_ms for t in trades[-1000:])
    for token in market.tokens:
        market.stats(token, final_ms)
    elapsed = time.perf_counter() - started
    checked = check_against_numpy(trades, market, final_ms)
    return {
        "trades": len(trades),
        "seconds": elapsed,
        "token_evaluations": evaluations + len(market.tokens),
        "windows_checked": checked,
        "applied": market.applied,
    }


class _Naive(msgspec.Struct):
    token: str
    sell_buy: str
    token_amount: float
    price_usd: float
    trans_time: int


def run_naive(path: Path) -> dict[str, object]:
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    decoder = msgspec.json.Decoder(_Naive)
    started = time.perf_counter()
    columns: dict[str, tuple[list[int], list[float], list[bool]]] = {}
    with path.open("rb") as f:
        for line in f:
            t = decoder.decode(line)
            col = columns.get(t.token)
            if col is None:
                col = columns[t.token] = ([], [], [])
            col[0].append(t.trans_time)
            col[1].append(t.token_amount * t.price_usd)
            col[2].append(t.sell_buy == "buy")
    windows_ms = [s.duration_ms for s in parse_windows(DEFAULT_WINDOWS)]
    out = []
    for token, (ts_list, vol_list, buy_list) in columns.items():
        ts = np.asarray(ts_list)
        prefix = np.concatenate(([0.0], np.cumsum(vol_list)))
        buys = np.concatenate(([0], np.cumsum(buy_list)))
        end = len(ts)
        for w in windows_ms:
            start = int(np.searchsorted(ts, ts[-1] - w, side="right"))
            buy_count = int(buys[end] - buys[start])
            out.append((token, w, end - start, buy_count, prefix[end] - prefix[start]))
    elapsed = time.perf_counter() - started
    return {"trades": sum(len(c[0]) for c in columns.values()), "seconds": elapsed,
            "windows_evaluated": len(out)}  # fmt: skip


def main() -> None:
    case, path = sys.argv[1], Path(sys.argv[2])
    every = int(sys.argv[3]) if len(sys.argv) > 3 else SNAPSHOT_EVERY
    if case == "engine":
        result = run_engine(path, snapshots=True, every=every)
    elif case in ("engine-bars", "engine-bars-values"):
        result = run_engine_bars(load(path), every=every, values=case == "engine-bars-values")
    elif case == "engine-final":
        result = run_engine(path, snapshots=False)
    elif case == "naive":
        result = run_naive(path)
    else:
        raise SystemExit(f"unknown case {case!r}")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
