"""The users' alert preferences over ``/ws`` (a real api process; profiles and rules in the
real PostgreSQL, saved through ``PUT /api/v1/user/profile``; alerts in the real Redis
stream): muted rules, muted channels (``?client=dashboard``), ``min_interval_s``, and how
soon a saved profile applies on this api process and on another one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.integration.test_ws_alerts import RULE, alert
from tests.integration.test_ws_gateway import settings
from tests.support.apiserver import RunningApi, serve_api
from tests.support.wsclient import (
    closed_with,
    connect,
    recv,
    recv_alerts,
    send,
    silent,
    token_for,
)
from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.postgres_rules import RuleRepository
from tradepulse.adapters.redis_alerts import add_alert

TTL_S = 1.0  # TRADEPULSE_WS_PREFS_TTL of these api processes
#: How long a profile saved on another api process may take to apply: the TTL plus one
#: read (and the scheduling of a loaded machine).
BOUND_S = TTL_S + 1.0


@pytest.fixture
def rules(pg_dsn: str) -> dict[str, str]:
    """Rule ids: ``a`` and ``a2`` owned by alice, ``b`` by bob."""
    migrate(pg_dsn)
    with RuleRepository(pg_dsn, windows=("1min", "5min", "1hour")) as repo:
        return {key: repo.create(owner, RULE).id
                for key, owner in (("a", "alice"), ("a2", "alice"), ("b", "bob"))}  # fmt: skip


@pytest.fixture
def api(redis_prefix: str, pg_dsn: str, rules: dict[str, str]) -> Iterator[RunningApi]:
    with serve_api(settings(redis_prefix, pg_dsn, ws_prefs_ttl_ms=int(TTL_S * 1000))) as running:
        yield running


def save_preferences(api: RunningApi, user: str, **prefs: Any) -> None:
    response = httpx.put(f"{api.http_url}/api/v1/user/profile",
                         json={"alert_preferences": prefs},
                         headers={"Authorization": f"Bearer {token_for(user)}"})  # fmt: skip
    assert response.status_code == 200, response.text


async def subscribed(api: RunningApi, user: str, client: str | None = None) -> Any:
    url = api.ws_url + (f"?client={client}" if client else "")
    ws = await connect(url, token_for(user))
    await send(ws, {"op": "subscribe", "channel": "alerts"})
    assert await recv(ws) == {"type": "subscribed", "channel": "alerts"}
    return ws


def rule_tokens(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    assert all(m["type"] == "alert" for m in messages), messages
    return [(m["data"]["rule_id"], m["data"]["token"]) for m in messages]


def test_a_muted_rule_sends_nothing_live_or_on_resume_while_other_rules_do(
    api: RunningApi, redis_client: redis.Redis, redis_prefix: str, rules: dict[str, str]
) -> None:
    muted, other = rules["a"], rules["a2"]
    save_preferences(api, "alice", muted_rules=[muted])

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ws = await subscribed(api, "alice")
        for rule in (muted, other, muted, other):
            add_alert(redis_client, redis_prefix, alert(rule))
        live = await recv_alerts(ws, 2, quiet_s=0.5)
        await ws.close()
        ws = await connect(api.ws_url, token_for("alice"))
        await send(ws, {"op": "resume", "last_alert_id": "0-0"})
        assert await recv(ws) == {"type": "subscribed", "channel": "alerts"}
        replayed = await recv_alerts(ws, 2, quiet_s=0.5)
        await ws.close()
        return live, replayed

    live, replayed = asyncio.run(scenario())
    assert rule_tokens(live) == [(other, "ALPHA"), (other, "ALPHA")]
    assert [m["id"] for m in replayed] == [m["id"] for m in live]


def test_a_muted_websocket_channel_gets_no_alert_frames_while_the_dashboard_does(
    api: RunningApi, redis_client: redis.Redis, redis_prefix: str, rules: dict[str, str]
) -> None:
    save_preferences(api, "alice", muted_channels=["websocket"])
    save_preferences(api, "bob", muted_channels=["dashboard"])

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        sockets = {"alice/websocket": await subscribed(api, "alice"),
                   "alice/explicit": await subscribed(api, "alice", "websocket"),
                   "alice/dashboard": await subscribed(api, "alice", "dashboard"),
                   "bob/websocket": await subscribed(api, "bob"),
                   "bob/dashboard": await subscribed(api, "bob", "dashboard")}  # fmt: skip
        for key in ("a", "b", "a2"):
            add_alert(redis_client, redis_prefix, alert(rules[key]))
        got = {"alice/dashboard": await recv_alerts(sockets["alice/dashboard"], 2),
               "bob/websocket": await recv_alerts(sockets["bob/websocket"], 1)}  # fmt: skip
        for name in ("alice/websocket", "alice/explicit", "bob/dashboard"):
            got[name] = await silent(sockets[name], 0.5)  # delivered together with the above
        for ws in sockets.values():
            await ws.close()
        return got

    got = asyncio.run(scenario())
    assert rule_tokens(got["alice/dashboard"]) == [(rules["a"], "ALPHA"), (rules["a2"], "ALPHA")]
    assert rule_tokens(got["bob/websocket"]) == [(rules["b"], "ALPHA")]
    assert got["alice/websocket"] == got["alice/explicit"] == got["bob/dashboard"] == []


def test_min_interval_drops_a_second_alert_of_the_rule_and_token_inside_it_only(
    api: RunningApi, redis_client: redis.Redis, redis_prefix: str, rules: dict[str, str]
) -> None:
    save_preferences(api, "alice", min_interval_s=60)
    a, a2 = rules["a"], rules["a2"]
    # (rule, token, seconds after the first trigger)
    plan = [(a, "ALPHA", 0), (a, "ALPHA", 30), (a, "BRAVO", 30), (a2, "ALPHA", 40),
            (a, "ALPHA", 59), (a, "BRAVO", 45), (a, "ALPHA", 60), (a, "BRAVO", 91)]  # fmt: skip

    async def scenario() -> list[dict[str, Any]]:
        ws = await subscribed(api, "alice")
        for rule, token, s in plan:
            add_alert(redis_client, redis_prefix, alert(rule, token, n=s * 1000))
        got = await recv_alerts(ws, 5, quiet_s=0.5)
        await ws.close()
        return got

    got = asyncio.run(scenario())
    assert [(r, t, m["data"]["triggered_ms"] - alert(a).triggered_ms)
            for (r, t), m in zip(rule_tokens(got), got, strict=True)] == [
        (a, "ALPHA", 0), (a, "BRAVO", 30_000), (a2, "ALPHA", 40_000), (a, "ALPHA", 60_000),
        (a, "BRAVO", 91_000)]  # fmt: skip


def test_unmuting_applies_at_once_where_saved_and_within_the_ttl_on_another_api_process(
    api: RunningApi,
    redis_client: redis.Redis,
    redis_prefix: str,
    pg_dsn: str,
    rules: dict[str, str],
) -> None:
    """``api`` (TTL 1 s) is the other process; the profile is saved through a process whose
    TTL (60 s) cannot explain a prompt change there."""
    rule = rules["a"]
    save_preferences(api, "alice", muted_rules=[rule])
    saving_settings = settings(redis_prefix, pg_dsn, ws_prefs_ttl_ms=60_000)

    async def scenario(saving: RunningApi) -> dict[str, Any]:
        here, there = await subscribed(saving, "alice"), await subscribed(api, "alice")
        add_alert(redis_client, redis_prefix, alert(rule, n=0))
        muted = {"here": await silent(here, 0.5), "there": await silent(there, 0.1)}
        await asyncio.to_thread(save_preferences, saving, "alice", muted_rules=[])
        saved = time.monotonic()
        add_alert(redis_client, redis_prefix, alert(rule, n=1))
        at_once = await recv_alerts(here, 1, timeout_s=3.0, quiet_s=0.1)
        # the other process: one alert per 100 ms until one arrives
        waited, n = None, 2
        while waited is None and time.monotonic() - saved < BOUND_S + 2.0:
            add_alert(redis_client, redis_prefix, alert(rule, n=n))
            n += 1
            for message in await silent(there, 0.1):
                if message["type"] == "alert" and waited is None:
                    waited = time.monotonic() - saved
        for ws in (here, there):
            await ws.close()
        return {"muted": muted, "at_once": at_once, "waited": waited}

    with serve_api(saving_settings) as saving:
        got = asyncio.run(scenario(saving))
    assert got["muted"] == {"here": [], "there": []}
    assert rule_tokens(got["at_once"])[0] == (rule, "ALPHA")
    assert got["waited"] is not None, "the other api process never applied the saved profile"
    assert got["waited"] <= BOUND_S


def test_muting_while_subscribed_stops_the_alerts_on_another_api_process_within_the_ttl(
    api: RunningApi,
    redis_client: redis.Redis,
    redis_prefix: str,
    pg_dsn: str,
    rules: dict[str, str],
) -> None:
    rule = rules["a"]
    other_settings = settings(redis_prefix, pg_dsn, ws_prefs_ttl_ms=int(TTL_S * 1000))

    async def scenario(other: RunningApi) -> tuple[int, list[dict[str, Any]]]:
        there = await subscribed(other, "alice")
        add_alert(redis_client, redis_prefix, alert(rule, n=0))
        before = len(await recv_alerts(there, 1, quiet_s=0.1))
        await asyncio.to_thread(save_preferences, api, "alice", muted_rules=[rule])
        await asyncio.sleep(BOUND_S)
        add_alert(redis_client, redis_prefix, alert(rule, n=1))
        after = await silent(there, 1.0)
        await there.close()
        return before, after

    with serve_api(other_settings) as other:
        before, after = asyncio.run(scenario(other))
    assert before == 1
    assert after == []


def test_an_unknown_client_is_refused_with_4400_naming_the_parameter(api: RunningApi) -> None:
    async def scenario() -> tuple[dict[str, Any], tuple[int, str]]:
        ws = await connect(api.ws_url + "?client=mobile", token_for("alice"))
        first = await recv(ws)
        return first, await closed_with(ws)

    first, (code, reason) = asyncio.run(scenario())
    assert first["type"] == "error" and first["code"] == "bad_field"
    assert code == 4400 and "'client'" in reason
