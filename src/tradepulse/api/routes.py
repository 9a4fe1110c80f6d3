"""REST ``/api/v1``: the live token statistics (Redis) and candles (PostgreSQL); the
router also carries symbols, rules, alerts and the profile (their own modules).

Market data routes are guarded by ``access.market_data``; the others need a token
(``access.authenticated``, a guard of their sub-router). Every route lists its query
parameters in ``opt["query"]``; ``reject_unknown_params`` (a
``before_request`` hook) answers 400 for any other, before values are parsed.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Request, Router, get
from litestar.params import FromPath, QueryParameter

from tradepulse.adapters.postgres import Candle
from tradepulse.api.access import BEARER_OPTIONAL, PROVIDE_ME, authenticated, market_data
from tradepulse.api.alerts_routes import ALERT_HANDLERS
from tradepulse.api.context import Ctx
from tradepulse.api.dryrun_routes import DRY_RUN_HANDLERS
from tradepulse.api.problems import ProblemError, bad_param, no_nul, problem_docs
from tradepulse.api.query import (
    DEFAULT_SORT,
    MAX_LIMIT,
    Cursor,
    decode_cursor,
    encode_cursor,
    filters_text,
    parse_filters,
    parse_range,
    parse_sort,
)
from tradepulse.api.reader import TokenDetail, TokenSummary
from tradepulse.api.rules_routes import RULE_HANDLERS
from tradepulse.api.symbols_routes import SYMBOL_HANDLERS
from tradepulse.api.user_routes import USER_HANDLERS
from tradepulse.core.types import TokenId, TsMs


class TokenPage(msgspec.Struct, frozen=True):
    """One page of the token list; ``next_cursor`` is null on the last page."""

    items: list[TokenSummary]
    sort: str
    limit: int
    total: int
    next_cursor: str | None


class CandlePage(msgspec.Struct, frozen=True):
    """Candles whose bucket overlaps ``[from_ms, to_ms)``, oldest first."""

    token: TokenId
    tf: str
    from_ms: TsMs
    to_ms: TsMs
    candles: list[Candle]


async def reject_unknown_params(request: Request[Any, Any, Any]) -> None:
    allowed = request.route_handler.opt.get("query")
    if allowed is None:  # a route of Litestar's own (the OpenAPI pages)
        return
    for name in request.query_params:
        if name not in allowed:
            accepts = ", ".join(allowed) if allowed else "no query parameters"
            raise bad_param(name, f"unknown parameter; accepts {accepts}")


#: The request bodies of /api/v1 (rules, profile) are small JSON documents.
MAX_BODY_BYTES = 64 * 1024


@get("/tokens", opt={"query": ("sort", "limit", "cursor", "where", "q")}, guards=[market_data],
     security=BEARER_OPTIONAL, responses=problem_docs(400, 401, 503))  # fmt: skip
async def list_tokens(
    ctx: Ctx,
    sort: Annotated[str, QueryParameter(description="[-]window.<window>.<stat>")] = DEFAULT_SORT,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, QueryParameter(description="next_cursor of a page")] = None,
    where: Annotated[
        list[str] | None,
        QueryParameter(
            description="window.<window>.<stat><op><number>, op >= <= == != > <; "
            "repeat for several (all must hold)"
        ),
    ] = None,
    q: Annotated[
        str | None, QueryParameter(max_length=128, description="substring of the address")
    ] = None,
) -> TokenPage:
    """Active tokens with every window's statistics, filtered, ordered by one statistic."""
    key = parse_sort(sort, ctx.settings.windows)
    filters = parse_filters(where or [], ctx.settings.windows)
    text = filters_text(filters, q)
    offset = decode_cursor(cursor, key, text).offset if cursor is not None else 0
    ranked = await ctx.rankings.ranked(key)
    if filters or q:
        needle = (q or "").lower()
        ranked = [item for item in ranked if needle in item.token.lower()
                  and all(f.matches(item.windows) for f in filters)]  # fmt: skip
    end = offset + limit
    following = encode_cursor(Cursor(end, str(key), text)) if end < len(ranked) else None
    return TokenPage(ranked[offset:end], str(key), limit, len(ranked), following)


@get("/tokens/{addr:str}", opt={"query": ()}, guards=[market_data], security=BEARER_OPTIONAL,
     responses=problem_docs(401, 404, 503))  # fmt: skip
async def token_detail(ctx: Ctx, addr: FromPath[str]) -> TokenDetail:
    """Every window, the forming bar, the indicators and the time of the last write."""
    detail = await ctx.live.detail(addr)
    if detail is None:
        raise ProblemError(404, f"token {addr!r} has no live statistics")
    return detail


_FROM = "epoch ms or RFC 3339; default: 24 hours before to"
_TO = "epoch ms or RFC 3339; default: now"


@get("/tokens/{addr:str}/candles", opt={"query": ("tf", "from", "to")}, guards=[market_data],
     security=BEARER_OPTIONAL, responses=problem_docs(400, 401, 503))  # fmt: skip
async def token_candles(
    ctx: Ctx,
    addr: FromPath[str],
    tf: Annotated[str, QueryParameter(description="1m, 5m, 15m, 1h, 4h or 1d")] = "1m",
    from_: Annotated[str | None, QueryParameter(name="from", description=_FROM)] = None,
    to: Annotated[str | None, QueryParameter(description=_TO)] = None,
) -> CandlePage:
    """Candles from the stored 1-minute bars; default range: the last 24 hours."""
    no_nul("addr", addr)
    from_ms, to_ms = parse_range(tf, from_, to, int(time.time() * 1000))
    query = partial(ctx.history.candles, addr, tf, from_ms, to_ms)
    return CandlePage(addr, tf, from_ms, to_ms, await anyio.to_thread.run_sync(query))


_protected = Router("/", route_handlers=[*RULE_HANDLERS, *DRY_RUN_HANDLERS, *ALERT_HANDLERS,
                                         *USER_HANDLERS],
                    guards=[authenticated], dependencies={"me": PROVIDE_ME})  # fmt: skip
api_router = Router(
    "/api/v1",
    route_handlers=[list_tokens, token_detail, token_candles, *SYMBOL_HANDLERS, _protected],
    request_max_body_size=MAX_BODY_BYTES,
)
