"""Stream upkeep of the persister: every ``interval_s``, for each persisted stream, read the
backlog of the persisters' group (the ``tradepulse_persister_backlog_entries{stream}``
gauge, ``/performance``) and trim the entries every consumer group acknowledged.

It runs in its own thread rather than after each acknowledgement: trimming costs one Redis
call per stream per interval however many batches went by, and the backlog keeps being
measured while the persister loops wait out a PostgreSQL outage (the backlog then grows,
which is what the alert on it needs to see). Trimming only ever removes acknowledged
entries, so where it runs does not change what it may remove. A Redis error skips the
stream until the next interval (logged once per outage).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tradepulse import metrics
from tradepulse.core.errors import StoreUnavailableError

log = logging.getLogger(__name__)

#: Seconds between two upkeep rounds: trims are batched, never one per persisted batch.
UPKEEP_INTERVAL_S = 5.0


class BacklogView(Protocol):
    @property
    def entries(self) -> int: ...


class StreamUpkeep(Protocol):
    """A persisted stream: its backlog, and trimming of what every group acknowledged."""

    @property
    def name(self) -> str: ...

    def backlog(self) -> BacklogView: ...

    def trim(self, now_ms: int) -> int:
        """Remove acknowledged entries; how many were removed."""
        ...


@dataclass
class UpkeepState:
    """The last round's findings per stream (read by the operations endpoints)."""

    backlog: dict[str, object] = field(default_factory=dict)
    trimmed: dict[str, int] = field(default_factory=dict)
    checked_s: float | None = None  # wall time of the last complete round
    failing: bool = False


def upkeep_round(
    streams: Sequence[StreamUpkeep], state: UpkeepState, now_ms: Callable[[], int]
) -> None:
    """One round over ``streams``; a stream whose Redis call fails is skipped."""
    failed = False
    for stream in streams:
        try:
            backlog = stream.backlog()
            removed = stream.trim(now_ms())
        except StoreUnavailableError as exc:
            if not state.failing:
                log.warning("stream upkeep skipped stream=%s: %s", stream.name, exc)
            failed = True
            continue
        metrics.PERSISTER_BACKLOG.labels(stream=stream.name).set(backlog.entries)
        metrics.STREAM_TRIMMED.labels(stream=stream.name).inc(removed)
        state.backlog[stream.name] = backlog
        state.trimmed[stream.name] = state.trimmed.get(stream.name, 0) + removed
        if removed:
            log.debug("stream trimmed stream=%s entries=%s", stream.name, removed)
    state.failing = failed
    if not failed:
        state.checked_s = time.time()


def run_upkeep(
    streams: Sequence[StreamUpkeep],
    stop: threading.Event,
    state: UpkeepState,
    *,
    interval_s: float = UPKEEP_INTERVAL_S,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> None:
    """``upkeep_round`` now and every ``interval_s`` until ``stop`` is set."""
    while True:
        upkeep_round(streams, state, now_ms)
        if stop.wait(interval_s):
            return
