"""Alerts (ARCHITECTURE §6): the record, and how a scan builds them deterministically.

Core never reads the clock or a random source, so an alert's identity is derived from what
made it: its key is the JSON ``[rule_id, rule_version, token, triggered_ms]``; ``id`` is
``uuid5(ALERT_NAMESPACE, key)`` and ``trace_id`` the same 128 SHA-1 bits in hex before the
UUID version and variant bits are set. A batch redelivered after a crash that triggers the
same alert at the same time yields the same id, so sinks deduplicate on it.

Cost: about 2-4 µs an alert (the id strings, two small dicts and the struct); the values
are gathered per rule and column, not per alert.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat

import msgspec
import numpy as np

from tradepulse.core.rule_model import Rule, is_integer_metric
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import parse_duration_ms

ALERT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://tradepulse/alerts")
_NAMESPACE_BYTES = ALERT_NAMESPACE.bytes
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant nibble


class Alert(msgspec.Struct, frozen=True, gc=False):
    """One firing of a rule for a token. ``values`` holds every metric the rule read (null
    as None, whole-number metrics as int); ``window_bounds`` each window it read as
    ``(updated_ms - window_ms, updated_ms)``; ``lag_ms`` is now minus the newest trade, 0
    when the token already has trades newer than the scan time (an event-clock scan runs
    once every partition passed it)."""

    id: str
    rule_id: str
    rule_name: str
    rule_version: int
    token: TokenId
    triggered_ms: TsMs
    values: dict[str, float | int | None]
    window_bounds: dict[str, tuple[TsMs, TsMs]]
    lag_ms: int
    trace_id: str


def _plain_column(col: np.ndarray, integer: bool) -> list[float | int | None]:
    """A column as Python values: NaN as None, whole-number metrics as int. (Plain Python:
    a rule fires for a few rows at a time, where NumPy calls cost more than the loop.)"""
    values: list[float] = col.tolist()
    isnan, isfinite = math.isnan, math.isfinite
    if integer:
        return [int(v) if isfinite(v) else (None if isnan(v) else v) for v in values]
    return [None if isnan(v) else v for v in values]


def _bounds_column(col: np.ndarray, window_ms: int) -> list[tuple[TsMs, TsMs] | None]:
    """``(updated_ms - window_ms, updated_ms)`` per row, None where updated_ms is null."""
    values: list[float] = col.tolist()
    return [None if math.isnan(u) else (int(u) - window_ms, int(u)) for u in values]


def alert_ids(key: bytes) -> tuple[str, str]:
    """The alert id, ``str(uuid.uuid5(ALERT_NAMESPACE, key))``, and the trace id, the same
    128 bits before the UUID version and variant are set, in hex (one SHA-1, no UUID
    object: the cost of an alert is mostly these strings)."""
    x = hashlib.sha1(_NAMESPACE_BYTES + key, usedforsecurity=False).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}", x[:32]


class AlertMaker:
    """Builds the alerts of one rule: what it reads is looked up once, when the rule is
    compiled; the alerts of one scan are built column by column."""

    __slots__ = ("bounds", "head", "ints", "metrics", "rule", "windows")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.metrics = rule.metrics()
        self.ints = [is_integer_metric(m) for m in self.metrics]
        self.windows = rule.windows()
        self.bounds = [(f"window.{w}.updated_ms", parse_duration_ms(w)) for w in self.windows]
        self.head = msgspec.json.encode([rule.id, rule.version])[:-1] + b","  # the key's start

    def make(
        self,
        rows: np.ndarray,
        now_ms: TsMs,
        tokens: Sequence[TokenId],
        cols: Mapping[str, np.ndarray],
        newest_trade_ms: np.ndarray,
    ) -> list[Alert]:
        """The alerts for ``rows`` of the scan's table (``cols`` holds every metric read and
        ``window.<w>.updated_ms`` of every window read)."""
        rule, head, tail = self.rule, self.head, b",%d]" % now_ms
        columns = zip(self.metrics, self.ints, strict=True)
        values = zip(*(_plain_column(cols[m][rows], i) for m, i in columns), strict=True)
        bounds: Iterable[tuple[tuple[TsMs, TsMs] | None, ...]] = repeat(())
        if self.bounds:
            bounds = zip(*(_bounds_column(cols[m][rows], w_ms) for m, w_ms in self.bounds),
                         strict=True)  # fmt: skip
        lags = np.maximum(now_ms - newest_trade_ms[rows], 0).tolist()
        encode = msgspec.json.encode
        out = []
        for row, lag, vals, bnds in zip(rows.tolist(), lags, values, bounds, strict=False):
            token = tokens[row]
            alert_id, trace_id = alert_ids(head + encode(token) + tail)
            out.append(Alert(
                id=alert_id, rule_id=rule.id, rule_name=rule.name, rule_version=rule.version,
                token=token, triggered_ms=now_ms, values=dict(zip(self.metrics, vals)),  # noqa: B905
                window_bounds={w: b for w, b in zip(self.windows, bnds) if b is not None},  # noqa: B905
                lag_ms=lag, trace_id=trace_id,
            ))  # fmt: skip
        return out
