"""Candles (real PostgreSQL) and the operations endpoints of the api process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import msgspec
import pytest
from litestar.testing import TestClient

from tradepulse.adapters.postgres import BarRepository, migrate
from tradepulse.api.app import ApiDeps, create_app
from tradepulse.config import Settings
from tradepulse.core.bars import Bar
from tradepulse.core.windows import parse_windows

REDIS_URL = os.environ.get("TRADEPULSE_REDIS_URL", "redis://127.0.0.1:6379/0")
T0_MS = 1_750_000_020 * 1000 - 1_750_000_020 * 1000 % 3_600_000  # an hour start


def bars() -> list[Bar]:
    """Twelve minutes of TOK (one missing), from ``T0_MS``."""
    out = []
    for m in (0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12):
        p = 1.0 + m / 10
        out.append(Bar("TOK", T0_MS + m * 60_000, p, p + 0.2, p - 0.1, p + 0.05,
                       100.0 + m, (100.0 + m) * p, 60.0 * p, (40.0 + m) * p, 3 + m, p))  # fmt: skip
    return out


@pytest.fixture
def api(redis_prefix: str, pg_dsn: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    settings = Settings(windows=parse_windows("1min,5min"), redis_url=REDIS_URL,
                        redis_prefix=redis_prefix, pg_dsn=pg_dsn)  # fmt: skip
    with TestClient(create_app(ApiDeps.from_settings(settings))) as client:
        yield client


@pytest.fixture
def repo(pg_dsn: str) -> Iterator[BarRepository]:
    migrate(pg_dsn)
    with BarRepository(pg_dsn) as repository:
        repository.upsert(bars())
        yield repository


@pytest.mark.parametrize("tf", ["1m", "5m", "15m", "1h", "4h", "1d"])
def test_candles_equal_the_repository(
    api: TestClient,  # type: ignore[type-arg]
    repo: BarRepository,
    tf: str,
) -> None:
    from_ms, to_ms = T0_MS + 60_000, T0_MS + 11 * 60_000
    body = api.get("/api/v1/tokens/TOK/candles",
                   params={"tf": tf, "from": str(from_ms), "to": str(to_ms)}).json()  # fmt: skip
    expected = repo.candles("TOK", tf, from_ms, to_ms)
    assert expected
    assert body["candles"] == msgspec.to_builtins(expected)
    assert (body["from_ms"], body["to_ms"], body["tf"]) == (from_ms, to_ms, tf)


def test_candles_accept_rfc3339_and_default_to_the_last_day(
    api: TestClient,  # type: ignore[type-arg]
    repo: BarRepository,
) -> None:
    params = {"tf": "5m", "from": "2025-06-15T15:00:00Z", "to": "2025-06-15T19:00:00+02:00"}
    body = api.get("/api/v1/tokens/TOK/candles", params=params).json()
    from_ms = int(datetime(2025, 6, 15, 15, tzinfo=UTC).timestamp() * 1000)
    assert (body["from_ms"], body["to_ms"]) == (from_ms, from_ms + 2 * 3_600_000)
    assert body["candles"] == msgspec.to_builtins(
        repo.candles("TOK", "5m", from_ms, from_ms + 2 * 3_600_000)
    )
    assert len(body["candles"]) == 3
    recent = api.get("/api/v1/tokens/TOK/candles").json()
    assert recent["to_ms"] - recent["from_ms"] == 86_400_000
    assert recent["candles"] == []  # the bars are from 2025


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("tf=2m", "tf"),
        ("tf=1m&from=yesterday", "from"),
        ("tf=1m&to=2025-06-15T17:00:00", "to"),
        ("from=2000&to=1000", "from"),
        ("tf=1m&from=0&to=1750000000000", "from"),
        ("tf=1m&limit=3", "limit"),
    ],
)
def test_bad_candles_parameter_is_400_problem(
    api: TestClient,  # type: ignore[type-arg]
    query: str,
    param: str,
) -> None:
    response = api.get(f"/api/v1/tokens/TOK/candles?{query}")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [p["name"] for p in response.json()["invalid_params"]] == [param]


def test_candles_without_schema_is_503_problem(api: TestClient) -> None:  # type: ignore[type-arg]
    response = api.get("/api/v1/tokens/TOK/candles")
    assert response.status_code == 503
    assert "bars_1m" in response.json()["detail"]


def test_health_and_ready_report_redis_and_postgres(
    api: TestClient,  # type: ignore[type-arg]
    pg_dsn: str,
) -> None:
    ready = api.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["redis"] is True
    assert ready.json()["postgres"]["ok"] is False  # not migrated: reported, not required
    migrate(pg_dsn)
    assert api.get("/health/ready").json()["postgres"] == {"ok": True}
    health = api.get("/health").json()
    assert (health["status"], health["live"], health["ready"]) == ("ok", True, True)
    assert api.get("/health/live").json()["live"] is True


def test_metrics_expose_the_default_registry(api: TestClient) -> None:  # type: ignore[type-arg]
    text = api.get("/metrics")
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert "tradepulse_trades_consumed_total" in text.text
    assert "tradepulse_trades_consumed_total" in api.get("/metrics/json").json()


def test_performance_and_gc_tuning_answer_what_changed(
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    import gc

    before = gc.get_threshold()
    try:
        assert "rss_bytes" in api.get("/performance").json()
        assert api.post("/performance/gc").json()["collected_objects"] >= 0
        fast = api.post("/performance/optimize/throughput").json()
        assert fast["now"]["gc_thresholds"] == [100_000, 50, 100]
        assert "gc_thresholds" in fast["changed"] or before == (100_000, 50, 100)
        slow = api.post("/performance/optimize/latency").json()
        assert slow["changed"]["gc_thresholds"]["from"] == [100_000, 50, 100]
        assert slow["now"] == {"gc_thresholds": [700, 10, 10], "gc_frozen_objects": 0}
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_schema_unknown_route_and_wrong_method_are_never_500(
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    schema = api.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert "/api/v1/tokens/{addr}/candles" in schema.json()["paths"]
    assert api.get("/schema").status_code == 200
    missing = api.get("/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert api.get("/performance/gc").status_code == 405
    assert api.get("/health?verbose=1").status_code == 400


def test_schema_page_is_served_offline_from_this_server(
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    page = api.get("/schema")
    assert page.status_code == 200
    assert "/vendor/swagger-ui/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert api.get(f"/vendor/swagger-ui/{asset}").status_code == 200
