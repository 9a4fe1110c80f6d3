"""Property-based tests of the REST API against its own OpenAPI document (schemathesis):
for every ``/api/v1`` operation, generated requests, valid and invalid, as an authenticated
user with data present (tokens in Redis, rules and alerts in PostgreSQL), never get a 5xx
and every response matches the documented schema.

The cases are sent through Litestar's test client, in-process, to the app whose lifespan
the module fixture runs (schemathesis' own ASGI client would keep the app started for the
rest of the process). The operations endpoints are left out: ``/performance/*`` changes the
garbage collector of the test process itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import redis
import schemathesis
from litestar.testing import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.api import (
    REDIS_URL,
    SECRET,
    alert,
    api_client,
    api_settings,
    bearer,
    rule,
    write_tokens,
)
from tests.support.pg import fresh_database
from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.postgres_rules import AlertRepository
from tradepulse.api.app import ApiDeps, create_app
from tradepulse.config import Settings

ALICE = bearer("alice")
T_MS = 1_750_000_000_000


@pytest.fixture(scope="module")
def module_db(pg_admin_dsn: str) -> Iterator[str]:
    with fresh_database(pg_admin_dsn) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def module_prefix() -> Iterator[str]:
    prefix = f"tradepulse-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def live(module_db: str, module_prefix: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    """The app with tokens, two rules of alice and their alerts."""
    migrate(module_db)
    client = redis.Redis.from_url(REDIS_URL)
    write_tokens(client, module_prefix, {"SOLabc": T_MS, "BONK": T_MS - 1_000})
    client.close()
    with api_client(api_settings(module_prefix, module_db)) as api:
        ids = [api.post("/api/v1/rules", json=rule(f"r{i}"), headers=ALICE).json()["id"]
               for i in range(2)]  # fmt: skip
        stored = [alert(ids[i % 2], "SOLabc", T_MS + i * 1_000, i) for i in range(5)]
        with AlertRepository(module_db) as alerts:
            alerts.store(stored)
        KNOWN.update({"rule_id": ids[0], "alert_id": stored[0].id, "addr": "SOLabc"})
        yield api


#: Ids that exist (filled by ``live``): half the generated path parameters are replaced by
#: them, so the operations on an existing rule, alert or token are exercised too.
KNOWN: dict[str, str] = {}


def _aim(case: schemathesis.Case) -> None:
    """Point the case at an existing resource when its generated id has an even length
    (never for DELETE: the other cases need the rule)."""
    for name, value in (case.path_parameters or {}).items():
        if name in KNOWN and case.method != "DELETE" and len(str(value)) % 2 == 0:
            case.path_parameters[name] = KNOWN[name]  # type: ignore[index]


def send(client: TestClient, kwargs: dict[str, Any]) -> Any:  # type: ignore[type-arg]
    """A request serialized by schemathesis (requests' arguments) sent with httpx."""
    if "json" in kwargs:
        content: bytes | None = json.dumps(kwargs["json"]).encode()
    else:
        data = kwargs.get("data")
        content = data.encode() if isinstance(data, str) else data
    return client.request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                          headers=kwargs.get("headers"), content=content)  # fmt: skip


def _document() -> dict[str, Any]:
    """The OpenAPI document of the app (built without starting it: no I/O)."""
    app = create_app(ApiDeps.from_settings(Settings(jwt_secret=SECRET)))
    return app.openapi_schema.to_schema()


schema = schemathesis.openapi.from_dict(_document()).include(path_regex="^/api/v1/")


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_api_never_fails_and_answers_as_documented(
    case: schemathesis.Case,
    live: TestClient,  # type: ignore[type-arg]
) -> None:
    _aim(case)
    response = send(live, case.as_transport_kwargs(base_url="http://testserver.local",
                                                   headers=dict(ALICE)))  # fmt: skip
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
