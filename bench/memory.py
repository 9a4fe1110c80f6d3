"""Memory for sizing: worker RSS per 1,000 active tokens, and Redis memory per retained
trade and per token; writes bench/results/memory.json.

    python bench/memory.py [--tokens N] [--trades-per-token 10,100,1000] [--redis URL]

Each case (N tokens × K trades each, spread over the last hour so that the 1-hour window
retains them all; default windows 1min,5min,15min,30min,1hour), once with windows only and
once with 1-minute bars and indicators as the worker keeps them (``TokenBars``: every final
bar of the hour, the forming bar, the indicators and their state), runs in a fresh process:

* **worker memory**: RSS of the process after importing tradepulse, then after applying the
  N × K trades to a ``Market`` (the worker's per-token state: windows, retained trades,
  wallet sets) and evaluating every token once; the difference / N × 1,000.
* **Redis memory**: every token's state written through the real ``RedisStore`` (one
  pipeline per 500 tokens, as a worker batch does), then ``MEMORY USAGE key SAMPLES 0`` of
  every key of the case summed: the trades lists / (N × K) = bytes per retained trade; the
  other keys (indices, aggregates, last_update) and the ``tokens:active`` entry / N = bytes
  per token; with bars, the bar keys (state, forming bar, indicators) / N = bytes per token
  for bars, and the ``bars.finalized`` stream / its entries = bytes per finalized bar waiting
  for the persister. ``INFO memory`` ``used_memory`` before and after is reported too (it
  also moves with whatever else the server does).

Checks: the Redis mirror of 20 random tokens equals the engine's retained trades, and every
token is in ``tokens:active``. Keys live under ``tradepulse-bench-<hex>:`` and are deleted at
the end, also on failure.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec
import psutil
import redis

from tradepulse.adapters.redis_store import RedisStore, TokenUpdate
from tradepulse.core.market import Market
from tradepulse.core.tokenbars import TokenBars
from tradepulse.core.trade import Trade
from tradepulse.core.types import TokenId
from tradepulse.core.windows import DEFAULT_WINDOWS, AddResult, parse_windows

RESULTS = Path(__file__).parent / "results" / "memory.json"
HOUR_MS = 3_600_000
NOW_MS = 1_767_225_600_000  # the case's clock: 2026-01-01T00:00:00Z
BATCH_TOKENS = 500
BAR_GRACE_MS = 2_000


def rss() -> int:
    gc.collect()
    return int(psutil.Process(os.getpid()).memory_info().rss)


def make_trades(tokens: int, per_token: int, seed: int = 7) -> list[Trade]:
    """``per_token`` trades of each token evenly over the last hour (50 wallets a token)."""
    rnd = random.Random(seed)
    step = (HOUR_MS - 60_000) // per_token
    out = []
    for k in range(tokens):
        token = f"Tok{k:06d}pump"
        for i in range(per_token):
            ts = NOW_MS - HOUR_MS + 60_000 + i * step
            amount = rnd.uniform(1, 1e5)
            price = rnd.uniform(1e-6, 1e-3)
            out.append(
                Trade(
                    token,
                    f"W{rnd.randrange(50 * tokens):08d}wallet",
                    rnd.random() < 0.5,
                    rnd.uniform(0.01, 5),
                    amount,
                    price,
                    amount * price,
                    ts,
                    f"{uuid.UUID(int=rnd.getrandbits(128)).hex}{i}",
                    0,
                )
            )
    out.sort(key=lambda t: t.ts_ms)
    return out


def key_bytes(client: redis.Redis, keys: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(int(v or 0) for v in pipe.execute())


def update_of(market: Market, bars: dict[TokenId, TokenBars], token: TokenId) -> TokenUpdate:
    """The token's write as the worker makes it (``Pipeline``): windows, then its bars."""
    tw = market.tokens[token]
    update = TokenUpdate(token, tw.sync_view(full=True), tw.stats(NOW_MS), tw.newest_ms, NOW_MS)
    tb = bars.get(token)
    if tb is None:
        return update
    finals = tb.advance(tw.t_ms)
    values = {"bar_open_ms": tb.indicators.last_open_ms, **tb.indicators.values()}
    return msgspec.structs.replace(update, finals=finals, forming=tb.forming(tw.t_ms),
                                   indicators=values, bars_state=tb.snapshot())  # fmt: skip


