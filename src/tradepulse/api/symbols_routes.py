"""REST ``/api/v1/symbols``: find active tokens by a piece of their address.

The candidates are the members of ``tokens:active`` (what the workers wrote); matching is
case-insensitive. Order: an exact match, then addresses starting with ``q``, then those
containing it; within each, the most recently traded first, then by address. One Redis
round trip and a scan in Python: ``tokens:active`` holds the tokens traded in the longest
window (thousands), and Redis' ``MATCH`` globs are case-sensitive.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import get
from litestar.params import QueryParameter

from tradepulse.api.access import BEARER_OPTIONAL, market_data
from tradepulse.api.context import Ctx
from tradepulse.api.problems import problem_docs
from tradepulse.core.types import TokenId, TsMs

MAX_LIMIT = 100


class Symbol(msgspec.Struct, frozen=True):
    token: TokenId
    last_trade_ms: TsMs


class SymbolPage(msgspec.Struct, frozen=True):
    """The best ``limit`` matches of ``q``; ``total``: how many tokens matched."""

    q: str
    items: list[Symbol]
    total: int


def rank(active: list[tuple[TokenId, TsMs]], q: str) -> list[Symbol]:
    """The tokens containing ``q`` (any case), best first (see the module docstring)."""
    needle = q.casefold()
    keyed = []
    for token, last_ms in active:
        folded = token.casefold()
        position = folded.find(needle)
        if position < 0:
            continue
        group = 0 if folded == needle else 1 if position == 0 else 2
        keyed.append(((group, -last_ms, token), Symbol(token, last_ms)))
    keyed.sort(key=lambda pair: pair[0])
    return [symbol for _, symbol in keyed]


@get("/symbols", opt={"query": ("q", "limit")}, guards=[market_data],
     security=BEARER_OPTIONAL, responses=problem_docs(400, 401, 503))  # fmt: skip
async def search_symbols(
    ctx: Ctx,
    q: Annotated[str, QueryParameter(max_length=128, description="part of an address")] = "",
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 20,
) -> SymbolPage:
    """Active tokens whose address contains ``q`` (case-insensitive); every one when empty."""
    matches = rank(await ctx.live.active(), q)
    return SymbolPage(q, matches[:limit], len(matches))


SYMBOL_HANDLERS = [search_symbols]
