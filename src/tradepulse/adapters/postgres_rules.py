"""PostgreSQL rule store (``migrations/0002_rules_alerts.sql``); the alert store is in
``postgres_alerts`` (re-exported here).

A rule's life, one row in ``rules`` (the current version) and one in ``rule_versions`` per
version ever written::

    create ─> v1   update ─> v2   disable ─> v3   rollback(1) ─> v4 = v1's definition
                                                  delete ─> deleted_at set (no new version)

* Every definition written is validated with ``parse_rule`` against the configured windows;
  an invalid one raises ``RuleError`` with every error and nothing is written. Disabling
  never validates (a rule that stopped being valid, say after a window was removed from the
  configuration, can always be switched off).
* The definition is stored as given; its ``enabled`` field and the ``enabled`` column always
  agree (``patch`` sets both). A rollback restores the old definition *including* its
  ``enabled`` state: it is that version again.
* ``patch`` to the state a rule already has writes nothing (no version, no notification).
* A deleted rule is invisible to every read (``get``, ``list``, ``versions``,
  ``enabled_rules``) and to every change (``RuleNotFoundError``); its row stays so that its
  alerts keep their owner.
* ``on_change(rule_id)`` is called after each committed change (the composition root
  publishes the id on ``{prefix}rules.updated``; workers also reload periodically). A failing
  callback is logged, never raised: the change is committed.

psycopg errors become ``HistoryUnavailableError`` (the connection is dropped and reopened
by the next call); a missing table names ``tradepulse db migrate`` as the fix.
"""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from tradepulse.adapters.postgres_alerts import (
    AlertPage,
    AlertRepository,
    StoredAlert,
    decode_cursor,
    encode_cursor,
)
from tradepulse.adapters.postgres_base import Connection, Repository
from tradepulse.core.errors import TradepulseError
from tradepulse.core.rules import DEFAULT_WINDOW_NAMES, Rule, RuleError, parse_rule

__all__ = [
    "AlertPage", "AlertRepository", "RuleNotFoundError", "RuleRepository", "RuleVersion",
    "StoredAlert", "StoredRule", "decode_cursor", "encode_cursor", "index_errors",
]  # fmt: skip

log = logging.getLogger(__name__)

Definition = dict[str, Any]
OnChange = Callable[[str], None]


class RuleNotFoundError(TradepulseError, LookupError):
    """No rule with this id (never created, or deleted), or no such version of it."""


class StoredRule(msgspec.Struct, frozen=True):
    """The current version of a rule; times are epoch ms."""

    id: str
    owner: str
    name: str
    definition: Definition
    enabled: bool
    version: int
    created_ms: int
    updated_ms: int


class RuleVersion(msgspec.Struct, frozen=True):
    """One version of a rule as it was written; ``created_ms`` is when (epoch ms)."""

    rule_id: str
    version: int
    definition: Definition
    enabled: bool
    created_ms: int


_RULE_COLUMNS = """id, owner, name, definition, enabled, version,
    floor(extract(epoch FROM created_at) * 1000)::bigint,
    floor(extract(epoch FROM updated_at) * 1000)::bigint"""

# Both statements write the rule row and its version row in one round trip.
_CREATE = f"""
WITH created AS (
    INSERT INTO rules (id, owner, name, definition, enabled)
    VALUES (%(id)s, %(owner)s, %(name)s, %(definition)s::jsonb, %(enabled)s)
    RETURNING *
), logged AS (
    INSERT INTO rule_versions (rule_id, version, definition, enabled, created_at)
    SELECT id, version, definition, enabled, updated_at FROM created
)
SELECT {_RULE_COLUMNS} FROM created"""

_NEW_VERSION = f"""
WITH changed AS (
    UPDATE rules SET name = %(name)s, definition = %(definition)s::jsonb, enabled = %(enabled)s,
                     version = version + 1, updated_at = now()
    WHERE id = %(id)s AND deleted_at IS NULL
    RETURNING *
), logged AS (
    INSERT INTO rule_versions (rule_id, version, definition, enabled, created_at)
    SELECT id, version, definition, enabled, updated_at FROM changed
)
SELECT {_RULE_COLUMNS} FROM changed"""

_CURRENT = f"SELECT {_RULE_COLUMNS} FROM rules WHERE id = %s AND deleted_at IS NULL"

_VERSIONS = """
SELECT v.rule_id, v.version, v.definition, v.enabled,
       floor(extract(epoch FROM v.created_at) * 1000)::bigint
FROM rules r JOIN rule_versions v ON v.rule_id = r.id
WHERE r.id = %s AND r.deleted_at IS NULL
ORDER BY v.version"""

