"""The WebSocket gateway of one api process: every connection's ``Session``, the commands
they send, and the loops that feed them (``Gateway.run``)::

    Feed.token_updates ──> dirty tokens ──> one detail read per token ──> watchers' slot
    every ws_top_interval: one summaries read ──> one sort per (sort, limit) ──> subscribers
    Feed.alerts_after (blocking, in order) ──> owner lookup ──> sessions that want it
    every ws_prefs_ttl: the alert preferences of every user subscribed to alerts, read again
    every ws_heartbeat: heartbeat to each session; silent for two intervals ──> 4408

A token's detail is read once per update however many connections watch it (updates
arriving during the read are coalesced into one more read); each message is encoded once
and the same text goes to every recipient. A failing Redis or PostgreSQL pauses a loop
(retried every second), never ends it: alerts wait, they are not skipped.

Alerts follow their user's preferences (``preferences.py``, applied in ``ws_session``): a
user's are read when they subscribe to alerts, before the ``subscribed`` reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from tradepulse import metrics
from tradepulse.api.auth import Principal
from tradepulse.api.feeds import AlertEntry, Feed, RuleOwners, StreamId
from tradepulse.api.preferences import PreferenceCache
from tradepulse.api.ranking import Rankings
from tradepulse.api.sources import LiveSource
from tradepulse.api.ws_protocol import (
    ALERTS,
    TOKEN_PREFIX,
    TOP,
    Command,
    Ping,
    Resume,
    SubscribeAlerts,
    SubscribeToken,
    SubscribeTop,
    Unsubscribe,
    alert_message,
    encode,
)
from tradepulse.api.ws_session import CLOSE_DEAD_PEER, CLOSE_GOING_AWAY, Session
from tradepulse.config import Settings
from tradepulse.core.profiles import Channel

log = logging.getLogger(__name__)
ALERT_BATCH = 500
READ_CONCURRENCY = 32
RETRY_S = 1.0


class Gateway:
    def __init__(
        self, settings: Settings, live: LiveSource, feed: Feed, owners: RuleOwners,
        clock: Callable[[], float] = time.monotonic, rankings: Rankings | None = None,
        preferences: PreferenceCache | None = None,
    ) -> None:  # fmt: skip
        """``preferences``: the users' alert preferences (None: nobody has any, every
        alert is delivered)."""
        self.settings = settings
        self._live, self._feed, self._owners, self._clock = live, feed, owners, clock
        self._prefs = preferences
        # the token list's cache, shared with GET /api/v1/tokens (one read serves both)
        self._rankings = rankings or Rankings(live, settings.ws_top_interval_ms // 2)
        self.sessions: set[Session] = set()
        self._per_key: Counter[str] = Counter()
        self._watchers: defaultdict[str, set[Session]] = defaultdict(set)
        self._alert_sessions: set[Session] = set()
        self._top_sessions: set[Session] = set()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()  # set once the alert tail has its start position
        self._stopping = False

    # -- connections -------------------------------------------------------------------

    def open(
        self, principal: Principal | None, peer: str, client: Channel = "websocket"
    ) -> Session | None:
        """A new session (``client``: its channel for the alert preferences), or None when
        its user already has ``ws_max_per_user``."""
        key = principal.user if principal is not None else f"anonymous@{peer}"
        if self._per_key[key] >= self.settings.ws_max_per_user:
            return None
        prefs = None if self._prefs is None else self._prefs.of
        session = Session(principal, key, self.settings, self._clock, client=client,
                          preferences=prefs)  # fmt: skip
        self._per_key[key] += 1
        self.sessions.add(session)
        metrics.WS_CONNECTIONS.inc()
        return session

    def release(self, session: Session) -> None:
        self.sessions.discard(session)
        self._alert_sessions.discard(session)
        self._top_sessions.discard(session)
        for token in session.tokens:
            self._unwatch(session, token)
        self._per_key[session.key] -= 1
        if self._per_key[session.key] <= 0:
            del self._per_key[session.key]
        metrics.WS_CONNECTIONS.dec()

    def shutdown(self) -> None:
        """Close every session (1001) and end the loops at their next turn. (Loops also
        stop on cancellation, but a Redis read may turn a cancellation into a timeout
        error, which a loop survives: the flag is what ends them for sure.)"""
        self._stopping = True
        self._wake.set()
        for session in list(self.sessions):
            session.close(CLOSE_GOING_AWAY, "server stopping", "normal")

    # -- commands ----------------------------------------------------------------------

    async def handle(self, session: Session, command: Command) -> None:
        if isinstance(command, Ping):
            session.send(encode({"type": "pong"}), "control")
        elif isinstance(command, SubscribeAlerts):
            await self._subscribe_alerts(session, command)
        elif isinstance(command, SubscribeToken):
            await self._subscribe_token(session, command)
        elif isinstance(command, SubscribeTop):
            session.top = command
            self._top_sessions.add(session)
            _acknowledge(session, "subscribed", TOP)
        elif isinstance(command, Unsubscribe):
            self._unsubscribe(session, command.channel)
        elif isinstance(command, Resume):
            await self._resume(session, command.last_alert_id)

    async def _subscribe_alerts(self, session: Session, command: SubscribeAlerts) -> bool:
        if session.principal is None:
            session.send_error("unauthorized", "'channel': alerts needs a bearer token")
            return False
        if self._prefs is not None:
            await self._prefs.ensure(session.principal.user)
        session.alerts = command
        self._alert_sessions.add(session)
        _acknowledge(session, "subscribed", ALERTS)
        return True

    async def _subscribe_token(self, session: Session, command: SubscribeToken) -> None:
        token, limit = command.token, self.settings.ws_max_subscriptions
        if token not in session.tokens and len(session.tokens) >= limit:
            message = f"'channel': at most {limit} token channels per connection"
            session.send_error("too_many_subscriptions", message)
            return
        session.tokens.add(token)
        self._watchers[token].add(session)
        _acknowledge(session, "subscribed", command.channel)
        self._dirty.add(token)  # the current statistics, as a first update
        self._wake.set()

    def _unsubscribe(self, session: Session, channel: str) -> None:
        token = channel.removeprefix(TOKEN_PREFIX)
        if channel == ALERTS and session.alerts is not None:
            session.alerts = None
            self._alert_sessions.discard(session)
        elif channel == TOP and session.top is not None:
            session.top = None
            self._top_sessions.discard(session)
        elif channel.startswith(TOKEN_PREFIX) and token in session.tokens:
            session.tokens.discard(token)
            self._unwatch(session, token)
        else:
            session.send_error("not_subscribed", f"'channel': not subscribed to {channel!r}")
            return
        session.outbox.discard(channel)
        _acknowledge(session, "unsubscribed", channel)

    def _unwatch(self, session: Session, token: str) -> None:
        watchers = self._watchers.get(token)
        if watchers is not None:
            watchers.discard(session)
            if not watchers:
                del self._watchers[token]

    async def _resume(self, session: Session, after: StreamId) -> None:
        """Replay the session's alerts after ``after``, then live (``ws_session``)."""
        if session.alerts is None and not await self._subscribe_alerts(session, SubscribeAlerts()):
            return
        session.pending, session.cursor = [], None
        try:
            while session.close_code is None:
                entries = await self._feed.alerts_after(after, count=ALERT_BATCH)
                if not entries:
                    break
                owners = await self._owners_of(entries, [session])
                for entry in entries:
                    if session.wants(entry, owners.get(entry.alert.rule_id)):
                        session.deliver(entry, alert_message(entry.id, entry.raw))
                after = entries[-1].id
                await session.outbox.wait_room()
        finally:
            session.end_replay()

    # -- loops -------------------------------------------------------------------------

    async def run(self) -> None:
        """The loops, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for loop in (self._follow_updates, self._read_details, self._tail_alerts,
                         self._publish_top, self._heartbeat,
                         self._refresh_preferences):  # fmt: skip
                group.create_task(loop())

    async def _follow_updates(self) -> None:
        while not self._stopping:
            try:
                async for tokens in self._feed.token_updates():
                    if self._stopping:
                        return
                    self._mark([t for t in tokens if t in self._watchers])
            except Exception as exc:
                log.warning("token updates lost, resubscribing in %ss: %s", RETRY_S, exc)
            await asyncio.sleep(RETRY_S)

    def _mark(self, tokens: Iterable[str]) -> None:
        self._dirty.update(tokens)
        if self._dirty:
            self._wake.set()

    async def _read_details(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            tokens = [t for t in self._dirty if t in self._watchers]
            self._dirty.clear()
            for i in range(0, len(tokens), READ_CONCURRENCY):
                chunk = tokens[i : i + READ_CONCURRENCY]
                try:
                    await asyncio.gather(*(self._push_detail(t) for t in chunk))
                except Exception as exc:
                    log.warning("token detail read failed tokens=%d: %s", len(chunk), exc)
                    self._mark(chunk)
                    await asyncio.sleep(RETRY_S)

    async def _push_detail(self, token: str) -> None:
        detail = await self._live.detail(token)
        if detail is None:
            return
        channel = TOKEN_PREFIX + token
        text = encode({"type": "stats", "channel": channel, "data": detail})
        for session in self._watchers.get(token, ()):
            session.outbox.put_latest(channel, text, "token")

    async def _tail_alerts(self) -> None:
        position = await self._start_position()
        self.ready.set()
        while not self._stopping:
            try:
                entries = await self._feed.alerts_after(position, count=ALERT_BATCH,
                                                        block_ms=1_000)  # fmt: skip
                owners = await self._owners_of(entries, self._alert_sessions)
            except Exception as exc:
                log.warning("alerts not delivered yet, retrying in %ss: %s", RETRY_S, exc)
                await asyncio.sleep(RETRY_S)
                continue
            for entry in entries:
                self._dispatch(entry, owners.get(entry.alert.rule_id))
                position = entry.id

    async def _owners_of(
        self, entries: list[AlertEntry], sessions: Iterable[Session]
    ) -> dict[str, str]:
        """Owners of the entries' rules; not looked up when only admins (who receive every
        alert) are listening, so alerts reach them without a rule store."""
        users = any(s.principal is not None and not s.principal.admin for s in sessions)
        if not entries or not users:
            return {}
        return await self._owners.owners([e.alert.rule_id for e in entries])

    async def _start_position(self) -> StreamId:
        while not self._stopping:
            try:
                return await self._feed.last_alert_id()
            except Exception as exc:
                log.warning("alert stream unreadable, retrying in %ss: %s", RETRY_S, exc)
                await asyncio.sleep(RETRY_S)
        return StreamId(0, 0)

    def _dispatch(self, entry: AlertEntry, owner: str | None) -> None:
        text = ""
        for session in self._alert_sessions:
            if session.wants(entry, owner):
                text = text or alert_message(entry.id, entry.raw)
                session.offer_alert(entry, text)

    async def _refresh_preferences(self) -> None:
        """Every ``ws_prefs_ttl``: the alert preferences of the users subscribed to alerts
        (a failed read keeps the last known: ``preferences.py``)."""
        prefs = self._prefs
        if prefs is None:
            return
        while not self._stopping:
            await asyncio.sleep(prefs.ttl_s)
            await prefs.refresh(self._alert_users)

    def _alert_users(self) -> list[str]:
        return [s.principal.user for s in self._alert_sessions if s.principal is not None]

    async def _publish_top(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.ws_top_interval_ms / 1000)
            if not self._top_sessions:
                continue
            try:
                await self._send_top()
            except Exception as exc:
                log.warning("token list read failed: %s", exc)

    async def _send_top(self) -> None:
        """Each session's top list; one text per (sort, limit), sorted once per read."""
        texts: dict[tuple[str, int], str] = {}
        for session in list(self._top_sessions):
            top = session.top
            if top is None:
                continue
            key = (str(top.sort), top.limit)
            if key not in texts:
                items = (await self._rankings.ranked(top.sort))[: top.limit]
                texts[key] = encode({"type": "top", "channel": TOP, "data": {"items": items}})
            session.outbox.put_latest(TOP, texts[key], "tokens:top")

    async def _heartbeat(self) -> None:
        interval_s = self.settings.ws_heartbeat_ms / 1000
        while not self._stopping:
            await asyncio.sleep(interval_s)
            now = self._clock()
            text = encode({"type": "heartbeat", "ts_ms": int(time.time() * 1000)})
            for session in list(self.sessions):
                if now - session.last_seen > 2 * interval_s:
                    session.close(CLOSE_DEAD_PEER, "no traffic for two heartbeats", "dead_peer")
                else:
                    session.outbox.put_latest("heartbeat", text, "heartbeat")


def _acknowledge(session: Session, kind: str, channel: str) -> None:
    session.send(encode({"type": kind, "channel": channel}), "control")
