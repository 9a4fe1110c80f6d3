"""Kafka through confluent-kafka: topic creation, the trade producer, the consumer-group
reader of the trade topic and the dead-letter producer.

confluent-kafka's errors are translated here into ``BrokerError`` (``raise ... from e``);
nothing above this module sees a ``KafkaException``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import overload

import msgspec
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tradepulse import metrics
from tradepulse.core.errors import BrokerError

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 10.0


def _check_reachable(admin: AdminClient, bootstrap: str) -> None:
    """Raise ``BrokerError`` unless the cluster answers a metadata request in time."""
    try:
        admin.list_topics(timeout=_CONNECT_TIMEOUT_S)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc.args[0]}") from exc


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> bool:
    """Create ``topic`` with ``partitions`` partitions unless it exists. Returns whether it
    was created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    _check_reachable(admin, bootstrap)
    if topic in admin.list_topics(timeout=_CONNECT_TIMEOUT_S).topics:
        return False
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic]
    try:
        future.result(timeout=_CONNECT_TIMEOUT_S)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise BrokerError(f"cannot create topic {topic!r}: {exc.args[0]}") from exc
    log.info("created topic topic=%s partitions=%s", topic, partitions)
    return True


class TradeProducer:
    """Sends messages keyed by token (so a token's trades share a partition, in order) and
    counts what the broker acknowledged and what it refused."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.delivered = 0
        self.failed = 0
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 20,
                "batch.size": 1 << 20,
                "compression.type": "lz4",
                "enable.idempotence": False,
            }
        )
        _check_reachable(AdminClient({"bootstrap.servers": bootstrap}), bootstrap)

    def send(self, key: str | None, value: bytes) -> None:
        """Queue one message (waits for room when the local queue is full)."""
        self.send_raw(key, value, None)

    def send_raw(
        self,
        key: str | bytes | None,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]] | None,
    ) -> None:
        """``send`` with any key and optional headers."""
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, headers=headers, on_delivery=self._done
                )
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait for every queued message; returns how many are still undelivered."""
        remaining: int = self._producer.flush(timeout_s)
        return remaining

    def _done(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            log.warning("delivery failed topic=%s error=%s", self.topic, err)


class ConsumedMessage(msgspec.Struct, frozen=True, gc=False):
    """One message read from the trade topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes


class MessageBatch(Sequence[ConsumedMessage]):
    """Messages read together, held as four parallel lists (``partitions``, ``offsets``,
    ``keys``, ``values``): a batch of thousands is handled column by column, and a
    ``ConsumedMessage`` is only made for a message asked for by index (one to dead-letter).
    Iterating yields ``ConsumedMessage`` objects, so a batch reads like a list of them."""

    __slots__ = ("keys", "offsets", "partitions", "values")

    def __init__(
        self,
        partitions: list[int],
        offsets: list[int],
        keys: list[bytes | None],
        values: list[bytes],
    ) -> None:
        if not len(partitions) == len(offsets) == len(keys) == len(values):
            raise ValueError("the columns of a message batch must have one length")
        self.partitions = partitions
        self.offsets = offsets
        self.keys = keys
        self.values = values

    @classmethod
    def of(cls, messages: Iterable[ConsumedMessage]) -> MessageBatch:
        """The batch of ``messages`` (in their order)."""
        if isinstance(messages, MessageBatch):
            return messages
        msgs = list(messages)
        return cls([m.partition for m in msgs], [m.offset for m in msgs],
                   [m.key for m in msgs], [m.value for m in msgs])  # fmt: skip

    @classmethod
    def read(cls, raw: list[Message]) -> MessageBatch:
        """The batch of confluent-kafka messages without an error: a column is one ``map``
        of a ``Message`` method (no Python code per message). A missing partition or
        offset reads as 0 and a missing (null) value as ``b""``, as one by one."""
        partitions = list(map(Message.partition, raw))
        offsets = list(map(Message.offset, raw))
        values = list(map(Message.value, raw))
        if None in partitions:
            partitions = [p or 0 for p in partitions]
        if None in offsets:
            offsets = [o or 0 for o in offsets]
        if None in values:
            values = [v or b"" for v in values]
        return cls(partitions, offsets, list(map(Message.key, raw)), values)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> ConsumedMessage: ...

    @overload
    def __getitem__(self, index: slice) -> MessageBatch: ...

    def __getitem__(self, index: int | slice) -> ConsumedMessage | MessageBatch:
        if isinstance(index, slice):
            return MessageBatch(self.partitions[index], self.offsets[index], self.keys[index],
                                self.values[index])  # fmt: skip
        return ConsumedMessage(self.partitions[index], self.offsets[index], self.keys[index],
                               self.values[index])  # fmt: skip

    def __iter__(self) -> Iterator[ConsumedMessage]:
        return map(ConsumedMessage, self.partitions, self.offsets, self.keys, self.values)

    def next_offsets(self) -> dict[int, int]:
        """The offset after the last message of each partition (what to commit), in the
        order the partitions first appear."""
        return {p: o + 1 for p, o in dict(zip(self.partitions, self.offsets, strict=True)).items()}


# Short session and heartbeat: a member that dies is noticed in seconds, and joining a new
# group is quick (measured with the Tansu broker: first message after 3 s instead of 23 s).
#: How the trade consumer fetches: a broker holding no new message answers within 5 ms, so a
#: trade produced to an idle partition waits at most that long in the broker. When a
#: partition's local queue is full (librdkafka's ``queued.min.messages``, 100,000), its next
#: fetch is tried again after 10 ms instead of librdkafka's default 1 s: with the default a
#: consumer reading a backlog drains its queue, then idles for most of that second (measured
#: with a consumer doing nothing but take the values: ~200,000 messages/s with the default,
#: 480,000-750,000 with 10-50 ms; see docs/benchmarks.md, "the broker's ceiling").
CONSUMER_FETCH: dict[str, object] = {"fetch.wait.max.ms": 5, "fetch.queue.backoff.ms": 10}
_GROUP_DEFAULTS: dict[str, object] = {
    "session.timeout.ms": 6_000,
    "heartbeat.interval.ms": 300,
    "max.poll.interval.ms": 60_000,
    "topic.metadata.refresh.interval.ms": 5_000,
    **CONSUMER_FETCH,
}


class TradeConsumer:
    """A consumer-group member reading the trade topic in batches. Offsets are committed
    only by ``commit`` (never automatically): the caller commits after its writes."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        *,
        on_assign: Callable[[list[int]], None] | None = None,
        on_revoke: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.topic = topic
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._pending: dict[int, int] = {}  # offsets committed without waiting
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "statistics.interval.ms": 5_000,
                "stats_cb": self._statistics,
                **_GROUP_DEFAULTS,
            }
        )
        _check_reachable(AdminClient({"bootstrap.servers": bootstrap}), bootstrap)
        self._consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _statistics(self, raw: str) -> None:
        """librdkafka's statistics (every 5 s): the consumer lag of each partition read."""
        try:
            partitions = msgspec.json.decode(raw)["topics"][self.topic]["partitions"]
            for pid, info in partitions.items():
                lag = info.get("consumer_lag", -1)
                if int(pid) >= 0 and isinstance(lag, int) and lag >= 0:
                    metrics.CONSUMER_LAG.labels(pid).set(lag)
        except (KeyError, TypeError, ValueError, msgspec.DecodeError):
            return  # not reading the topic yet

    def topic_partitions(self) -> list[int] | None:
        """Every partition of the topic, from the cluster's metadata (``None`` when it
        cannot be read now)."""
        try:
            found = self._consumer.list_topics(self.topic, timeout=_CONNECT_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("partitions of topic=%s unknown: %s", self.topic, exc)
            return None
        meta = found.topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return None
        return sorted(meta.partitions)

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._on_assign is not None:
            self._on_assign([p.partition for p in partitions])

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit_pending([p.partition for p in partitions])
        if self._on_revoke is not None:
            self._on_revoke([p.partition for p in partitions])

    def poll_batch(self, max_messages: int, max_wait_s: float) -> MessageBatch:
        """Up to ``max_messages`` messages: all that are already fetched (never waiting
        while some are), else the first to arrive within ``max_wait_s`` with whatever came
        with it. Batches so grow with the backlog (throughput) and stay small when the
        worker keeps up (latency: no message waits for others to fill a batch).

        The cyclic garbage collector is off meanwhile: confluent-kafka's ``Message`` is a
        tracked object, so a batch of 50,000 of them set off collections that traversed
        every one of them (again at each older generation), although none outlives the
        call: their columns taken, they are freed by reference counting on return, which
        gives their allocations back to the collector's count. Measured with the worker's
        thresholds: 1,530 fewer instructions per message, consume and columns 22-26 %
        faster (docs/benchmarks.md)."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._poll(max_messages, max_wait_s)  # its messages are freed here
        finally:
            if enabled:
                gc.enable()

    def _poll(self, max_messages: int, max_wait_s: float) -> MessageBatch:
        consume = self._consumer.consume
        raw = consume(num_messages=max_messages, timeout=0)
        if not raw:
            raw = consume(num_messages=1, timeout=max_wait_s)
            if raw and max_messages > 1:
                raw += consume(num_messages=max_messages - 1, timeout=0)
        errors = list(map(Message.error, raw))
        if errors.count(None) != len(errors):
            for err in errors:
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error topic=%s error=%s", self.topic, err)
            raw = [msg for msg, err in zip(raw, errors, strict=True) if err is None]
        return MessageBatch.read(raw)

    def commit(self, next_offsets: dict[int, int], *, wait: bool = False) -> None:
        """Commit the next offset to read per partition. Called only after the batch's
        writes were acknowledged, so the commit need not be waited for (``wait=False``):
        if it is lost, the batch is read again and changes nothing (idempotent state);
        librdkafka sends commits in order. ``close`` and revocations commit what is
        pending synchronously."""
        if not next_offsets:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in next_offsets.items()]
        self._pending.update(next_offsets)
        try:
            if wait:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            raise BrokerError(f"offset commit failed: {exc.args[0]}") from exc
        if wait:
            self._pending.clear()

    def _commit_pending(self, partitions: list[int] | None = None) -> None:
        """Wait for the commit of what was processed (all, or of ``partitions``)."""
        pending = {p: o for p, o in self._pending.items() if partitions is None or p in partitions}
        if not pending:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in pending.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("final offset commit failed (the batch will be read again): %s", exc)
        for p in pending:
            self._pending.pop(p, None)

    def pause(self) -> None:
        """Stop fetching from every assigned partition (membership is kept by ``idle``)."""
        self._consumer.pause(self._consumer.assignment())

    def resume(self) -> None:
        self._consumer.resume(self._consumer.assignment())

    def idle(self, seconds: float) -> None:
        """Serve the group protocol (heartbeats, rebalances) for ``seconds`` while paused;
        anything fetched before the pause is dropped here and read again later (it is not
        committed)."""
        self._consumer.consume(num_messages=1, timeout=seconds)

    def close(self) -> None:
        self._commit_pending()
        self._consumer.close()


class DeadLetterProducer:
    """Writes rejected messages to the dead-letter topic: the original key and value, and
    headers naming the reason, the detail, the source partition and offset, and the time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = TradeProducer(bootstrap, topic)

    def send(self, msg: ConsumedMessage, reason: str, detail: str, at_ms: int) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            ("reason", reason.encode()),
            ("detail", detail.encode()),
            ("source_partition", str(msg.partition).encode()),
            ("source_offset", str(msg.offset).encode()),
            ("rejected_ms", str(at_ms).encode()),
        ]
        self._producer.send_raw(msg.key, msg.value, headers)

    def flush(self, timeout_s: float = 30.0) -> int:
        return self._producer.flush(timeout_s)