_OLD_DEFINITION = """
SELECT v.definition FROM rule_versions v JOIN rules r ON r.id = v.rule_id
WHERE v.rule_id = %s AND v.version = %s AND r.deleted_at IS NULL"""


def _stored(row: Sequence[Any]) -> StoredRule:
    return StoredRule(*row)


def _check_owner(owner: str) -> None:
    if not owner.strip():
        raise ValueError("owner must not be blank")


def validate_all(
    definitions: Sequence[Definition], validate: Callable[[object], Rule]
) -> list[tuple[Rule, Definition]]:
    """Each definition with its rule, or one ``RuleError`` listing the errors of every
    invalid definition, paths prefixed with its index (``[2].name: ...``)."""
    errors: list[str] = []
    rules: list[tuple[Rule, Definition]] = []
    for i, definition in enumerate(definitions):
        try:
            rules.append((validate(definition), definition))
        except RuleError as exc:
            errors += index_errors(i, exc.errors)
    if errors:
        raise RuleError(errors)
    return rules


def index_errors(index: int, errors: Iterable[str]) -> list[str]:
    """Errors of item ``index`` of a list of rules: ``name: ..`` -> ``[2].name: ..``."""
    out = []
    for error in errors:
        path, sep, message = error.partition(": ")
        path = f"[{index}]" if path == "$" else f"[{index}].{path}"
        out.append(f"{path}{sep}{message}")
    return out


