"""The worker's loop: poll a batch, process it, commit, until asked to stop."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from tradepulse.adapters.kafka import ConsumedMessage
from tradepulse.service.pipeline import Pipeline

log = logging.getLogger(__name__)


class Source(Protocol):
    def poll_batch(self, max_messages: int, max_wait_s: float) -> list[ConsumedMessage]: ...

    def commit(self, next_offsets: dict[int, int]) -> None: ...

    def close(self) -> None: ...


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
    committed before returning (so a SIGTERM loses nothing and repeats nothing). Every
    ``maintenance_interval_ms`` tokens idle for ``stale_after_ms`` are advanced and
    rewritten (between batches, so a sweep never interleaves with a batch's writes)."""
    next_sweep = time.monotonic() + maintenance_interval_ms / 1000
    try:
        while not stop.is_set():
            if time.monotonic() >= next_sweep:
                swept = pipeline.sweep(stale_after_ms)
                log.debug("maintenance swept=%s", swept)
                next_sweep = time.monotonic() + maintenance_interval_ms / 1000
            batch = source.poll_batch(batch_size, batch_wait_ms / 1000)
            if not batch:
                continue
            started = time.perf_counter()
            offsets = pipeline.process(batch)
            source.commit(offsets)
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
