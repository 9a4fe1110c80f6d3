"""The worker's loop: poll a batch, process it, commit, until asked to stop."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from tradepulse.adapters.kafka import ConsumedMessage
from tradepulse.core.errors import StoreUnavailableError
from tradepulse.service.pipeline import AppliedBatch, Pipeline

log = logging.getLogger(__name__)


class Source(Protocol):
    def poll_batch(self, max_messages: int, max_wait_s: float) -> list[ConsumedMessage]: ...

    def commit(self, next_offsets: dict[int, int]) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def idle(self, seconds: float) -> None: ...

    def close(self) -> None: ...


T = TypeVar("T")
R = TypeVar("R")
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0


def _until_stored(
    source: Source, stop: threading.Event, attempt: Callable[[T], R], arg: T
) -> R | None:
    """``attempt(arg)`` until Redis accepts it (circuit open meanwhile: partitions paused,
    nothing committed, exponential backoff with jitter). ``None`` if stopped first."""
    delay = _BACKOFF_FIRST_S
    paused = False
    while True:
        try:
            result = attempt(arg)
        except StoreUnavailableError as exc:
            if not paused:
                log.warning("redis unavailable, consumption paused: %s", exc)
                source.pause()
                paused = True
            if stop.is_set():
                return None
            source.idle(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _BACKOFF_MAX_S)
            continue
        if paused:
            log.warning("redis available again, consumption resumed")
            source.resume()
        return result


def _write(job: tuple[Pipeline, AppliedBatch]) -> bool:
    pipeline, applied = job
    pipeline.write(applied)
    return True


def run(
    source: Source,
    pipeline: Pipeline,
    stop: threading.Event,
    *,
    batch_size: int = 10_000,
    batch_wait_ms: int = 100,
    maintenance_interval_ms: int = 60_000,
    stale_after_ms: int = 10_000,
) -> None:
    """Process batches until ``stop`` is set; the batch in hand is finished, written and
    committed before returning (so a SIGTERM loses nothing and repeats nothing). While
    Redis is unavailable the batch is retried with backoff and nothing is consumed or
    committed; stopping then returns without committing (the batch is read again). Every
    ``maintenance_interval_ms`` tokens idle for ``stale_after_ms`` are advanced and
    rewritten (between batches, so a sweep never interleaves with a batch's writes)."""
    next_sweep = time.monotonic() + maintenance_interval_ms / 1000
    try:
        while not stop.is_set():
            if time.monotonic() >= next_sweep:
                try:
                    log.debug("maintenance swept=%s", pipeline.sweep(stale_after_ms))
                except StoreUnavailableError as exc:
                    log.warning("maintenance postponed: %s", exc)
                next_sweep = time.monotonic() + maintenance_interval_ms / 1000
            batch = source.poll_batch(batch_size, batch_wait_ms / 1000)
            if not batch:
                continue
            started = time.perf_counter()
            applied = _until_stored(source, stop, pipeline.apply, batch)
            if applied is None or _until_stored(source, stop, _write, (pipeline, applied)) is None:
                return  # stopped while Redis was down: nothing committed, nothing lost
            source.commit(applied.next_offsets)
            seconds = time.perf_counter() - started
            log.info(
                "Batch processing completed total_trades=%s unique_tokens=%s "
                "processing_time=%.6f trades_per_sec=%.0f",
                len(batch),
                len({m.key for m in batch}),
                seconds,
                len(batch) / seconds if seconds > 0 else 0.0,
            )
    finally:
        source.close()