def write_all(store: RedisStore, market: Market, bars: dict[TokenId, TokenBars]) -> None:
    names = list(market.tokens)
    for i in range(0, len(names), BATCH_TOKENS):
        updates = [update_of(market, bars, token) for token in names[i : i + BATCH_TOKENS]]
        assert store.write(updates) == [], "a full write was refused"
        for token in names[i : i + BATCH_TOKENS]:
            if token in bars:
                bars[token].confirm()


def apply(trades: list[Trade], with_bars: bool) -> tuple[Market, dict[TokenId, TokenBars]]:
    market = Market(parse_windows(DEFAULT_WINDOWS))
    bars: dict[TokenId, TokenBars] = {}
    for trade in trades:
        if market.add(trade, NOW_MS) is AddResult.APPLIED and with_bars:
            tb = bars.get(trade.token)
            if tb is None:
                tb = bars[trade.token] = TokenBars.new(
                    trade.token, grace_ms=BAR_GRACE_MS, horizon_ms=HOUR_MS
                )
            tb.add(trade)
    return market, bars


def run_case(tokens: int, per_token: int, with_bars: bool, url: str) -> dict[str, float]:
    trades = make_trades(tokens, per_token)
    before = rss()
    market, bars = apply(trades, with_bars)
    for token, tw in market.tokens.items():
        tw.stats(NOW_MS)
        if token in bars:
            bars[token].advance(tw.t_ms)  # every bar of the hour but the last is final
    del trades
    worker_bytes = rss() - before
    assert market.applied == tokens * per_token, market.applied

    client = redis.Redis.from_url(url)
    prefix = f"tradepulse-bench-{uuid.uuid4().hex[:12]}:"
    store = RedisStore(client, prefix=prefix)
    used_before = int(client.info("memory")["used_memory"])
    try:
        write_all(store, market, bars)
        used_after = int(client.info("memory")["used_memory"])
        names = list(market.tokens)
        lists = key_bytes(client, [store.keys(t)[0] for t in names])
        others = key_bytes(client, [k for t in names for k in store.keys(t)[1:]])
        active = key_bytes(client, [store.active_key])
        bar_keys = key_bytes(client, [k for t in names for k in store.bar_keys(t)])
        stream = key_bytes(client, [store.bars_stream_key])
        finals = int(client.xlen(store.bars_stream_key))
        assert (finals > 0) == with_bars, finals
        for token in random.Random(1).sample(names, min(20, len(names))):
            assert store.read_trades(token)[1] == market.tokens[token].retained_trades(), token
        assert client.zcard(store.active_key) == tokens
    finally:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    return {
        "tokens": tokens,
        "trades_per_token": per_token,
        "bars": with_bars,
        "worker_rss_bytes_per_1000_tokens": worker_bytes / tokens * 1000,
        "worker_rss_bytes_per_retained_trade": worker_bytes / (tokens * per_token),
        "redis_bytes_per_retained_trade": lists / (tokens * per_token),
        "redis_bytes_per_token_besides_trades": (others + active) / tokens,
        "redis_bytes_per_token_for_bars": bar_keys / tokens,
        "redis_bytes_per_finalized_bar_entry": stream / finals if finals else 0.0,
        "redis_bytes_per_1000_tokens": (lists + others + active + bar_keys) / tokens * 1000,
        "redis_used_memory_delta_bytes": used_after - used_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2_000)
    parser.add_argument("--trades-per-token", default="10,100,1000")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # "N,K,B": one case, JSON on stdout
    args = parser.parse_args()
    if args.case:
        tokens, per_token, with_bars = (int(x) for x in args.case.split(","))
        print(json.dumps(run_case(tokens, per_token, bool(with_bars), args.redis)))
        return
    cases = []
    for per_token in (int(x) for x in args.trades_per_token.split(",")):
        for with_bars in (0, 1):
            case = f"{args.tokens},{per_token},{with_bars}"
            command = [sys.executable, __file__, "--case", case, "--redis", args.redis]
            out = subprocess.run(command, capture_output=True, text=True, check=True,
                                 timeout=1800).stdout  # fmt: skip
            cases.append(json.loads(out))
            print(json.dumps(cases[-1]))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "python": platform.python_version(),
                "windows": DEFAULT_WINDOWS,
                "cases": cases,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