class RuleRepository(Repository):
    """The ``rules`` and ``rule_versions`` tables (see the module docstring).

    ``windows`` are the configured window names definitions are validated against.
    """

    TABLES = ("rules", "rule_versions")

    def __init__(
        self,
        dsn: str,
        *,
        windows: Iterable[str] = DEFAULT_WINDOW_NAMES,
        on_change: OnChange | None = None,
        connect_timeout_s: int = 5,
        statement_timeout_ms: int = 30_000,
    ) -> None:
        super().__init__(dsn, connect_timeout_s=connect_timeout_s,
                         statement_timeout_ms=statement_timeout_ms)  # fmt: skip
        self.windows = tuple(windows)
        self._on_change = on_change

    def create(self, owner: str, definition: Definition) -> StoredRule:
        """Validate and store a new rule (version 1, a new UUID) owned by ``owner``."""
        _check_owner(owner)
        return self._insert(owner, [(self._validate(definition), definition)])[0]

    def create_many(
        self, owner: str, definitions: Sequence[Definition]
    ) -> builtins.list[StoredRule]:
        """Store several rules in one transaction: all or none. ``RuleError`` lists the
        errors of every invalid one, paths prefixed with its index (``[2].name: ...``)."""
        _check_owner(owner)
        return self._insert(owner, validate_all(definitions, self._validate))

    def _insert(
        self, owner: str, rules: Sequence[tuple[Rule, Definition]]
    ) -> builtins.list[StoredRule]:
        with self._transaction("create rules") as conn:
            stored = [_stored(self._fetch_one(conn, _CREATE, {
                "id": str(uuid.uuid4()), "owner": owner, "name": rule.name,
                "definition": _json(definition), "enabled": rule.enabled,
            })) for rule, definition in rules]  # fmt: skip
        for rule in stored:
            self._changed(rule.id)
        return stored

    def get(self, rule_id: str) -> StoredRule | None:
        """The current version, or None (unknown or deleted)."""
        with self._transaction("read rule") as conn:
            row = conn.execute(_CURRENT, (rule_id,)).fetchone()
        return None if row is None else _stored(row)

    def list(
        self, owner: str | None = None, *, include_disabled: bool = True
    ) -> builtins.list[StoredRule]:
        """Rules not deleted, oldest first; only ``owner``'s when given."""
        query = f"SELECT {_RULE_COLUMNS} FROM rules WHERE deleted_at IS NULL"
        params: builtins.list[object] = []
        if owner is not None:
            query += " AND owner = %s"
            params.append(owner)
        if not include_disabled:
            query += " AND enabled"
        with self._transaction("list rules") as conn:
            rows = conn.execute(query + " ORDER BY seq", params).fetchall()
        return [_stored(row) for row in rows]

    def update(self, rule_id: str, definition: Definition) -> StoredRule:
        """Validate ``definition`` and make it the rule's next version (its ``enabled``
        included, true when absent)."""
        rule = self._validate(definition)
        with self._transaction("update rule") as conn:
            stored = self._new_version(conn, rule_id, definition, rule)
        self._changed(rule_id)
        return stored

    def patch(self, rule_id: str, *, enabled: bool | None = None) -> StoredRule:
        """Switch the rule on or off as a new version (definition and column); unchanged
        when it already is in that state. Enabling validates the definition again."""
        with self._transaction("patch rule") as conn:
            current = self._current(conn, rule_id)
            if enabled is None or current.enabled == enabled:
                return current
            definition = {**current.definition, "enabled": enabled}
            rule = self._validate(definition) if enabled else None
            name = current.name if rule is None else rule.name
            stored = self._write(conn, rule_id, definition, name, enabled)
        self._changed(rule_id)
        return stored

    def delete(self, rule_id: str) -> None:
        """Soft delete: the rule disappears from every read; its row and versions stay."""
        with self._transaction("delete rule") as conn:
            done = conn.execute(
                "UPDATE rules SET deleted_at = now(), updated_at = now() "
                "WHERE id = %s AND deleted_at IS NULL", (rule_id,),
            ).rowcount  # fmt: skip
        if not done:
            raise RuleNotFoundError(f"rule {rule_id} not found")
        self._changed(rule_id)

    def versions(self, rule_id: str) -> builtins.list[RuleVersion]:
        """Every version of the rule, oldest first."""
        with self._transaction("read rule versions") as conn:
            rows = conn.execute(_VERSIONS, (rule_id,)).fetchall()
        if not rows:
            raise RuleNotFoundError(f"rule {rule_id} not found")
        return [RuleVersion(*row) for row in rows]

    def rollback(self, rule_id: str, version: int) -> StoredRule:
        """A new version whose definition is that of ``version`` (validated again: the
        configured windows may have changed since)."""
        with self._transaction("roll back rule") as conn:
            row = conn.execute(_OLD_DEFINITION, (rule_id, version)).fetchone()
            if row is None:
                self._current(conn, rule_id)  # raises when the rule itself is missing
                raise RuleNotFoundError(f"rule {rule_id} has no version {version}")
            definition: Definition = row[0]
            stored = self._new_version(conn, rule_id, definition, self._validate(definition))
        self._changed(rule_id)
        return stored

    def enabled_rules(self, windows: Iterable[str] | None = None) -> builtins.list[Rule]:
        """What workers evaluate: every enabled, not deleted rule parsed with ``id`` and
        ``version`` from the store, oldest first. ``windows`` default to the repository's.
        A stored rule that no longer validates (the windows changed) is skipped with a
        warning, so one stale rule cannot stop the others from loading."""
        names = self.windows if windows is None else tuple(windows)
        query = ("SELECT id, version, definition FROM rules WHERE enabled AND deleted_at IS NULL "
                 "ORDER BY seq")  # fmt: skip
        with self._transaction("load enabled rules") as conn:
            rows = conn.execute(query).fetchall()
        rules = []
        for rule_id, version, definition in rows:
            try:
                rules.append(parse_rule(definition, windows=names, rule_id=rule_id,
                                        version=version))  # fmt: skip
            except RuleError as exc:
                log.warning("stored rule skipped: invalid now rule_id=%s version=%s errors=%s",
                            rule_id, version, exc.errors)  # fmt: skip
        return rules

    # --- helpers ---------------------------------------------------------------------

    def _validate(self, definition: object) -> Rule:
        return parse_rule(definition, windows=self.windows)

    def _current(self, conn: Connection, rule_id: str) -> StoredRule:
        """The current version, row locked until the transaction ends."""
        row = conn.execute(_CURRENT + " FOR UPDATE", (rule_id,)).fetchone()
        if row is None:
            raise RuleNotFoundError(f"rule {rule_id} not found")
        return _stored(row)

    def _new_version(
        self, conn: Connection, rule_id: str, definition: Definition, rule: Rule
    ) -> StoredRule:
        return self._write(conn, rule_id, definition, rule.name, rule.enabled)

    def _write(
        self, conn: Connection, rule_id: str, definition: Definition, name: str, enabled: bool
    ) -> StoredRule:
        params = {"id": rule_id, "name": name, "definition": _json(definition),
                  "enabled": enabled}  # fmt: skip
        row = conn.execute(_NEW_VERSION, params).fetchone()
        if row is None:
            raise RuleNotFoundError(f"rule {rule_id} not found")
        return _stored(row)

    @staticmethod
    def _fetch_one(conn: Connection, query: str, params: dict[str, object]) -> Sequence[Any]:
        row = conn.execute(query, params).fetchone()
        assert row is not None  # an INSERT ... RETURNING of one row
        return row  # type: ignore[no-any-return]

    def _changed(self, rule_id: str) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(rule_id)
        except Exception:  # the change is committed; the notification is best effort
            log.warning("rule change notification failed rule_id=%s", rule_id, exc_info=True)


def _json(definition: Definition) -> str:
    return msgspec.json.encode(definition).decode()
