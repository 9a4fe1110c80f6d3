"""The token list's read cache: every active token's statistics read at most once per
``max_age_ms`` however many requests ask, and each ordering sorted once per read.

``GET /api/v1/tokens`` reads every token's aggregates (one pipeline) and sorts them; with
thousands of tokens that is ~80 ms of work per request, so at a few requests per second the
API would spend its time re-reading the same data. Concurrent requests share one read (a
lock, checked again inside), and a page of a list is at most ``max_age_ms`` old (1 s by
default, ``TRADEPULSE_API_CACHE_TTL``; 0 reads on every request). Live updates go to
WebSocket clients; the REST list is a snapshot anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tradepulse.api.query import SortKey
from tradepulse.api.reader import TokenSummary, sort_summaries
from tradepulse.api.sources import LiveSource


class _Snapshot:
    __slots__ = ("items", "read_s", "sorted")

    def __init__(self, items: list[TokenSummary], read_s: float) -> None:
        self.items, self.read_s = items, read_s
        self.sorted: dict[str, list[TokenSummary]] = {}


class Rankings:
    """Summaries of ``live`` no older than ``max_age_ms``, and their orderings."""

    def __init__(
        self, live: LiveSource, max_age_ms: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._live, self._max_age_s, self._clock = live, max_age_ms / 1000, clock
        self._snapshot = _Snapshot([], float("-inf"))
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._clock() - self._snapshot.read_s < self._max_age_s

    async def _current(self) -> _Snapshot:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    read_s = self._clock()
                    self._snapshot = _Snapshot(await self._live.summaries(), read_s)
        return self._snapshot

    async def summaries(self) -> list[TokenSummary]:
        """Every active token's statistics (at most ``max_age_ms`` old)."""
        return (await self._current()).items

    async def ranked(self, key: SortKey) -> list[TokenSummary]:
        """The summaries ordered by ``key`` (``sort_summaries``), sorted once per read."""
        snapshot = await self._current()
        ordered = snapshot.sorted.get(str(key))
        if ordered is None:
            ordered = snapshot.sorted[str(key)] = sort_summaries(snapshot.items, key)
        return ordered
