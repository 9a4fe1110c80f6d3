"""``tradepulse produce`` against a real Kafka-protocol broker."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tradepulse.adapters.kafka import ensure_topic
from tradepulse.adapters.wire import decode_trade
from tradepulse.core.errors import BrokerError

NOW_MS = 1 << 62  # no trade is in the future for these checks


def produce(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tradepulse", "produce", *args],
                          capture_output=True, timeout=180, check=False)  # fmt: skip


def consume_all(
    bootstrap: str, topic: str, partitions: int, expected: int
) -> list[tuple[int, bytes | None, bytes]]:
    """Every message of ``topic`` as ``(partition, key, value)``; stops when ``expected``
    have arrived (counting, not trusting watermarks), fails after 60 s."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[tuple[int, bytes | None, bytes]] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is None:
                    out.append((msg.partition(), msg.key(), msg.value()))
    finally:
        consumer.close()
    return out


def test_synthetic_trades_keyed_by_token_one_partition_each(
    kafka_bootstrap: str, topic: str
) -> None:
    before_ms = int(time.time() * 1000)
    result = produce("--synthetic", "2000", "--topic", topic, "--bootstrap", kafka_bootstrap,
                     "--partitions", "4")  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert b"2,000 delivered, 0 failed" in result.stderr
    messages = consume_all(kafka_bootstrap, topic, 4, 2000)
    assert len(messages) == 2000
    partitions_of: dict[str, set[int]] = defaultdict(set)
    times_of: dict[str, list[int]] = defaultdict(list)
    for partition, key, value in messages:
        trade = decode_trade(value, NOW_MS)
        assert key == trade.token.encode()
        partitions_of[trade.token].add(partition)
        times_of[trade.token].append(trade.ts_ms)
    assert all(len(p) == 1 for p in partitions_of.values())
    assert len({p for ps in partitions_of.values() for p in ps}) > 1  # spread over partitions
    assert all(t == sorted(t) for t in times_of.values())  # per-token order kept
    newest = max(max(t) for t in times_of.values())
    assert before_ms - 3_000 <= newest <= int(time.time() * 1000)  # ends about now, not later


def test_file_lines_sent_unchanged_bad_ones_without_key(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    good = (
        b'{"token":"A","wallet":"w","sell_buy":"buy","native_amount":1,"token_amount":1,'
        b'"price_usd":1,"trans_time":1700000000000,"tx_hash":"h"}'
    )
    path = tmp_path / "t.jsonl"
    path.write_bytes(good + b"\n\nnot json\n" + good.replace(b'"h"', b'"h2"') + b"\n")
    result = produce(
        str(path), "--topic", topic, "--bootstrap", kafka_bootstrap, "--partitions", "1"
    )
    assert result.returncode == 0, result.stderr.decode()
    messages = consume_all(kafka_bootstrap, topic, 1, 3)
    assert [(k, v) for _, k, v in messages] == [
        (b"A", good),
        (None, b"not json"),
        (b"A", good.replace(b'"h"', b'"h2"')),
    ]


def test_ensure_topic_creates_once(kafka_bootstrap: str, topic: str) -> None:
    assert ensure_topic(kafka_bootstrap, topic, 2) is True
    assert ensure_topic(kafka_bootstrap, topic, 2) is False


def test_unreachable_broker_is_a_clear_error() -> None:
    with pytest.raises(BrokerError, match=re.escape("cannot reach Kafka at 127.0.0.1:1")):
        ensure_topic("127.0.0.1:1", "t", 1)
    result = produce("--synthetic", "5", "--bootstrap", "127.0.0.1:1", "--topic", "t")
    assert result.returncode == 2 and b"cannot reach Kafka" in result.stderr
