"""Re-reading the trade topic from a point in time, for ``tradepulse rebuild``.

The reader ``assign()``s partitions: it never joins the workers' consumer group and never
commits an offset (its own ``group.id`` is a throw-away name librdkafka requires; nothing
is stored under it). Where it starts and where it stops::

    partition p:  ──●──●──●──●──●──●──●──●──●──>
                       ^ start              ^ end
    start: offsets_for_times(start_ms), when the broker answers it; else the beginning,
           skipping every record stamped before start_ms
    end:   the high watermark when the rebuild began (a broker that answers offsets by
           time reports it reliably); else the first record stamped after the rebuild
           began, or no record for ``idle_ms``

A broker answers offsets by time when asking for a time in the future gives the end of
the log (-1) on every partition. The Tansu broker answers 0 for any time (and
under-reports its high watermarks), so on Tansu the scan path is taken.
"""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from tradepulse.adapters.kafka import ConsumedMessage
from tradepulse.core.errors import BrokerError, ConfigError
from tradepulse.core.types import TsMs

log = logging.getLogger(__name__)

_TIMEOUT_S = 10.0
_PROBE_AHEAD_MS = 86_400_000  # a day ahead: no record of a sane producer is stamped then


class RebuildReader:
    """The records of ``partitions`` (default: all) of ``topic`` stamped at or after
    ``start_ms``, in batches, until every partition reached its end (module docstring).
    ``by_timestamp``: ``None`` detects whether the broker answers offsets by time;
    ``False`` forces the scan from the beginning."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        start_ms: TsMs,
        now_ms: TsMs,
        *,
        partitions: list[int] | None = None,
        idle_ms: int = 5_000,
        by_timestamp: bool | None = None,
    ) -> None:
        self.topic, self.start_ms, self.began_ms, self.idle_ms = topic, start_ms, now_ms, idle_ms
        self.skipped = 0  # records stamped before start_ms
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"tradepulse-rebuild-{uuid.uuid4().hex}",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50,
        })  # fmt: skip
        try:
            self.partitions = self._partitions(partitions)
            self.by_timestamp = self._answers_by_time() if by_timestamp is None else by_timestamp
            starts, self._ends = self._starts_and_ends()
        except KafkaException as exc:
            self._consumer.close()
            raise BrokerError(f"cannot read topic {topic!r}: {exc.args[0]}") from exc
        self._open = {p for p in self.partitions if p not in self._ends or self._ends[p] > 0}
        if self.by_timestamp:
            self._open = {p for p in self._open if starts[p] < self._ends[p]}
        self._consumer.assign([TopicPartition(topic, p, starts[p]) for p in self._open])
        self._last_record = time.monotonic()

    @property
    def done(self) -> bool:
        return not self._open

    def _partitions(self, wanted: list[int] | None) -> tuple[int, ...]:
        meta = self._consumer.list_topics(self.topic, timeout=_TIMEOUT_S).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise BrokerError(f"topic {self.topic!r} does not exist")
        known = sorted(meta.partitions)
        if wanted is None:
            return tuple(known)
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise ConfigError(f"--partitions: {unknown} not in topic {self.topic!r} "
                              f"(partitions {known[0]}..{known[-1]})")  # fmt: skip
        return tuple(sorted(set(wanted)))

    def _offsets_for(self, ts_ms: TsMs) -> dict[int, int]:
        asked = [TopicPartition(self.topic, p, ts_ms) for p in self.partitions]
        found = self._consumer.offsets_for_times(asked, timeout=_TIMEOUT_S)
        return {tp.partition: tp.offset for tp in found}

    def _answers_by_time(self) -> bool:
        """Whether offsets by time are real: a time in the future is past every record."""
        future = self._offsets_for(self.began_ms + _PROBE_AHEAD_MS)
        answers = all(offset < 0 for offset in future.values())
        if not answers:
            log.warning("the broker does not answer offsets by time: reading topic=%s from "
                        "the beginning, skipping records before start_ms=%s",
                        self.topic, self.start_ms)  # fmt: skip
        return answers

    def _starts_and_ends(self) -> tuple[dict[int, int], dict[int, int]]:
        """Start offset per partition, and end offset where it is known (by time only)."""
        if not self.by_timestamp:
            return dict.fromkeys(self.partitions, OFFSET_BEGINNING), {}
        ends = {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                        timeout=_TIMEOUT_S)[1]
                for p in self.partitions}  # fmt: skip
        starts = self._offsets_for(self.start_ms)
        return {p: ends[p] if o < 0 else o for p, o in starts.items()}, ends

    def poll_batch(self, max_messages: int, max_wait_s: float) -> list[ConsumedMessage]:
        """Up to ``max_messages`` records of the open partitions stamped at or after
        ``start_ms`` (older ones are counted in ``skipped``); closes the partitions that
        reached their end."""
        raw = self._consumer.consume(num_messages=max_messages, timeout=max_wait_s)
        out: list[ConsumedMessage] = []
        for msg in raw:
            err, partition = msg.error(), msg.partition() or 0
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error topic=%s error=%s", self.topic, err)
                continue
            if partition not in self._open:
                continue
            offset, stamped = msg.offset() or 0, msg.timestamp()[1]
            if partition in self._ends and offset >= self._ends[partition]:
                self._close(partition)
                continue
            if 0 <= stamped < self.start_ms:
                self.skipped += 1
            else:
                out.append(ConsumedMessage(partition, offset, msg.key(), msg.value() or b""))
            if self._ends.get(partition, -1) == offset + 1 or stamped >= self.began_ms:
                self._close(partition)
        self._idle_check(bool(raw))
        return out

    def _idle_check(self, read: bool) -> None:
        now = time.monotonic()
        if read:
            self._last_record = now
        elif (now - self._last_record) * 1000 >= self.idle_ms:
            for partition in list(self._open):
                self._close(partition)

    def _close(self, partition: int) -> None:
        if partition in self._open:
            self._open.discard(partition)
            self._consumer.pause([TopicPartition(self.topic, partition)])

    def close(self) -> None:
        self._consumer.close()
