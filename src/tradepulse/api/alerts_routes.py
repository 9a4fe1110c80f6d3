"""REST ``/api/v1/alerts``: stored alerts (``ctx.alerts``), newest first.

A user sees the alerts of their own rules (an alert's ``owner`` is its rule's owner when it
was stored); an admin sees every alert, those of rules unknown to the database included,
and may filter by ``owner``. Pages are keyset-paged on ``(triggered_ms, id)``: alerts
stored while a client pages never shift the following pages.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio.to_thread
import msgspec
from litestar import get
from litestar.params import FromPath, QueryParameter

from tradepulse.adapters.postgres_alerts import AlertPage, StoredAlert
from tradepulse.api.access import BEARER, Me, visible
from tradepulse.api.context import Ctx
from tradepulse.api.problems import ProblemError, bad_param, no_nul, problem_docs
from tradepulse.api.query import parse_time_ms
from tradepulse.core.types import TokenId, TsMs

MAX_LIMIT = 1_000
_INT64 = 2**63 - 1
_TIME = "epoch ms or RFC 3339 (from: inclusive, to: exclusive)"


#: ``[start_ms, end_ms]`` (a list: OpenAPI 3.1 has no tuple schema Litestar would emit).
Bounds = Annotated[list[TsMs], msgspec.Meta(min_length=2, max_length=2)]


class AlertView(msgspec.Struct, frozen=True):
    """A stored alert: what made it fire (``values``: every metric the rule read, null when
    unknown), the window bounds ``[start_ms, end_ms]`` it read, its rule's ``owner`` (null
    when the rule is unknown to the database) and when it was stored (``stored_ms``)."""

    id: str
    rule_id: str
    rule_name: str
    rule_version: int
    token: TokenId
    triggered_ms: TsMs
    values: dict[str, float | None]
    window_bounds: dict[str, Bounds]
    lag_ms: int
    trace_id: str
    owner: str | None
    stored_ms: int


class AlertList(msgspec.Struct, frozen=True):
    """Alerts newest first; ``next_cursor`` (for ``cursor=``) is null on the last page."""

    alerts: list[AlertView]
    next_cursor: str | None


def _view(alert: StoredAlert) -> AlertView:
    return AlertView(*msgspec.structs.astuple(alert))


def _list(page: AlertPage) -> AlertList:
    return AlertList([_view(alert) for alert in page.alerts], page.next_cursor)


def _cursor(cursor: str | None) -> str | None:
    """A ``next_cursor`` (``<triggered_ms>:<id>``) checked before it reaches the store."""
    if cursor is None:
        return None
    ms, sep, alert_id = cursor.partition(":")
    if not sep or not ms.lstrip("-").isdigit() or abs(int(ms)) > _INT64 or "\x00" in alert_id:
        raise bad_param("cursor", "not a cursor returned by this API")
    return cursor


def _owner(me: Me, owner: str | None) -> str | None:
    if me.admin:
        return owner
    if owner is not None and owner != me.user:
        raise ProblemError(403, "only an admin may list the alerts of another user", "owner")
    return me.user


@get("/alerts", opt={"query": ("token", "rule", "owner", "from", "to", "limit", "cursor")},
     security=BEARER, responses=problem_docs(400, 401, 403, 503))  # fmt: skip
async def list_alerts(
    ctx: Ctx,
    me: Me,
    token: Annotated[str | None, QueryParameter(min_length=1, max_length=128)] = None,
    rule: Annotated[str | None, QueryParameter(min_length=1, max_length=64,
                                               description="a rule id")] = None,
    owner: Annotated[str | None, QueryParameter(min_length=1, max_length=128,
                                                description="admin only: one user's")] = None,
    from_: Annotated[str | None, QueryParameter(name="from", max_length=40,
                                                description=_TIME)] = None,
    to: Annotated[str | None, QueryParameter(max_length=40, description=_TIME)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 100,
    cursor: Annotated[str | None, QueryParameter(max_length=120,
                                                 description="next_cursor of a page")] = None,
) -> AlertList:  # fmt: skip
    """Alerts matching every filter given, newest first."""
    for name, value in (("token", token), ("rule", rule), ("owner", owner)):
        no_nul(name, value)
    from_ms = _time("from", from_)
    to_ms = _time("to", to)
    query = partial(ctx.alerts.list, token=token, rule_id=rule, owner=_owner(me, owner),
                    from_ms=from_ms, to_ms=to_ms, limit=limit, before=_cursor(cursor))  # fmt: skip
    return _list(await anyio.to_thread.run_sync(query))


def _time(param: str, text: str | None) -> int | None:
    return None if text is None else parse_time_ms(param, text)


@get("/alerts/{alert_id:str}", opt={"query": ()}, security=BEARER,
     responses=problem_docs(401, 404, 503))  # fmt: skip
async def get_alert(ctx: Ctx, me: Me, alert_id: FromPath[str]) -> AlertView:
    """One alert of the caller's rules."""
    found = None
    if "\x00" not in alert_id:
        found = await anyio.to_thread.run_sync(partial(ctx.alerts.get, alert_id))
    if found is None:
        raise ProblemError(404, f"alert {alert_id} not found")
    visible(me, found.owner, f"alert {alert_id}")
    return _view(found)


ALERT_HANDLERS = [list_alerts, get_alert]
