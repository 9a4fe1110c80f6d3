"""The stale-token sweep: idle tokens' windows decay without new trades.

Every ``interval_ms`` (wall time) the tokens this process owns that were not written for
``stale_after_ms`` are advanced to the clock and rewritten (``Pipeline.sweep``). A sweep
that fails (Redis unavailable) is retried with exponential backoff and jitter, from 0.1 s
up to the interval, instead of waiting a whole interval. The runner calls ``tick`` between
batches, so a sweep never interleaves with a batch's writes.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Protocol

from tradepulse import metrics
from tradepulse.core.errors import StoreUnavailableError

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.1


class Sweepable(Protocol):
    def sweep(self, stale_after_ms: int) -> int: ...


class Maintenance:
    """Schedules sweeps of ``target`` on the monotonic clock."""

    def __init__(self, target: Sweepable, interval_ms: int, stale_after_ms: int) -> None:
        self.target = target
        self.interval_s = interval_ms / 1000
        self.stale_after_ms = stale_after_ms
        self.next_s = time.monotonic() + self.interval_s
        self._retry_s = _RETRY_FIRST_S
        self.sweeps = 0
        self.failures = 0

    def tick(self) -> int | None:
        """Sweep if due: the number of tokens rewritten, ``None`` when not due or failed."""
        if time.monotonic() < self.next_s:
            return None
        started = time.perf_counter()
        try:
            swept = self.target.sweep(self.stale_after_ms)
        except StoreUnavailableError as exc:
            self.failures += 1
            metrics.REDIS_ERRORS.inc()
            delay = min(self._retry_s, self.interval_s) * random.uniform(0.5, 1.0)
            self._retry_s = min(self._retry_s * 2, self.interval_s)
            self.next_s = time.monotonic() + delay
            log.warning("maintenance failed, retrying in %.2fs: %s", delay, exc)
            return None
        self.sweeps += 1
        self._retry_s = _RETRY_FIRST_S
        self.next_s = time.monotonic() + self.interval_s
        log.debug("maintenance completed", extra={"tokens_rewritten": swept,
                  "processing_time": round(time.perf_counter() - started, 6)})  # fmt: skip
        return swept
