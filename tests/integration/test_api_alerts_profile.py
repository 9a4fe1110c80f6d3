"""``/api/v1/alerts`` (real PostgreSQL alert store), ``/api/v1/user/profile`` (profiles
table) and ``/api/v1/symbols`` (``tokens:active`` written through ``RedisStore``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from tests.support.api import alert, api_client, api_settings, bearer, rule, write_tokens
from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.postgres_rules import AlertRepository
from tradepulse.core.alerts import Alert

ALICE = bearer("alice")
BOB = bearer("bob")
ADMIN = bearer("root", admin=True)
T_MS = 1_750_000_000_000


@pytest.fixture
def api(redis_prefix: str, pg_dsn: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    migrate(pg_dsn)
    with api_client(api_settings(redis_prefix, pg_dsn)) as client:
        yield client


@pytest.fixture
def stored(api: TestClient, pg_dsn: str) -> dict[str, Any]:  # type: ignore[type-arg]
    """Alice's rules r1, r2 and bob's r3; alerts of r1 on TOK and ALT, r2 on TOK, r3 on TOK,
    one minute apart."""
    ids = [api.post("/api/v1/rules", json=rule(n), headers=h).json()["id"]
           for n, h in (("r1", ALICE), ("r2", ALICE), ("r3", BOB))]  # fmt: skip
    plan = [(ids[0], "TOK"), (ids[0], "ALT"), (ids[1], "TOK"), (ids[0], "TOK"),
            (ids[2], "TOK"), (ids[1], "ALT"), (ids[0], "TOK")]  # fmt: skip
    alerts = [alert(r, tok, T_MS + i * 60_000, i) for i, (r, tok) in enumerate(plan)]
    with AlertRepository(pg_dsn) as repo:
        assert repo.store(alerts) == len(alerts)
    return {"rules": ids, "alerts": alerts}


def _ids(alerts: list[Alert], keep: Any = lambda a: True) -> list[str]:
    """Ids of the alerts ``keep`` selects, newest first (what the API must answer)."""
    return [a.id for a in sorted(alerts, key=lambda a: -a.triggered_ms) if keep(a)]


def _fetch(api: TestClient, query: str, headers: dict[str, str]) -> list[str]:  # type: ignore[type-arg]
    """Every alert of a query, following ``next_cursor`` with pages of 2."""
    seen, cursor = [], None
    while True:
        url = f"/api/v1/alerts?limit=2&{query}" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(url, headers=headers)
        assert page.status_code == 200, page.text
        seen += [a["id"] for a in page.json()["alerts"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return seen


def test_alert_filters_and_pages_select_exactly_the_matching_alerts(
    api: TestClient,  # type: ignore[type-arg]
    stored: dict[str, Any],
) -> None:
    alerts, (r1, r2, r3) = stored["alerts"], stored["rules"]
    mine = {r1, r2}
    iso = datetime.fromtimestamp((T_MS + 2 * 60_000) / 1000, UTC).isoformat()
    cases = [
        ("", lambda a: a.rule_id in mine),
        ("token=TOK", lambda a: a.rule_id in mine and a.token == "TOK"),
        (f"rule={r1}", lambda a: a.rule_id == r1),
        (f"rule={r1}&token=ALT", lambda a: a.rule_id == r1 and a.token == "ALT"),
        (f"from={T_MS + 60_000}&to={T_MS + 4 * 60_000}",
         lambda a: a.rule_id in mine and T_MS + 60_000 <= a.triggered_ms < T_MS + 240_000),
        (f"from={iso.replace('+00:00', 'Z')}",
         lambda a: a.rule_id in mine and a.triggered_ms >= T_MS + 120_000),
        (f"rule={r3}", lambda a: False),  # bob's rule: none of alice's alerts
    ]  # fmt: skip
    for query, keep in cases:
        assert _fetch(api, query, ALICE) == _ids(alerts, keep), query
    assert _fetch(api, "", ADMIN) == _ids(alerts)
    assert _fetch(api, "owner=bob", ADMIN) == _ids(alerts, lambda a: a.rule_id == r3)


def test_alert_detail_equals_the_stored_alert(
    api: TestClient,  # type: ignore[type-arg]
    stored: dict[str, Any],
    pg_dsn: str,
) -> None:
    first = stored["alerts"][0]
    body = api.get(f"/api/v1/alerts/{first.id}", headers=ALICE).json()
    with AlertRepository(pg_dsn) as repo:
        assert body == msgspec.json.decode(msgspec.json.encode(repo.get(first.id)))
    assert body["owner"] == "alice"
    assert api.get("/api/v1/alerts/nope", headers=ALICE).status_code == 404
    assert api.get(f"/api/v1/alerts/{first.id}", headers=BOB).status_code == 404


@pytest.mark.parametrize(
    ("query", "param"),
    [("cursor=garbage", "cursor"), ("cursor=99999999999999999999999:x", "cursor"),
     ("from=yesterday", "from"), ("to=99999999999999999999", "to"), ("limit=1001", "limit"),
     ("token=" + "x" * 129, "token"), ("token=a%00b", "token"), ("page=2", "page")],
)  # fmt: skip
def test_bad_alert_query_is_400_naming_the_parameter(
    api: TestClient,  # type: ignore[type-arg]
    query: str,
    param: str,
) -> None:
    response = api.get(f"/api/v1/alerts?{query}", headers=ALICE)
    assert response.status_code == 400, response.text
    assert [p["name"] for p in response.json()["invalid_params"]] == [param]


# --- profile -------------------------------------------------------------------------------

PROFILE = {"display_name": "Alice", "watchlist": ["TOK", "ALT"],
           "alert_preferences": {"muted_channels": ["dashboard"], "muted_rules": ["r1"],
                                 "min_interval_s": 30}}  # fmt: skip


def test_profile_defaults_until_saved_then_reads_back_per_user(
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    default = api.get("/api/v1/user/profile", headers=ALICE).json()
    preferences = {"muted_channels": [], "muted_rules": [], "min_interval_s": 0}
    assert default == {"user": "alice", "updated_ms": None, "profile": {
        "display_name": "", "watchlist": [], "alert_preferences": preferences}}  # fmt: skip
    saved = api.put("/api/v1/user/profile", json=PROFILE, headers=ALICE)
    assert saved.status_code == 200, saved.text
    assert saved.json()["profile"] == PROFILE
    assert isinstance(saved.json()["updated_ms"], int)
    assert api.get("/api/v1/user/profile", headers=ALICE).json() == saved.json()
    assert api.get("/api/v1/user/profile", headers=BOB).json()["profile"] == default["profile"]
    partial = api.put("/api/v1/user/profile", json={"display_name": "A"}, headers=ALICE).json()
    assert partial["profile"] == default["profile"] | {"display_name": "A"}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"display_name": "x" * 101}, "$.display_name"),
        ({"display_name": "a\u0000b"}, "$.display_name"),
        ({"display_name": 5}, "$.display_name"),
        ({"watchlist": ["TOK", "TOK"]}, "$.watchlist"),
        ({"watchlist": ["x" * 129]}, "$.watchlist[0]"),
        ({"watchlist": [""]}, "$.watchlist[0]"),
        ({"watchlist": ["T"] * 501}, "$.watchlist"),
        ({"alert_preferences": {"min_interval_s": -1}}, "$.alert_preferences.min_interval_s"),
        ({"alert_preferences": {"min_interval_s": 86_401}},
         "$.alert_preferences.min_interval_s"),
        ({"alert_preferences": {"min_interval_s": "5"}}, "$.alert_preferences.min_interval_s"),
        ({"alert_preferences": {"muted_channels": ["sms"]}},
         "$.alert_preferences.muted_channels[0]"),
        ({"nickname": "x"}, "$"),
    ],
)  # fmt: skip
def test_bad_profile_field_is_422_naming_its_path(
    api: TestClient,  # type: ignore[type-arg]
    change: dict[str, Any],
    path: str,
) -> None:
    response = api.put("/api/v1/user/profile", json=change, headers=ALICE)
    assert response.status_code == 422, response.text
    assert path in [p["name"] for p in response.json()["invalid_params"]]
    assert api.get("/api/v1/user/profile", headers=ALICE).json()["updated_ms"] is None


# --- symbols -------------------------------------------------------------------------------

ACTIVE = {"SOL": T_MS - 9_000, "solXYZ": T_MS - 1_000, "SoLAbc": T_MS - 5_000,
          "BONKsol": T_MS, "PEPE": T_MS}  # fmt: skip


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("sol", ["SOL", "solXYZ", "SoLAbc", "BONKsol"]),  # exact, prefixes by recency, contains
        ("SOLA", ["SoLAbc"]),
        ("pe", ["PEPE"]),
        ("zzz", []),
        ("", ["BONKsol", "PEPE", "solXYZ", "SoLAbc", "SOL"]),  # everything, newest first
    ],
)
def test_symbols_match_case_insensitively_best_first(
    api: TestClient,  # type: ignore[type-arg]
    redis_client: redis.Redis,
    redis_prefix: str,
    q: str,
    expected: list[str],
) -> None:
    write_tokens(redis_client, redis_prefix, ACTIVE)
    body = api.get("/api/v1/symbols", params={"q": q}).json()
    assert [item["token"] for item in body["items"]] == expected
    assert body["total"] == len(expected)
    assert all(item["last_trade_ms"] == ACTIVE[item["token"]] for item in body["items"])


def test_symbols_limit_cuts_the_list_not_the_total(
    api: TestClient,  # type: ignore[type-arg]
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    write_tokens(redis_client, redis_prefix, ACTIVE)
    body = api.get("/api/v1/symbols", params={"q": "s", "limit": "2"}).json()
    # prefixes, newest first: solXYZ, SoLAbc, SOL; then BONKsol contains "s"
    assert ([i["token"] for i in body["items"]], body["total"]) == (["solXYZ", "SoLAbc"], 4)
    too_long = api.get("/api/v1/symbols", params={"q": "x" * 129})
    assert too_long.status_code == 400
    assert too_long.json()["invalid_params"][0]["name"] == "q"
