"""``/ws`` of the one-process demo: the dashboard's WebSocket protocol over the API's live
source, with alerts from the in-memory store's notices (no Redis pub/sub).

Frames (JSON text, one object each)::

    client  {"op": "subscribe", "channel": "tokens:top", "sort": "-window.5min.total_volume",
             "limit": 20}
            {"op": "subscribe", "channel": "token:<addr>"}
            {"op": "subscribe", "channel": "alerts"}          (needs a valid ?token=)
            {"op": "unsubscribe", "channel": "..."}   {"op": "ping"}
    server  {"type": "top", "channel": "tokens:top", "data": {"items": [TokenSummary]}}  1/s
            {"type": "stats", "channel": "token:<addr>", "data": TokenDetail}  when written
            {"type": "alert", "channel": "alerts", "id": "<id>", "data": Alert}
            {"type": "heartbeat"}  every HEARTBEAT_S    {"type": "pong"}
            {"type": "error", "code": "...", "message": "..."}

``?token=<jwt>`` is optional for the market channels when ``public_market_data`` is on; a
token that does not verify closes the socket (code 4401) after an ``error`` frame. Alerts
go to the owner of their rule and to admins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from tradepulse.adapters.memory_store import Listener, Notice
from tradepulse.api.auth import Principal
from tradepulse.api.context import ApiContext, Ctx
from tradepulse.api.problems import ProblemError
from tradepulse.api.query import DEFAULT_SORT, MAX_LIMIT, SortKey, parse_sort
from tradepulse.api.reader import sort_summaries
from tradepulse.core.errors import AuthError

log = logging.getLogger(__name__)

TICK_S = 1.0
HEARTBEAT_S = 15.0
MAX_CHANNELS = 50

_encode = msgspec.json.Encoder().encode
_frame = msgspec.json.Decoder(dict[str, Any])


class Notices(Protocol):
    """Where alerts come from (``MemoryStore``): listeners are called on any thread."""

    def subscribe(self, listener: Listener) -> None: ...

    def unsubscribe(self, listener: Listener) -> None: ...


class _Session:
    """One connection: its subscriptions and what was last sent for each token."""

    def __init__(
        self, socket: WebSocket[Any, Any, Any], ctx: ApiContext, principal: Principal | None,
        owner_of: Callable[[str], str | None],
    ) -> None:  # fmt: skip
        self.socket = socket
        self.ctx = ctx
        self.principal = principal
        self.owner_of = owner_of
        self.top: tuple[SortKey, int] | None = None
        self.tokens: dict[str, str | None] = {}  # token -> last_update sent
        self.alerts = False
        self.queue: asyncio.Queue[Notice] = asyncio.Queue(maxsize=1_000)

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame; a socket closed meanwhile is left to the receive loop."""
        try:
            await self.socket.send_text(_encode(frame).decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            log.debug("websocket closed while sending type=%s", frame.get("type"))

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "code": code, "message": message})

    async def handle(self, frame: dict[str, Any]) -> None:
        op, channel = frame.get("op"), frame.get("channel")
        if op == "ping":
            await self.send({"type": "pong"})
        elif op not in ("subscribe", "unsubscribe") or not isinstance(channel, str):
            await self.error("bad_request", "op must be subscribe, unsubscribe or ping, "
                             "with a channel string")  # fmt: skip
        elif op == "unsubscribe":
            self.drop(channel)
        else:
            await self.subscribe(channel, frame)

    def drop(self, channel: str) -> None:
        if channel == "tokens:top":
            self.top = None
        elif channel == "alerts":
            self.alerts = False
        else:
            self.tokens.pop(channel.removeprefix("token:"), None)

    async def subscribe(self, channel: str, frame: dict[str, Any]) -> None:
        if channel == "alerts":
            if self.principal is None:
                await self.error("unauthorized", "the alerts channel needs ?token=<jwt>")
            else:
                self.alerts = True
        elif channel == "tokens:top":
            await self.subscribe_top(frame)
        elif channel.startswith("token:") and len(channel) > 6:
            if len(self.tokens) >= MAX_CHANNELS:
                await self.error("too_many", f"at most {MAX_CHANNELS} token channels")
                return
            self.tokens[channel[6:]] = None
            await self.push_token(channel[6:])
        else:
            await self.error("unknown_channel", f"unknown channel {channel!r}")

    async def subscribe_top(self, frame: dict[str, Any]) -> None:
        sort, limit = frame.get("sort", DEFAULT_SORT), frame.get("limit", 20)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            await self.error("bad_request", f"limit must be an integer 1..{MAX_LIMIT}")
            return
        try:
            key = parse_sort(str(sort), self.ctx.settings.windows)
        except ProblemError as exc:
            await self.error("bad_request", exc.detail)
            return
        self.top = (key, limit)
        await self.push_top()

    async def push_top(self) -> None:
        if self.top is None:
            return
        key, limit = self.top
        items = sort_summaries(await self.ctx.live.summaries(), key)[:limit]
        await self.send({"type": "top", "channel": "tokens:top", "data": {"items": items}})

    async def push_token(self, token: str) -> None:
        detail = await self.ctx.live.detail(token)
        if detail is None or self.tokens.get(token) == detail.last_update:
            return
        self.tokens[token] = detail.last_update
        await self.send({"type": "stats", "channel": f"token:{token}", "data": detail})

    async def tick(self) -> None:
        """Every second: the top list and the token channels whose token was written."""
        await self.push_top()
        for token in list(self.tokens):
            await self.push_token(token)

    async def push_alerts(self) -> None:
        while True:
            notice = await self.queue.get()
            alert = notice.alert
            if not self.alerts or alert is None or not self.may_see(alert.rule_id):
                continue
            await self.send({"type": "alert", "channel": "alerts", "id": alert.id,
                             "data": alert})  # fmt: skip

    def may_see(self, rule_id: str) -> bool:
        owner = self.owner_of(rule_id)
        return self.principal is not None and (owner is None or self.principal.may_access(owner))


