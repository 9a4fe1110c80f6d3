"""Bearer tokens: JWTs signed with HS256 (a shared secret) or RS256 (a key pair).

One algorithm is accepted per deployment, never the one the token names: with
``TRADEPULSE_JWT_PUBLIC_KEY`` set only RS256 verifies, otherwise only HS256 with
``TRADEPULSE_JWT_SECRET``. So ``alg=none``, an HS256 token forged with the public key as the
secret, and any other algorithm are all refused as ``wrong_algorithm`` or ``bad_signature``.

Claims: ``sub`` (the user id, 1..128 characters) and ``exp`` are required; ``nbf`` and
``iat`` are honoured when present; ``admin`` (bool, default false) grants every user's rules
and alerts. Expiry and not-before allow ``LEEWAY_S`` of clock skew between issuer and API.

Every refusal is an ``AuthError`` with a bounded ``reason`` (a metric label) and a message
safe to show the client (it never echoes the token).
"""

from __future__ import annotations

import jwt
import msgspec
from jwt.types import Options

from tradepulse.config import load_pem
from tradepulse.core.errors import AuthError

#: Clock skew tolerated on ``exp`` and ``nbf`` (seconds).
LEEWAY_S = 10
MIN_SECRET_BYTES = 32
_MAX_USER_CHARS = 128


class Principal(msgspec.Struct, frozen=True):
    """Who a request acts for."""

    user: str
    admin: bool = False

    def may_access(self, owner: str) -> bool:
        """True for the owner of a rule or alert, and for an admin."""
        return self.admin or self.user == owner


class JwtKeys(msgspec.Struct, frozen=True):
    """The verification key and its one algorithm (``key`` empty: auth not configured)."""

    algorithm: str = "HS256"
    key: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.key)


def keys_from_settings(secret: str, public_key: str) -> JwtKeys:
    """RS256 when a public key (PEM text, or the path of a PEM file) is given, else HS256
    with ``secret``; neither: not configured (protected routes answer 503)."""
    if public_key:
        return JwtKeys("RS256", load_pem(public_key, "TRADEPULSE_JWT_PUBLIC_KEY"))
    return JwtKeys("HS256", secret) if secret else JwtKeys()


class JwtVerifier:
    """Checks bearer tokens against one key and algorithm."""

    def __init__(self, keys: JwtKeys) -> None:
        self.keys = keys

    @property
    def configured(self) -> bool:
        return self.keys.configured

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; ``AuthError`` naming why otherwise."""
        if not self.keys.configured:
            raise AuthError("not_configured", "authentication is not configured on this server")
        algorithm = _header_algorithm(token)
        if algorithm != self.keys.algorithm:
            raise AuthError("wrong_algorithm", f"tokens must be signed with {self.keys.algorithm}")
        claims = _decode(token, self.keys)
        return _principal(claims)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None when absent)."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("malformed", "the Authorization header must be 'Bearer <token>'")
    return token.strip()


def issue_token(key: str, algorithm: str, user: str, *, admin: bool, ttl_s: int, now_s: int) -> str:
    """A token for ``user`` valid from ``now_s`` for ``ttl_s`` seconds (``key``: the HS256
    secret, or the RS256 private key as PEM)."""
    if not 1 <= len(user) <= _MAX_USER_CHARS:
        raise AuthError("invalid_claims", f"user must be 1..{_MAX_USER_CHARS} characters")
    claims = {"sub": user, "admin": admin, "iat": now_s, "nbf": now_s, "exp": now_s + ttl_s}
    return jwt.encode(claims, key, algorithm=algorithm)


def _header_algorithm(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthError("malformed", "the bearer token is not a JWT") from None
    return str(header.get("alg", ""))


def _decode(token: str, keys: JwtKeys) -> dict[str, object]:
    options: Options = {"require": ["exp", "sub"]}
    try:
        claims: dict[str, object] = jwt.decode(
            token, keys.key, algorithms=[keys.algorithm], options=options, leeway=LEEWAY_S
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("expired", "the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthError("not_yet_valid", "the token is not valid yet") from None
    except jwt.InvalidSignatureError:
        raise AuthError("bad_signature", "the token's signature does not verify") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError("invalid_claims", f"the token has no {exc.claim!r} claim") from None
    except jwt.PyJWTError as exc:
        raise AuthError("invalid_claims", f"the token is invalid: {exc}") from None
    return claims


def _principal(claims: dict[str, object]) -> Principal:
    user, admin = claims.get("sub"), claims.get("admin", False)
    if not isinstance(user, str) or not 1 <= len(user) <= _MAX_USER_CHARS:
        raise AuthError("invalid_claims", f"'sub' must be 1..{_MAX_USER_CHARS} characters")
    if not isinstance(admin, bool):
        raise AuthError("invalid_claims", "'admin' must be true or false")
    return Principal(user, admin)
