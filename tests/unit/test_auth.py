"""Bearer-token verification: what is accepted, and every way a token is refused."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tradepulse.api.auth import (
    LEEWAY_S,
    JwtKeys,
    JwtVerifier,
    Principal,
    bearer_token,
    issue_token,
    keys_from_settings,
)
from tradepulse.config import load_settings
from tradepulse.core.errors import AuthError, ConfigError

SECRET = "s" * 40
OTHER = "o" * 40


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


PRIVATE, PUBLIC = _rsa_pair()


def _now() -> int:
    return int(time.time())


def _refusal(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert token not in str(info.value)
    return info.value.reason


def test_hs256_token_round_trip_gives_user_and_admin() -> None:
    verifier = JwtVerifier(JwtKeys("HS256", SECRET))
    token = issue_token(SECRET, "HS256", "alice", admin=True, ttl_s=60, now_s=_now())
    assert verifier.verify(token) == Principal("alice", admin=True)


def test_rs256_token_round_trip() -> None:
    verifier = JwtVerifier(keys_from_settings("", PUBLIC))
    token = issue_token(PRIVATE, "RS256", "bob", admin=False, ttl_s=60, now_s=_now())
    assert verifier.verify(token) == Principal("bob", admin=False)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [  # times relative to when the test runs (seconds), not to when it was collected
        ({"sub": "a", "exp": -LEEWAY_S - 5}, "expired"),
        ({"sub": "a", "exp": 600, "nbf": LEEWAY_S + 60}, "not_yet_valid"),
        ({"exp": 600}, "invalid_claims"),
        ({"sub": "a"}, "invalid_claims"),
        ({"sub": "", "exp": 600}, "invalid_claims"),
        ({"sub": "a", "exp": 600, "admin": "yes"}, "invalid_claims"),
    ],
)
def test_hs256_bad_claims_are_refused_with_reason(claims: dict[str, object], reason: str) -> None:
    verifier = JwtVerifier(JwtKeys("HS256", SECRET))
    now = _now()
    timed = {k: now + v if k in {"exp", "nbf"} and isinstance(v, int) else v
             for k, v in claims.items()}  # fmt: skip
    assert _refusal(verifier, jwt.encode(timed, SECRET, algorithm="HS256")) == reason


def test_forged_signature_is_refused() -> None:
    verifier = JwtVerifier(JwtKeys("HS256", SECRET))
    token = issue_token(OTHER, "HS256", "mallory", admin=True, ttl_s=60, now_s=_now())
    assert _refusal(verifier, token) == "bad_signature"


def test_alg_none_is_refused() -> None:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': 'a', 'exp': _now() + 60})}."
    assert _refusal(JwtVerifier(JwtKeys("HS256", SECRET)), token) == "wrong_algorithm"


def test_wrong_algorithm_is_refused_both_ways() -> None:
    rs_verifier = JwtVerifier(keys_from_settings("", PUBLIC))
    hs_token = issue_token(SECRET, "HS256", "a", admin=False, ttl_s=60, now_s=_now())
    assert _refusal(rs_verifier, hs_token) == "wrong_algorithm"
    hs_verifier = JwtVerifier(JwtKeys("HS256", SECRET))
    rs_token = issue_token(PRIVATE, "RS256", "a", admin=False, ttl_s=60, now_s=_now())
    assert _refusal(hs_verifier, rs_token) == "wrong_algorithm"


def test_garbage_token_is_malformed() -> None:
    assert _refusal(JwtVerifier(JwtKeys("HS256", SECRET)), "not.a.jwt") == "malformed"


def test_unconfigured_verifier_refuses_everything() -> None:
    token = issue_token(SECRET, "HS256", "a", admin=False, ttl_s=60, now_s=_now())
    assert _refusal(JwtVerifier(keys_from_settings("", "")), token) == "not_configured"


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("Bearer abc", "abc"), ("bearer  abc ", "abc")],
)
def test_bearer_token_parses_header(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Token abc"])
def test_bearer_token_refuses_other_schemes(header: str) -> None:
    with pytest.raises(AuthError) as info:
        bearer_token(header)
    assert info.value.reason == "malformed"


def test_settings_short_secret_is_refused_without_echo() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"TRADEPULSE_JWT_SECRET": "short-secret"}, dotenv=None)
    assert "TRADEPULSE_JWT_SECRET" in str(info.value)
    assert "short-secret" not in str(info.value)


def test_settings_secret_is_masked_in_repr() -> None:
    settings = load_settings({"TRADEPULSE_JWT_SECRET": SECRET}, dotenv=None)
    assert settings.jwt_secret == SECRET
    assert SECRET not in repr(settings)


def test_settings_public_key_from_file(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    pem = tmp_path / "key.pem"
    pem.write_text(PUBLIC)
    settings = load_settings({"TRADEPULSE_JWT_PUBLIC_KEY": str(pem)}, dotenv=None)
    assert keys_from_settings(settings.jwt_secret, settings.jwt_public_key).algorithm == "RS256"


def test_settings_public_key_unreadable_names_variable() -> None:
    with pytest.raises(ConfigError, match="TRADEPULSE_JWT_PUBLIC_KEY"):
        load_settings({"TRADEPULSE_JWT_PUBLIC_KEY": "/nonexistent/key.pem"}, dotenv=None)
