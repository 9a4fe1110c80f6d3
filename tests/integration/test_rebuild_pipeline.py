"""The pipeline as a rebuild runs it, against the real Redis: bars of minutes read in part
are withheld but recorded as emitted (a worker restored afterwards does not send them)."""

from __future__ import annotations

import msgspec
import redis

from tests.support.workers import final_bars
from tradepulse.adapters.kafka import ConsumedMessage
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.core.clock import NEVER, EventClock
from tradepulse.core.market import Market
from tradepulse.core.windows import DEFAULT_WINDOWS, parse_windows
from tradepulse.service.pipeline import Pipeline
from tradepulse.service.rebuild import CountedDeadLetters, bars_from_ms

MIN = 60_000
T0 = 1_760_000_040 * 1_000 - 1_760_000_040 * 1_000 % MIN  # a minute boundary


def pipeline(client: redis.Redis, prefix: str, bars_from: int = NEVER) -> Pipeline:
    p = Pipeline(Market(parse_windows(DEFAULT_WINDOWS)), EventClock(),
                 RedisStore(client, prefix=prefix), CountedDeadLetters(),
                 wall_ms=lambda: T0 + 60 * MIN, bars_from_ms=bars_from)  # fmt: skip
    p.assign([0])
    return p


def message(i: int, at_ms: int) -> ConsumedMessage:
    value = msgspec.json.encode({"token": "TOK", "wallet": f"w{i}", "sell_buy": "buy",
                                 "native_amount": 1, "token_amount": 2, "price_usd": 1 + i,
                                 "trans_time": at_ms, "tx_hash": f"t{i}"})  # fmt: skip
    return ConsumedMessage(0, i, b"TOK", value)


def test_bars_from_ms_is_the_first_whole_minute_after_the_start() -> None:
    assert [bars_from_ms(T0 + d) for d in (0, 1, MIN - 1, MIN)] == [T0, T0 + MIN, T0 + MIN,
                                                                    T0 + MIN]  # fmt: skip


def test_rebuild_pipeline_withholds_partly_read_minutes_and_a_restored_worker_too(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    first = pipeline(redis_client, redis_prefix, bars_from=T0 + 2 * MIN)
    first.process([message(i, T0 + i * 20_000) for i in range(13)])  # minutes 0..4
    assert sorted(open_ms for _, open_ms in final_bars(store, redis_client)) == [T0 + 2 * MIN]

    later = pipeline(redis_client, redis_prefix)  # a worker started after the rebuild
    later.process([message(13, T0 + 5 * MIN + 5_000)])
    emitted = sorted(open_ms for _, open_ms in final_bars(store, redis_client))
    assert emitted == [T0 + 2 * MIN, T0 + 3 * MIN, T0 + 4 * MIN]


def test_pipeline_without_bars_from_emits_every_final_minute(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    pipeline(redis_client, redis_prefix).process([message(i, T0 + i * 20_000) for i in range(13)])
    emitted = sorted(open_ms for _, open_ms in final_bars(store, redis_client))
    assert emitted == [T0, T0 + MIN, T0 + 2 * MIN]
