"""What the API reads: the live state workers wrote to Redis (``redis.asyncio``) and the
candles in PostgreSQL (sync ``BarRepository`` calls, run in worker threads).

Key names are those of ``adapters/redis_store.py`` (``{addr}`` is a Redis Cluster hash
tag: the braces are part of the key)::

    {prefix}tokens:active             ZSet    addr -> newest trade time (ms)
    {prefix}token:{addr}:trades       List    retained trades, compact JSON, oldest first
    {prefix}token:{addr}:aggregates   Hash    window name -> JSON of WindowStats
    {prefix}token:{addr}:last_update  String  RFC 3339 time of the last write
    {prefix}livebar:{addr}            String  JSON of the forming 1-minute bar
    {prefix}ind:{addr}                String  JSON of the latest indicators (and ``token``)

The API never computes statistics; it only decodes and orders what is stored.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import anyio.to_thread
import msgspec
import redis.asyncio as aioredis

from tradepulse.adapters.postgres import BarRepository, Candle
from tradepulse.adapters.redis_store import stored_trades
from tradepulse.api.query import SortKey
from tradepulse.core.bars import Bar
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import WindowStats
from tradepulse.service.recent_dryrun import RetainedTrades

_stats_decoder = msgspec.json.Decoder(WindowStats)
_bar_decoder = msgspec.json.Decoder(Bar)
_indicators_decoder = msgspec.json.Decoder(dict[str, Any])
#: One token's retained trades and statistics, read together (from one worker write).
_READ_RETAINED = """
return {redis.call('LRANGE', KEYS[1], 0, -1), redis.call('HVALS', KEYS[2])}
"""


class TokenSummary(msgspec.Struct, frozen=True):
    """A token of the list: its newest trade time (ms) and every window's statistics."""

    token: TokenId
    last_trade_ms: TsMs
    windows: dict[str, WindowStats]


class TokenDetail(msgspec.Struct, frozen=True):
    """Everything stored for one token; ``bar``/``indicators`` are null when expired."""

    token: TokenId
    last_trade_ms: TsMs | None
    last_update: str | None
    windows: dict[str, WindowStats]
    bar: Bar | None
    indicators: dict[str, float | None] | None


def _stats(raw: dict[bytes, bytes]) -> dict[str, WindowStats]:
    return {k.decode(): _stats_decoder.decode(v) for k, v in raw.items()}


def _indicators(raw: bytes | None) -> dict[str, float | None] | None:
    if raw is None:
        return None
    values = _indicators_decoder.decode(raw)
    return {k: v for k, v in values.items() if k != "token"}


