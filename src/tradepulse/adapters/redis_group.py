"""A consumer of a Redis stream consumer group, generic over how an entry is decoded.

What ``read`` delivers, in this order (the bar and the alert streams both read this way)::

    1. its own pending entries (XREADGROUP id 0): read before a crash, never acknowledged
    2. entries idle longer than ``claim_idle_ms`` in other consumers' pending lists
       (XAUTOCLAIM: those consumers died), one scan every ``claim_idle_ms / 2``
    3. new entries (XREADGROUP id >), blocking up to ``block_ms``

The group is created at id 0 with MKSTREAM (entries added before the first reader ran are
read too) and again if the stream disappears (NOGROUP). Entries leave the pending list only
by ``ack``. An entry trimmed from the stream while pending comes back with no fields: the
decoder sees ``None``. Redis errors become ``StoreUnavailableError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import redis

from tradepulse.core.errors import StoreUnavailableError

log = logging.getLogger(__name__)


class Delivery(Protocol):
    @property
    def entry_id(self) -> str: ...


D = TypeVar("D", bound=Delivery)
Decode = Callable[[str, Mapping[Any, Any] | None], D]


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GroupReader(Generic[D]):
    """Consumer ``consumer`` of group ``group`` on stream ``key``; ``decode(entry_id,
    fields)`` turns each entry into a delivery.

    Consumer names should be stable across restarts of the same instance (the host or pod
    name): a restarted consumer then re-reads its own pending entries at once instead of
    waiting ``claim_idle_ms`` for another consumer to claim them.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        decode: Decode[D],
        *,
        group: str = "tradepulse-persister",
        consumer: str = "persister",
        claim_idle_ms: int = 60_000,
    ) -> None:
        self.key = key
        self.group = group
        self.consumer = consumer
        self._client = client
        self._decode = decode
        self._claim_idle_ms = claim_idle_ms
        self._group_ready = False
        self._pending_from: str | None = "0"  # None once the own pending list is drained
        self._claim_from = "0-0"
        self._next_claim_s = 0.0

    def ensure_group(self) -> None:
        """Create the stream and the group (from id 0) unless they exist."""
        try:
            self._client.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StoreUnavailableError(f"Redis XGROUP CREATE failed: {exc}") from exc
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis XGROUP CREATE failed: {exc}") from exc
        self._group_ready = True

    def read(self, max_count: int, block_ms: int) -> list[D]:
        """Up to ``max_count`` entries: own pending first, then claimed, then new ones
        (waiting up to ``block_ms``). ``[]`` when nothing came."""
        try:
            return self._read(max_count, block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise StoreUnavailableError(f"Redis stream read failed: {exc}") from exc
            log.warning("stream or group vanished, creating it again key=%s", self.key)
            self._group_ready = False
            return []
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis stream read failed: {exc}") from exc

    def ack(self, entry_ids: Sequence[str]) -> None:
        """XACK ``entry_ids`` (unknown or already acknowledged ids are ignored)."""
        if not entry_ids:
            return
        try:
            self._client.xack(self.key, self.group, *entry_ids)
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis XACK failed: {exc}") from exc

    def _read(self, max_count: int, block_ms: int) -> list[D]:
        if not self._group_ready:
            self.ensure_group()
        if self._pending_from is not None:
            own = self._read_group(self._pending_from, max_count, None)
            if own:
                self._pending_from = own[-1].entry_id
                return own
            self._pending_from = None
        claimed = self._claim(max_count)
        if claimed:
            return claimed
        return self._read_group(">", max_count, block_ms)

    def _read_group(self, from_id: str, max_count: int, block_ms: int | None) -> list[D]:
        reply: Any = self._client.xreadgroup(
            self.group, self.consumer, {self.key: from_id}, count=max_count, block=block_ms
        )
        return [self._decode(text(i), f) for _, entries in reply or [] for i, f in entries]

    def _claim(self, max_count: int) -> list[D]:
        """One XAUTOCLAIM step of the scan over the group's pending list."""
        now_s = time.monotonic()
        if now_s < self._next_claim_s:
            return []
        reply: Any = self._client.xautoclaim(
            self.key, self.group, self.consumer, self._claim_idle_ms, self._claim_from,
            count=max_count,
        )  # fmt: skip
        self._claim_from = text(reply[0])
        if self._claim_from == "0-0":  # scan complete: next one later
            self._next_claim_s = now_s + self._claim_idle_ms / 2_000
        claimed = [self._decode(text(i), f) for i, f in reply[1]]
        if claimed:
            log.info("claimed idle entries count=%s key=%s", len(claimed), self.key)
        return claimed
