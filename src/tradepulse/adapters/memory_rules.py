"""In-memory rule, alert and profile stores: the embedded defaults of ``tradepulse demo``.

``MemoryRuleStore`` and ``MemoryAlertStore`` have the method signatures and the semantics
of ``postgres_rules.RuleRepository`` and ``postgres_alerts.AlertRepository`` (read their
docstrings: versions, soft delete, validation, keyset pages), without a database. Times
come from an injected wall clock (epoch ms). Each store is guarded by one lock: the API's
worker threads and the demo's engine thread share them.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tradepulse.adapters.postgres_alerts import (
    MAX_LIMIT,
    AlertPage,
    StoredAlert,
    decode_cursor,
)
from tradepulse.adapters.postgres_rules import (
    OnChange,
    RuleNotFoundError,
    RuleVersion,
    StoredRule,
    validate_all,
)
from tradepulse.core.alerts import Alert
from tradepulse.core.profiles import Profile, StoredProfile
from tradepulse.core.rules import DEFAULT_WINDOW_NAMES, Rule, RuleError, parse_rule
from tradepulse.core.types import TokenId, TsMs

Definition = dict[str, Any]

log = logging.getLogger(__name__)


def _wall_ms() -> TsMs:
    return int(time.time() * 1000)


def _check_owner(owner: str) -> None:
    if not owner.strip():
        raise ValueError("owner must not be blank")


class _RuleRow:
    __slots__ = ("deleted", "rule", "versions")

    def __init__(self, rule: StoredRule) -> None:
        self.rule = rule
        self.versions = [RuleVersion(rule.id, 1, rule.definition, rule.enabled, rule.created_ms)]
        self.deleted = False


class MemoryRuleStore:
    """Rules and their versions (``RuleRepository`` semantics), oldest first."""

    def __init__(
        self,
        *,
        windows: Iterable[str] = DEFAULT_WINDOW_NAMES,
        on_change: OnChange | None = None,
        now_ms: Callable[[], TsMs] = _wall_ms,
    ) -> None:
        self.windows = tuple(windows)
        self._on_change = on_change
        self._now_ms = now_ms
        self._rows: dict[str, _RuleRow] = {}
        self._lock = threading.Lock()

    def create(self, owner: str, definition: Definition) -> StoredRule:
        """Validate and store a new rule (version 1, a new UUID); errors as ``parse_rule``."""
        _check_owner(owner)
        return self._insert(owner, [(self._validate(definition), definition)])[0]

    def create_many(
        self, owner: str, definitions: Sequence[Definition]
    ) -> builtins.list[StoredRule]:
        """All or none; errors prefixed with the index of the definition (``[2].name``)."""
        _check_owner(owner)
        return self._insert(owner, validate_all(definitions, self._validate))

    def _insert(
        self, owner: str, rules: Sequence[tuple[Rule, Definition]]
    ) -> builtins.list[StoredRule]:
        now = self._now_ms()
        stored = [StoredRule(str(uuid.uuid4()), owner, rule.name, dict(definition),
                             rule.enabled, 1, now, now) for rule, definition in rules]  # fmt: skip
        with self._lock:
            for rule in stored:
                self._rows[rule.id] = _RuleRow(rule)
        for rule in stored:
            self._changed(rule.id)
        return stored

    def get(self, rule_id: str) -> StoredRule | None:
        with self._lock:
            row = self._rows.get(rule_id)
            return None if row is None or row.deleted else row.rule

    def list(
        self, owner: str | None = None, *, include_disabled: bool = True
    ) -> builtins.list[StoredRule]:
        with self._lock:
            rules = [r.rule for r in self._rows.values() if not r.deleted]
        return [r for r in rules if (owner is None or r.owner == owner)
                and (include_disabled or r.enabled)]  # fmt: skip

    def update(self, rule_id: str, definition: Definition) -> StoredRule:
        rule = self._validate(definition)
        return self._write(rule_id, definition, rule.name, rule.enabled)

    def patch(self, rule_id: str, *, enabled: bool | None = None) -> StoredRule:
        """Unchanged (no version) when ``enabled`` is None or already the state; enabling
        validates the definition again, disabling never does."""
        current = self._current(rule_id)
        if enabled is None or current.enabled == enabled:
            return current
        definition = {**current.definition, "enabled": enabled}
        name = self._validate(definition).name if enabled else current.name
        return self._write(rule_id, definition, name, enabled)

    def delete(self, rule_id: str) -> None:
        with self._lock:
            self._row(rule_id).deleted = True
        self._changed(rule_id)

    def versions(self, rule_id: str) -> builtins.list[RuleVersion]:
        with self._lock:
            return list(self._row(rule_id).versions)

    def rollback(self, rule_id: str, version: int) -> StoredRule:
        with self._lock:
            old = [v for v in self._row(rule_id).versions if v.version == version]
        if not old:
            raise RuleNotFoundError(f"rule {rule_id} has no version {version}")
        rule = self._validate(old[0].definition)
        return self._write(rule_id, old[0].definition, rule.name, rule.enabled)

    def close(self) -> None:
        """Nothing to release (``RuleRepository.close``'s counterpart)."""

    def enabled_rules(self, windows: Iterable[str] | None = None) -> builtins.list[Rule]:
        """Every enabled rule parsed with its id and version; one that no longer validates
        against ``windows`` is skipped with a warning."""
        names = self.windows if windows is None else tuple(windows)
        out = []
        for stored in self.list(include_disabled=False):
            try:
                out.append(parse_rule(stored.definition, windows=names, rule_id=stored.id,
                                      version=stored.version))  # fmt: skip
            except RuleError as exc:
                log.warning("stored rule skipped: invalid now rule_id=%s version=%s errors=%s",
                            stored.id, stored.version, exc.errors)  # fmt: skip
        return out

    def _validate(self, definition: object) -> Rule:
        return parse_rule(definition, windows=self.windows)

    def _row(self, rule_id: str) -> _RuleRow:
        row = self._rows.get(rule_id)
        if row is None or row.deleted:
            raise RuleNotFoundError(f"rule {rule_id} not found")
        return row

    def _current(self, rule_id: str) -> StoredRule:
        with self._lock:
            return self._row(rule_id).rule

    def _write(self, rule_id: str, definition: Definition, name: str, enabled: bool) -> StoredRule:
        now = self._now_ms()
        with self._lock:
            row = self._row(rule_id)
            old = row.rule
            row.rule = StoredRule(old.id, old.owner, name, dict(definition), enabled,
                                  old.version + 1, old.created_ms, now)  # fmt: skip
            row.versions.append(RuleVersion(rule_id, old.version + 1, dict(definition),
                                            enabled, now))  # fmt: skip
            stored = row.rule
        self._changed(rule_id)
        return stored

    def _changed(self, rule_id: str) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(rule_id)
        except Exception:  # the change is made; the notification is best effort
            log.warning("rule change notification failed rule_id=%s", rule_id, exc_info=True)


class MemoryAlertStore:
    """Alerts by id (``AlertRepository`` semantics: idempotent inserts, newest-first keyset
    pages); at most ``keep`` are kept, the oldest dropped first."""

    def __init__(
        self,
        *,
        owners: Callable[[str], str | None] | None = None,
        keep: int = 10_000,
        now_ms: Callable[[], TsMs] = _wall_ms,
    ) -> None:
        self._owners = owners
        self._keep = keep
        self._now_ms = now_ms
        self._alerts: dict[str, StoredAlert] = {}
        self._lock = threading.Lock()

    def insert(self, alerts: Sequence[tuple[Alert, str | None]]) -> int:
        """Store ``(alert, owner)`` pairs; return how many ids are new. ``owner`` None:
        the owner of the alert's rule (``owners``), else None."""
        now, new = self._now_ms(), 0
        with self._lock:
            for a, given in alerts:
                if a.id in self._alerts:
                    continue
                owner = given if given is not None or self._owners is None else self._owners(
                    a.rule_id)  # fmt: skip
                self._alerts[a.id] = _stored(a, owner, now)
                new += 1
            while len(self._alerts) > self._keep:
                del self._alerts[min(self._alerts.values(), key=_key).id]
        return new

    def close(self) -> None:
        """Nothing to release (``AlertRepository.close``'s counterpart)."""

    def store(self, alerts: Sequence[Alert]) -> int:
        return self.insert([(alert, None) for alert in alerts])

    def get(self, alert_id: str) -> StoredAlert | None:
        with self._lock:
            return self._alerts.get(alert_id)

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
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
        cursor = decode_cursor(before) if before is not None else None
        with self._lock:
            alerts = sorted(self._alerts.values(), key=_key, reverse=True)
        chosen = [a for a in alerts
                  if (token is None or a.token == token)
                  and (rule_id is None or a.rule_id == rule_id)
                  and (owner is None or a.owner == owner)
                  and (from_ms is None or a.triggered_ms >= from_ms)
                  and (to_ms is None or a.triggered_ms < to_ms)
                  and (cursor is None or _key(a) < cursor)]  # fmt: skip
        page = chosen[:limit]
        return AlertPage(page, page[-1].cursor if len(chosen) > limit else None)


def _key(alert: StoredAlert) -> tuple[TsMs, str]:
    return alert.triggered_ms, alert.id


def _stored(a: Alert, owner: str | None, stored_ms: int) -> StoredAlert:
    return StoredAlert(
        a.id,
        a.rule_id,
        a.rule_name,
        a.rule_version,
        a.token,
        a.triggered_ms,
        a.values,
        a.window_bounds,
        a.lag_ms,
        a.trace_id,
        owner,
        stored_ms,
    )


class MemoryProfileStore:
    """User profiles by user name (``ProfileRepository``'s methods); ``get`` of a user who
    never saved one is None."""

    def __init__(self, wall_ms: Callable[[], int] = _wall_ms) -> None:
        self._profiles: dict[str, StoredProfile] = {}
        self._lock = threading.Lock()
        self._wall_ms = wall_ms

    def get(self, user: str) -> StoredProfile | None:
        with self._lock:
            return self._profiles.get(user)

    def get_many(self, users: Sequence[str]) -> dict[str, StoredProfile]:
        with self._lock:
            return {u: self._profiles[u] for u in users if u in self._profiles}

    def put(self, user: str, profile: Profile) -> StoredProfile:
        stored = StoredProfile(user, profile, self._wall_ms())
        with self._lock:
            self._profiles[user] = stored
        return stored

    def close(self) -> None:
        """Nothing to release."""
