"""The alert preferences the WebSocket gateway applies (``ws_hub``, ``ws_session``): what
each connected user set in ``PUT /api/v1/user/profile`` (``core/profiles.py``).

``PreferenceCache`` holds one ``AlertFilter`` per user with an alert subscription. A user's
preferences are read from the profile store when they first subscribe (``ensure``: the
``subscribed`` reply comes after the read, so the preferences apply to every alert after
it), then the gateway reads every subscribed user's again each ``ttl_s`` (``refresh``, one
``ProfileStore.get_many``), so a profile saved through any api process applies on every
process within ``ttl_s`` plus one read. The process that served the ``PUT`` applies it at
once (``put``), and a read that started before such a ``put`` does not undo it.

Connections of one user subscribing together share one read. A failed read is logged and
users keep what was last read (the defaults, nothing muted, for a user never read); the
next refresh tries again. Preferences narrow
delivery, they are not access control (rule ownership, which is, fails closed in the
gateway): an outage of the profile store must not hold back everyone's alerts, so during one
a muted alert may get through, but no alert waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import anyio.to_thread

from tradepulse.api.stores import ProfileStore
from tradepulse.core.profiles import AlertPreferences

log = logging.getLogger(__name__)


class AlertFilter(NamedTuple):
    """``AlertPreferences`` in the form the gateway asks them per alert and connection."""

    muted_channels: frozenset[str]
    muted_rules: frozenset[str]
    min_interval_ms: int

    @classmethod
    def of(cls, prefs: AlertPreferences) -> AlertFilter:
        return cls(frozenset(prefs.muted_channels), frozenset(prefs.muted_rules),
                   prefs.min_interval_s * 1000)  # fmt: skip


#: The preferences of a user who never saved a profile: every alert, on every channel.
EVERY_ALERT = AlertFilter.of(AlertPreferences())

Lookup = Callable[[Sequence[str]], dict[str, AlertPreferences]]


def profile_lookup(store: ProfileStore) -> Lookup:
    """The alert preferences of the users who saved a profile in ``store``."""

    def lookup(users: Sequence[str]) -> dict[str, AlertPreferences]:
        return {u: p.profile.alert_preferences for u, p in store.get_many(users).items()}

    return lookup


class PreferenceCache:
    """Alert filters by user (see the module docstring); used from the event loop only,
    reads run in worker threads."""

    def __init__(self, lookup: Lookup, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lookup = lookup
        self._known: dict[str, AlertFilter] = {}
        self._tick = 0  # counts the changes below
        self._touched: dict[str, int] = {}  # user -> tick when last asked for, read or saved
        self._written: dict[str, int] = {}  # user -> tick of their last ``put``
        self._failing = False
        self._first_reads: dict[str, asyncio.Task[None]] = {}

    def of(self, user: str) -> AlertFilter:
        """What applies to ``user`` now."""
        return self._known.get(user, EVERY_ALERT)

    def put(self, user: str, prefs: AlertPreferences) -> None:
        """``user`` has just saved these (applies at once in this process)."""
        self._known[user] = AlertFilter.of(prefs)
        self._written[user] = self._touch(user)

    async def ensure(self, user: str) -> None:
        """Read ``user``'s preferences unless known (one read for concurrent callers)."""
        if user in self._known:
            self._touch(user)
            return
        task = self._first_reads.get(user)
        if task is None:
            task = asyncio.create_task(self._read([user]))
            self._first_reads[user] = task
            task.add_done_callback(lambda _: self._first_reads.pop(user, None))
        await asyncio.shield(task)  # a caller that goes away leaves the read to the others

    async def refresh(self, users: Callable[[], Iterable[str]]) -> None:
        """Read again the preferences of ``users()`` and forget those of anyone else, unless
        asked for meanwhile (a user subscribing during the read)."""
        start = self._tick
        await self._read(list(dict.fromkeys(users())))
        keep = set(users())
        for user in [u for u in self._known
                     if u not in keep and self._touched.get(u, 0) <= start]:  # fmt: skip
            del self._known[user]
            self._touched.pop(user, None)
            self._written.pop(user, None)

    def _touch(self, user: str) -> int:
        self._tick += 1
        self._touched[user] = self._tick
        return self._tick

    async def _read(self, users: list[str]) -> None:
        if not users:
            return
        before = self._tick
        try:
            found = await anyio.to_thread.run_sync(self._lookup, users)
        except Exception as exc:
            if not self._failing:
                log.warning("alert preferences unreadable, keeping the last known: %s", exc)
            self._failing = True
            for user in users:
                self._known.setdefault(user, EVERY_ALERT)  # until a refresh reads them
                self._touch(user)
            return
        if self._failing:
            log.info("alert preferences readable again")
            self._failing = False
        for user in users:
            if self._written.get(user, 0) <= before:  # else saved here during the read
                prefs = found.get(user)
                self._known[user] = EVERY_ALERT if prefs is None else AlertFilter.of(prefs)
            self._touch(user)
