"""The bar persister: finalized bars from a stream into the history store, at least once.

One round, repeated until ``stop`` is set::

    read ≤ batch_size entries ──> split: bars | malformed ──> sink.upsert(bars), committed
                                                                    │
                                  source.ack(every entry id) <──────┘

Order is the contract: entries are acknowledged only after the store committed their bars,
so a crash anywhere before the ack leaves them pending in the stream and they are delivered
again (the upsert is idempotent: same or lower revision changes nothing). A malformed entry
can never be stored; it is logged, counted and acknowledged with its batch so that it does
not come back forever.

``StoreUnavailableError`` from the source or the sink (Redis or PostgreSQL down) delays the
round: the same call is retried with exponential backoff and jitter, the entries in hand are
neither dropped nor acknowledged. Setting ``stop`` during an outage returns at once; what
was read but not acknowledged is read again by the next run.

The counts of ``PersisterStats`` also feed the ``tradepulse_bars_persisted_total``,
``tradepulse_bar_entries_malformed_total`` and ``tradepulse_persister_retries_total``
counters; each round's time is ``tradepulse_persister_batch_seconds``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

import msgspec

from tradepulse import metrics, tracing
from tradepulse.core.bars import Bar
from tradepulse.core.errors import StoreUnavailableError
from tradepulse.service.ops import Tuning

log = logging.getLogger(__name__)
_RECENT_ROUNDS = 512

R = TypeVar("R")


class BarDelivery(msgspec.Struct, frozen=True, gc=False):
    """One stream entry: its id and its bar, or ``bar=None`` and why (``problem``, a short
    bounded code such as ``malformed_json``, ``missing_field``, ``open_ms:alignment``)."""

    entry_id: str
    bar: Bar | None
    problem: str = ""


class BarSource(Protocol):
    """A durable stream of finalized bars with per-entry acknowledgement."""

    def read(self, max_count: int, block_ms: int) -> list[BarDelivery]:
        """Up to ``max_count`` entries not yet acknowledged by this reader, waiting at most
        ``block_ms`` for new ones; ``[]`` when none came."""
        ...

    def ack(self, entry_ids: Sequence[str]) -> None:
        """Mark entries done; they are not delivered again."""
        ...


class BarSink(Protocol):
    """Durable storage of bars keyed by ``(token, open_ms)``, newest revision wins."""

    def upsert(self, bars: Sequence[Bar]) -> int:
        """Store and commit ``bars``; return the number of rows written."""
        ...


@dataclass
class PersisterStats:
    """Running counts of one ``run_persister`` (shared with the caller while it runs; the
    operations endpoints read them from another thread: each field is replaced whole)."""

    entries: int = 0  # entries read, malformed ones included, redeliveries counted again
    written: int = 0  # rows the sink reported written (stale revisions excluded)
    malformed: int = 0
    acked: int = 0
    retries: int = 0  # calls that failed with StoreUnavailableError and were retried
    loop_s: float = field(default_factory=time.monotonic)  # last turn of the loop (liveness)
    recent: deque[tuple[float, int, float]] = field(  # (end monotonic, rows, seconds)
        default_factory=lambda: deque(maxlen=_RECENT_ROUNDS)
    )

    def turned(self) -> None:
        """The loop went round once, or retried once (it is not stuck in a call)."""
        self.loop_s = time.monotonic()

    def round_done(self, rows: int, seconds: float) -> None:
        self.recent.append((time.monotonic(), rows, seconds))


def batch_size_of(tuning: Tuning | None, batch_size: int) -> int:
    """The batch size for the next round: the tuning's when given (changed at run time by
    ``/performance/optimize/*``), else ``batch_size``."""
    return tuning.batch_size if tuning is not None else batch_size


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``n`` (0-based): ``min(first_s * 2**n, max_s)`` times a random
    factor in ``[0.5, 1]`` (jitter, so that many persisters do not retry in step)."""

    first_s: float = 0.1
    max_s: float = 5.0

    def delay_s(self, attempt: int) -> float:
        growth: float = 2.0 ** min(attempt, 32)
        return min(self.first_s * growth, self.max_s) * random.uniform(0.5, 1.0)


def run_persister(
    source: BarSource,
    sink: BarSink,
    stop: threading.Event,
    *,
    batch_size: int = 500,
    block_ms: int = 1_000,
    backoff: Backoff | None = None,
    stats: PersisterStats | None = None,
    tuning: Tuning | None = None,
) -> PersisterStats:
    """Move bars from ``source`` to ``sink`` until ``stop`` is set (see the module
    docstring for the order and the outage behaviour); return the counts. The round in
    hand when ``stop`` is set is finished if the stores are up. With ``tuning`` its batch
    size is read at every round instead of ``batch_size``."""
    stats = stats if stats is not None else PersisterStats()
    backoff = backoff or Backoff()
    while not stop.is_set():
        stats.turned()
        size = batch_size_of(tuning, batch_size)
        read = until_done(stop, backoff, stats, partial(source.read, size, block_ms))
        if read is None:
            break
        if read and not persist_round(source, sink, read, stop, backoff, stats):
            break
    log.info(
        "persister stopped entries=%s written=%s malformed=%s acked=%s retries=%s",
        stats.entries, stats.written, stats.malformed, stats.acked, stats.retries,
    )  # fmt: skip
    return stats


def persist_round(
    source: BarSource,
    sink: BarSink,
    read: list[BarDelivery],
    stop: threading.Event,
    backoff: Backoff,
    stats: PersisterStats,
) -> bool:
    """Store the bars of ``read``, then acknowledge every entry of it. ``False`` when
    ``stop`` was set during an outage (then nothing after the failing step happened)."""
    with tracing.span("bars.persist", {"tradepulse.entries": len(read)}):
        return _persist_round(source, sink, read, stop, backoff, stats)


def _persist_round(
    source: BarSource,
    sink: BarSink,
    read: list[BarDelivery],
    stop: threading.Event,
    backoff: Backoff,
    stats: PersisterStats,
) -> bool:
    started = time.perf_counter()
    stats.entries += len(read)
    bars = [d.bar for d in read if d.bar is not None]
    for bad in (d for d in read if d.bar is None):
        stats.malformed += 1
        metrics.BAR_ENTRIES_MALFORMED.inc()
        log.warning("malformed bar entry skipped id=%s problem=%s", bad.entry_id, bad.problem)
    if bars:
        with tracing.span("postgres.write", {"tradepulse.bars": len(bars)}):
            written = until_done(stop, backoff, stats, lambda: sink.upsert(bars))
        if written is None:
            return False
        stats.written += written
        metrics.BARS_PERSISTED.inc(written)
    ids = [d.entry_id for d in read]

    def ack() -> bool:
        source.ack(ids)
        return True

    with tracing.span("redis.ack"):
        if until_done(stop, backoff, stats, ack) is None:
            return False
    stats.acked += len(ids)
    seconds = time.perf_counter() - started
    stats.round_done(len(bars), seconds)
    metrics.PERSISTER_BATCH_SECONDS.observe(seconds)
    log.debug("bars persisted entries=%s bars=%s", len(read), len(bars))
    return True


def until_done(
    stop: threading.Event, backoff: Backoff, stats: PersisterStats, call: Callable[[], R]
) -> R | None:
    """``call()`` until it does not raise ``StoreUnavailableError``; ``None`` if ``stop``
    is set while it keeps failing. The first failure and the recovery are logged."""
    attempt = 0
    while True:
        stats.turned()
        try:
            result = call()
        except StoreUnavailableError as exc:
            if attempt == 0:
                log.warning("store unavailable, retrying with backoff: %s", exc)
            stats.retries += 1
            metrics.PERSISTER_RETRIES.inc()
            if stop.wait(backoff.delay_s(attempt)):
                return None
            attempt += 1
            continue
        if attempt:
            log.warning("store available again after attempts=%s", attempt + 1)
        return result
