"""The ``{prefix}bars.finalized`` Redis stream: the writer side and a consumer-group reader.

An entry has one field ``bar``: the msgspec JSON of a ``Bar``. The worker adds an entry for
every finalized bar and again (``revision + 1``) when a late trade corrects it.

The reader is one consumer of a consumer group. What it delivers, in this order::

    1. its own pending entries (XREADGROUP id 0): read before a crash, never acknowledged
    2. entries idle longer than ``claim_idle_ms`` in other consumers' pending lists
       (XAUTOCLAIM: those consumers died), one scan every ``claim_idle_ms / 2``
    3. new entries (XREADGROUP id >), blocking up to ``block_ms``

The group is created at id 0 with MKSTREAM (so bars added before the first persister ran are
read too) and created again if the stream disappears (NOGROUP). Entries are only removed from
the pending list by ``ack``. Decoding happens here: a ``BarDelivery`` carries either a
validated ``Bar`` or the reason it could not be read. Redis errors become
``StoreUnavailableError``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import redis

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
    return _text(entry_id)


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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBarStream:
    """A consumer ``consumer`` of group ``group`` on ``{prefix}bars.finalized``.

    Consumer names should be stable across restarts of the same instance (e.g. the host or
    pod name): a restarted consumer then re-reads its own pending entries at once instead of
    waiting ``claim_idle_ms`` for another consumer to claim them.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "",
        group: str = "tradepulse-persister",
        consumer: str = "persister",
        claim_idle_ms: int = 60_000,
    ) -> None:
        self.key = stream_key(prefix)
        self.group = group
        self.consumer = consumer
        self._client = client
        self._claim_idle_ms = claim_idle_ms
        self._group_ready = False
        self._pending_from: str | None = "0"  # None once the own pending list is drained
        self._claim_from = "0-0"
        self._next_claim_s = 0.0

    def ensure_group(self) -> None:
        """Create the stream and the group (from id 0) unless they exist."""
        try:
            self._client.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StoreUnavailableError(f"Redis XGROUP CREATE failed: {exc}") from exc
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis XGROUP CREATE failed: {exc}") from exc
        self._group_ready = True

    def read(self, max_count: int, block_ms: int) -> list[BarDelivery]:
        """Up to ``max_count`` entries: own pending first, then claimed, then new ones
        (waiting up to ``block_ms``). ``[]`` when nothing came."""
        try:
            return self._read(max_count, block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise StoreUnavailableError(f"Redis stream read failed: {exc}") from exc
            log.warning("stream or group vanished, creating it again key=%s", self.key)
            self._group_ready = False
            return []
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis stream read failed: {exc}") from exc

    def ack(self, entry_ids: Sequence[str]) -> None:
        """XACK ``entry_ids`` (unknown or already acknowledged ids are ignored)."""
        if not entry_ids:
            return
        try:
            self._client.xack(self.key, self.group, *entry_ids)
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis XACK failed: {exc}") from exc

    def _read(self, max_count: int, block_ms: int) -> list[BarDelivery]:
        if not self._group_ready:
            self.ensure_group()
        if self._pending_from is not None:
            own = self._read_group(self._pending_from, max_count, None)
            if own:
                self._pending_from = own[-1].entry_id
                return own
            self._pending_from = None
        claimed = self._claim(max_count)
        if claimed:
            return claimed
        return self._read_group(">", max_count, block_ms)

    def _read_group(self, from_id: str, max_count: int, block_ms: int | None) -> list[BarDelivery]:
        reply: Any = self._client.xreadgroup(
            self.group, self.consumer, {self.key: from_id}, count=max_count, block=block_ms
        )
        return [decode_entry(_text(i), f) for _, entries in reply or [] for i, f in entries]

    def _claim(self, max_count: int) -> list[BarDelivery]:
        """One XAUTOCLAIM step of the scan over the group's pending list."""
        now_s = time.monotonic()
        if now_s < self._next_claim_s:
            return []
        reply: Any = self._client.xautoclaim(
            self.key, self.group, self.consumer, self._claim_idle_ms, self._claim_from,
            count=max_count,
        )  # fmt: skip
        self._claim_from = _text(reply[0])
        if self._claim_from == "0-0":  # scan complete: next one later
            self._next_claim_s = now_s + self._claim_idle_ms / 2_000
        claimed = [decode_entry(_text(i), f) for i, f in reply[1]]
        if claimed:
            log.info("claimed idle entries count=%s key=%s", len(claimed), self.key)
        return claimed
