"""The stale-token sweep: idle tokens' windows decay without new trades.

Every ``interval_ms`` (wall time) the tokens this process owns that were not written for
``stale_after_ms`` are advanced to the clock and rewritten (``Pipeline.sweep``), at most
``SWEEP_CHUNK`` of them per ``tick``, the longest unwritten first: a round of thousands of
tokens is spread over the next ticks (one between each two batches) instead of stopping
the worker for all of them at once (2,000 tokens took 106-266 ms in one go). A round takes
the tokens stale when it began and not written since, and ends when a tick rewrites fewer
than ``SWEEP_CHUNK``; the next one begins an interval later. Tokens unseen by this process
are restored from Redis when a round begins. A sweep that fails (Redis unavailable) is
retried with exponential backoff and jitter, from 0.1 s up to the interval, instead of
waiting a whole interval. The runner calls ``tick`` between batches, so a sweep never
interleaves with a batch's writes.
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


#: Tokens rewritten per tick at most (about 15 ms of work between two batches).
SWEEP_CHUNK = 256


class Sweepable(Protocol):
    def sweep(
        self, stale_after_ms: int, *, limit: int | None = None, new_round: bool = True
    ) -> int: ...


class Maintenance:
    """Schedules sweeps of ``target`` on the monotonic clock."""

    def __init__(
        self,
        target: Sweepable,
        interval_ms: int,
        stale_after_ms: int,
        chunk: int = SWEEP_CHUNK,
    ) -> None:
        self.target = target
        self.interval_s = interval_ms / 1000
        self.stale_after_ms = stale_after_ms
        self.chunk = chunk
        self.next_s = time.monotonic() + self.interval_s
        self._retry_s = _RETRY_FIRST_S
        self._in_round = False  # a round's first chunk is done, the rest follow tick by tick
        self.sweeps = 0  # rounds completed
        self.failures = 0

    def tick(self) -> int | None:
        """Sweep a chunk if due: the number of tokens rewritten, ``None`` when not due or
        failed."""
        if time.monotonic() < self.next_s:
            return None
        started = time.perf_counter()
        try:
            swept = self.target.sweep(self.stale_after_ms, limit=self.chunk,
                                      new_round=not self._in_round)  # fmt: skip
        except StoreUnavailableError as exc:
            self.failures += 1
            metrics.REDIS_ERRORS.inc()
            delay = min(self._retry_s, self.interval_s) * random.uniform(0.5, 1.0)
            self._retry_s = min(self._retry_s * 2, self.interval_s)
            self.next_s = time.monotonic() + delay
            log.warning("maintenance failed, retrying in %.2fs: %s", delay, exc)
            return None
        self._retry_s = _RETRY_FIRST_S
        if swept >= self.chunk:  # maybe more: the next chunk at the next tick
            self._in_round = True
            return swept
        self._in_round = False
        self.sweeps += 1
        self.next_s = time.monotonic() + self.interval_s
        log.debug("maintenance completed", extra={"tokens_rewritten": swept,
                  "processing_time": round(time.perf_counter() - started, 6)})  # fmt: skip
        return swept
