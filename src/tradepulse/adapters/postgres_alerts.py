"""PostgreSQL alert store (table ``alerts`` of ``migrations/0002_rules_alerts.sql``).

* ``insert`` is idempotent: an alert's id is derived from what made it fire
  (``core/alerts.py``), and ``ON CONFLICT (id) DO NOTHING`` makes a redelivered alert a
  no-op (within one call too). The owner is the one given, else the owner of the rule in
  ``rules`` (a deleted rule's too), else null (a rule unknown to this database).
* ``list`` pages newest first by the keyset ``(triggered_ms, id)``; the cursor is the key of
  the last alert of a page. Pages are stable: alerts stored after the first page was read
  are newer or sort before the cursor, so they never shift the following pages::

      triggered_ms desc:  [a9 a8 a7] [a6 a6' a5] [a4 ...]     cursor = "<triggered_ms>:<id>"
                               page 1 ─┘  page 2 ─┘

  ``from_ms``/``to_ms`` select ``from_ms <= triggered_ms < to_ms``; filters combine with AND.

``values`` and ``window_bounds`` are ``jsonb``: a JSON number keeps its digits there, so a
float comes back as the same float (and an int as an int).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import msgspec

from tradepulse.adapters.postgres_base import Repository
from tradepulse.core.alerts import Alert
from tradepulse.core.types import TokenId, TsMs

MAX_LIMIT = 1_000
"""The largest page ``AlertRepository.list`` returns."""

_INSERT = """
INSERT INTO alerts (id, rule_id, rule_name, rule_version, token, triggered_ms, "values",
                    window_bounds, lag_ms, trace_id, owner)
SELECT a.id, a.rule_id, a.rule_name, a.rule_version, a.token, a.triggered_ms, a.vals,
       a.bounds, a.lag_ms, a.trace_id, COALESCE(a.owner, r.owner)
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::bigint[],
            %s::jsonb[], %s::jsonb[], %s::bigint[], %s::text[], %s::text[])
     AS a (id, rule_id, rule_name, rule_version, token, triggered_ms, vals, bounds, lag_ms,
           trace_id, owner)
LEFT JOIN rules r ON r.id = a.rule_id
ON CONFLICT (id) DO NOTHING
"""

_COLUMNS = """id, rule_id, rule_name, rule_version, token, triggered_ms, "values"::text,
    window_bounds::text, lag_ms, trace_id, owner,
    floor(extract(epoch FROM stored_at) * 1000)::bigint"""

_values = msgspec.json.Decoder(dict[str, float | int | None])
_bounds = msgspec.json.Decoder(dict[str, tuple[int, int]])
_encode = msgspec.json.Encoder().encode


class StoredAlert(msgspec.Struct, frozen=True):
    """An ``Alert`` as stored: its fields, the rule's ``owner`` (None when the rule was
    unknown) and ``stored_ms``, when the row was written (epoch ms)."""

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
    owner: str | None
    stored_ms: int

    @property
    def alert(self) -> Alert:
        """The alert itself, without what storing it added."""
        fields = msgspec.structs.astuple(self)[:10]
        return Alert(*fields)

    @property
    def cursor(self) -> str:
        """``before=`` this for the alerts after this one."""
        return encode_cursor(self.triggered_ms, self.id)


class AlertPage(msgspec.Struct, frozen=True):
    """One page of alerts, newest first; ``next_cursor`` (for ``before=``) is None on the
    last page."""

    alerts: list[StoredAlert]
    next_cursor: str | None


def encode_cursor(triggered_ms: TsMs, alert_id: str) -> str:
    return f"{triggered_ms}:{alert_id}"


def decode_cursor(cursor: str) -> tuple[TsMs, str]:
    """``(triggered_ms, id)`` of a cursor; ``ValueError`` naming the expected form."""
    ms, sep, alert_id = cursor.partition(":")
    if not sep or not alert_id or not ms.lstrip("-").isdigit() or len(ms) > 20:
        raise ValueError(f"invalid cursor {cursor!r}: expected <triggered_ms>:<alert id>")
    return int(ms), alert_id


def _row(row: Sequence[Any]) -> StoredAlert:
    return StoredAlert(
        id=row[0], rule_id=row[1], rule_name=row[2], rule_version=row[3], token=row[4],
        triggered_ms=row[5], values=_values.decode(row[6]), window_bounds=_bounds.decode(row[7]),
        lag_ms=row[8], trace_id=row[9], owner=row[10], stored_ms=row[11],
    )  # fmt: skip


def _columns(alerts: Sequence[tuple[Alert, str | None]]) -> builtins.list[builtins.list[Any]]:
    """The alerts (the first of each id) as 11 parallel columns in ``_INSERT`` order."""
    unique: dict[str, tuple[Alert, str | None]] = {}
    for alert, owner in alerts:
        unique.setdefault(alert.id, (alert, owner))
    rows = [(a.id, a.rule_id, a.rule_name, a.rule_version, a.token, a.triggered_ms,
             _encode(a.values).decode(), _encode(a.window_bounds).decode(), a.lag_ms,
             a.trace_id, owner) for a, owner in unique.values()]  # fmt: skip
    return [list(column) for column in zip(*rows, strict=True)]


class AlertRepository(Repository):
    """The ``alerts`` table (see the module docstring)."""

    TABLES = ("alerts", "rules")

    def insert(self, alerts: Sequence[tuple[Alert, str | None]]) -> int:
        """Store ``(alert, owner)`` pairs in one committed statement; return how many rows
        are new (an id already stored, or repeated in ``alerts``, counts once). ``owner``
        None: the owner of the alert's rule."""
        if not alerts:
            return 0
        with self._transaction("insert alerts") as conn:
            return conn.execute(_INSERT, _columns(alerts)).rowcount

    def store(self, alerts: Sequence[Alert]) -> int:
        """``insert`` with every owner taken from the rules table (the alert persister's
        sink)."""
        return self.insert([(alert, None) for alert in alerts])

    def get(self, alert_id: str) -> StoredAlert | None:
        with self._transaction("read alert") as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = %s", (alert_id,))
            found = row.fetchone()
        return None if found is None else _row(found)

    def list(
        self,
        *,
        token: TokenId | None = None,
        rule_id: str | None = None,
        owner: str | None = None,
        from_ms: TsMs | None = None,
        to_ms: TsMs | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> AlertPage:
        """Up to ``limit`` (1..``MAX_LIMIT``) alerts matching every filter given, newest
        first, after the cursor ``before`` (a ``next_cursor``). ``ValueError`` for a bad
        limit or cursor."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
        where: builtins.list[str] = ["TRUE"]
        params: builtins.list[object] = []
        for clause, value in (("token = %s", token), ("rule_id = %s", rule_id),
                              ("owner = %s", owner), ("triggered_ms >= %s", from_ms),
                              ("triggered_ms < %s", to_ms)):  # fmt: skip
            if value is not None:
                where.append(clause)
                params.append(value)
        if before is not None:
            where.append("(triggered_ms, id) < (%s, %s)")
            params += decode_cursor(before)
        query = (f"SELECT {_COLUMNS} FROM alerts WHERE {' AND '.join(where)} "
                 f"ORDER BY triggered_ms DESC, id DESC LIMIT {limit + 1}")  # fmt: skip
        with self._transaction("list alerts") as conn:
            rows = conn.execute(query, params).fetchall()
        page = [_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return AlertPage(page, page[-1].cursor if more else None)