def live_ws_handler(notices: Notices, owner_of: Callable[[str], str | None]) -> Callable[..., Any]:
    """The ``/ws`` handler; ``owner_of(rule_id)`` names who may see a rule's alerts."""

    @websocket("/ws", opt={"query": ("token",)})
    async def live_ws(socket: WebSocket[Any, Any, Any], ctx: Ctx) -> None:
        await socket.accept()
        principal = await _principal(socket, ctx)
        if principal is False:
            return
        session = _Session(
            socket, ctx, principal if isinstance(principal, Principal) else None, owner_of
        )
        loop = asyncio.get_running_loop()

        def on_notice(notice: Notice) -> None:
            if notice.kind == "alert":
                loop.call_soon_threadsafe(_offer, session.queue, notice)

        notices.subscribe(on_notice)
        try:
            await _serve(session)
        finally:
            notices.unsubscribe(on_notice)

    return live_ws


def _offer(queue: asyncio.Queue[Notice], notice: Notice) -> None:
    if not queue.full():  # a client that does not read loses alerts, not the server memory
        queue.put_nowait(notice)


async def _principal(socket: WebSocket[Any, Any, Any], ctx: ApiContext) -> Principal | bool:
    """The token's principal; ``True`` without a token (public market data); ``False``
    when the socket was closed (a bad token, or none where one is required)."""
    token = socket.query_params.get("token")
    try:
        if token:
            return ctx.auth.verify(token)
        if ctx.settings.public_market_data:
            return True
        raise AuthError("missing", "a token is required (?token=<jwt>)")
    except AuthError as exc:
        await socket.send_text(_encode({"type": "error", "code": "unauthorized",
                                        "message": str(exc)}).decode())  # fmt: skip
        await socket.close(code=4401, reason="unauthorized")
        return False


async def _serve(session: _Session) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(_ticks, session)
        group.start_soon(session.push_alerts)
        try:
            await _receive(session)
        finally:
            group.cancel_scope.cancel()


async def _receive(session: _Session) -> None:
    while True:
        try:
            raw = await session.socket.receive_text()
        except WebSocketDisconnect:
            return
        try:
            frame = _frame.decode(raw)
        except msgspec.DecodeError:
            await session.error("bad_request", "frames must be JSON objects")
            continue
        await session.handle(frame)


async def _ticks(session: _Session) -> None:
    beats = 0.0
    while True:
        await anyio.sleep(TICK_S)
        await session.tick()
        beats += TICK_S
        if beats >= HEARTBEAT_S:
            beats = 0.0
            await session.send({"type": "heartbeat"})
