"""WebSocket client helpers for the ``/ws`` tests (the ``websockets`` library)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from tradepulse.api.auth import issue_token

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def token_for(user: str, *, admin: bool = False, ttl_s: int = 300, secret: str = SECRET) -> str:
    return issue_token(secret, "HS256", user, admin=admin, ttl_s=ttl_s, now_s=int(time.time()))


async def connect(url: str, token: str | None = None, **kwargs: Any) -> ClientConnection:
    """A connection authenticated by the Authorization header (``token`` given)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return await websockets.connect(url, additional_headers=headers, **kwargs)


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def recv(ws: ClientConnection, timeout_s: float = 3.0) -> dict[str, Any]:
    """The next message that is not a heartbeat."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
        if message["type"] != "heartbeat":
            return message


async def recv_type(ws: ClientConnection, kind: str, timeout_s: float = 3.0) -> dict[str, Any]:
    """The next message of type ``kind`` (others skipped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        message = await recv(ws, max(deadline - time.monotonic(), 0.001))
        if message["type"] == kind:
            return message


async def silent(ws: ClientConnection, wait_s: float = 0.5) -> list[dict[str, Any]]:
    """Messages (heartbeats aside) received within ``wait_s``: what should not come."""
    out = []
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(await recv(ws, left))
        except TimeoutError:
            break
    return out


async def closed_with(ws: ClientConnection, timeout_s: float = 3.0) -> tuple[int, str]:
    """The close code and reason the server sent (messages before it are skipped)."""
    try:
        async with asyncio.timeout(timeout_s):
            async for _ in ws:
                pass
    except websockets.ConnectionClosed:
        pass
    assert ws.close_code is not None, "the server did not close the connection"
    return ws.close_code, ws.close_reason or ""


async def recv_alerts(ws: ClientConnection, n: int, timeout_s: float = 10.0,
                      quiet_s: float = 0.3) -> list[dict[str, Any]]:  # fmt: skip
    """``n`` alert messages, then whatever else arrives within ``quiet_s`` (which should be
    nothing: a test compares the whole list)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n:
        message = await recv(ws, max(deadline - time.monotonic(), 0.001))
        if message["type"] == "alert":
            out.append(message)
    return out + await silent(ws, quiet_s)
