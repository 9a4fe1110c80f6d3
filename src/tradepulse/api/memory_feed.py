"""The WebSocket gateway's ``Feed`` and ``RuleOwners`` over the demo's in-memory store.

``MemoryStore`` calls its listeners from the engine's thread after every write; ``MemoryFeed``
turns those notices into what ``RedisFeed`` reads from Redis: batches of written tokens, and
an append-only list of alerts numbered like stream entries (``<ms>-<seq>``, strictly
increasing even if the wall clock steps back). The asyncio side is woken with
``call_soon_threadsafe``; nothing blocks the engine's thread.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec

from tradepulse.adapters.clock import wall_now_ms
from tradepulse.adapters.memory_store import MemoryStore, Notice
from tradepulse.api.feeds import AlertEntry, StreamId
from tradepulse.core.alerts import Alert
from tradepulse.core.types import TokenId

#: Alerts kept for resume (the Redis stream is capped too).
KEEP_ALERTS = 100_000
_TOKEN_WAIT_S = 1.0


class MemoryFeed:
    """``Feed`` fed by the notices of ``store`` (subscribed at construction)."""

    def __init__(
        self,
        store: MemoryStore,
        *,
        keep: int = KEEP_ALERTS,
        wall_ms: Callable[[], int] = wall_now_ms,
    ) -> None:
        self._keep, self._wall_ms = keep, wall_ms
        self._lock = threading.Lock()
        self._tokens: list[TokenId] = []
        self._alerts: list[AlertEntry] = []
        self._last = StreamId(0, 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tokens_ready = asyncio.Event()
        self._alerts_ready = asyncio.Event()
        store.subscribe(self._notice)

    def _notice(self, notice: Notice) -> None:
        with self._lock:
            if notice.kind == "token":
                self._tokens.append(notice.token)
            elif notice.alert is not None:
                self._append(notice.alert)
            loop = self._loop
        if loop is not None:
            # RuntimeError: the loop has closed (the API is shutting down)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake, notice.kind)

    def _append(self, alert: Alert) -> None:
        ms, last = self._wall_ms(), self._last
        self._last = StreamId(ms, 0) if ms > last.ms else StreamId(last.ms, last.seq + 1)
        self._alerts.append(AlertEntry(self._last, alert, msgspec.json.encode(alert)))
        if len(self._alerts) > 2 * self._keep:
            del self._alerts[: len(self._alerts) - self._keep]

    def _wake(self, kind: str) -> None:
        """In the loop: set the event waiters hold and give later waiters a fresh one."""
        if kind == "token":
            self._tokens_ready.set()
            return
        self._alerts_ready.set()
        self._alerts_ready = asyncio.Event()

    def _attach(self) -> None:
        if self._loop is None:
            with self._lock:
                self._loop = asyncio.get_running_loop()

    async def token_updates(self) -> AsyncIterator[list[TokenId]]:
        """Tokens written since the last batch, in order, each once; ``[]`` after a quiet
        second (as ``RedisFeed``)."""
        self._attach()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tokens_ready.wait(), _TOKEN_WAIT_S)
            self._tokens_ready.clear()
            with self._lock:
                batch, self._tokens = self._tokens, []
            yield list(dict.fromkeys(batch))

    async def last_alert_id(self) -> StreamId:
        self._attach()
        with self._lock:
            return self._last

    async def alerts_after(
        self, after_id: StreamId, *, count: int, block_ms: int | None = None
    ) -> list[AlertEntry]:
        """Up to ``count`` alerts after ``after_id``; with ``block_ms``, wait that long for
        one when there is none yet."""
        self._attach()
        ready = self._alerts_ready
        found = self._after(after_id, count)
        if found or block_ms is None:
            return found
        try:
            await asyncio.wait_for(ready.wait(), block_ms / 1000)
        except TimeoutError:
            return []
        return self._after(after_id, count)

    def _after(self, after_id: StreamId, count: int) -> list[AlertEntry]:
        with self._lock:
            start = bisect.bisect_right(self._alerts, after_id, key=lambda e: e.id)
            return self._alerts[start : start + count]


class MemoryRuleOwners:
    """``RuleOwners`` answered by ``owner_of`` (the in-memory rule store's lookup)."""

    def __init__(self, owner_of: Callable[[str], str | None]) -> None:
        self._owner_of = owner_of

    async def owners(self, rule_ids: Sequence[str]) -> dict[str, str]:
        found = {rule_id: self._owner_of(rule_id) for rule_id in rule_ids}
        return {rule_id: owner for rule_id, owner in found.items() if owner}
