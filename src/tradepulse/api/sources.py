"""What the API reads through: the live statistics and the candle history.

``LiveReader`` (Redis) and ``HistoryPool`` (PostgreSQL) are the production sources;
``api/memory_reader.py`` adapts the demo's in-memory store to the same Protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tradepulse.adapters.postgres import Candle
from tradepulse.api.reader import TokenDetail, TokenSummary
from tradepulse.core.types import TokenId, TsMs
from tradepulse.service.recent_dryrun import RetainedTrades


class LiveSource(Protocol):
    """The live statistics workers wrote (``LiveReader``'s methods)."""

    async def ping(self) -> bool: ...

    async def active(self) -> list[tuple[TokenId, TsMs]]: ...

    async def summaries(self) -> list[TokenSummary]: ...

    async def detail(self, token: TokenId) -> TokenDetail | None: ...

    async def recent_trades(self, tokens: Sequence[TokenId]) -> list[RetainedTrades]:
        """The trades workers retain of each of ``tokens`` (at most the longest window),
        tokens without any left out."""
        ...


class CandleSource(Protocol):
    """The 1-minute bar history (``HistoryPool``'s methods; sync, run in worker threads)."""

    def candles(self, token: TokenId, tf: str, from_ms: TsMs, to_ms: TsMs) -> list[Candle]: ...

    def check(self) -> None: ...

    def close(self) -> None: ...
