"""A batch of consumed messages held column-wise reads like the list of messages it holds."""

from __future__ import annotations

import pytest
from confluent_kafka import Message

from tradepulse.adapters.kafka import ConsumedMessage, MessageBatch

MESSAGES = [
    ConsumedMessage(2, 40, b"A", b"a0"),
    ConsumedMessage(0, 7, None, b"b0"),
    ConsumedMessage(2, 41, b"A", b"a1"),
    ConsumedMessage(1, 3, b"C", b""),
    ConsumedMessage(0, 8, b"B", b"b1"),
]


def test_batch_of_messages_iterates_indexes_and_slices_as_the_list() -> None:
    batch = MessageBatch.of(MESSAGES)
    assert len(batch) == 5
    assert list(batch) == MESSAGES
    assert [batch[i] for i in range(-5, 5)] == MESSAGES + MESSAGES
    assert list(batch[1:4]) == MESSAGES[1:4]
    assert batch.keys == [b"A", None, b"A", b"C", b"B"]
    assert MessageBatch.of(batch) is batch
    with pytest.raises(IndexError):
        batch[5]


def test_next_offsets_are_after_each_partitions_last_message_in_first_seen_order() -> None:
    offsets = MessageBatch.of(MESSAGES).next_offsets()
    expected: dict[int, int] = {}
    for m in MESSAGES:
        expected[m.partition] = m.offset + 1
    assert offsets == expected
    assert list(offsets) == [2, 0, 1]
    assert MessageBatch.of([]).next_offsets() == {}


def test_read_from_kafka_messages_takes_every_field_and_a_null_value_as_empty() -> None:
    raw = [
        Message(topic="t", partition=m.partition, offset=m.offset, key=m.key, value=m.value)
        for m in MESSAGES
    ]
    raw.append(Message(topic="t", partition=3, offset=0, key=b"K", value=None))
    batch = MessageBatch.read(raw)
    assert list(batch) == [*MESSAGES, ConsumedMessage(3, 0, b"K", b"")]
    assert MessageBatch.read([]).values == []


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        MessageBatch([0], [1, 2], [None], [b""])
