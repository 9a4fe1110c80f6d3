"""Flow control of one WebSocket connection: the send queue and the inbound rate limit.

``Outbox`` holds what waits to be sent, in two parts::

    queue   alerts and replies, in order, at most ``limit``  ── full: the client is too slow
    latest  one slot per channel (token:<addr>, tokens:top, heartbeat): a newer message
            replaces the one waiting, which is dropped (counted in WS_DROPPED)

The sender takes the queue first (so ``subscribed`` precedes that channel's data), then the
slots in the order they were first filled. Alerts are never dropped: ``put`` refuses when
the queue is full, and the caller closes the connection (4008).

``TokenBucket``: ``burst`` tokens, refilled at ``rate`` per second; a frame takes one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from tradepulse import metrics


class Outbox:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._queue: deque[tuple[str, str, float | None]] = deque()
        self._latest: dict[str, tuple[str, str]] = {}
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        """Messages in the ordered queue (the latest-only slots not counted)."""
        return len(self._queue)

    def put(self, text: str, label: str, born_s: float | None = None) -> bool:
        """Queue ``text`` (``label``: the metric channel; ``born_s``: when an alert entered
        the stream, epoch seconds); False, queuing nothing, when the queue is full."""
        if len(self._queue) >= self.limit:
            return False
        self._queue.append((text, label, born_s))
        self._ready.set()
        if len(self._queue) >= self.limit // 2 + 1:
            self._room.clear()
        return True

    def put_latest(self, channel: str, text: str, label: str) -> None:
        """Replace what waits for ``channel`` (a statistics update nobody saw is stale)."""
        if channel in self._latest:
            metrics.WS_DROPPED.labels(label).inc()
        self._latest[channel] = (text, label)
        self._ready.set()

    def discard(self, channel: str) -> None:
        """Forget the waiting message of ``channel`` (after an unsubscribe)."""
        self._latest.pop(channel, None)

    async def wait_room(self) -> None:
        """Until the queue is at most half full (producers that can wait, e.g. a replay)."""
        await self._room.wait()

    async def get(self) -> tuple[str, str, float | None]:
        """The next message: ``(text, label, born_s)``."""
        while not self._queue and not self._latest:
            self._ready.clear()
            await self._ready.wait()
        if self._queue:
            item = self._queue.popleft()
            if len(self._queue) <= self.limit // 2:
                self._room.set()
            return item
        channel = next(iter(self._latest))
        text, label = self._latest.pop(channel)
        return text, label, None


class TokenBucket:
    """``take()`` is True while tokens are left. ``rejected`` counts the refusals since the
    bucket was last full: a client that keeps sending into an empty bucket."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self.rejected = 0

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= self._burst:
            self.rejected = 0
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.rejected += 1
        return False
