"""One contract, two stores: what the API reads after a worker's write is the same whether
the write went to Redis (``RedisStore`` read by ``LiveReader``) or to the demo's memory
(``MemoryStore`` read by ``MemoryLiveReader``); candles are the same from PostgreSQL
(``BarRepository``) and from the memory."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from tradepulse.adapters.memory_store import MemoryStore
from tradepulse.adapters.postgres import BarRepository, migrate
from tradepulse.adapters.redis_store import RedisStore, TokenUpdate
from tradepulse.api.memory_reader import MemoryLiveReader
from tradepulse.api.reader import LiveReader
from tradepulse.api.sources import LiveSource
from tradepulse.core.bars import Bar
from tradepulse.core.trade import Trade
from tradepulse.core.windows import TokenWindows, parse_windows

SPECS = parse_windows("1min,5min,1hour")
T_MS = 1_750_000_000_000
REDIS_URL = os.environ.get("TRADEPULSE_REDIS_URL", "redis://127.0.0.1:6379/0")


class Backend:
    """A store the worker writes to and the reader the API uses on it."""

    def __init__(self, write: Callable[[Sequence[TokenUpdate]], list[str]],
                 reader: Callable[[], tuple[LiveSource, Callable[[], Any]]]) -> None:  # fmt: skip
        self.write = write
        self._reader = reader

    def read(self, call: Callable[[LiveSource], Coroutine[Any, Any, Any]]) -> Any:
        async def run() -> Any:
            source, close = self._reader()
            try:
                return await call(source)
            finally:
                await close()

        return asyncio.run(run())


async def _nothing() -> None:
    return None


@pytest.fixture(params=["redis", "memory"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        memory = MemoryStore(lambda: T_MS + 1_000, ttl_ms=SPECS[-1].duration_ms)
        yield Backend(memory.write, lambda: (MemoryLiveReader(memory), _nothing))
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    prefix: str = request.getfixturevalue("redis_prefix")
    store = RedisStore(client, prefix=prefix)

    def reader() -> tuple[LiveSource, Callable[[], Any]]:
        aclient = aioredis.Redis.from_url(REDIS_URL)
        return LiveReader(aclient, prefix), aclient.aclose

    yield Backend(store.write, reader)


def trades(token: str, seed: int) -> list[Trade]:
    rnd = random.Random(seed)
    out = []
    for i in range(rnd.randrange(5, 30)):
        ts = T_MS - rnd.randrange(0, 3_000_000)
        amount, price = rnd.uniform(1, 1e4), rnd.uniform(1e-6, 1e-3)
        out.append(Trade(token, f"w{rnd.randrange(7)}", rnd.random() < 0.5, 0.1, amount, price,
                         amount * price, ts, f"tx{i}", 0))  # fmt: skip
    return sorted(out, key=lambda t: t.ts_ms)


def update(token: str, seed: int, **extra: Any) -> TokenUpdate:
    tw = TokenWindows(SPECS)
    for trade in trades(token, seed):
        tw.add(trade, trade.ts_ms)
    return TokenUpdate(token, tw.sync_view(), tw.stats(T_MS), tw.newest_ms, T_MS, **extra)


BAR = Bar("ALPHA", T_MS - T_MS % 60_000, 1.0, 2.0, 0.5, 1.5, 10.0, 15.0, 9.0, 6.0, 3, 1.5)
INDICATORS: dict[str, float | None] = {"rsi_14": 55.5, "ema_20": None}


def test_live_summaries_after_a_write_hold_every_token_as_written(backend: Backend) -> None:
    updates = [update(token, i) for i, token in enumerate(("ALPHA", "BRAVO", "CHARLIE"))]
    assert backend.write(updates) == []
    summaries = backend.read(lambda s: s.summaries())
    assert sorted(item.token for item in summaries) == ["ALPHA", "BRAVO", "CHARLIE"]
    by_token = {u.token: u for u in updates}
    for item in summaries:
        assert item.windows == by_token[item.token].stats
        assert item.last_trade_ms == by_token[item.token].newest_ms


def test_live_detail_after_a_write_has_bar_indicators_and_write_time(backend: Backend) -> None:
    written = update("ALPHA", 1, forming=BAR, indicators=INDICATORS)
    backend.write([written])
    detail = backend.read(lambda s: s.detail("ALPHA"))
    assert detail is not None
    assert detail.windows == written.stats
    assert detail.bar == BAR
    assert detail.indicators == {"rsi_14": 55.5, "ema_20": None}
    assert detail.last_trade_ms == written.newest_ms
    expected = datetime.fromtimestamp(T_MS / 1000, tz=UTC).isoformat(timespec="milliseconds")
    assert detail.last_update == expected


def test_live_detail_of_an_unknown_token_is_none(backend: Backend) -> None:
    backend.write([update("ALPHA", 1)])
    assert backend.read(lambda s: s.detail("NOPE")) is None


def test_live_detail_after_a_write_without_indicators_keeps_them_and_drops_the_bar(
    backend: Backend,
) -> None:
    backend.write([update("ALPHA", 1, forming=BAR, indicators=INDICATORS)])
    backend.write([update("ALPHA", 2)])  # no forming bar, indicators unchanged
    detail = backend.read(lambda s: s.detail("ALPHA"))
    assert detail is not None
    assert detail.bar is None
    assert detail.indicators == {"rsi_14": 55.5, "ema_20": None}


def test_live_detail_after_a_partial_write_replaces_only_the_windows_written(
    backend: Backend,
) -> None:
    first, second = update("ALPHA", 1), update("ALPHA", 2)
    backend.write([first])
    backend.write([msgspec.structs.replace(second, stats={"1min": second.stats["1min"]})])
    detail = backend.read(lambda s: s.detail("ALPHA"))
    assert detail is not None
    assert detail.windows == {**first.stats, "1min": second.stats["1min"]}


def test_live_ping_answers_true(backend: Backend) -> None:
    assert backend.read(lambda s: s.ping()) is True


# --- candles: MemoryStore against BarRepository (PostgreSQL) ------------------------------

T0_MS = T_MS - T_MS % 3_600_000


def history() -> list[Bar]:
    """Seventy minutes of TOK with two gaps, and a corrected (revision 1) bar at minute 3."""
    out = []
    for m in [m for m in range(70) if m not in (4, 33)]:
        p = 1.0 + m / 10
        out.append(Bar("TOK", T0_MS + m * 60_000, p, p + 0.2, p - 0.1, p + 0.05, 100.0 + m,
                       (100.0 + m) * p, 60.0 * p, (40.0 + m) * p, 3 + m, p))  # fmt: skip
    fix = out[3]
    out.append(msgspec.structs.replace(fix, close=fix.close + 0.01, trades=fix.trades + 1,
                                       revision=1))  # fmt: skip
    return out


@pytest.fixture
def bar_repo(pg_dsn: str) -> Iterator[BarRepository]:
    migrate(pg_dsn)
    with BarRepository(pg_dsn) as repository:
        repository.upsert(history())
        yield repository


@pytest.mark.parametrize("tf", ["1m", "5m", "15m", "1h", "4h", "1d"])
def test_memory_candles_equal_the_postgres_candles(bar_repo: BarRepository, tf: str) -> None:
    memory = MemoryStore(lambda: T_MS)
    bars = history()
    for bar in bars:  # finals arrive one write at a time, as from the worker
        memory.write([msgspec.structs.replace(update("TOK", 0), finals=[bar])])
    from_ms, to_ms = T0_MS + 2 * 60_000, T0_MS + 61 * 60_000
    expected = bar_repo.candles("TOK", tf, from_ms, to_ms)
    assert expected
    assert memory.candles("TOK", tf, from_ms, to_ms) == expected


def test_memory_candles_of_an_unknown_timeframe_raise_naming_it() -> None:
    with pytest.raises(ValueError, match="'2m'"):
        MemoryStore(lambda: T_MS).candles("TOK", "2m", 0, T_MS)
