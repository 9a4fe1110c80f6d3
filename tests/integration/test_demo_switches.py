"""``tradepulse demo`` with a part switched to the real service: Redis (``--redis-url``),
PostgreSQL (``--pg-dsn``), Kafka (``--kafka-bootstrap``)."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack

import msgspec
import psycopg
import redis
from litestar.testing import TestClient

from tradepulse.adapters.clock import wall_now_ms
from tradepulse.adapters.kafka import TradeProducer, ensure_topic
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.adapters.synthetic import SyntheticMarket
from tradepulse.adapters.wire import encode_trade
from tradepulse.config import Settings
from tradepulse.demo import DemoOptions, build_demo

REDIS_URL = os.environ.get("TRADEPULSE_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_demo_with_redis_and_postgres_mirrors_state_bars_and_alerts_there(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    settings = Settings(redis_prefix=redis_prefix)
    options = DemoOptions(tokens=20, rate_per_s=100, backfill_s=300, redis_url=REDIS_URL,
                          pg_dsn=pg_dsn)  # fmt: skip
    with ExitStack() as stack:
        demo = build_demo(settings, options, stack)
        demo.engine.step(wall_now_ms())
        tokens = set(demo.engine.pipeline.market.tokens)
        with TestClient(demo.app) as client:
            listed = client.get("/api/v1/tokens", params={"limit": "500"}).json()
            top = listed["items"][0]["token"]
            candles = client.get(f"/api/v1/tokens/{top}/candles").json()["candles"]
    stored = RedisStore(redis_client, prefix=redis_prefix).read_stats(top)
    assert {item["token"] for item in listed["items"]} == tokens
    assert listed["items"][0]["windows"] == msgspec.to_builtins(stored)  # read from Redis
    with psycopg.connect(pg_dsn) as conn:
        bars = conn.execute("SELECT count(*) FROM bars_1m WHERE token = %s", (top,)).fetchone()
        alerts = conn.execute("SELECT count(*) FROM alerts").fetchone()
    assert bars is not None and bars[0] == len(candles) >= 3  # candles come from PostgreSQL
    assert alerts is not None and alerts[0] == len(demo.memory.alerts.list(limit=1000).alerts)


def test_demo_with_kafka_reads_the_trade_topic(kafka_bootstrap: str, topic: str) -> None:
    ensure_topic(kafka_bootstrap, topic, 2)
    now_ms = wall_now_ms()
    market = SyntheticMarket(seed=3, tokens=15, rate_per_s=50, start_ms=now_ms - 120_000)
    trades = [t for t in market.generate(2_000) if t.ts_ms <= now_ms]
    producer = TradeProducer(kafka_bootstrap, topic)
    for trade in trades:
        producer.send(trade.token, encode_trade(trade))
    assert producer.flush() == 0
    settings = Settings(kafka_topic=topic, kafka_group=f"{topic}-group")
    with ExitStack() as stack:
        demo = build_demo(settings, DemoOptions(kafka_bootstrap=kafka_bootstrap), stack)
        assert demo.engine.feed.label == f"kafka topic {topic}"
        deadline = time.monotonic() + 60
        while demo.engine.pipeline.market.applied < len(trades) and time.monotonic() < deadline:
            demo.engine.step(wall_now_ms())
            time.sleep(0.1)
        assert demo.engine.pipeline.market.applied == len(trades)
        assert set(demo.engine.pipeline.market.tokens) == {t.token for t in trades}
