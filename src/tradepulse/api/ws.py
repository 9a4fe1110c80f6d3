"""``/ws``: the WebSocket endpoint (messages in ``ws_protocol``, state in ``ws_session``,
fan-out in ``ws_hub``).

Authentication: ``Authorization: Bearer <jwt>`` or ``?token=<jwt>`` (the header wins when
both are given). The connection is accepted first and then closed with 4401 and a reason
(``expired: the token has expired``) when the token is refused: browsers cannot read the
status of a refused handshake, but they can read a close code. Without a token a client may
subscribe to the market channels when ``TRADEPULSE_PUBLIC_MARKET_DATA`` is true (else 4401);
``alerts`` needs a user.

Channel: ``?client=dashboard`` says the connection is the dashboard's; without it a
connection is the ``websocket`` channel. A user who muted a channel in their alert
preferences gets no alerts over connections of that channel. Another value is refused after
the token: an ``error`` frame (``bad_field``), then the close 4400.

A connection runs two tasks: the receiver (rate limit, parse, obey) and the sender (drains
the ``Outbox``); the first to end, or a ``Session.close``, ends both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from typing import Any, TypeGuard, cast

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from tradepulse import metrics
from tradepulse.api.auth import Principal, bearer_token
from tradepulse.api.context import ApiContext
from tradepulse.api.ws_hub import Gateway
from tradepulse.api.ws_protocol import WsError, parse_frame
from tradepulse.api.ws_session import (
    CLOSE_BAD_REQUEST,
    CLOSE_RATE,
    CLOSE_TOO_MANY,
    CLOSE_UNAUTHORIZED,
    Session,
)
from tradepulse.core.errors import AuthError
from tradepulse.core.profiles import CHANNELS, Channel

log = logging.getLogger(__name__)
MAX_REASON_BYTES = 120  # a close reason is at most 123 bytes
#: The sent-message counters by channel label, looked up once (they are hit per frame).
_SENT = {label: metrics.WS_MESSAGES_SENT.labels(label)
         for label in ("alerts", "token", "tokens:top", "heartbeat", "control")}  # fmt: skip


class RefusedError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _principal(socket: WebSocket[Any, Any, Any], ctx: ApiContext) -> Principal | None:
    """The token's principal; None for an allowed anonymous client; ``RefusedError`` else."""
    try:
        header = bearer_token(socket.headers.get("authorization"))
        token = header or socket.query_params.get("token")
        if not token:
            if ctx.settings.public_market_data:
                return None
            raise AuthError("missing", "a bearer token is required")
        principal = ctx.auth.verify(token)
    except AuthError as exc:
        metrics.AUTH_FAILURES.labels(exc.reason).inc()
        raise RefusedError(f"{exc.reason}: {exc.detail}") from None
    return principal


_TOKEN_QUERY_RE = re.compile(r"([?&]token=)[^&\s\"]+")


class TokenQueryRedactor(logging.Filter):
    """Shows ``?token=<jwt>`` as ``?token=***`` in log records (uvicorn logs the path and
    query string of every WebSocket handshake); installed by ``tradepulse api``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN_QUERY_RE.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)  # fmt: skip
        if isinstance(record.msg, str):
            record.msg = _TOKEN_QUERY_RE.sub(r"\1***", record.msg)
        return True


@websocket("/ws")
async def ws_endpoint(socket: WebSocket[Any, Any, Any]) -> None:
    """Live statistics, the top tokens and alerts (see the README, "WebSocket")."""
    gateway: Gateway = socket.app.state.gateway
    await socket.accept()
    try:
        principal = _principal(socket, socket.app.state.ctx)
    except RefusedError as exc:
        metrics.WS_DISCONNECTS.labels("auth").inc()
        await _refuse(socket, exc.reason)
        return
    client = socket.query_params.get("client", "websocket")
    if not _is_channel(client):
        metrics.WS_DISCONNECTS.labels("bad_request").inc()
        reason = f"'client' must be {' or '.join(CHANNELS)}"
        await _refuse(socket, reason, "bad_field", CLOSE_BAD_REQUEST)
        return
    peer = socket.client.host if socket.client is not None else "unknown"
    session = gateway.open(principal, peer, client)
    if session is None:
        metrics.WS_DISCONNECTS.labels("too_many").inc()
        limit = gateway.settings.ws_max_per_user
        await _close(socket, CLOSE_TOO_MANY, f"too many connections: at most {limit} per user")
        return
    try:
        await _serve(socket, gateway, session)
    finally:
        gateway.release(session)


async def _serve(socket: WebSocket[Any, Any, Any], gateway: Gateway, session: Session) -> None:
    tasks = [asyncio.create_task(_receive(socket, gateway, session)),
             asyncio.create_task(_send(socket, session)),
             asyncio.create_task(session.closed.wait())]  # fmt: skip
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    failed = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
    for exc in failed:
        log.error("websocket connection failed: %r", exc, exc_info=exc)
    if session.close_code is None:  # the peer left (or a task failed)
        metrics.WS_DISCONNECTS.labels("error" if failed else "normal").inc()
        await _close(socket, 1011 if failed else 1000, "internal error" if failed else "")
        return
    await _close(socket, session.close_code, session.close_reason)


async def _receive(socket: WebSocket[Any, Any, Any], gateway: Gateway, session: Session) -> None:
    settings = gateway.settings
    while session.close_code is None:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        session.last_seen = time.monotonic()
        if not session.bucket.take():
            session.send_error("rate_limited", f"more than {settings.ws_rate} messages a second")
            if session.bucket.rejected >= settings.ws_burst:
                session.close(CLOSE_RATE, "rate limited", "rate_limited")
            continue
        try:
            frame = cast(str | None, message.get("text"))
            command = parse_frame(frame, settings.windows, settings.ws_max_frame_bytes)
            await gateway.handle(session, command)
        except WsError as exc:
            session.send_error(exc.code, exc.message)


async def _send(socket: WebSocket[Any, Any, Any], session: Session) -> None:
    """Drain the outbox; an alert's delivery time is observed when its frame is written."""
    while True:
        text, label, born_s = await session.outbox.get()
        try:
            await socket.send_text(text)
        except (WebSocketDisconnect, OSError):
            return
        _SENT[label].inc()
        if born_s is not None:
            metrics.WS_DELIVERY_SECONDS.observe(max(time.time() - born_s, 0.0))


def _is_channel(client: str) -> TypeGuard[Channel]:
    return client in CHANNELS


async def _refuse(
    socket: WebSocket[Any, Any, Any], reason: str, code: str = "unauthorized",
    close_code: int = CLOSE_UNAUTHORIZED,
) -> None:  # fmt: skip
    """An ``error`` frame (for clients that cannot read close reasons, such as browsers'
    scripts), then close with the same reason."""
    frame = {"type": "error", "code": code, "message": reason}
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await socket.send_text(json.dumps(frame))
    await _close(socket, close_code, reason)


async def _close(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    """Close with ``code``; a peer already gone is not an error."""
    text = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await socket.close(code, text)
