"""Errors as RFC 9457 problem details (``application/problem+json``).

Every failure of a request becomes one body ``{type, title, status, detail}``, plus
``invalid_params: [{name, reason}]`` for a bad query parameter, so a client never has to
parse HTML or a stack trace, and no bad input yields a 500::

    ProblemError (ours)          the status and detail it carries (400 names the parameter)
    ValidationException          400, Litestar's parameter errors, named per parameter
    HTTPException (404, 405...)  its status and detail
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
from litestar.types import ExceptionHandlersMap

from tradepulse.core.errors import StoreUnavailableError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """A request that cannot be answered; ``param`` names the offending query parameter."""

    def __init__(self, status: int, detail: str, param: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.param = param


def bad_param(param: str, reason: str) -> ProblemError:
    """A 400 naming ``param`` and what it accepts."""
    return ProblemError(400, f"query parameter {param!r}: {reason}", param)


def problem(
    status: int, detail: str, invalid: list[dict[str, str]] | None = None
) -> Response[bytes]:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase,
                            "status": status, "detail": detail}  # fmt: skip
    if invalid:
        body["invalid_params"] = invalid
    return Response(msgspec.json.encode(body), status_code=status, media_type=PROBLEM_JSON)


def _api_problem(_: Request[Any, Any, Any], exc: ProblemError) -> Response[bytes]:
    invalid = [{"name": exc.param, "reason": exc.detail}] if exc.param else None
    return problem(exc.status, exc.detail, invalid)


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    """Litestar's parameter errors (``extra``: ``[{key, message, source}]``) renamed."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    invalid = [{"name": str(e.get("key", "")), "reason": str(e.get("message", ""))}
               for e in extra if isinstance(e, dict)]  # fmt: skip
    named = "; ".join(f"query parameter {i['name']!r}: {i['reason']}" for i in invalid)
    return problem(400, named or str(exc.detail), invalid or None)


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
    HTTPException: _http,
    StoreUnavailableError: _unavailable,
    redis.RedisError: _unavailable,
    Exception: _internal,
}
