"""Where the WebSocket gateway's notifications come from: the seam between ``ws_hub`` and
a store.

* ``Feed.token_updates()``: batches of token addresses a worker has just written (each
  batch: the tokens of one worker write, in the order written); an empty batch when nothing
  came for about a second (so that the consumer can check whether to stop).
* ``Feed.alerts_after(after_id)``: entries of the alerts stream after ``after_id``, oldest
  first (``block_ms``: wait that long for one when there is none yet). Entry ids are Redis
  stream ids (``<ms>-<seq>``) and compare as ``StreamId`` tuples.
* ``RuleOwners.owners(rule_ids)``: who owns each rule (a rule without a row is absent).

``RedisFeed`` implements ``Feed`` over the keys the workers write (``redis_store``):
pub/sub ``{prefix}stats.updated`` and the stream ``{prefix}alerts``. An in-memory store
provides its own ``Feed``; the gateway knows only these Protocols and ``LiveSource``
(``memory_feed.py`` is the demo's).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple, Protocol, cast

import msgspec
import redis.asyncio as aioredis

from tradepulse.adapters.redis_alerts import ALERT_FIELD, stream_key
from tradepulse.adapters.redis_store import STATS_CHANNEL
from tradepulse.core.alerts import Alert
from tradepulse.core.types import TokenId

log = logging.getLogger(__name__)
_DECODER = msgspec.json.Decoder(Alert)
_ID_RE = re.compile(r"^(\d{1,20})-(\d{1,20})$|^(\d{1,20})$")


class StreamId(NamedTuple):
    """A stream entry id ``<ms>-<seq>`` as a comparable pair."""

    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


def parse_stream_id(text: str) -> StreamId | None:
    """``<ms>-<seq>`` or ``<ms>`` (= ``<ms>-0``); None for anything else."""
    match = _ID_RE.match(text)
    if match is None:
        return None
    if match.group(3) is not None:
        return StreamId(int(match.group(3)), 0)
    return StreamId(int(match.group(1)), int(match.group(2)))


class AlertEntry(NamedTuple):
    """One readable entry of the alerts stream; ``raw`` is the alert's JSON as stored."""

    id: StreamId
    alert: Alert
    raw: bytes


class Feed(Protocol):
    def token_updates(self) -> AsyncIterator[list[TokenId]]: ...

    async def last_alert_id(self) -> StreamId: ...

    async def alerts_after(
        self, after_id: StreamId, *, count: int, block_ms: int | None = None
    ) -> list[AlertEntry]: ...


class RuleOwners(Protocol):
    async def owners(self, rule_ids: Sequence[str]) -> dict[str, str]: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(raw: Sequence[tuple[Any, Any]]) -> list[AlertEntry]:
    """Decoded entries; one that is not an ``Alert`` is logged and skipped (it could never
    be delivered: the persister reports it too)."""
    out = []
    for entry_id, fields in raw:
        sid = parse_stream_id(_text(entry_id))
        payload = (fields or {}).get(ALERT_FIELD.encode())
        try:
            if sid is None or payload is None:
                raise msgspec.DecodeError("no alert field")
            out.append(AlertEntry(sid, _DECODER.decode(payload), payload))
        except msgspec.DecodeError:
            log.warning("unreadable alert entry skipped id=%s", entry_id)
    return out


class RedisFeed:
    """``Feed`` over Redis with a client it does not own (``prefix``: the key prefix)."""

    def __init__(self, client: aioredis.Redis, prefix: str = "") -> None:
        self._client = client
        self._channel = f"{prefix}{STATS_CHANNEL}"
        self._stream = stream_key(prefix)

    async def token_updates(self) -> AsyncIterator[list[TokenId]]:
        """Every message of ``stats.updated`` from the subscription on (none before it)."""
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    yield message["data"].decode().split("\n")
                else:
                    yield []
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def last_alert_id(self) -> StreamId:
        """The id of the newest entry (``0-0`` for an empty or missing stream)."""
        newest = cast(list[Any], await self._client.xrevrange(self._stream, count=1))
        if not newest:
            return StreamId(0, 0)
        return parse_stream_id(_text(newest[0][0])) or StreamId(0, 0)

    async def alerts_after(
        self, after_id: StreamId, *, count: int, block_ms: int | None = None
    ) -> list[AlertEntry]:
        """Up to ``count`` entries after ``after_id``; with ``block_ms``, XREAD BLOCK."""
        if block_ms is None:
            raw = await self._client.xrange(self._stream, min=f"({after_id}", count=count)
            return _entries(cast(list[Any], raw))
        reply = cast(list[Any], await self._client.xread({self._stream: str(after_id)},
                                                         count=count, block=block_ms))  # fmt: skip
        return _entries(reply[0][1]) if reply else []
