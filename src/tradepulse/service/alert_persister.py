"""The alert persister: alerts from the ``alerts`` stream into the alert store, at least once.

The same contract as the bar persister (``service/persister.py``), whose backoff, counts and
retry loop it shares. One round, repeated until ``stop`` is set::

    read ≤ batch_size entries ──> split: alerts | malformed ──> sink.store(alerts), committed
                                                                     │
                                   source.ack(every entry id) <──────┘

Entries are acknowledged only after the store committed their alerts, so a crash before the
ack leaves them pending and they are delivered again; storing is idempotent (an alert's id
is derived from what made it fire, and the store ignores an id it holds). A malformed entry
is logged, counted and acknowledged with its batch. ``StoreUnavailableError`` (Redis or
PostgreSQL down) retries the same call with exponential backoff and jitter, holding the
entries in hand unacknowledged; ``stop`` during an outage returns at once.

Retries count in ``tradepulse_persister_retries_total`` (shared with the bar persister).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import Protocol

import msgspec

from tradepulse import tracing
from tradepulse.core.alerts import Alert
from tradepulse.service.ops import Tuning
from tradepulse.service.persister import Backoff, PersisterStats, batch_size_of, until_done

log = logging.getLogger(__name__)


class AlertDelivery(msgspec.Struct, frozen=True, gc=False):
    """One stream entry: its id and its alert, or ``alert=None`` and why (``problem``, a
    short bounded code such as ``malformed_json``, ``missing_field``, ``token:length``)."""

    entry_id: str
    alert: Alert | None
    problem: str = ""


class AlertSource(Protocol):
    """A durable stream of alerts with per-entry acknowledgement."""

    def read(self, max_count: int, block_ms: int) -> list[AlertDelivery]:
        """Up to ``max_count`` entries not yet acknowledged by this reader, waiting at most
        ``block_ms`` for new ones; ``[]`` when none came."""
        ...

    def ack(self, entry_ids: Sequence[str]) -> None:
        """Mark entries done; they are not delivered again."""
        ...


class AlertSink(Protocol):
    """Durable, idempotent storage of alerts keyed by their id."""

    def store(self, alerts: Sequence[Alert]) -> int:
        """Store and commit ``alerts``; return how many were new."""
        ...


def run_alert_persister(
    source: AlertSource,
    sink: AlertSink,
    stop: threading.Event,
    *,
    batch_size: int = 500,
    block_ms: int = 1_000,
    backoff: Backoff | None = None,
    stats: PersisterStats | None = None,
    tuning: Tuning | None = None,
) -> PersisterStats:
    """Move alerts from ``source`` to ``sink`` until ``stop`` is set; return the counts
    (``written``: alerts new to the store). The round in hand when ``stop`` is set is
    finished if the stores are up. With ``tuning`` its batch size is read at every round."""
    stats = stats if stats is not None else PersisterStats()
    backoff = backoff or Backoff()
    while not stop.is_set():
        stats.turned()
        size = batch_size_of(tuning, batch_size)
        read = until_done(stop, backoff, stats, partial(source.read, size, block_ms))
        if read is None:
            break
        if read and not persist_alerts(source, sink, read, stop, backoff, stats):
            break
    log.info(
        "alert persister stopped entries=%s written=%s malformed=%s acked=%s retries=%s",
        stats.entries, stats.written, stats.malformed, stats.acked, stats.retries,
    )  # fmt: skip
    return stats


def persist_alerts(
    source: AlertSource,
    sink: AlertSink,
    read: list[AlertDelivery],
    stop: threading.Event,
    backoff: Backoff,
    stats: PersisterStats,
) -> bool:
    """Store the alerts of ``read``, then acknowledge every entry of it. ``False`` when
    ``stop`` was set during an outage (then nothing after the failing step happened). In
    an ``alerts.persist`` span that names the trace ids of the alerts (the scans that fired
    them: ``tradepulse.alert_trace_ids``)."""
    alerts = [d.alert for d in read if d.alert is not None]
    with tracing.span("alerts.persist", {"tradepulse.entries": len(read)}) as span:
        if span.is_recording():
            span.set_attribute("tradepulse.alert_trace_ids",
                               sorted({a.trace_id for a in alerts}))  # fmt: skip
        return _persist_alerts(source, sink, read, alerts, stop, backoff, stats)


def _persist_alerts(
    source: AlertSource,
    sink: AlertSink,
    read: list[AlertDelivery],
    alerts: list[Alert],
    stop: threading.Event,
    backoff: Backoff,
    stats: PersisterStats,
) -> bool:
    started = time.perf_counter()
    stats.entries += len(read)
    for bad in (d for d in read if d.alert is None):
        stats.malformed += 1
        log.warning("malformed alert entry skipped id=%s problem=%s", bad.entry_id, bad.problem)
    written: int | None = 0
    if alerts:
        with tracing.span("postgres.write", {"tradepulse.alerts": len(alerts)}):
            written = until_done(stop, backoff, stats, lambda: sink.store(alerts))
        if written is None:
            return False
        stats.written += written
    ids = [d.entry_id for d in read]

    def ack() -> bool:
        source.ack(ids)
        return True

    with tracing.span("redis.ack"):
        if until_done(stop, backoff, stats, ack) is None:
            return False
    stats.acked += len(ids)
    stats.round_done(written or 0, time.perf_counter() - started)
    log.debug("alerts persisted entries=%s alerts=%s new=%s", len(read), len(alerts), written)
    return True
