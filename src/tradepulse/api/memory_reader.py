"""``LiveReader``'s methods over the demo's ``MemoryStore`` (no Redis): what the API
answers is what the in-process worker wrote, decoded into the same structs."""

from __future__ import annotations

from collections.abc import Sequence

from tradepulse.adapters.memory_store import LiveToken, MemoryStore
from tradepulse.api.reader import TokenDetail, TokenSummary
from tradepulse.core.types import TokenId, TsMs
from tradepulse.service.recent_dryrun import RetainedTrades


class MemoryLiveReader:
    """Reads the live state of ``store`` (``ping``, ``summaries``, ``detail``,
    ``recent_trades``)."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def ping(self) -> bool:
        return True

    async def active(self) -> list[tuple[TokenId, TsMs]]:
        """Every live token with its newest trade time (ms), as ``tokens:active``."""
        return [(t.token, t.newest_ms) for t in self._store.live_tokens()]

    async def summaries(self) -> list[TokenSummary]:
        """Every token whose statistics have not expired, in token order."""
        return [TokenSummary(t.token, t.newest_ms, t.stats) for t in self._store.live_tokens()]

    async def detail(self, token: TokenId) -> TokenDetail | None:
        live = self._store.live_token(token)
        return None if live is None else _detail(live)

    async def recent_trades(self, tokens: Sequence[TokenId]) -> list[RetainedTrades]:
        """The retained trades of each of ``tokens`` that has some (as ``LiveReader``)."""
        return [RetainedTrades(token, t_ms, trades)
                for token, t_ms, trades in self._store.retained_trades(tokens)]  # fmt: skip


def _detail(live: LiveToken) -> TokenDetail:
    return TokenDetail(live.token, live.newest_ms, live.last_update, live.stats, live.forming,
                       live.indicators)  # fmt: skip
