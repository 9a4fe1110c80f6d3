"""``/api/v1/rules`` against the real PostgreSQL rule store: what the API answers is what the
store holds; every error is a 4xx problem naming the offending field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from tests.support.api import api_client, api_settings, bearer, rule
from tradepulse import metrics
from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.postgres_rules import RuleRepository

ALICE = bearer("alice")
ADMIN = bearer("root", admin=True)
RULES = "/api/v1/rules"


@pytest.fixture
def api(redis_prefix: str, pg_dsn: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    migrate(pg_dsn)
    with api_client(api_settings(redis_prefix, pg_dsn)) as client:
        yield client


@pytest.fixture
def repo(pg_dsn: str) -> Iterator[RuleRepository]:
    with RuleRepository(pg_dsn, windows=("1min", "5min")) as repository:
        yield repository


def _create(api: TestClient, definition: dict[str, Any]) -> dict[str, Any]:  # type: ignore[type-arg]
    response = api.post(RULES, json=definition, headers=ALICE)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_answers_the_stored_rule(
    api: TestClient,  # type: ignore[type-arg]
    repo: RuleRepository,
) -> None:
    definition = rule("whales", 20, symbols=["TOK"])
    body = _create(api, definition)
    stored = repo.get(body["id"])
    assert stored is not None
    assert body == msgspec.to_builtins(stored)
    assert (body["owner"], body["name"], body["version"], body["enabled"]) == (
        "alice", "whales", 1, True)  # fmt: skip
    assert body["definition"] == definition


def test_invalid_rule_is_422_with_every_error_and_its_path(
    api: TestClient,  # type: ignore[type-arg]
    repo: RuleRepository,
) -> None:
    metric = "window.5min.buy_count"
    definition = {"name": "", "cooldown": -1, "colour": "red",
                  "conditions": [{"metric": metric, "op": ">", "value": 1},
                                 {"metric": metric, "op": "=>", "value": 1}]}  # fmt: skip
    response = api.post(RULES, json=definition, headers=ALICE)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    names = {p["name"] for p in response.json()["invalid_params"]}
    assert names == {"name", "cooldown", "colour", "conditions[1].op"}
    assert repo.list() == []


@pytest.mark.parametrize(
    ("body", "status", "name"),
    [
        (b'{"name": "x",', 400, None),  # not JSON
        (b"[1, 2]", 422, "$"),  # not an object
        (b'{"name": "a\\u0000b", "cooldown": 1, "conditions": []}', 422, "$.name"),
        (b'{"name": "' + b"x" * 70_000 + b'"}', 413, None),  # beyond the body limit
    ],
)
def test_bad_rule_body_is_4xx_problem(
    api: TestClient,  # type: ignore[type-arg]
    body: bytes,
    status: int,
    name: str | None,
) -> None:
    headers = {**ALICE, "Content-Type": "application/json"}
    response = api.post(RULES, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if name is not None:
        assert name in [p["name"] for p in response.json()["invalid_params"]]


def test_validate_answers_errors_without_storing(
    api: TestClient,  # type: ignore[type-arg]
    repo: RuleRepository,
) -> None:
    ok = api.post(f"{RULES}/validate", json=rule("fine"), headers=ALICE)
    assert ok.status_code == 200
    assert ok.json() == {"valid": True, "errors": []}
    bad = api.post(f"{RULES}/validate", json=rule("bad") | {"cooldown": "soon"}, headers=ALICE)
    assert bad.status_code == 200
    assert bad.json()["valid"] is False
    assert [e["path"] for e in bad.json()["errors"]] == ["cooldown"]
    metric = rule("bad") | {"conditions": [{"metric": "window.1hour.buy_count", "op": ">",
                                            "value": 1}]}  # fmt: skip
    unknown_window = api.post(f"{RULES}/validate", json=metric, headers=ALICE).json()
    assert [e["path"] for e in unknown_window["errors"]] == ["conditions[0].metric"]
    assert repo.list() == []


def test_list_pages_cover_every_rule_once_in_creation_order(
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    ids = [_create(api, rule(f"r{i}"))["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = api.get(RULES, params=params, headers=ALICE).json()
        assert page["total"] == 5
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


@pytest.mark.parametrize(
    ("query", "param"),
    [("cursor=%%%", "cursor"), ("limit=0", "limit"), ("limit=501", "limit"),
     ("owner=" + "x" * 200, "owner"), ("sort=name", "sort")],
)  # fmt: skip
def test_bad_list_parameter_is_400_naming_it(
    api: TestClient,  # type: ignore[type-arg]
    query: str,
    param: str,
) -> None:
    response = api.get(f"{RULES}?{query}", headers=ADMIN)
    assert response.status_code == 400, response.text
    assert [p["name"] for p in response.json()["invalid_params"]] == [param]


def test_put_patch_rollback_write_versions(
    api: TestClient,  # type: ignore[type-arg]
    repo: RuleRepository,
) -> None:
    rule_id = _create(api, rule("v", 1))["id"]
    url = f"{RULES}/{rule_id}"
    replaced = api.put(url, json=rule("v", 2), headers=ALICE).json()
    assert (replaced["version"], replaced["definition"]["conditions"][0]["value"]) == (2, 2)
    disabled = api.patch(url, json={"enabled": False}, headers=ALICE).json()
    assert (disabled["version"], disabled["enabled"]) == (3, False)
    again = api.patch(url, json={"enabled": False}, headers=ALICE).json()
    assert again["version"] == 3  # already disabled: nothing written
    rolled = api.post(f"{url}/rollback", json={"version": 1}, headers=ALICE)
    assert rolled.status_code == 200
    assert (rolled.json()["version"], rolled.json()["enabled"]) == (4, True)
    assert rolled.json()["definition"] == rule("v", 1)
    versions = api.get(f"{url}/versions", headers=ALICE).json()
    assert [v["version"] for v in versions] == [1, 2, 3, 4]
    assert versions == msgspec.to_builtins(repo.versions(rule_id))


@pytest.mark.parametrize(
    ("method", "suffix", "body", "status", "name"),
    [
        ("PATCH", "", {"enabled": 1}, 422, "$.enabled"),
        ("PATCH", "", {"enabled": "true"}, 422, "$.enabled"),
        ("PATCH", "", {"enabled": True, "name": "x"}, 422, "$"),
        ("PATCH", "", {}, 422, "$"),
        ("POST", "/rollback", {"version": 0}, 422, "$.version"),
        ("POST", "/rollback", {"version": 99}, 404, None),
        ("PUT", "", rule("v") | {"trigger": "sometimes"}, 422, "trigger"),
    ],
)
def test_bad_change_is_4xx_problem_naming_the_field(
    api: TestClient,  # type: ignore[type-arg]
    method: str,
    suffix: str,
    body: dict[str, Any],
    status: int,
    name: str | None,
) -> None:
    rule_id = _create(api, rule("v"))["id"]
    response = api.request(method, f"{RULES}/{rule_id}{suffix}", json=body, headers=ALICE)
    assert response.status_code == status, response.text
    if name is not None:
        assert name in [p["name"] for p in response.json()["invalid_params"]]
    assert api.get(f"{RULES}/{rule_id}", headers=ALICE).json()["version"] == 1


def test_deleted_rule_is_gone_from_every_read(
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    rule_id = _create(api, rule("gone"))["id"]
    assert api.delete(f"{RULES}/{rule_id}", headers=ALICE).status_code == 204
    for path in (f"{RULES}/{rule_id}", f"{RULES}/{rule_id}/versions"):
        assert api.get(path, headers=ALICE).status_code == 404
    assert api.delete(f"{RULES}/{rule_id}", headers=ALICE).status_code == 404
    assert api.get(RULES, headers=ALICE).json()["items"] == []


def test_every_change_is_published_on_rules_updated(
    api: TestClient,  # type: ignore[type-arg]
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"{redis_prefix}rules.updated")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
    rule_id = _create(api, rule("announced"))["id"]
    api.patch(f"{RULES}/{rule_id}", json={"enabled": False}, headers=ALICE)
    messages = [pubsub.get_message(timeout=2) for _ in range(2)]
    pubsub.close()
    assert [m["data"] for m in messages if m] == [rule_id.encode()] * 2


def test_requests_are_counted_by_route_template_and_status_class(
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    labels = ("/api/v1/rules/{rule_id}", "GET", "4xx")
    before = metrics.HTTP_REQUESTS.labels(*labels)._value.get()
    assert api.get(f"{RULES}/no-such-rule", headers=ALICE).status_code == 404
    assert api.get(f"{RULES}/another", headers=ALICE).status_code == 404
    assert metrics.HTTP_REQUESTS.labels(*labels)._value.get() == before + 2
    exposition = metrics.exposition().decode()
    assert 'tradepulse_http_request_seconds_count{route="/api/v1/rules/{rule_id}"}' in exposition
    assert "no-such-rule" not in exposition


def test_stores_without_schema_are_503_naming_the_fix(redis_prefix: str, pg_dsn: str) -> None:
    labels = ("/api/v1/rules", "GET", "5xx")
    before = metrics.HTTP_REQUESTS.labels(*labels)._value.get()
    with api_client(api_settings(redis_prefix, pg_dsn)) as client:  # not migrated
        responses = [client.get(path, headers=ALICE)
                     for path in (RULES, "/api/v1/alerts", "/api/v1/user/profile")]  # fmt: skip
    for response in responses:
        assert response.status_code == 503
        assert "tradepulse db migrate" in response.json()["detail"]
    assert metrics.HTTP_REQUESTS.labels(*labels)._value.get() == before + 1
