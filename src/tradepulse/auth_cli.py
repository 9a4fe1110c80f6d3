"""``tradepulse auth``: bearer tokens for the API.

``cli.py`` registers ``auth_app`` (``app.add_typer(auth_app, name="auth")``). A token is
signed with ``TRADEPULSE_JWT_SECRET`` (HS256), or with ``--private-key`` (RS256; the API
then verifies it with ``TRADEPULSE_JWT_PUBLIC_KEY``). It is printed alone on stdout, so
``TOKEN=$(tradepulse auth token --user alice)`` works; errors go to stderr with exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tradepulse.adapters.clock import wall_now_ms
from tradepulse.cli_common import duration_opt, err, settings_or_exit
from tradepulse.config import Settings, load_pem
from tradepulse.core.errors import TradepulseError

MAX_TTL_S = 366 * 86_400

auth_app = typer.Typer(
    help="Bearer tokens of the API (JWT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/] {message}")
    return typer.Exit(2)


def _signing_key(settings: Settings, private_key: Path | None) -> tuple[str, str]:
    """``(key, algorithm)``: the RS256 private key of ``--private-key``, else the HS256
    secret; an RS256 deployment (public key set) needs the private key."""
    if private_key is not None:
        try:
            return load_pem(str(private_key), "--private-key"), "RS256"
        except TradepulseError as exc:
            raise _fail(str(exc)) from exc
    if settings.jwt_public_key:
        raise _fail("the API verifies RS256 tokens (TRADEPULSE_JWT_PUBLIC_KEY is set): "
                    "pass --private-key FILE")  # fmt: skip
    if not settings.jwt_secret:
        raise _fail("no signing key: set TRADEPULSE_JWT_SECRET (HS256, at least 32 bytes) "
                    "or pass --private-key FILE (RS256)")  # fmt: skip
    return settings.jwt_secret, "HS256"


@auth_app.command("token")
def token_cmd(
    user: Annotated[str, typer.Option("--user", help="The user id (the token's sub claim).")],
    admin: Annotated[
        bool, typer.Option("--admin", help="Grant every user's rules and alerts.")
    ] = False,
    ttl: Annotated[
        str, typer.Option("--ttl", help="Validity, e.g. 30min, 1h, 7d (at most 366d).")
    ] = "1h",
    private_key: Annotated[
        Path | None,
        typer.Option("--private-key", help="Sign with RS256 using this PEM private key file."),
    ] = None,
) -> None:
    """Print a bearer token for USER, valid from now for --ttl."""
    import jwt

    from tradepulse.api.auth import issue_token

    ttl_ms = duration_opt(ttl, "--ttl") or 0
    if not 1_000 <= ttl_ms <= MAX_TTL_S * 1_000:
        raise typer.BadParameter("must be 1s .. 366d", param_hint="--ttl")
    key, algorithm = _signing_key(settings_or_exit(), private_key)
    try:
        token = issue_token(key, algorithm, user, admin=admin, ttl_s=ttl_ms // 1_000,
                            now_s=wall_now_ms() // 1_000)  # fmt: skip
    except TradepulseError as exc:
        raise _fail(f"--user: {exc}") from exc
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise _fail(f"--private-key: not a usable RSA private key ({exc})") from exc
    typer.echo(token)
