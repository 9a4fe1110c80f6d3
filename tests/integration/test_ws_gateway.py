"""``/ws`` through a real uvicorn server on loopback, the real Redis (what workers write, via
``RedisStore``) and, for alert owners, the real PostgreSQL (``RuleRepository``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import redis

from tests.integration.test_api_tokens import SPECS, TOKENS, seed
from tests.support.apiserver import RunningApi, serve_api
from tests.support.wsclient import (
    SECRET,
    closed_with,
    connect,
    recv,
    recv_type,
    send,
    silent,
    token_for,
)
from tradepulse import metrics
from tradepulse.adapters.redis_store import RedisStore, TokenUpdate
from tradepulse.config import Settings
from tradepulse.core.trade import Trade
from tradepulse.core.windows import TokenWindows

PG_UNUSED = "postgresql://postgres@127.0.0.1:5432/test"


def settings(prefix: str, pg_dsn: str = PG_UNUSED, **overrides: Any) -> Settings:
    return Settings(windows=SPECS, redis_prefix=prefix, pg_dsn=pg_dsn, jwt_secret=SECRET,
                    **overrides)  # fmt: skip


@pytest.fixture
def api(redis_prefix: str) -> Iterator[RunningApi]:
    with serve_api(settings(redis_prefix)) as running:
        yield running


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def counter(metric: Any, label: str) -> float:
    return float(metric.labels(label)._value.get())


# -- authentication ----------------------------------------------------------------------


def _forged() -> str:
    return token_for("mallory", secret="another-secret-of-enough-length-000000")


def _none_alg() -> str:
    return jwt.encode({"sub": "mallory", "exp": int(time.time()) + 60}, None, algorithm="none")


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: "not-a-jwt", "malformed"),
        (lambda: token_for("alice", ttl_s=-60), "expired"),
        (_forged, "bad_signature"),
        (_none_alg, "wrong_algorithm"),
    ],
)
@pytest.mark.parametrize("carrier", ["header", "query"])
def test_ws_refused_token_closes_4401_with_the_reason(
    api: RunningApi, make_token: Any, reason: str, carrier: str
) -> None:
    async def scenario() -> tuple[int, str]:
        token = make_token()
        if carrier == "header":
            ws = await connect(api.ws_url, token)
        else:
            ws = await connect(f"{api.ws_url}?token={token}")
        return await closed_with(ws)

    before = counter(metrics.AUTH_FAILURES, reason)
    code, text = run(scenario())
    assert code == 4401
    assert text.startswith(f"{reason}:")
    assert counter(metrics.AUTH_FAILURES, reason) == before + 1


def test_ws_without_token_and_private_market_data_closes_4401(redis_prefix: str) -> None:
    async def scenario(url: str) -> tuple[int, str]:
        return await closed_with(await connect(url))

    with serve_api(settings(redis_prefix, public_market_data=False)) as api:
        code, text = run(scenario(api.ws_url))
    assert (code, text) == (4401, "missing: a bearer token is required")


def test_ws_anonymous_gets_market_channels_but_not_alerts(api: RunningApi) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with await connect(api.ws_url) as ws:
            await send(ws, {"op": "subscribe", "channel": "token:ALPHA"})
            first = await recv(ws)
            await send(ws, {"op": "subscribe", "channel": "alerts"})
            return [first, await recv(ws)]

    subscribed, refused = run(scenario())
    assert subscribed == {"type": "subscribed", "channel": "token:ALPHA"}
    assert refused["type"] == "error"
    assert refused["code"] == "unauthorized"
    assert "alerts" in refused["message"]


def test_ws_valid_token_by_query_is_accepted(api: RunningApi) -> None:
    async def scenario() -> dict[str, Any]:
        async with await connect(f"{api.ws_url}?token={token_for('alice')}") as ws:
            await send(ws, {"op": "subscribe", "channel": "alerts"})
            return await recv(ws)

    assert run(scenario()) == {"type": "subscribed", "channel": "alerts"}


# -- channels ----------------------------------------------------------------------------


def test_ws_subscribe_then_unsubscribe_are_acknowledged_and_unknown_unsubscribe_errs(
    api: RunningApi,
) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with await connect(api.ws_url, token_for("alice")) as ws:
            out = []
            for op, channel in [("subscribe", "alerts"), ("unsubscribe", "alerts"),
                                ("subscribe", "tokens:top"), ("unsubscribe", "tokens:top"),
                                ("unsubscribe", "token:NOPE")]:  # fmt: skip
                await send(ws, {"op": op, "channel": channel})
                out.append(await recv(ws))
            return out

    replies = run(scenario())
    assert replies[:4] == [
        {"type": "subscribed", "channel": "alerts"},
        {"type": "unsubscribed", "channel": "alerts"},
        {"type": "subscribed", "channel": "tokens:top"},
        {"type": "unsubscribed", "channel": "tokens:top"},
    ]
    assert replies[4]["type"] == "error"
    assert replies[4]["code"] == "not_subscribed"


def _write_token(client: redis.Redis, prefix: str, token: str, n: int) -> None:
    tw = TokenWindows(SPECS)
    t_ms = 1_750_000_000_000
    for i in range(n):
        trade = Trade(token, f"w{i}", i % 2 == 0, 0.1, 10.0 + i, 0.001, (10.0 + i) * 0.001,
                      t_ms - 1_000 * (n - i), f"tx{i}", 0)  # fmt: skip
        tw.add(trade, trade.ts_ms)
    update = TokenUpdate(token, tw.sync_view(full=True), tw.stats(t_ms), tw.newest_ms, t_ms)
    assert RedisStore(client, prefix=prefix).write([update]) == []


def test_ws_token_channel_sends_the_detail_body_after_each_worker_write(
    api: RunningApi, redis_client: redis.Redis, redis_prefix: str
) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with await connect(api.ws_url) as ws:
            await send(ws, {"op": "subscribe", "channel": "token:ZULU"})
            assert (await recv(ws))["type"] == "subscribed"
            assert await silent(ws, 0.3) == []  # nothing stored yet: no message
            received = []
            for n in (3, 5):
                await asyncio.to_thread(_write_token, redis_client, redis_prefix, "ZULU", n)
                received.append(await recv_type(ws, "stats"))
                detail = httpx.get(f"{api.http_url}/api/v1/tokens/ZULU").json()
                assert received[-1]["data"] == detail
            return received

    first, second = run(scenario())
    assert first["channel"] == second["channel"] == "token:ZULU"
    assert first["data"]["windows"]["1hour"]["trade_count"] == 3
    assert second["data"]["windows"]["1hour"]["trade_count"] == 5


def test_ws_token_subscription_sends_the_current_statistics_first(
    api: RunningApi, redis_client: redis.Redis, redis_prefix: str
) -> None:
    seed(redis_client, redis_prefix)

    async def scenario() -> dict[str, Any]:
        async with await connect(api.ws_url) as ws:
            await send(ws, {"op": "subscribe", "channel": "token:ALPHA"})
            return await recv_type(ws, "stats")

    message = run(scenario())
    assert message["data"] == httpx.get(f"{api.http_url}/api/v1/tokens/ALPHA").json()


def test_ws_top_channel_sends_the_sorted_list_every_interval(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    seed(redis_client, redis_prefix)

    async def scenario(api: RunningApi) -> tuple[list[dict[str, Any]], float]:
        async with await connect(api.ws_url) as ws:
            await send(ws, {"op": "subscribe", "channel": "tokens:top",
                            "sort": "-window.1hour.trade_count", "limit": 3})  # fmt: skip
            await recv(ws)
            first = await recv_type(ws, "top")
            started = time.monotonic()
            second = await recv_type(ws, "top")
            return [first, second], time.monotonic() - started

    with serve_api(settings(redis_prefix, ws_top_interval_ms=200)) as api:
        (first, second), gap_s = run(scenario(api))
        params = {"sort": "-window.1hour.trade_count", "limit": 3}
        rest = httpx.get(f"{api.http_url}/api/v1/tokens", params=params).json()
    assert first["channel"] == "tokens:top"
    assert first["data"]["items"] == rest["items"] == second["data"]["items"]
    assert len(first["data"]["items"]) == 3 < len(TOKENS)
    assert 0.1 < gap_s < 1.0
