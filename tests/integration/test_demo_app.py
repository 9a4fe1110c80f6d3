"""The one-process demo without a browser: the worker's pipeline on a synthetic market
writes to the in-memory store, and the API (REST, ``/ws``, dashboard files) reads it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from litestar.testing import TestClient

from tradepulse.adapters.clock import wall_now_ms
from tradepulse.api.auth import JwtVerifier, keys_from_settings
from tradepulse.config import Settings
from tradepulse.core.windows import parse_windows
from tradepulse.demo import DEMO_USER, EXAMPLE_RULES, Demo, DemoOptions, build_demo

SETTINGS = Settings(windows=parse_windows("1min,5min,15min,30min,1hour"))


@pytest.fixture
def demo() -> Iterator[Demo]:
    with ExitStack() as stack:
        yield build_demo(SETTINGS, DemoOptions(tokens=30, rate_per_s=100, backfill_s=300), stack)


@pytest.fixture
def client(demo: Demo) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(demo.app) as test_client:
        yield test_client


def receive(ws: Any, kind: str) -> dict[str, Any]:
    """The next frame of type ``kind`` (heartbeats and other types skipped)."""
    for _ in range(50):
        frame: dict[str, Any] = json.loads(ws.receive_text())
        if frame["type"] == kind:
            return frame
    raise AssertionError(f"no {kind} frame")


def test_demo_token_verifies_as_the_demo_admin(demo: Demo) -> None:
    keys = keys_from_settings(demo.settings.jwt_secret, demo.settings.jwt_public_key)
    principal = JwtVerifier(keys).verify(demo.token)
    assert principal.user == DEMO_USER and principal.admin


def test_demo_rules_are_the_examples_owned_by_the_demo_user(demo: Demo) -> None:
    stored = demo.rules.list()
    assert [r.name for r in stored] == [r["name"] for r in EXAMPLE_RULES]
    assert {r.owner for r in stored} == {DEMO_USER}
    assert [r.enabled for r in stored] == [r.get("enabled", True) for r in EXAMPLE_RULES]


def test_demo_step_makes_every_traded_token_readable_over_rest(
    demo: Demo,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    fed = demo.engine.step(wall_now_ms())
    assert fed > 1_000  # five minutes of backfill at ~100 trades/s
    page = client.get("/api/v1/tokens", params={"limit": "500"}).json()
    assert page["total"] == len(demo.engine.pipeline.market.tokens) > 0
    top = page["items"][0]["token"]
    detail = client.get(f"/api/v1/tokens/{top}").json()
    assert detail["windows"]["5min"]["trade_count"] > 0
    candles = client.get(f"/api/v1/tokens/{top}/candles", params={"tf": "1m"}).json()
    assert len(candles["candles"]) >= 3  # the backfilled minutes are final bars


def test_ws_top_frames_follow_the_requested_sort_and_limit(
    demo: Demo,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    demo.engine.step(wall_now_ms())
    rest = client.get("/api/v1/tokens", params={"sort": "-window.1min.trade_count",
                                                "limit": "5"}).json()  # fmt: skip
    with client.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"op": "subscribe", "channel": "tokens:top",
                                 "sort": "-window.1min.trade_count", "limit": 5}))  # fmt: skip
        frame = receive(ws, "top")
    assert frame["channel"] == "tokens:top"
    assert [i["token"] for i in frame["data"]["items"]] == [i["token"] for i in rest["items"]]


def test_ws_token_channel_sends_the_rest_detail(
    demo: Demo,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    demo.engine.step(wall_now_ms())
    token = next(iter(demo.engine.pipeline.market.tokens))
    with client.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"op": "subscribe", "channel": f"token:{token}"}))
        frame = receive(ws, "stats")
    assert frame["channel"] == f"token:{token}"
    assert frame["data"] == client.get(f"/api/v1/tokens/{token}").json()


def test_ws_alerts_reach_a_signed_in_client_as_the_engine_scans(
    demo: Demo,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    with client.websocket_connect(f"/ws?token={demo.token}") as ws:
        ws.send_text(json.dumps({"op": "subscribe", "channel": "alerts"}))
        ws.send_text(json.dumps({"op": "ping"}))
        receive(ws, "pong")  # the subscription is in place
        demo.engine.step(wall_now_ms())
        frame = receive(ws, "alert")
    stored = demo.memory.alerts.get(frame["data"]["id"])  # frame["id"]: the stream entry
    assert stored is not None and stored.owner == DEMO_USER
    assert frame["data"]["rule_name"] == stored.rule_name


def test_ws_alert_preferences_saved_in_the_demo_apply_to_its_connections(
    demo: Demo,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    saved = client.put("/api/v1/user/profile", headers={"Authorization": f"Bearer {demo.token}"},
                       json={"alert_preferences": {"muted_channels": ["dashboard"]}})  # fmt: skip
    assert saved.status_code == 200, saved.text
    with (
        client.websocket_connect(f"/ws?token={demo.token}") as plain,
        client.websocket_connect(f"/ws?client=dashboard&token={demo.token}") as dashboard,
    ):
        for ws in (plain, dashboard):
            ws.send_text(json.dumps({"op": "subscribe", "channel": "alerts"}))
            ws.send_text(json.dumps({"op": "ping"}))
            receive(ws, "pong")
        demo.engine.step(wall_now_ms())
        receive(plain, "alert")
        dashboard.send_text(json.dumps({"op": "ping"}))  # queued after any alert it was sent
        frames = []
        while not frames or frames[-1]["type"] != "pong":
            frames.append(json.loads(dashboard.receive_text()))
    assert [f for f in frames if f["type"] == "alert"] == []


def test_ws_alerts_without_a_token_answer_unauthorized(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"op": "subscribe", "channel": "alerts"}))
        assert receive(ws, "error")["code"] == "unauthorized"


def test_ws_with_a_forged_token_is_refused(client: TestClient) -> None:  # type: ignore[type-arg]
    with client.websocket_connect("/ws?token=not.a.jwt") as ws:
        frame = json.loads(ws.receive_text())
    assert frame["type"] == "error" and frame["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"op": "jump"}, "unknown_op"),
        ({"op": "subscribe", "channel": "weather"}, "unknown_channel"),
        ({"op": "subscribe", "channel": "tokens:top", "sort": "window.2min.x"}, "bad_sort"),
        ({"op": "subscribe", "channel": "tokens:top", "limit": 0}, "bad_field"),
    ],
)
def test_ws_bad_frames_get_an_error_and_the_socket_stays_open(
    client: TestClient,  # type: ignore[type-arg]
    frame: dict[str, Any],
    code: str,
) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps(frame))
        assert receive(ws, "error")["code"] == code
        ws.send_text("{not json")
        assert receive(ws, "error")["code"] == "bad_json"
        ws.send_text(json.dumps({"op": "ping"}))
        assert receive(ws, "pong") == {"type": "pong"}


def test_disabling_every_rule_empties_the_engine_scan_at_its_next_step(demo: Demo) -> None:
    demo.engine.step(wall_now_ms())
    assert demo.engine.pipeline.scans is not None
    assert len(demo.engine.pipeline.scans.scanner.rules) == 3
    for rule in demo.rules.list():
        demo.rules.patch(rule.id, enabled=False)
    demo.engine.step(wall_now_ms())
    assert len(demo.engine.pipeline.scans.scanner.rules) == 0


def test_dashboard_pages_and_chart_library_are_served(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert '<script type="module" src="/js/app.js">' in index.text
    chart_lib = "/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs"
    for path in ("/js/app.js", "/js/pages/token.js", "/css/app.css", chart_lib):
        assert client.get(path).status_code == 200, path
    assert client.get("/api/v1/tokens/UNKNOWN").status_code == 404  # the API still wins
