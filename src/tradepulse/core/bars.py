"""1-minute bars: the record shared by the bar builder, the Redis hand-off and PostgreSQL."""

from __future__ import annotations

import msgspec

from tradepulse.core.types import TokenId, TsMs

MINUTE_MS = 60_000


class Bar(msgspec.Struct, frozen=True, gc=False):
    """One token's trades of one UTC minute ``[open_ms, open_ms + 60_000)``.

    ``volume`` is in token units, the ``*_usd`` volumes in USD, ``vwap = volume_usd / volume``.
    ``revision`` is 0 for the first final version of a bar and grows by one each time a
    late trade corrects it (same ``(token, open_ms)`` key, higher revision wins).
    """

    token: TokenId
    open_ms: TsMs
    open: float
    high: float
    low: float
    close: float
    volume: float
    volume_usd: float
    buy_volume_usd: float
    sell_volume_usd: float
    trades: int
    vwap: float
    revision: int = 0
