"""The ``{prefix}bars.finalized`` Redis stream: the writer side and a consumer-group reader.

An entry has one field ``bar``: the msgspec JSON of a ``Bar``. The worker adds an entry for
every finalized bar and again (``revision + 1``) when a late trade corrects it.

The reader is one consumer of a consumer group (``GroupReader``: own pending entries, then
claimed ones of dead consumers, then new ones). Decoding happens here: a ``BarDelivery``
carries either a validated ``Bar`` or the reason it could not be read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import msgspec
import redis

from tradepulse.adapters.redis_group import GroupReader, text
from tradepulse.core.bars import MINUTE_MS, Bar
from tradepulse.core.errors import StoreUnavailableError
from tradepulse.service.persister import BarDelivery

log = logging.getLogger(__name__)

BARS_FINALIZED = "bars.finalized"
BAR_FIELD = "bar"
_DECODER = msgspec.json.Decoder(Bar)
_ENCODER = msgspec.json.Encoder()
_FLOAT_FIELDS = ("open", "high", "low", "close", "volume", "volume_usd", "buy_volume_usd",
                 "sell_volume_usd", "vwap")  # fmt: skip


def stream_key(prefix: str) -> str:
    return f"{prefix}{BARS_FINALIZED}"


def add_bar(client: redis.Redis, prefix: str, bar: Bar) -> str:
    """XADD ``bar`` to the stream; the new entry id. (What the worker does per final bar.)"""
    try:
        entry_id = client.xadd(stream_key(prefix), {BAR_FIELD: _ENCODER.encode(bar)})
    except redis.RedisError as exc:
        raise StoreUnavailableError(f"Redis XADD failed: {exc}") from exc
    return text(entry_id)


def decode_entry(entry_id: str, fields: Mapping[Any, Any] | None) -> BarDelivery:
    """The bar of one entry's fields, or why there is none: ``missing_field`` (also an
    entry deleted from the stream while pending), ``malformed_json`` (not JSON or not a
    ``Bar``), or ``<field>:<rule>`` from ``bar_problem``."""
    raw = (fields or {}).get(BAR_FIELD.encode(), (fields or {}).get(BAR_FIELD))
    if raw is None:
        return BarDelivery(entry_id, None, "missing_field")
    try:
        bar = _DECODER.decode(raw)
    except msgspec.DecodeError:
        return BarDelivery(entry_id, None, "malformed_json")
    problem = bar_problem(bar)
    return BarDelivery(entry_id, None if problem else bar, problem)


def bar_problem(bar: Bar) -> str:
    """``""`` for a storable bar, else the first broken rule as ``field:rule``: token
    non-empty; ``open_ms`` ≥ 0 and a whole UTC minute; ``trades`` and ``revision`` ≥ 0;
    every price and volume finite."""
    if not bar.token:
        return "token:length"
    if bar.open_ms < 0 or bar.open_ms % MINUTE_MS:
        return "open_ms:alignment"
    if bar.trades < 0:
        return "trades:range"
    if bar.revision < 0:
        return "revision:range"
    for name in _FLOAT_FIELDS:
        if not math.isfinite(getattr(bar, name)):
            return f"{name}:non_finite"
    return ""


class RedisBarStream(GroupReader[BarDelivery]):
    """A consumer ``consumer`` of group ``group`` on ``{prefix}bars.finalized`` (the read
    order, group creation and claiming of ``GroupReader``)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "",
        group: str = "tradepulse-persister",
        consumer: str = "persister",
        claim_idle_ms: int = 60_000,
    ) -> None:
        super().__init__(client, stream_key(prefix), decode_entry, group=group,
                         consumer=consumer, claim_idle_ms=claim_idle_ms)  # fmt: skip
