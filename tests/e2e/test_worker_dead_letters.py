"""1,000 malformed messages of 12 kinds mixed into good trades: every one reaches the
dead-letter topic with its reason and original bytes, every good trade is applied."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tests.support.workers import committed_total, start_worker, stop_worker, wait_until, worker_env
from tradepulse.adapters.kafka import ensure_topic
from tradepulse.adapters.redis_store import RedisStore

GOOD = {"token": "T", "wallet": "w", "sell_buy": "buy", "native_amount": 1.0,
        "token_amount": 5.0, "price_usd": 0.2, "tx_hash": "h"}  # fmt: skip
KINDS: list[tuple[str, object]] = [
    ("$:malformed_json", b"{not json"),
    ("$:type", b"[1, 2, 3]"),
    ("token:missing", {k: v for k, v in GOOD.items() if k != "token"}),
    ("wallet:length", {**GOOD, "wallet": ""}),
    ("sell_buy:enum", {**GOOD, "sell_buy": "hold"}),
    ("price_usd:range", {**GOOD, "price_usd": -1}),
    ("token_amount:range", {**GOOD, "token_amount": 0}),
    ("native_amount:type", {**GOOD, "native_amount": "1"}),
    ("trans_time:time_format", {**GOOD, "trans_time": "yesterday"}),
    ("trans_time:timezone", {**GOOD, "trans_time": "2025-01-01T00:00:00"}),
    ("trans_time:future", {**GOOD, "trans_time": 4_000_000_000_000}),
    ("event_index:range", {**GOOD, "event_index": -3}),
]


def malformed(kind: int, i: int, now_ms: int) -> tuple[str, bytes]:
    """The reason and bytes of a bad message of kind ``kind`` (unique tx hash ``b<i>``)."""
    reason, body = KINDS[kind]
    if isinstance(body, bytes):
        return reason, body
    assert isinstance(body, dict)
    return reason, json.dumps({"trans_time": now_ms, **body, "tx_hash": f"b{i}"}).encode()


def test_every_malformed_message_reaches_the_dlq_with_its_reason(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    ensure_topic(kafka_bootstrap, topic, 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    expected: Counter[str] = Counter()
    now = time.time_ns() // 1_000_000
    for i in range(3_000):
        if i % 3 == 0 and i // 3 < 1_000:
            reason, value = malformed((i // 3) % len(KINDS), i, now)
            expected[reason] += 1
            producer.produce(topic, key=f"k{i % 7}", value=value)
        else:
            trade = {**GOOD, "token": f"T{i % 5}", "tx_hash": f"g{i}",
                     "trans_time": now - 60_000 + i}  # fmt: skip
            producer.produce(topic, key=str(trade["token"]), value=json.dumps(trade))
    assert producer.flush(30) == 0
    assert sum(expected.values()) == 1_000 and len(expected) == len(KINDS)
    group = f"dlq-{uuid.uuid4().hex[:8]}"
    worker = start_worker(worker_env(kafka_bootstrap, topic, group, redis_prefix,
                                     TRADEPULSE_CLOCK="wall"))  # fmt: skip
    try:
        wait_until(lambda: committed_total(kafka_bootstrap, topic, group, 2) == 3_000, worker)
    finally:
        assert stop_worker(worker) == 0
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "unused"})
    reader.assign([TopicPartition(f"{topic}.dlq", 0, OFFSET_BEGINNING)])
    reasons: Counter[str] = Counter()
    deadline = time.monotonic() + 30
    while sum(reasons.values()) < 1_000 and time.monotonic() < deadline:
        for msg in reader.consume(500, 0.5):
            if msg.error() is None:
                reasons[dict(msg.headers() or [])["reason"].decode()] += 1  # type: ignore[union-attr]
    reader.close()
    assert reasons == expected
    store = RedisStore(redis_client, prefix=redis_prefix)
    applied = sum(store.read_stats(f"T{k}")["1hour"].trade_count for k in range(5))
    assert applied == 2_000  # every good trade
