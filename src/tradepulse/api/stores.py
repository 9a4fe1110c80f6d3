"""The seams between the API and where rules, alerts and profiles are kept.

Handlers reach them only through these Protocols (``ctx.rules``, ``ctx.alerts``,
``ctx.profiles``), always from a worker thread (``anyio.to_thread.run_sync``): the methods
are synchronous and may block. The PostgreSQL repositories (``adapters/postgres_rules.py``,
``postgres_alerts.py``, ``postgres_profiles.py``) implement them and are the defaults of
``ApiDeps``; an in-memory implementation only has to match these signatures and raise the
same errors:

* ``RuleError`` (every error with its JSON path) for an invalid definition;
* ``RuleNotFoundError`` for an unknown or deleted rule, or an unknown version;
* ``StoreUnavailableError`` (or ``HistoryUnavailableError``) when the store cannot answer.

Ownership is not the stores' business: the handlers check it (``Principal.may_access``).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tradepulse.adapters.postgres_alerts import AlertPage, StoredAlert
from tradepulse.adapters.postgres_rules import RuleVersion, StoredRule
from tradepulse.core.profiles import Profile, StoredProfile
from tradepulse.core.types import TokenId, TsMs

#: Called with a rule's id after each committed change (publishes ``rules.updated``).
OnRuleChange = Callable[[str], None]


class RuleStore(Protocol):
    """Rules and their versions (``RuleRepository``)."""

    def create(self, owner: str, definition: dict[str, Any]) -> StoredRule: ...

    def get(self, rule_id: str) -> StoredRule | None: ...

    def list(
        self, owner: str | None = None, *, include_disabled: bool = True
    ) -> builtins.list[StoredRule]: ...

    def update(self, rule_id: str, definition: dict[str, Any]) -> StoredRule: ...

    def patch(self, rule_id: str, *, enabled: bool | None = None) -> StoredRule: ...

    def delete(self, rule_id: str) -> None: ...

    def versions(self, rule_id: str) -> builtins.list[RuleVersion]: ...

    def rollback(self, rule_id: str, version: int) -> StoredRule: ...

    def close(self) -> None: ...


class AlertStore(Protocol):
    """Stored alerts, newest first (``AlertRepository``); ``list`` raises ``ValueError``
    for a bad ``limit`` or ``before`` cursor."""

    def get(self, alert_id: str) -> StoredAlert | None: ...

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
    ) -> AlertPage: ...

    def close(self) -> None: ...


class ProfileStore(Protocol):
    """User profiles (``ProfileRepository``); ``get`` is None for a user who never saved
    one, ``get_many`` leaves such users out (the WebSocket gateway reads the alert
    preferences of every connected user with it)."""

    def get(self, user: str) -> StoredProfile | None: ...

    def get_many(self, users: Sequence[str]) -> dict[str, StoredProfile]: ...

    def put(self, user: str, profile: Profile) -> StoredProfile: ...

    def close(self) -> None: ...
