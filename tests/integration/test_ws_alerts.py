"""Alerts over ``/ws``: delivered once and only to the owner of their rule (rules in the real
PostgreSQL, alerts in the real Redis stream), and resumed after a disconnect without gaps or
duplicates."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.integration.test_ws_gateway import settings
from tests.support.apiserver import RunningApi, serve_api
from tests.support.wsclient import connect, recv, recv_alerts, send, token_for
from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.postgres_rules import RuleRepository
from tradepulse.adapters.redis_alerts import add_alert
from tradepulse.core.alerts import Alert

RULE = {"name": "busy", "cooldown": 60,
        "conditions": [{"metric": "window.5min.buy_count", "op": ">", "value": 3}]}  # fmt: skip


def alert(rule_id: str, token: str = "ALPHA", n: int = 0) -> Alert:
    return Alert(str(uuid.uuid4()), rule_id, "busy", 1, token, 1_750_000_000_000 + n,
                 {"window.5min.buy_count": 4 + n}, {"5min": (1, 2)}, 0, "trace")  # fmt: skip


@pytest.fixture
def rules(pg_dsn: str) -> dict[str, str]:
    """Rule ids: ``a`` owned by alice, ``b`` by bob."""
    migrate(pg_dsn)
    with RuleRepository(pg_dsn, windows=("1min", "5min", "1hour")) as repo:
        return {"a": repo.create("alice", RULE).id, "b": repo.create("bob", RULE).id}


@pytest.fixture
def api(redis_prefix: str, pg_dsn: str, rules: dict[str, str]) -> Iterator[RunningApi]:
    with serve_api(settings(redis_prefix, pg_dsn)) as running:
        yield running


def test_ws_alerts_reach_only_the_owner_and_admins_once_each(
    api: RunningApi, redis_client: redis.Redis, redis_prefix: str, rules: dict[str, str]
) -> None:
    async def scenario() -> dict[str, list[dict[str, Any]]]:
        users = {"alice": token_for("alice"), "bob": token_for("bob"),
                 "root": token_for("root", admin=True)}  # fmt: skip
        sockets = {name: await connect(api.ws_url, token) for name, token in users.items()}
        for ws in sockets.values():
            await send(ws, {"op": "subscribe", "channel": "alerts"})
            assert (await recv(ws))["type"] == "subscribed"
        for key in ("a", "b", "a"):
            add_alert(redis_client, redis_prefix, alert(rules[key]))
        expected = {"alice": 2, "bob": 1, "root": 3}
        got = {name: await recv_alerts(ws, expected[name]) for name, ws in sockets.items()}
        for ws in sockets.values():
            await ws.close()
        return got

    got = run(scenario())
    rule_of = {name: [m["data"]["rule_id"] for m in msgs] for name, msgs in got.items()}
    assert rule_of["alice"] == [rules["a"], rules["a"]]
    assert rule_of["bob"] == [rules["b"]]
    assert rule_of["root"] == [rules["a"], rules["b"], rules["a"]]
    ids = [m["id"] for m in got["root"]]
    assert len(set(ids)) == 3
    assert [m["id"] for m in got["alice"]] == [ids[0], ids[2]]
    assert all(m["type"] == "alert" and m["channel"] == "alerts" for m in got["root"])


def test_ws_alert_filters_by_token_and_rule(
    api: RunningApi, redis_client: redis.Redis, redis_prefix: str, rules: dict[str, str]
) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        by_token = await connect(api.ws_url, token_for("root", admin=True))
        by_rule = await connect(api.ws_url, token_for("root", admin=True))
        await send(by_token, {"op": "subscribe", "channel": "alerts", "tokens": ["BRAVO"]})
        await send(by_rule, {"op": "subscribe", "channel": "alerts", "rules": [rules["b"]]})
        await recv(by_token)
        await recv(by_rule)
        for key, token in (("a", "ALPHA"), ("a", "BRAVO"), ("b", "ALPHA")):
            add_alert(redis_client, redis_prefix, alert(rules[key], token))
        got = await recv_alerts(by_token, 1), await recv_alerts(by_rule, 1)
        await by_token.close()
        await by_rule.close()
        return got

    tokens, rule_msgs = run(scenario())
    assert [(m["data"]["rule_id"], m["data"]["token"]) for m in tokens] == [(rules["a"], "BRAVO")]
    assert [(m["data"]["rule_id"], m["data"]["token"]) for m in rule_msgs] == [
        (rules["b"], "ALPHA")
    ]


def test_ws_resume_replays_missed_alerts_of_the_user_then_goes_live_without_duplicates(
    api: RunningApi, redis_client: redis.Redis, redis_prefix: str, rules: dict[str, str]
) -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        ws = await connect(api.ws_url, token_for("alice"))
        await send(ws, {"op": "subscribe", "channel": "alerts"})
        await recv(ws)
        first = add_alert(redis_client, redis_prefix, alert(rules["a"], n=1))
        seen = [(await recv(ws))["id"]]
        await ws.close()
        missed = [add_alert(redis_client, redis_prefix, alert(rules[k], n=i))
                  for i, k in enumerate("abab", start=2)]  # fmt: skip
        ws = await connect(api.ws_url, token_for("alice"))
        await send(ws, {"op": "resume", "last_alert_id": first})
        assert await recv(ws) == {"type": "subscribed", "channel": "alerts"}
        replayed = [m["id"] for m in await recv_alerts(ws, 2)]
        live = add_alert(redis_client, redis_prefix, alert(rules["a"], n=9))
        after = [m["id"] for m in await recv_alerts(ws, 1)]
        await ws.close()
        assert seen == [first]
        return [missed[0], missed[2]], replayed, [live, *after]

    expected, replayed, live = run(scenario())
    assert replayed == expected
    assert live[1:] == live[:1]


def test_ws_resume_while_alerts_keep_arriving_has_no_gap_and_no_duplicate(
    api: RunningApi, redis_client: redis.Redis, redis_prefix: str, rules: dict[str, str]
) -> None:
    async def writer(stop: asyncio.Event, ids: list[str]) -> None:
        n = 0
        while not stop.is_set():
            ids.append(await asyncio.to_thread(add_alert, redis_client, redis_prefix,
                                               alert(rules["a"], n=n)))  # fmt: skip
            n += 1
            await asyncio.sleep(0.002)

    async def scenario() -> tuple[list[str], list[str]]:
        before = [
            add_alert(redis_client, redis_prefix, alert(rules["a"], n=-i)) for i in range(300)
        ]
        written: list[str] = []
        stop = asyncio.Event()
        task = asyncio.create_task(writer(stop, written))
        await asyncio.sleep(0.05)
        ws = await connect(api.ws_url, token_for("alice"))
        await send(ws, {"op": "resume", "last_alert_id": before[49]})
        await asyncio.sleep(0.3)
        stop.set()
        await task
        count = len(before) - 50 + len(written)
        got = [m["id"] for m in await recv_alerts(ws, count, quiet_s=0.5) if m["type"] == "alert"]
        await ws.close()
        return before[50:] + written, got

    expected, got = run(scenario())
    assert got == expected


def test_ws_resume_with_a_bad_id_names_the_field(api: RunningApi) -> None:
    async def scenario() -> dict[str, Any]:
        async with await connect(api.ws_url, token_for("alice")) as ws:
            await send(ws, {"op": "resume", "last_alert_id": "yesterday"})
            return await recv(ws)

    reply = run(scenario())
    assert reply["code"] == "bad_id"
    assert "last_alert_id" in reply["message"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)
