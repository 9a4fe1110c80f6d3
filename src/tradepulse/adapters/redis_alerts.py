"""The ``{prefix}alerts`` Redis stream: decoding its entries and a consumer-group reader.

An entry has one field ``alert``: the msgspec JSON of an ``Alert``. Workers add entries in
the atomic write of a token (``redis_store``); ``add_alert`` adds one directly (tools,
tests). The reader (``alert_stream``) is a ``GroupReader``: own pending entries, then
claimed ones, then new ones.

Decoding happens here: an ``AlertDelivery`` carries either an alert that PostgreSQL will
accept or the reason it could not be read, so one bad entry can never make every insert of
its batch fail (and be retried forever).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import redis

from tradepulse.adapters.redis_group import GroupReader, text
from tradepulse.core.alerts import Alert
from tradepulse.core.errors import StoreUnavailableError
from tradepulse.service.alert_persister import AlertDelivery

ALERTS = "alerts"
ALERT_FIELD = "alert"
_DECODER = msgspec.json.Decoder(Alert)
_ENCODER = msgspec.json.Encoder()
_INT64 = 2**63
_INT32 = 2**31

RedisAlertStream = GroupReader[AlertDelivery]


def stream_key(prefix: str) -> str:
    return f"{prefix}{ALERTS}"


def add_alert(client: redis.Redis, prefix: str, alert: Alert) -> str:
    """XADD ``alert`` to the stream; the new entry id."""
    try:
        entry_id = client.xadd(stream_key(prefix), {ALERT_FIELD: _ENCODER.encode(alert)})
    except redis.RedisError as exc:
        raise StoreUnavailableError(f"Redis XADD failed: {exc}") from exc
    return text(entry_id)


def decode_entry(entry_id: str, fields: Mapping[Any, Any] | None) -> AlertDelivery:
    """The alert of one entry's fields, or why there is none: ``missing_field`` (also an
    entry trimmed from the stream while pending), ``malformed_json`` (not JSON or not an
    ``Alert``), or ``<field>:<rule>`` from ``alert_problem``."""
    raw = (fields or {}).get(ALERT_FIELD.encode(), (fields or {}).get(ALERT_FIELD))
    if raw is None:
        return AlertDelivery(entry_id, None, "missing_field")
    try:
        alert = _DECODER.decode(raw)
    except msgspec.DecodeError:
        return AlertDelivery(entry_id, None, "malformed_json")
    problem = alert_problem(alert)
    return AlertDelivery(entry_id, None if problem else alert, problem)


def alert_problem(alert: Alert) -> str:
    """``""`` for a storable alert, else the first broken rule as ``field:rule``: ``id``,
    ``rule_id`` and ``token`` non-empty; no NUL character in any text (PostgreSQL refuses
    it); ``triggered_ms`` ≥ 0 and ``lag_ms`` within 64 bits; ``rule_version`` 0 .. 2³¹-1."""
    for name in ("id", "rule_id", "token"):
        if not getattr(alert, name):
            return f"{name}:length"
    texts = {
        "id": alert.id, "rule_id": alert.rule_id, "rule_name": alert.rule_name,
        "token": alert.token, "trace_id": alert.trace_id,
        "values": "".join(alert.values), "window_bounds": "".join(alert.window_bounds),
    }  # fmt: skip
    for name, value in texts.items():
        if "\x00" in value:
            return f"{name}:nul"
    if not 0 <= alert.triggered_ms < _INT64:
        return "triggered_ms:range"
    if not -_INT64 <= alert.lag_ms < _INT64:
        return "lag_ms:range"
    if not 0 <= alert.rule_version < _INT32:
        return "rule_version:range"
    return ""


def alert_stream(
    client: redis.Redis,
    *,
    prefix: str = "",
    group: str = "tradepulse-persister",
    consumer: str = "persister",
    claim_idle_ms: int = 60_000,
) -> RedisAlertStream:
    """A consumer ``consumer`` of group ``group`` on ``{prefix}alerts``."""
    return GroupReader(client, stream_key(prefix), decode_entry, group=group,
                       consumer=consumer, claim_idle_ms=claim_idle_ms)  # fmt: skip
