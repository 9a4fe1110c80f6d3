"""Who may do what through the REST API: the authorization matrix, public market data on
and off, refused tokens, an unconfigured server, and tokens from `tradepulse auth token`
(HS256 and RS256) accepted by the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import TestClient
from typer.testing import CliRunner

from tests.support.api import SECRET, alert, api_client, api_settings, bearer, rule
from tradepulse import metrics
from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.postgres_rules import AlertRepository
from tradepulse.cli import app as cli

T_MS = 1_750_000_000_000


@pytest.fixture
def api(redis_prefix: str, pg_dsn: str) -> Iterator[TestClient]:  # type: ignore[type-arg]
    migrate(pg_dsn)
    with api_client(api_settings(redis_prefix, pg_dsn)) as client:
        yield client


@pytest.fixture
def data(api: TestClient, pg_dsn: str) -> dict[str, str]:  # type: ignore[type-arg]
    """A rule of alice with one alert, and a rule of bob."""
    a = api.post("/api/v1/rules", json=rule("a"), headers=bearer("alice")).json()["id"]
    assert api.post("/api/v1/rules", json=rule("b"), headers=bearer("bob")).status_code == 201
    with AlertRepository(pg_dsn) as alerts:
        alerts.store([alert(a, "TOK", T_MS)])
    return {"rule": a, "alert": alert(a, "TOK", T_MS).id}


ANON: dict[str, str] = {}
ALICE = bearer("alice")
BOB = bearer("bob")
ADMIN = bearer("root", admin=True)

# (method, path, body): every protected operation on alice's resources.
OPERATIONS: dict[str, tuple[str, str, Any]] = {
    "list rules": ("GET", "/api/v1/rules", None),
    "create rule": ("POST", "/api/v1/rules", rule("new")),
    "validate rule": ("POST", "/api/v1/rules/validate", rule("v")),
    "get rule": ("GET", "/api/v1/rules/{rule}", None),
    "replace rule": ("PUT", "/api/v1/rules/{rule}", rule("a2")),
    "patch rule": ("PATCH", "/api/v1/rules/{rule}", {"enabled": False}),
    "rule versions": ("GET", "/api/v1/rules/{rule}/versions", None),
    "rollback rule": ("POST", "/api/v1/rules/{rule}/rollback", {"version": 1}),
    "delete rule": ("DELETE", "/api/v1/rules/{rule}", None),
    "list alerts": ("GET", "/api/v1/alerts", None),
    "get alert": ("GET", "/api/v1/alerts/{alert}", None),
    "get profile": ("GET", "/api/v1/user/profile", None),
    "put profile": ("PUT", "/api/v1/user/profile", {"display_name": "x"}),
}

# operation: expected status for (anonymous, alice = owner, bob = another user, admin).
MATRIX = {
    "list rules":    (401, 200, 200, 200),
    "create rule":   (401, 201, 201, 201),
    "validate rule": (401, 200, 200, 200),
    "get rule":      (401, 200, 404, 200),
    "replace rule":  (401, 200, 404, 200),
    "patch rule":    (401, 200, 404, 200),
    "rule versions": (401, 200, 404, 200),
    "rollback rule": (401, 200, 404, 200),
    "delete rule":   (401, 204, 404, 204),
    "list alerts":   (401, 200, 200, 200),
    "get alert":     (401, 200, 404, 200),
    "get profile":   (401, 200, 200, 200),
    "put profile":   (401, 200, 200, 200),
}  # fmt: skip
CALLERS = {"anonymous": ANON, "alice": ALICE, "bob": BOB, "admin": ADMIN}


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("operation", list(MATRIX))
def test_authorization_matrix_status_per_caller_and_operation(
    api: TestClient,  # type: ignore[type-arg]
    data: dict[str, str],
    operation: str,
    caller: str,
) -> None:
    method, template, body = OPERATIONS[operation]
    response = api.request(method, template.format(**data), json=body,
                           headers=CALLERS[caller])  # fmt: skip
    expected = MATRIX[operation][list(CALLERS).index(caller)]
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
    if expected == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["reason"] == "missing"


def test_lists_show_a_user_only_their_own_and_an_admin_everything(
    api: TestClient,  # type: ignore[type-arg]
    data: dict[str, str],
) -> None:
    def owners(path: str, headers: dict[str, str], key: str = "items") -> list[str]:
        return sorted(item["owner"] for item in api.get(path, headers=headers).json()[key])

    assert owners("/api/v1/rules", ALICE) == ["alice"]
    assert owners("/api/v1/rules", BOB) == ["bob"]
    assert owners("/api/v1/rules", ADMIN) == ["alice", "bob"]
    assert owners("/api/v1/rules?owner=bob", ADMIN) == ["bob"]
    assert owners("/api/v1/alerts", ALICE, "alerts") == ["alice"]
    assert owners("/api/v1/alerts", BOB, "alerts") == []
    assert owners("/api/v1/alerts", ADMIN, "alerts") == ["alice"]


@pytest.mark.parametrize("path", ["/api/v1/rules?owner=alice", "/api/v1/alerts?owner=alice"])
def test_user_filtering_by_another_owner_is_403(
    api: TestClient,  # type: ignore[type-arg]
    path: str,
) -> None:
    response = api.get(path, headers=BOB)
    assert response.status_code == 403
    assert response.json()["invalid_params"][0]["name"] == "owner"
    assert api.get(path, headers=ALICE).status_code == 200


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Basic YWxpY2U6eA==", "malformed"),
        ("Bearer not-a-jwt", "malformed"),
        (bearer("alice", secret="another-secret-of-at-least-32-bytes!")["Authorization"],
         "bad_signature"),
    ],
)  # fmt: skip
def test_refused_token_is_401_with_its_reason_and_counted(
    api: TestClient,  # type: ignore[type-arg]
    header: str,
    reason: str,
) -> None:
    before = metrics.AUTH_FAILURES.labels(reason)._value.get()
    response = api.get("/api/v1/rules", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["reason"] == reason
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert metrics.AUTH_FAILURES.labels(reason)._value.get() == before + 1


MARKET = ["/api/v1/tokens", "/api/v1/tokens/TOK", "/api/v1/tokens/TOK/candles",
          "/api/v1/symbols?q=to"]  # fmt: skip


@pytest.mark.parametrize("path", MARKET)
def test_public_market_data_needs_no_token(
    api: TestClient,  # type: ignore[type-arg]
    path: str,
) -> None:
    response = api.get(path)
    assert response.status_code != 401
    assert response.status_code < 500


@pytest.mark.parametrize("path", MARKET)
def test_private_market_data_needs_a_valid_token(redis_prefix: str, pg_dsn: str, path: str) -> None:
    migrate(pg_dsn)
    settings = api_settings(redis_prefix, pg_dsn, public_market_data=False)
    with api_client(settings) as client:
        refused = client.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="tradepulse"'
        assert client.get(path, headers={"Authorization": "Bearer x.y.z"}).status_code == 401
        assert client.get(path, headers=ALICE).status_code in {200, 404}


def test_unconfigured_auth_is_503_naming_the_variables(redis_prefix: str, pg_dsn: str) -> None:
    with api_client(api_settings(redis_prefix, pg_dsn, jwt_secret="")) as client:
        response = client.get("/api/v1/rules", headers=ALICE)
        assert client.get("/api/v1/tokens").status_code == 200  # market data stays public
    assert response.status_code == 503
    assert "TRADEPULSE_JWT_SECRET" in response.json()["detail"]
    assert "TRADEPULSE_JWT_PUBLIC_KEY" in response.json()["detail"]


# --- tradepulse auth token ----------------------------------------------------------------


def _rsa_pair(tmp_path: Path) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "private.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def _issue(args: list[str], env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, ["auth", "token", *args], env=env)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token)
    return token


def test_cli_hs256_token_is_accepted_by_the_api(api: TestClient) -> None:  # type: ignore[type-arg]
    token = _issue(["--user", "carol", "--admin", "--ttl", "5min"],
                   {"TRADEPULSE_JWT_SECRET": SECRET})  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    created = api.post("/api/v1/rules", json=rule("c"), headers=headers)
    assert created.status_code == 201
    assert created.json()["owner"] == "carol"
    assert api.get("/api/v1/rules?owner=someone", headers=headers).status_code == 200  # admin


def test_cli_rs256_token_is_accepted_by_an_rs256_api(
    redis_prefix: str, pg_dsn: str, tmp_path: Path
) -> None:
    private, public = _rsa_pair(tmp_path)
    token = _issue(["--user", "dave", "--private-key", str(private)],
                   {"TRADEPULSE_JWT_SECRET": "", "TRADEPULSE_JWT_PUBLIC_KEY": public})  # fmt: skip
    migrate(pg_dsn)
    settings = api_settings(redis_prefix, pg_dsn, jwt_secret="", jwt_public_key=public)
    with api_client(settings) as client:
        ok = client.get("/api/v1/user/profile", headers={"Authorization": f"Bearer {token}"})
        forged = client.get("/api/v1/user/profile", headers=bearer("dave"))  # HS256
    assert ok.status_code == 200
    assert ok.json()["user"] == "dave"
    assert forged.status_code == 401
    assert forged.json()["reason"] == "wrong_algorithm"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--user", "u"], {"TRADEPULSE_JWT_SECRET": ""}, "TRADEPULSE_JWT_SECRET"),
        (["--user", "u", "--ttl", "soon"], {"TRADEPULSE_JWT_SECRET": SECRET}, "--ttl"),
        (["--user", "u", "--private-key", "/nonexistent.pem"], {}, "--private-key"),
        (["--user", ""], {"TRADEPULSE_JWT_SECRET": SECRET}, "--user"),
    ],
)
def test_cli_token_without_usable_key_or_options_exits_2(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["auth", "token", *args], env=env)
    assert result.exit_code == 2
    assert message in result.output
    assert result.stdout.strip() == "" or "Usage" in result.output
