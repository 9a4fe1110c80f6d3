"""Wall clock: an idle token's windows empty by themselves (maintenance sweep), with
short windows and intervals set by configuration, against the real broker and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import redis
from confluent_kafka import Producer

from tradepulse.adapters.kafka import ensure_topic
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.core.windows import WindowStats


def wait_for(check, timeout_s: float) -> WindowStats | None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found  # type: ignore[no-any-return]
        time.sleep(0.05)
    return None


def test_idle_token_windows_empty_after_their_duration(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    ensure_topic(kafka_bootstrap, topic, 1)
    env = {**os.environ, "TRADEPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "TRADEPULSE_KAFKA_TOPIC": topic, "TRADEPULSE_KAFKA_GROUP": f"g-{uuid.uuid4().hex[:8]}",
           "TRADEPULSE_REDIS_PREFIX": redis_prefix, "TRADEPULSE_CLOCK": "wall",
           "TRADEPULSE_WINDOWS": "2s,4s", "TRADEPULSE_MAINTENANCE_INTERVAL": "300ms",
           "TRADEPULSE_STALE_AFTER": "200ms", "TRADEPULSE_BATCH_WAIT_MS": "50",
           "LOG_LEVEL": "WARN", "TRADEPULSE_HTTP_PORT": "0"}  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-m", "tradepulse", "worker"], env=env,
                              stderr=subprocess.PIPE)  # fmt: skip
    store = RedisStore(redis_client, prefix=redis_prefix)
    try:
        time.sleep(4)  # let the worker join its group before the trades are stamped
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        now_ms = time.time_ns() // 1_000_000
        for i in range(5):
            trade = {"token": "IDLE", "wallet": f"w{i}", "sell_buy": "buy", "native_amount": 1,
                     "token_amount": 10, "price_usd": 2.0, "trans_time": now_ms,
                     "tx_hash": f"t{i}"}  # fmt: skip
            producer.produce(topic, key="IDLE", value=json.dumps(trade))
        assert producer.flush(10) == 0

        def window(name: str, count: int) -> WindowStats | None:
            stats = store.read_stats("IDLE").get(name)
            return stats if stats is not None and stats.trade_count == count else None

        full = wait_for(lambda: window("2s", 5), 20)
        assert full is not None and full.total_volume == 100.0
        emptied = wait_for(lambda: window("2s", 0), 10)
        assert emptied is not None
        assert emptied.updated_ms - now_ms >= 2_000  # not before the window has passed
        assert emptied.start_price == emptied.end_price == 2.0  # the last known price stays
        longer = store.read_stats("IDLE")["4s"]
        assert longer.trade_count == 5 or longer.updated_ms - now_ms >= 4_000
        assert wait_for(lambda: window("4s", 0), 10) is not None
        assert redis_client.ttl(store.keys("IDLE")[2]) <= 4  # TTL = the longest window
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=10)
    assert worker.returncode == 0, err.decode()
