"""Who owns a rule: ``rules.owner`` by id, deleted rules included (their alerts keep their
owner). Read by the API's WebSocket gateway to route alerts; the owner of a rule never
changes, so callers may cache the answers."""

from __future__ import annotations

from collections.abc import Sequence

from tradepulse.adapters.postgres_base import Repository

_OWNERS = "SELECT id, owner FROM rules WHERE id = ANY(%s)"


class RuleOwnerRepository(Repository):
    """Reads ``rules`` (one connection; calls from one thread at a time)."""

    TABLES = ("rules",)

    def owners(self, rule_ids: Sequence[str]) -> dict[str, str]:
        """``rule id -> owner`` for the ids that have a row (unknown ids are absent)."""
        if not rule_ids:
            return {}
        with self._transaction("read rule owners") as conn:
            rows = conn.execute(_OWNERS, (list(rule_ids),)).fetchall()
        return {str(rule_id): str(owner) for rule_id, owner in rows}
