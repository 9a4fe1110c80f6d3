"""``POST /api/v1/rules/dry-run`` through the demo app: the in-memory store keeps the
trades the in-process worker retains (its ``SyncView`` writes applied), and a dry run over
them fires what a brute-force scan of the worker's own retained trades fires."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from litestar.testing import TestClient

from tradepulse.adapters.clock import wall_now_ms
from tradepulse.config import Settings
from tradepulse.core.trade import Trade
from tradepulse.core.windows import parse_windows
from tradepulse.demo import Demo, DemoOptions, build_demo

SETTINGS = Settings(windows=parse_windows("1min,5min,15min,30min,1hour"))
URL = "/api/v1/rules/dry-run"


@pytest.fixture
def demo() -> Iterator[Demo]:
    with ExitStack() as stack:
        demo = build_demo(SETTINGS, DemoOptions(tokens=20, rate_per_s=60, backfill_s=360), stack)
        demo.engine.step(wall_now_ms())
        time.sleep(0.3)
        demo.engine.step(wall_now_ms())  # a second, incremental write of each token
        yield demo


@pytest.fixture
def client(demo: Demo) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(demo.app) as test_client:
        yield test_client


def retained(demo: Demo, token: str) -> list[Trade]:
    return demo.engine.pipeline.market.tokens[token].retained_trades()


def count_alerts(trades: dict[str, list[Trade]], k: int, cooldown_ms: int, from_ms: int,
                 to_ms: int, every_ms: int) -> list[tuple[str, int]]:  # fmt: skip
    """``(token, triggered_ms)`` of the level rule ``window.1min.trade_count >= k`` at every
    multiple of ``every_ms`` in ``[from_ms, to_ms]``, by plain loops."""
    fired: list[tuple[str, int]] = []
    last: dict[str, int] = {}
    for m in range(-(-from_ms // every_ms) * every_ms, to_ms + 1, every_ms):
        for token in sorted(trades):
            count = sum(1 for t in trades[token] if m - 60_000 < t.ts_ms <= m)
            if count >= k and (token not in last or m >= last[token] + cooldown_ms):
                last[token] = m
                fired.append((token, m))
    return fired


def test_memory_store_retains_what_the_worker_retains(demo: Demo) -> None:
    tokens = sorted(demo.engine.pipeline.market.tokens)
    kept = {token: trades for token, _, trades in demo.memory.retained_trades(tokens)}
    assert sorted(kept) == tokens
    for token in tokens:
        assert kept[token] == retained(demo, token)


def test_demo_dry_run_matches_a_brute_force_scan_of_the_retained_trades(
    demo: Demo,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    ranked = client.get("/api/v1/tokens", params={"limit": "3"}).json()["items"]
    tokens = [item["token"] for item in ranked]
    rule: dict[str, Any] = {"name": "busy", "cooldown": 30, "conditions": {"all": [
        {"metric": "window.1min.trade_count", "op": ">=", "value": 8}]}}  # fmt: skip
    body = {"rule": rule, "tokens": tokens, "since": "5min", "scan_interval": "5s"}
    response = client.post(URL, json=body, headers={"Authorization": f"Bearer {demo.token}"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["to_ms"] - answer["from_ms"] == 300_000
    expected = count_alerts({t: retained(demo, t) for t in tokens}, 8, 30_000,
                            answer["from_ms"], answer["to_ms"], 5_000)  # fmt: skip
    assert expected  # the busiest tokens reach 8 trades a minute
    assert [(a["token"], a["triggered_ms"]) for a in answer["alerts"]] == expected
    assert answer["tokens"] == 3


def test_demo_dry_run_needs_a_token(client: TestClient) -> None:  # type: ignore[type-arg]
    rule = {"name": "x", "cooldown": 0,
            "conditions": {"all": [{"metric": "price", "op": ">", "value": 0}]}}  # fmt: skip
    assert client.post(URL, json={"rule": rule}).status_code == 401
