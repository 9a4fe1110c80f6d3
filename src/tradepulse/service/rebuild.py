"""``tradepulse rebuild``: the Redis state of a topic's tokens, rebuilt from Kafka.

For the day Redis loses its data while the workers cannot refill it (they restarted too):
the records of the last ``since`` are read again (``adapters/kafka_rebuild``) and put
through the worker's own ``Pipeline`` (decode, windows, bars, the same Redis writes, the
configured clock), then every token is written once more at the final clock (the
maintenance sweep's write), so each is evaluated where a worker would have left it.

What a rebuild does not do:

* **No offsets are committed**, under the workers' group or any other: workers started
  afterwards continue from their own committed offsets, restore each token from the
  rebuilt mirror, and find the records they read again to be duplicates.
* **No dead letters**: the workers sent the rejected records already; they are counted.
* **No rule scans, so no alerts**: alerts of the past hour were delivered when they
  fired. The scanner state (cooldowns, edge samples) lost with Redis is not rebuilt: a
  level rule may fire once more after the workers restart (an edge rule does not: its
  first evaluation never fires).
* **Bars**: those that become final during the rebuild are appended to ``bars.finalized``
  again with the revisions of a fresh builder; PostgreSQL keeps the higher revision
  (equal content), so the history is unchanged. Bars of minutes that began before the
  start (partly read) are withheld (``bars_from_ms``), and recorded as emitted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import msgspec

from tradepulse import tracing
from tradepulse.adapters.kafka import ConsumedMessage
from tradepulse.core.bars import MINUTE_MS
from tradepulse.core.types import TsMs
from tradepulse.service.pipeline import Pipeline

log = logging.getLogger(__name__)


class RebuildSource(Protocol):
    partitions: tuple[int, ...]
    skipped: int
    by_timestamp: bool

    @property
    def done(self) -> bool: ...

    def poll_batch(self, max_messages: int, max_wait_s: float) -> list[ConsumedMessage]: ...


class CountedDeadLetters:
    """Rejected records are only counted: the workers dead-lettered them already."""

    def __init__(self) -> None:
        self.count = 0

    def send(self, msg: ConsumedMessage, reason: str, detail: str, at_ms: int) -> None:
        self.count += 1

    def flush(self, timeout_s: float = 0.0) -> int:
        return 0


class RebuildSummary(msgspec.Struct, frozen=True):
    partitions: list[int]
    messages: int  # records applied (rejected ones included)
    skipped: int  # records stamped before the start
    tokens: int  # tokens written
    seconds: float
    by_timestamp: bool  # offsets found by time (else the topic was scanned from the start)


def bars_from_ms(start_ms: TsMs) -> TsMs:
    """The first minute wholly after ``start_ms``: earlier bars may miss trades."""
    return start_ms - start_ms % MINUTE_MS + (MINUTE_MS if start_ms % MINUTE_MS else 0)


def rebuild(
    source: RebuildSource,
    pipeline: Pipeline,
    *,
    batch_size: int = 10_000,
    on_progress: Callable[[int], None] | None = None,
) -> RebuildSummary:
    """Read ``source`` to its end through ``pipeline`` (every batch written to Redis
    before the next is read), then write every token at the final clock. Raises
    ``StoreUnavailableError`` when Redis fails (a rebuild is simply run again)."""
    started = time.perf_counter()
    pipeline.assign(list(source.partitions))
    messages = 0
    while not source.done:
        batch = source.poll_batch(batch_size, 0.2)
        if batch:
            with tracing.span("rebuild.batch", {"tradepulse.trades": len(batch)}):
                pipeline.process(batch)
            messages += len(batch)
            if on_progress is not None:
                on_progress(messages)
    pipeline.sweep(0)
    summary = RebuildSummary(list(source.partitions), messages, source.skipped,
                             len(pipeline.market.tokens), time.perf_counter() - started,
                             source.by_timestamp)  # fmt: skip
    log.info("rebuild done partitions=%s messages=%s skipped=%s tokens=%s seconds=%.3f",
             summary.partitions, messages, summary.skipped, summary.tokens,
             summary.seconds)  # fmt: skip
    return summary
