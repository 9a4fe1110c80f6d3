"""Real trades all the way into PostgreSQL: Kafka → worker (bars) → Redis stream
``bars.finalized`` → persister (in the worker, ``--persist``) → ``bars_1m`` → candles.

The Binance XRP/ETH trades (30 hours) are produced to a topic; the worker on the event
clock builds their 1-minute bars and its persister thread stores the final ones. Every
stored bar must equal the reference bar built independently from the same tape (open, high,
low, close exactly; volume to 1e-9), every minute but the last (still forming: the clock
never passes its end) must be there, the stream must have nothing pending, and the 15-minute
candles must equal a pandas resample of the reference bars.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pandas as pd
import psycopg
import pytest
import redis
from confluent_kafka import Producer

from tests.support.realdata import binance_xrpeth_trades, ohlcv_1m_rows, require_real_data
from tests.support.workers import committed_total, start_worker, stop_worker, wait_until, worker_env
from tradepulse.adapters.kafka import ensure_topic
from tradepulse.adapters.postgres import BarRepository, migrate
from tradepulse.adapters.redis_store import RedisStore

pytestmark = pytest.mark.realdata
MINUTE_MS = 60_000


def produce(bootstrap: str, topic: str, wire: list[dict[str, object]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for trade in wire:
        producer.produce(topic, key=str(trade["token"]), value=json.dumps(trade))
        producer.poll(0)
    assert producer.flush(60) == 0


def stored_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM bars_1m").fetchone()
    return int(row[0]) if row else 0


def test_real_trades_reach_postgresql_as_the_reference_bars(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    require_real_data()
    migrate(pg_dsn)
    wire = binance_xrpeth_trades()
    reference = {r["open_ms"]: r for r in ohlcv_1m_rows("binance_xrpeth")}
    last_minute = max(int(t["trans_time"]) for t in wire) // MINUTE_MS * MINUTE_MS  # type: ignore[call-overload]
    expected = {m: r for m, r in reference.items() if m < last_minute}
    assert len(expected) > 1_000
    ensure_topic(kafka_bootstrap, topic, 2)
    produce(kafka_bootstrap, topic, wire)
    group = f"hist-{uuid.uuid4().hex[:8]}"
    env = worker_env(kafka_bootstrap, topic, group, redis_prefix, TRADEPULSE_PG_DSN=pg_dsn,
                     TRADEPULSE_PERSIST_GROUP=f"p-{group}")  # fmt: skip
    worker = start_worker(env, "--persist")
    try:
        wait_until(lambda: committed_total(kafka_bootstrap, topic, group, 2) == len(wire), worker)
        wait_until(lambda: stored_rows(pg_dsn) >= len(expected), worker, 60)
        stream = RedisStore(redis_client, prefix=redis_prefix).bars_stream_key
        wait_until(lambda: redis_client.xpending(stream, f"p-{group}")["pending"] == 0, worker)
    finally:
        assert stop_worker(worker) == 0

    trades_per_minute = Counter(int(t["trans_time"]) // MINUTE_MS * MINUTE_MS for t in wire)  # type: ignore[call-overload]
    with BarRepository(pg_dsn) as repo:
        stored = repo.candles("XRPETH", "1m", min(expected), last_minute)
        assert {c.open_ms for c in stored} == set(expected)
        for candle in stored:
            ref = expected[candle.open_ms]
            got = (candle.open, candle.high, candle.low, candle.close)
            assert got == (ref["open"], ref["high"], ref["low"], ref["close"]), candle.open_ms
            assert candle.volume == pytest.approx(ref["volume"], rel=1e-9)
            assert candle.trades == trades_per_minute[candle.open_ms]

        frame = pd.DataFrame(list(expected.values()))
        frame.index = pd.to_datetime(frame["open_ms"], unit="ms", utc=True)
        oracle = frame.resample("15min").agg(
            {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
        ).dropna()  # fmt: skip
        candles = repo.candles("XRPETH", "15m", min(expected), last_minute)
        # the 15-minute bucket holding the forming minute also holds final minutes before it
        candles = [c for c in candles if c.open_ms + 15 * MINUTE_MS <= last_minute]
        oracle = oracle[oracle.index < pd.Timestamp(candles[-1].open_ms, unit="ms", tz="UTC")
                        + pd.Timedelta(minutes=1)]  # fmt: skip
        assert len(candles) == len(oracle) > 100
        for candle, (_, row) in zip(candles, oracle.iterrows(), strict=True):
            assert (candle.open, candle.high, candle.low, candle.close) == (
                row["open"], row["high"], row["low"], row["close"])  # fmt: skip
            assert candle.volume == pytest.approx(row["volume"], rel=1e-9)
