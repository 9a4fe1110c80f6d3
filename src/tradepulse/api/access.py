"""Who a request acts for, and what it may read.

* ``authenticate``: the ``Principal`` of the ``Authorization: Bearer`` header, None without
  one; an ``AuthError`` for a malformed, forged, expired... token (answered 401 with
  ``WWW-Authenticate``, or 503 when no key is configured: ``problems.py``).
* ``authenticated`` (a guard of the rules, alerts and profile routes): no token is
  ``AuthError("missing")``. Guards run before the body and the parameters are read, so a
  request without a valid token is 401 whatever else is wrong with it. ``Me`` (dependency
  ``me``) is the principal the guard found.
* ``market_data`` (a guard of the token, candle and symbol routes): open to anyone while
  ``TRADEPULSE_PUBLIC_MARKET_DATA`` is true (a token sent anyway is not even looked at:
  the answer does not depend on who asks), else like ``Me``.
* ``visible``: a rule or alert of another user is answered 404, exactly as one that does
  not exist, so ids cannot be probed; an admin sees every one.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias, cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import Dependency, Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.params import SkipValidationMarker

from tradepulse.api.auth import Principal, bearer_token
from tradepulse.api.context import ApiContext
from tradepulse.api.problems import ProblemError
from tradepulse.core.errors import AuthError

#: The OpenAPI security requirement of a protected route (scheme declared by ``create_app``).
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
#: Market data: the token is optional (required when public market data is off).
BEARER_OPTIONAL: list[dict[str, list[str]]] = [{}, {"bearer": []}]


def authenticate(ctx: ApiContext, authorization: str | None) -> Principal | None:
    token = bearer_token(authorization)
    return None if token is None else ctx.auth.verify(token)


def _context(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiContext:
    return cast(ApiContext, connection.app.state.ctx)


def _required(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = authenticate(_context(connection), connection.headers.get("authorization"))
    if principal is None:
        raise AuthError("missing", "this route needs an 'Authorization: Bearer <token>' header")
    return principal


def authenticated(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the routes that need a token (see the module docstring)."""
    connection.state.principal = _required(connection)


def _me(request: Request[Any, Any, Any]) -> Principal:
    principal = request.state.get("principal")
    return principal if isinstance(principal, Principal) else _required(request)


def market_data(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of the market data routes (see the module docstring)."""
    if not _context(connection).settings.public_market_data:
        _required(connection)


def visible(principal: Principal, owner: str | None, what: str) -> None:
    """404 unless ``principal`` may see a resource of ``owner`` (None: no owner, admin
    only)."""
    if principal.admin or (owner is not None and principal.may_access(owner)):
        return
    raise ProblemError(404, f"{what} not found")


#: How a handler asks for the principal: injected by name (``me``), not validated.
Me: TypeAlias = Annotated[Principal, Dependency(kind="named"), SkipValidationMarker()]
PROVIDE_ME = Provide(_me, sync_to_thread=False)
