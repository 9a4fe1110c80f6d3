"""Kafka through confluent-kafka: topic creation and the trade producer.

confluent-kafka's errors are translated here into ``BrokerError`` (``raise ... from e``);
nothing above this module sees a ``KafkaException``.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

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
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=self._done)
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
