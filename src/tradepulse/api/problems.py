"""Errors as RFC 9457 problem details (``application/problem+json``).

Every failure of a request becomes one body ``{type, title, status, detail}``, plus
``invalid_params: [{name, reason}]`` naming each bad query parameter or body field (a JSON
path such as ``$.conditions[1].op``), so a client never has to parse HTML or a stack trace,
and no bad input yields a 500::

    ProblemError (ours)          the status and detail it carries (400 names the parameter)
    ValidationException          400 for parameters, 422 for a body, named per field
    AuthError                    401 with WWW-Authenticate and ``reason`` (counted by reason);
                                 503 when authentication is not configured
    RuleError                    422, every error of the rule with its path
    RuleNotFoundError            404
    HTTPException (404, 405...)  its status and detail (malformed JSON: 400; too large: 413)
    StoreUnavailableError        503 (Redis; HistoryUnavailableError: PostgreSQL)
    redis.RedisError             503
    anything else                500, logged with its traceback
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import msgspec
import redis
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.types import ExceptionHandlersMap

from tradepulse import metrics
from tradepulse.adapters.postgres_rules import RuleNotFoundError
from tradepulse.core.errors import AuthError, StoreUnavailableError
from tradepulse.core.rules import RuleError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


AUTH_ENV = "TRADEPULSE_JWT_SECRET (HS256) or TRADEPULSE_JWT_PUBLIC_KEY (RS256)"


class InvalidParam(msgspec.Struct, frozen=True):
    """One offending input: a query parameter's name or a body field's JSON path."""

    name: str
    reason: str


class Problem(msgspec.Struct, frozen=True):
    """An RFC 9457 problem; ``reason`` only on 401 (why the token was refused)."""

    type: str
    title: str
    status: int
    detail: str
    invalid_params: list[InvalidParam] | None = None
    reason: str | None = None


def problem_docs(*statuses: int) -> dict[int, ResponseSpec]:
    """The OpenAPI ``responses`` of a route that may answer these error statuses."""
    return {status: ResponseSpec(Problem, description=HTTPStatus(status).phrase,
                                 media_type=PROBLEM_JSON, generate_examples=False)
            for status in statuses}  # fmt: skip


class ProblemError(Exception):
    """A request that cannot be answered; ``param`` names the offending query parameter,
    ``invalid`` every offending input (``[{name, reason}]``)."""

    def __init__(
        self,
        status: int,
        detail: str,
        param: str | None = None,
        invalid: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.invalid = [{"name": param, "reason": detail}] if param else invalid


def bad_param(param: str, reason: str) -> ProblemError:
    """A 400 naming ``param`` and what it accepts."""
    return ProblemError(400, f"query parameter {param!r}: {reason}", param)


def no_nul(param: str, value: str | None) -> None:
    """400 for a NUL character, which PostgreSQL cannot store or compare."""
    if value is not None and "\x00" in value:
        raise bad_param(param, "must not contain NUL characters")


def problem(
    status: int,
    detail: str,
    invalid: list[dict[str, str]] | None = None,
    *,
    reason: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase,
                            "status": status, "detail": detail}  # fmt: skip
    if invalid:
        body["invalid_params"] = invalid
    if reason is not None:
        body["reason"] = reason
    return Response(msgspec.json.encode(body), status_code=status, media_type=PROBLEM_JSON,
                    headers=headers)  # fmt: skip


def _api_problem(_: Request[Any, Any, Any], exc: ProblemError) -> Response[bytes]:
    return problem(exc.status, exc.detail, exc.invalid)


def body_field(path: str, message: str) -> dict[str, str]:
    """``{name: json path, reason}`` of a body error at ``path``. A check of a whole struct
    (``__post_init__``) names its field first (``"watchlist: ..."``): added to the path."""
    field, sep, rest = message.partition(": ")
    if sep and field.isidentifier():
        return {"name": f"{path}.{field}", "reason": rest}
    return {"name": path, "reason": message}


def _body_path(key: str) -> str:
    """Litestar names a body field by its path without ``$`` (``data``: the whole body)."""
    return "$" if key in {"", "data"} else f"$.{key}"


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    """Litestar's errors (``extra``: ``[{key, message, source}]``) renamed: a body that
    does not match its schema is 422 with JSON paths, anything else 400 per parameter."""
    extra = [e for e in (exc.extra if isinstance(exc.extra, list) else []) if isinstance(e, dict)]
    if any(e.get("source") == "body" for e in extra):
        invalid = [body_field(_body_path(str(e.get("key", ""))), str(e.get("message")))
                   for e in extra]  # fmt: skip
        named = "; ".join(f"{i['name']}: {i['reason']}" for i in invalid)
        return problem(422, f"invalid request body: {named}", invalid)
    invalid = [{"name": str(e.get("key", "")), "reason": str(e.get("message", ""))}
               for e in extra]  # fmt: skip
    named = "; ".join(f"query parameter {i['name']!r}: {i['reason']}" for i in invalid)
    return problem(400, named or str(exc.detail), invalid or None)


def _auth(_: Request[Any, Any, Any], exc: AuthError) -> Response[bytes]:
    """401 naming why (RFC 6750: ``error="invalid_token"`` unless no token was sent); 503
    when this server has no key to verify with."""
    metrics.AUTH_FAILURES.labels(exc.reason).inc()
    if exc.reason == "not_configured":
        return problem(503, f"authentication is not configured: set {AUTH_ENV}")
    challenge = 'Bearer realm="tradepulse"'
    if exc.reason != "missing":
        description = exc.detail.replace('"', "'").replace("\\", "/")
        challenge += f', error="invalid_token", error_description="{description}"'
    return problem(401, exc.detail, reason=exc.reason, headers={"WWW-Authenticate": challenge})


def rule_errors(exc: RuleError) -> list[dict[str, str]]:
    """``[{name: path, reason}]`` of the ``"<path>: <message>"`` errors of a rule."""
    pairs = (error.partition(": ") for error in exc.errors)
    return [{"name": path, "reason": message} for path, _, message in pairs]


def _invalid_rule(_: Request[Any, Any, Any], exc: RuleError) -> Response[bytes]:
    return problem(422, str(exc), rule_errors(exc))


def _not_found(_: Request[Any, Any, Any], exc: RuleNotFoundError) -> Response[bytes]:
    return problem(404, str(exc))


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    return problem(exc.status_code, str(exc.detail))


def _unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.warning("store unavailable path=%s error=%s", request.url.path, exc)
    return problem(503, f"store unavailable: {exc}")


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("request failed path=%s", request.url.path, exc_info=exc)
    return problem(500, "internal error (logged)")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ProblemError: _api_problem,
    ValidationException: _validation,
    AuthError: _auth,
    RuleError: _invalid_rule,
    RuleNotFoundError: _not_found,
    HTTPException: _http,
    StoreUnavailableError: _unavailable,
    redis.RedisError: _unavailable,
    Exception: _internal,
}
