"""The consumer-group reader and the dead-letter producer against a real broker."""

from __future__ import annotations

import gc
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tradepulse.adapters.kafka import (
    ConsumedMessage,
    DeadLetterProducer,
    TradeConsumer,
    ensure_topic,
)


def produce_values(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, value in enumerate(values):
        producer.produce(topic, key=f"k{i % 9}", value=value)
    assert producer.flush(30) == 0


def read_until(consumer: TradeConsumer, count: int, timeout_s: float) -> list[ConsumedMessage]:
    """Batches until ``count`` messages arrived (counting, not watermarks)."""
    out: list[ConsumedMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        out += consumer.poll_batch(500, 0.5)
    return out


def test_group_reads_everything_then_resumes_after_its_commit(
    kafka_bootstrap: str, topic: str
) -> None:
    ensure_topic(kafka_bootstrap, topic, 4)
    produce_values(kafka_bootstrap, topic, [f"a{i}".encode() for i in range(500)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    assigned: list[list[int]] = []
    known: list[list[int] | None] = []

    def on_assign(partitions: list[int]) -> None:
        assigned.append(partitions)
        known.append(first.topic_partitions())  # as the worker asks, inside the callback

    first = TradeConsumer(kafka_bootstrap, topic, group, on_assign=on_assign)
    got = read_until(first, 500, 60)
    assert sorted(m.value for m in got) == sorted(f"a{i}".encode() for i in range(500))
    assert sorted(p for ps in assigned for p in ps) == [0, 1, 2, 3]
    assert known and all(k == [0, 1, 2, 3] for k in known)
    next_offsets: dict[int, int] = {}
    for m in got:
        next_offsets[m.partition] = max(next_offsets.get(m.partition, 0), m.offset + 1)
    first.commit(next_offsets)
    first.close()
    produce_values(kafka_bootstrap, topic, [f"b{i}".encode() for i in range(50)])
    second = TradeConsumer(kafka_bootstrap, topic, group)
    again = read_until(second, 50, 60)
    again += second.poll_batch(500, 2.0)  # anything beyond the 50 would show up here
    second.close()
    assert sorted(m.value for m in again) == sorted(f"b{i}".encode() for i in range(50))


def test_a_batch_sets_off_no_collection_and_leaves_the_collector_as_it_was(
    kafka_bootstrap: str, topic: str
) -> None:
    """The 6,000 ``Message`` objects read are tracked by the collector; with a young
    generation of 100, reading them would run dozens of collections if the collector were
    on while they exist. It is off during ``poll_batch`` and on again after (or stays off
    when it was off)."""
    ensure_topic(kafka_bootstrap, topic, 4)
    produce_values(kafka_bootstrap, topic, [f"v{i}".encode() * 20 for i in range(6_000)])
    consumer = TradeConsumer(kafka_bootstrap, topic, f"g-{uuid.uuid4().hex[:8]}")
    collections: list[str] = []

    def seen(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(phase)

    thresholds = gc.get_threshold()
    values: list[bytes] = []
    gc.collect()
    gc.set_threshold(100, 10, 10)
    gc.callbacks.append(seen)
    try:
        deadline = time.monotonic() + 60
        while len(values) < 6_000 and time.monotonic() < deadline:
            values += consumer.poll_batch(6_000, 0.5).values
            assert gc.isenabled()
        counted = gc.get_count()[0]
        gc.disable()
        values += consumer.poll_batch(10, 0.1).values  # nothing more: still off after
        assert not gc.isenabled()
    finally:
        gc.enable()  # whatever failed: the rest of the session runs with the collector on
        gc.callbacks.remove(seen)
        gc.set_threshold(*thresholds)
        consumer.close()
    assert sorted(values) == sorted(f"v{i}".encode() * 20 for i in range(6_000))
    assert collections == []
    assert counted < 100  # the messages' allocations were given back as they were freed


def test_dead_letter_keeps_original_and_names_the_reason(kafka_bootstrap: str, topic: str) -> None:
    dlq = f"{topic}.dlq"
    ensure_topic(kafka_bootstrap, dlq, 1)
    producer = DeadLetterProducer(kafka_bootstrap, dlq)
    bad = ConsumedMessage(partition=3, offset=41, key=b"TOKEN", value=b'{"token": 1}')
    producer.send(bad, "token:type", "Expected `str`, got `int`", 1_750_000_000_123)
    producer.send(ConsumedMessage(0, 7, None, b"not json"), "$:malformed_json", "invalid", 5)
    assert producer.flush() == 0
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "unused"})
    reader.assign([TopicPartition(dlq, 0, OFFSET_BEGINNING)])
    messages = []
    deadline = time.monotonic() + 30
    while len(messages) < 2 and time.monotonic() < deadline:
        messages += [m for m in reader.consume(10, 0.5) if m.error() is None]
    reader.close()
    first, second = messages
    assert (first.key(), first.value()) == (b"TOKEN", b'{"token": 1}')
    assert dict(first.headers() or []) == {
        "reason": b"token:type",
        "detail": b"Expected `str`, got `int`",
        "source_partition": b"3",
        "source_offset": b"41",
        "rejected_ms": b"1750000000123",
    }
    assert (second.key(), second.value()) == (None, b"not json")
    assert dict(second.headers() or [])["reason"] == b"$:malformed_json"