class LiveReader:
    """Reads the keys under ``prefix`` with an asyncio Redis client it does not own."""

    def __init__(self, client: aioredis.Redis, prefix: str = "") -> None:
        self._client = client
        self._prefix = prefix

    def active_key(self) -> str:
        return f"{self._prefix}tokens:active"

    def token_keys(self, token: TokenId) -> tuple[str, str, str, str]:
        """The aggregates, last_update, livebar and ind keys of ``token``."""
        p, tag = self._prefix, f"{{{token}}}"
        return (f"{p}token:{tag}:aggregates", f"{p}token:{tag}:last_update",
                f"{p}livebar:{tag}", f"{p}ind:{tag}")  # fmt: skip

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def active(self) -> list[tuple[TokenId, TsMs]]:
        """Every token of ``tokens:active`` with its newest trade time (ms)."""
        pairs = cast(
            list[tuple[bytes, float]],
            await self._client.zrange(self.active_key(), 0, -1, withscores=True),
        )
        return [(member.decode(), int(score)) for member, score in pairs]

    async def summaries(self) -> list[TokenSummary]:
        """Every token of ``tokens:active`` whose aggregates still exist (two round trips:
        the index, then one pipeline of every token's aggregates)."""
        active = cast(
            list[tuple[bytes, float]],
            await self._client.zrange(self.active_key(), 0, -1, withscores=True),
        )
        pipe = self._client.pipeline(transaction=False)
        for member, _ in active:
            pipe.hgetall(self.token_keys(member.decode())[0])
        replies: list[dict[bytes, bytes]] = await pipe.execute()
        return [TokenSummary(member.decode(), int(score), _stats(raw))
                for (member, score), raw in zip(active, replies, strict=True) if raw]  # fmt: skip

    async def detail(self, token: TokenId) -> TokenDetail | None:
        """One token read in one MULTI/EXEC (aggregates and last_update of one write);
        ``None`` when it has no aggregates."""
        aggregates, last_update, livebar, ind = self.token_keys(token)
        pipe = self._client.pipeline(transaction=True)
        pipe.hgetall(aggregates)
        pipe.get(last_update)
        pipe.get(livebar)
        pipe.get(ind)
        pipe.zscore(self.active_key(), token)
        raw, updated, bar, indicators, score = await pipe.execute()
        if not raw:
            return None
        return TokenDetail(
            token, int(score) if score is not None else None,
            updated.decode() if updated is not None else None, _stats(raw),
            _bar_decoder.decode(bar) if bar is not None else None, _indicators(indicators),
        )  # fmt: skip

    async def recent_trades(self, tokens: Sequence[TokenId]) -> list[RetainedTrades]:
        """The retained trades of each of ``tokens`` that has some (one script per token:
        its list and statistics from one write; one round trip), decoded in a worker
        thread."""
        pipe = self._client.pipeline(transaction=False)
        for token in tokens:
            tag = f"{self._prefix}token:{{{token}}}:"
            pipe.eval(_READ_RETAINED, 2, tag + "trades", tag + "aggregates")
        replies: list[list[list[bytes]]] = await pipe.execute()
        return await anyio.to_thread.run_sync(_retained, list(tokens), replies)


def _retained(tokens: list[TokenId], replies: list[list[list[bytes]]]) -> list[RetainedTrades]:
    """``RetainedTrades`` of the tokens whose list and statistics exist; ``t_ms`` is the
    newest ``updated_ms`` of the statistics (the worker's clock at its last write)."""
    out = []
    for token, (raw_trades, raw_stats) in zip(tokens, replies, strict=True):
        if raw_trades and raw_stats:
            t_ms = max(_stats_decoder.decode(v).updated_ms for v in raw_stats)
            out.append(RetainedTrades(token, t_ms, stored_trades(token, raw_trades)))
    return out


def sort_summaries(items: list[TokenSummary], key: SortKey) -> list[TokenSummary]:
    """Ordered by ``key``; ties by token ascending (a stable page order); tokens without
    the window or with a null statistic (e.g. ``vwap`` of an empty window) last."""
    valued: list[tuple[float, TokenSummary]] = []
    missing: list[TokenSummary] = []
    for item in items:
        stats = item.windows.get(key.window)
        value = getattr(stats, key.stat) if stats is not None else None
        if value is None:
            missing.append(item)
        else:
            valued.append((-value if key.descending else value, item))
    valued.sort(key=lambda pair: (pair[0], pair[1].token))
    return [item for _, item in valued] + sorted(missing, key=lambda item: item.token)


class HistoryPool:
    """``BarRepository`` objects (one connection each) shared by worker threads: a call
    takes an idle one or opens a new one, and gives it back; at most ``keep`` stay open."""

    def __init__(self, dsn: str, *, keep: int = 4, connect_timeout_s: int = 3) -> None:
        self._dsn = dsn
        self._keep = keep
        self._connect_timeout_s = connect_timeout_s
        self._idle: list[BarRepository] = []
        self._lock = threading.Lock()

    def candles(self, token: TokenId, tf: str, from_ms: TsMs, to_ms: TsMs) -> list[Candle]:
        repo = self._take()
        try:
            return repo.candles(token, tf, from_ms, to_ms)
        finally:
            self._give(repo)

    def check(self) -> None:
        """Raise ``HistoryUnavailableError`` unless PostgreSQL answers with ``bars_1m``."""
        repo = self._take()
        try:
            repo.check_schema()
        finally:
            self._give(repo)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for repo in idle:
            repo.close()

    def _take(self) -> BarRepository:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return BarRepository(self._dsn, connect_timeout_s=self._connect_timeout_s)

    def _give(self, repo: BarRepository) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(repo)
                return
        repo.close()
