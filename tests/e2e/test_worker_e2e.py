"""The worker end to end: real trades on a real Kafka-protocol broker, through the worker
process, into the real Redis; every window equals the brute-force oracle.

Binance BTC/USDT and ETH/USDT trades (34,419, the same 10.8 minutes) plus 35 malformed
messages are produced to a 4-partition topic; a ``tradepulse worker`` on the event clock
consumes them; then Redis must hold, per token, the statistics the oracle computes at the
token's ``updated_ms``, the dead-letter topic the 35 rejects, and the group's committed
offsets the end of every partition. SIGTERM stops the worker cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import msgspec
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tests.support.bruteforce import T, close, window_stats
from tests.support.realdata import (
    binance_btcusdt_trades,
    binance_ethusdt_trades,
    require_real_data,
)
from tradepulse.adapters.kafka import ensure_topic
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.core.windows import DEFAULT_WINDOWS, parse_windows

pytestmark = pytest.mark.realdata
SPECS = parse_windows(DEFAULT_WINDOWS)
BAD = [b"not json", b'{"token": "X"}', b'{"token": 5, "wallet": "w"}']


def produce(bootstrap: str, topic: str, wire: list[dict[str, object]]) -> dict[int, int]:
    """Send the trades (keyed by token) and a bad message after every 1,000th; returns
    the messages per partition."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    per_partition: dict[int, int] = defaultdict(int)

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        per_partition[msg.partition()] += 1  # type: ignore[attr-defined]

    for i, trade in enumerate(wire):
        producer.produce(
            topic, key=str(trade["token"]), value=json.dumps(trade), on_delivery=delivered
        )
        if i % 1000 == 0:
            producer.poll(0)
            producer.produce(topic, key=b"bad", value=BAD[(i // 1000) % 3], on_delivery=delivered)
    assert producer.flush(60) == 0
    return dict(per_partition)


def committed(bootstrap: str, topic: str, group: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}


def count_messages(bootstrap: str, topic: str, expected: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    seen, deadline = 0, time.monotonic() + 30
    while seen < expected and time.monotonic() < deadline:
        seen += sum(1 for m in consumer.consume(100, 0.5) if m.error() is None)
    seen += sum(1 for m in consumer.consume(100, 1.0) if m.error() is None)
    consumer.close()
    return seen


def test_worker_mirrors_real_trades_in_redis_exactly(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    require_real_data()
    wire = sorted(
        binance_btcusdt_trades() + binance_ethusdt_trades(), key=lambda t: t["trans_time"]
    )
    sent = produce(kafka_bootstrap, topic, wire) if ensure_topic(kafka_bootstrap, topic, 4) else {}
    group = f"worker-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TRADEPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "TRADEPULSE_KAFKA_TOPIC": topic, "TRADEPULSE_KAFKA_GROUP": group,
           "TRADEPULSE_REDIS_PREFIX": redis_prefix, "TRADEPULSE_CLOCK": "event",
           "TRADEPULSE_BATCH_WAIT_MS": "50", "LOG_LEVEL": "WARN",
           "TRADEPULSE_HTTP_PORT": "0"}  # fmt: skip
    worker = subprocess.Popen([sys.executable, "-m", "tradepulse", "worker"], env=env,
                              stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if committed(kafka_bootstrap, topic, group, 4) == sent:
                break
            assert worker.poll() is None, "the worker exited early"
            time.sleep(1)
        assert committed(kafka_bootstrap, topic, group, 4) == sent
    finally:
        worker.send_signal(signal.SIGTERM)
        _, raw_err = worker.communicate(timeout=10)  # the batch in hand is finished first
    stderr = raw_err.decode()
    assert worker.returncode == 0, stderr
    n_bad = (len(wire) + 999) // 1000  # one after every 1,000th trade
    assert f"{len(wire):,} trades applied, {n_bad} rejected" in stderr
    assert count_messages(kafka_bootstrap, f"{topic}.dlq", n_bad) == n_bad

    store = RedisStore(redis_client, prefix=redis_prefix)
    history: dict[str, list[T]] = defaultdict(list)
    for t in wire:
        amount, price = float(t["token_amount"]), float(t["price_usd"])  # type: ignore[arg-type]
        history[str(t["token"])].append(T(int(t["trans_time"]), price, amount,  # type: ignore[call-overload]
                                          float(t["native_amount"]), t["sell_buy"] == "buy",  # type: ignore[arg-type]
                                          str(t["wallet"])))  # fmt: skip
    compared = 0
    for token, trades in history.items():
        stats = store.read_stats(token)
        assert set(stats) == {s.name for s in SPECS}
        for spec in SPECS:
            got = msgspec.structs.asdict(stats[spec.name])
            want = window_stats(trades, got["updated_ms"], spec.duration_ms)
            for field, value in want.items():
                assert close(got[field], value), (token, spec.name, field, got[field], value)
                compared += 1
        assert stats["1hour"].last_trade_ms == max(t.ts_ms for t in trades)
        assert_keys_as_specified(redis_client, store, token, max(t.ts_ms for t in trades))
    assert compared == 2 * 5 * 19


def assert_keys_as_specified(
    client: redis.Redis, store: RedisStore, token: str, newest_ms: int
) -> None:
    """ARCHITECTURE §5: names (with the ``{addr}`` hash tag), types, TTL = longest window,
    ``indices`` per window plus ``base``, and the token in ``tokens:active``."""
    keys = store.keys(token)
    parts = ("trades", "indices", "aggregates", "last_update")
    assert keys == tuple(f"{store_prefix(store)}token:{{{token}}}:{part}" for part in parts)
    assert [client.type(k) for k in keys] == [b"list", b"hash", b"hash", b"string"]
    assert all(3500 <= client.ttl(k) <= 3600 for k in keys), [client.ttl(k) for k in keys]
    indices = {k.decode() for k in client.hkeys(keys[1])}  # type: ignore[union-attr]
    assert indices == {s.name for s in SPECS} | {"base"}
    assert client.zscore(store.active_key, token) == newest_ms
    assert client.get(keys[3]).decode().endswith("+00:00")  # type: ignore[union-attr]


def store_prefix(store: RedisStore) -> str:
    return store.active_key.removesuffix("tokens:active")
