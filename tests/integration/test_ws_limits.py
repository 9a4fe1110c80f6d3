"""Limits of ``/ws`` through a real uvicorn server: slow clients (4008), inbound rate (4029),
connections per user (4009), dead peers (4408), and an error for every kind of bad frame."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from typing import Any

import msgspec
import pytest
import redis

from tests.integration.test_ws_gateway import counter, settings
from tests.support.apiserver import RunningApi, serve_api
from tests.support.wsclient import closed_with, connect, recv, send, silent, token_for
from tradepulse import metrics
from tradepulse.adapters.redis_alerts import ALERT_FIELD, stream_key
from tradepulse.core.alerts import Alert


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _add_alerts(client: redis.Redis, prefix: str, n: int) -> None:
    """``n`` alerts of rules nobody owns (only admins receive them), ~1 KB each."""
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        body = Alert(str(uuid.uuid4()), "file-rule", "r", 1, "ALPHA", i, {"x": 1.0},
                     {}, 0, "t" * 900)  # fmt: skip
        pipe.xadd(stream_key(prefix), {ALERT_FIELD: msgspec.json.encode(body)})
    pipe.execute()


def test_ws_slow_client_is_closed_4008_when_its_alert_queue_overflows(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    async def scenario(api: RunningApi) -> tuple[int, str, int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small TCP window
        sock.connect((api.host, api.port))
        ws = await connect(api.ws_url, token_for("root", admin=True), sock=sock, max_queue=1)
        await send(ws, {"op": "subscribe", "channel": "alerts"})
        await asyncio.to_thread(_add_alerts, redis_client, redis_prefix, 3_000)
        await asyncio.sleep(2.0)  # the client reads nothing meanwhile
        received = 0
        try:
            async with asyncio.timeout(10):
                async for _ in ws:
                    received += 1
        except Exception:
            pass
        return ws.close_code or 0, ws.close_reason or "", received

    before = counter(metrics.WS_DISCONNECTS, "slow_client")
    with serve_api(settings(redis_prefix, ws_send_queue=16)) as api:
        code, reason, received = run(scenario(api))
        sessions = len(api.app.state.gateway.sessions)
    assert (code, reason) == (4008, "slow client: send queue full")
    assert 0 < received < 3_000
    assert counter(metrics.WS_DISCONNECTS, "slow_client") == before + 1
    assert sessions == 0


def test_ws_flood_gets_rate_limited_errors_then_close_4029(redis_prefix: str) -> None:
    async def scenario(url: str) -> tuple[list[dict[str, Any]], tuple[int, str]]:
        ws = await connect(url)
        for _ in range(30):
            await send(ws, {"op": "ping"})
        messages = []
        try:
            async with asyncio.timeout(3):
                async for raw in ws:
                    messages.append(json.loads(raw))
        except Exception:
            pass
        return messages, (ws.close_code or 0, ws.close_reason or "")

    with serve_api(settings(redis_prefix, ws_rate=1, ws_burst=5)) as api:
        messages, close = run(scenario(api.ws_url))
    kinds = [m.get("code", m["type"]) for m in messages if m["type"] != "heartbeat"]
    assert kinds[:5] == ["pong"] * 5
    assert kinds[5] == "rate_limited"
    assert "pong" not in kinds[5:]
    assert close == (4029, "rate limited")


def test_ws_connections_beyond_the_per_user_limit_close_4009(redis_prefix: str) -> None:
    async def scenario(url: str) -> tuple[tuple[int, str], dict[str, Any]]:
        kept = [await connect(url, token_for("alice")) for _ in range(2)]
        refused = await closed_with(await connect(url, token_for("alice")))
        other = await connect(url, token_for("bob"))
        await send(other, {"op": "ping"})
        pong = await recv(other)
        for ws in [*kept, other]:
            await ws.close()
        return refused, pong

    with serve_api(settings(redis_prefix, ws_max_per_user=2)) as api:
        refused, pong = run(scenario(api.ws_url))
    assert refused == (4009, "too many connections: at most 2 per user")
    assert pong == {"type": "pong"}


def test_ws_silent_peer_is_closed_4408_and_a_talking_one_is_kept(redis_prefix: str) -> None:
    async def talker(url: str, stop: asyncio.Event) -> int | None:
        ws = await connect(url)
        while not stop.is_set():
            await send(ws, {"op": "pong"})
            await asyncio.sleep(0.1)
        code = ws.close_code
        await ws.close()
        return code

    async def scenario(url: str) -> tuple[tuple[int, str], int | None, list[str]]:
        stop = asyncio.Event()
        talking = asyncio.create_task(talker(url, stop))
        silent_ws = await connect(url)
        kinds = [json.loads(await silent_ws.recv())["type"]]
        closed = await closed_with(silent_ws, 3)
        stop.set()
        return closed, await talking, kinds

    before = counter(metrics.WS_DISCONNECTS, "dead_peer")
    with serve_api(settings(redis_prefix, ws_heartbeat_ms=200)) as api:
        closed, talker_code, kinds = run(scenario(api.ws_url))
    assert closed == (4408, "no traffic for two heartbeats")
    assert kinds == ["heartbeat"]
    assert talker_code is None
    assert counter(metrics.WS_DISCONNECTS, "dead_peer") == before + 1


BAD_FRAMES = [
    ("not json {", "bad_json", "JSON"),
    ("[1, 2]", "not_object", "'op'"),
    ('"ping"', "not_object", "'op'"),
    ("{}", "unknown_op", "'op'"),
    ('{"op": "jump"}', "unknown_op", "'op'"),
    ('{"op": "subscribe"}', "unknown_channel", "'channel'"),
    ('{"op": "subscribe", "channel": "weather"}', "unknown_channel", "'channel'"),
    ('{"op": "subscribe", "channel": "token:"}', "unknown_channel", "'channel'"),
    ('{"op": "subscribe", "channel": 7}', "unknown_channel", "'channel'"),
    ('{"op": "subscribe", "channel": "tokens:top", "sort": "volume"}', "bad_sort", "'sort'"),
    ('{"op": "subscribe", "channel": "tokens:top", "sort": "-window.2min.total_volume"}',
     "bad_sort", "'sort'"),
    ('{"op": "subscribe", "channel": "tokens:top", "sort": "window.5min.nope"}', "bad_sort",
     "'sort'"),
    ('{"op": "subscribe", "channel": "tokens:top", "limit": 0}', "bad_field", "'limit'"),
    ('{"op": "subscribe", "channel": "tokens:top", "limit": "5"}', "bad_field", "'limit'"),
    ('{"op": "subscribe", "channel": "alerts", "tokens": "ALPHA"}', "bad_field", "'tokens'"),
    ('{"op": "subscribe", "channel": "alerts", "rules": [1]}', "bad_field", "'rules'"),
    ('{"op": "resume", "last_alert_id": 12}', "bad_id", "'last_alert_id'"),
    ('{"op": "unsubscribe", "channel": "alerts"}', "not_subscribed", "'channel'"),
    ('{"op": "ping", "pad": "' + "x" * 5_000 + '"}', "too_large", "limit"),
    (b"\x00\x01binary", "not_text", "text"),
]  # fmt: skip


@pytest.mark.parametrize(("frame", "code", "names"), BAD_FRAMES)
def test_ws_bad_frame_gets_an_error_naming_the_field_and_the_connection_lives(
    redis_prefix: str, frame: str | bytes, code: str, names: str
) -> None:
    async def scenario(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
        async with await connect(url, token_for("alice")) as ws:
            await ws.send(frame)
            reply = await recv(ws)
            await send(ws, {"op": "ping"})
            return reply, await recv(ws)

    with serve_api(settings(redis_prefix)) as api:
        reply, after = run(scenario(api.ws_url))
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert names in reply["message"]
    assert after == {"type": "pong"}


def test_ws_token_subscriptions_beyond_the_limit_are_refused(redis_prefix: str) -> None:
    async def scenario(url: str) -> list[dict[str, Any]]:
        async with await connect(url) as ws:
            for name in ("A", "B", "C"):
                await send(ws, {"op": "subscribe", "channel": f"token:{name}"})
            return await silent(ws, 0.5)

    with serve_api(settings(redis_prefix, ws_max_subscriptions=2)) as api:
        replies = run(scenario(api.ws_url))
    assert [r.get("channel", r.get("code")) for r in replies] == [
        "token:A", "token:B", "too_many_subscriptions"
    ]  # fmt: skip
