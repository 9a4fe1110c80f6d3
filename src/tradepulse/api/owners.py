"""``RuleOwners`` for the gateway: answers from a bounded cache, misses read from
PostgreSQL (``RuleOwnerRepository``) in a worker thread, one read at a time.

A rule's owner never changes, so a known owner is cached until evicted (oldest first past
``size`` entries). A rule without a row (say a rule of a JSON rules file, whose id is its
name) is remembered as ownerless for ``unknown_ttl_s`` only: its row may appear later.
A PostgreSQL error propagates (the caller retries; alerts are never routed by guess).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import anyio
import anyio.to_thread

from tradepulse.adapters.postgres_owners import RuleOwnerRepository

_UNKNOWN = ""


class CachedRuleOwners:
    def __init__(
        self,
        lookup: Callable[[Sequence[str]], dict[str, str]],
        *,
        size: int = 100_000,
        unknown_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._size = size
        self._unknown_ttl_s = unknown_ttl_s
        self._clock = clock
        self._known: dict[str, str] = {}
        self._unknown: dict[str, float] = {}  # rule id -> when it expires
        self._lock = anyio.Lock()

    async def owners(self, rule_ids: Sequence[str]) -> dict[str, str]:
        """``rule id -> owner`` of the ids that have one."""
        now = self._clock()
        missing = [r for r in dict.fromkeys(rule_ids)
                   if r not in self._known and self._unknown.get(r, 0.0) <= now]  # fmt: skip
        if missing:
            async with self._lock:
                found = await anyio.to_thread.run_sync(self._lookup, missing)
            self._remember(missing, found, now)
        return {r: self._known[r] for r in rule_ids if r in self._known}

    def _remember(self, asked: list[str], found: dict[str, str], now: float) -> None:
        for rule_id in asked:
            owner = found.get(rule_id, _UNKNOWN)
            if owner:
                self._known[rule_id] = owner
                self._unknown.pop(rule_id, None)
            else:
                self._unknown[rule_id] = now + self._unknown_ttl_s
        for cache in (self._known, self._unknown):
            while len(cache) > self._size:
                del cache[next(iter(cache))]


def postgres_rule_owners(dsn: str) -> tuple[CachedRuleOwners, RuleOwnerRepository]:
    """The cache over a ``RuleOwnerRepository`` of ``dsn`` (returned too: close it)."""
    repo = RuleOwnerRepository(dsn, connect_timeout_s=3, statement_timeout_ms=5_000)
    return CachedRuleOwners(repo.owners), repo
