"""The rule store against the real PostgreSQL: CRUD, every version kept, rollback, soft
delete, validation with every error path, change notifications, migrations. The tests of
the ``repo`` fixture also run against the demo's ``MemoryRuleStore`` (the same contract)."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg
import pytest

from tradepulse.adapters.memory_rules import MemoryRuleStore
from tradepulse.adapters.postgres import applied_migrations, migrate
from tradepulse.adapters.postgres_rules import RuleNotFoundError, RuleRepository
from tradepulse.core.errors import HistoryUnavailableError
from tradepulse.core.rules import RuleError, parse_rule


def rule(name: str = "whale buying", threshold: float = 20, **extra: Any) -> dict[str, Any]:
    return {"name": name, "cooldown": 300,
            "conditions": [{"metric": "window.5min.buy_count", "op": ">", "value": threshold}],
            **extra}  # fmt: skip


class Changes(list[str]):
    """The ``on_change`` callback: records every rule id it is called with."""

    def __call__(self, rule_id: str) -> None:
        self.append(rule_id)


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def pg_repo(pg_dsn: str, changes: Changes) -> Iterator[RuleRepository]:
    migrate(pg_dsn)
    with RuleRepository(pg_dsn, on_change=changes) as repository:
        yield repository


@pytest.fixture(params=["postgres", "memory"])
def repo(request: pytest.FixtureRequest, changes: Changes) -> Iterator[RuleRepository]:
    """The PostgreSQL repository, then the in-memory store with the same methods."""
    if request.param == "memory":
        yield MemoryRuleStore(on_change=changes)  # type: ignore[misc]
        return
    yield request.getfixturevalue("pg_repo")


# --- migrations ----------------------------------------------------------------------------


def test_migrate_applies_0002_once_and_its_script_is_idempotent(pg_dsn: str) -> None:
    assert "0002_rules_alerts" in migrate(pg_dsn)
    assert migrate(pg_dsn) == []
    script = resources.files("tradepulse.adapters.migrations") / "0002_rules_alerts.sql"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(script.read_bytes())  # again, by hand: IF NOT EXISTS everywhere
        assert (2, "rules_alerts") in applied_migrations(conn)
        tables = conn.execute("SELECT to_regclass('rules'), to_regclass('rule_versions'), "
                              "to_regclass('alerts')").fetchone()  # fmt: skip
    assert tables is not None and all(tables)


def test_store_without_schema_error_names_db_migrate(pg_dsn: str) -> None:
    with RuleRepository(pg_dsn) as repo:
        with pytest.raises(HistoryUnavailableError, match="tradepulse db migrate"):
            repo.check_schema()
        with pytest.raises(HistoryUnavailableError, match="tradepulse db migrate"):
            repo.create("ana", rule())


# --- create, read, list ----------------------------------------------------------------------


def test_create_stores_version_1_with_the_definition_as_given(repo: RuleRepository) -> None:
    definition = rule(description="d", symbols=["So1"])
    stored = repo.create("ana", definition)
    assert (stored.owner, stored.name, stored.enabled, stored.version) == ("ana", "whale buying",
                                                                           True, 1)  # fmt: skip
    assert stored.definition == definition
    assert stored.created_ms == stored.updated_ms > 1_700_000_000_000
    assert repo.get(stored.id) == stored
    assert [v.version for v in repo.versions(stored.id)] == [1]


def test_get_unknown_rule_is_none(repo: RuleRepository) -> None:
    assert repo.get("no-such-rule") is None


def test_list_filters_by_owner_and_enabled_oldest_first(repo: RuleRepository) -> None:
    a1 = repo.create("ana", rule("a1"))
    b1 = repo.create("bob", rule("b1", enabled=False))
    a2 = repo.create("ana", rule("a2", enabled=False))
    assert [r.id for r in repo.list()] == [a1.id, b1.id, a2.id]
    assert [r.id for r in repo.list("ana")] == [a1.id, a2.id]
    assert [r.id for r in repo.list("ana", include_disabled=False)] == [a1.id]
    assert [r.id for r in repo.list(include_disabled=False)] == [a1.id]
    assert repo.list("carl") == []


# --- validation ----------------------------------------------------------------------------


def test_invalid_rule_rejected_with_every_error_path_and_nothing_stored(
    repo: RuleRepository, changes: Changes
) -> None:
    condition = {"metric": "window.2min.buy_count", "op": "=>", "value": "x"}
    bad = {"name": "", "cooldown": -1, "color": "red", "conditions": [condition]}
    with pytest.raises(RuleError) as caught:
        repo.create("ana", bad)
    assert caught.value.errors == [
        "color: unknown field",
        "name: must be 1..200 characters, got 0",
        "conditions[0].metric: unknown window '2min' (configured: 1min, 5min, 15min, 30min, 1hour)",
        "conditions[0].op: unknown operator '=>'",
        'conditions[0].value: expected a number or {"metric": ...}, got string',
        "cooldown: must be between 0 and 31536000 seconds, got -1",
    ]
    assert repo.list() == [] and changes == []


def test_create_many_is_all_or_nothing_and_prefixes_errors_with_the_index(
    repo: RuleRepository,
) -> None:
    with pytest.raises(RuleError) as caught:
        repo.create_many("ana", [rule("ok"), {"name": "x"}, "nope"])  # type: ignore[list-item]
    assert caught.value.errors == ["[1].conditions: required", "[1].cooldown: required",
                                   "[2]: expected an object, got string"]  # fmt: skip
    assert repo.list() == []
    stored = repo.create_many("ana", [rule("one"), rule("two")])
    assert [r.name for r in repo.list()] == ["one", "two"] == [r.name for r in stored]


def test_blank_owner_is_refused(repo: RuleRepository) -> None:
    with pytest.raises(ValueError, match="owner"):
        repo.create("  ", rule())


def test_rules_validate_against_the_configured_windows(pg_dsn: str) -> None:
    migrate(pg_dsn)
    with RuleRepository(pg_dsn, windows=["1min", "2min"]) as repo:
        stored = repo.create("ana", rule(conditions=[
            {"metric": "window.2min.trade_count", "op": ">", "value": 1}]))  # fmt: skip
        assert stored.version == 1
        with pytest.raises(RuleError, match="unknown window '5min'"):
            repo.create("ana", rule())


# --- versions --------------------------------------------------------------------------------


def test_update_makes_a_new_version_and_keeps_every_version(repo: RuleRepository) -> None:
    first = repo.create("ana", rule(threshold=20))
    second = repo.update(first.id, rule("renamed", threshold=30))
    third = repo.update(first.id, rule("renamed", threshold=40, enabled=False))
    assert (second.version, third.version) == (2, 3)
    assert (third.name, third.enabled, third.owner) == ("renamed", False, "ana")
    assert third.created_ms == first.created_ms <= third.updated_ms
    versions = repo.versions(first.id)
    assert [(v.version, v.enabled) for v in versions] == [(1, True), (2, True), (3, False)]
    assert [v.definition["conditions"][0]["value"] for v in versions] == [20, 30, 40]


def test_invalid_update_keeps_the_current_version(repo: RuleRepository, changes: Changes) -> None:
    stored = repo.create("ana", rule())
    with pytest.raises(RuleError, match="cooldown: required"):
        repo.update(stored.id, {"name": "x", "conditions": rule()["conditions"]})
    assert repo.get(stored.id) == stored and changes == [stored.id]


def test_rollback_makes_a_new_version_equal_to_the_old_definition(repo: RuleRepository) -> None:
    v1 = rule(threshold=20)
    stored = repo.create("ana", copy.deepcopy(v1))
    repo.update(stored.id, rule("v2", threshold=99))
    repo.patch(stored.id, enabled=False)
    back = repo.rollback(stored.id, 1)
    assert (back.version, back.name, back.enabled) == (4, "whale buying", True)
    assert back.definition == v1 == repo.versions(stored.id)[-1].definition
    assert [v.version for v in repo.versions(stored.id)] == [1, 2, 3, 4]


def test_rollback_to_a_missing_version_or_rule_raises_not_found(repo: RuleRepository) -> None:
    stored = repo.create("ana", rule())
    with pytest.raises(RuleNotFoundError, match="has no version 7"):
        repo.rollback(stored.id, 7)
    with pytest.raises(RuleNotFoundError, match="rule nope not found"):
        repo.rollback("nope", 1)


def test_patch_switches_enabled_as_a_new_version_and_is_a_noop_when_unchanged(
    repo: RuleRepository, changes: Changes
) -> None:
    stored = repo.create("ana", rule())
    off = repo.patch(stored.id, enabled=False)
    assert (off.version, off.enabled, off.definition["enabled"]) == (2, False, False)
    assert repo.patch(stored.id, enabled=False) == off  # already off: nothing written
    on = repo.patch(stored.id, enabled=True)
    assert (on.version, on.enabled, on.definition["enabled"]) == (3, True, True)
    assert changes == [stored.id] * 3


def test_enable_validates_again_disable_never_does(pg_dsn: str) -> None:
    migrate(pg_dsn)
    with RuleRepository(pg_dsn) as repo:
        stored = repo.create("ana", rule())  # reads window 5min
    with RuleRepository(pg_dsn, windows=["1min"]) as narrowed:  # 5min no longer configured
        assert narrowed.patch(stored.id, enabled=False).enabled is False
        with pytest.raises(RuleError, match="unknown window '5min'"):
            narrowed.patch(stored.id, enabled=True)
        assert narrowed.get(stored.id).version == 2  # type: ignore[union-attr]


def test_concurrent_updates_get_distinct_consecutive_versions(pg_dsn: str) -> None:
    migrate(pg_dsn)
    with RuleRepository(pg_dsn) as repo:
        rule_id = repo.create("ana", rule()).id

    def edit(n: int) -> None:
        with RuleRepository(pg_dsn) as mine:
            for i in range(15):
                mine.update(rule_id, rule(threshold=n * 100 + i))

    threads = [threading.Thread(target=edit, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with RuleRepository(pg_dsn) as repo:
        assert [v.version for v in repo.versions(rule_id)] == list(range(1, 47))
        assert repo.get(rule_id).version == 46  # type: ignore[union-attr]


# --- delete ------------------------------------------------------------------------------


def test_soft_delete_hides_the_rule_everywhere_and_keeps_its_row(
    pg_repo: RuleRepository, pg_dsn: str
) -> None:
    repo = pg_repo
    kept, gone = repo.create("ana", rule("kept")), repo.create("ana", rule("gone"))
    repo.delete(gone.id)
    assert repo.get(gone.id) is None
    assert [r.id for r in repo.list()] == [kept.id]
    assert [r.id for r in repo.enabled_rules()] == [kept.id]
    for change in (lambda: repo.delete(gone.id), lambda: repo.versions(gone.id),
                   lambda: repo.update(gone.id, rule()), lambda: repo.rollback(gone.id, 1),
                   lambda: repo.patch(gone.id, enabled=False)):  # fmt: skip
        with pytest.raises(RuleNotFoundError):
            change()
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT owner, deleted_at IS NOT NULL FROM rules WHERE id = %s",
                           (gone.id,)).fetchone()  # fmt: skip
    assert row == ("ana", True)


# --- what workers load -----------------------------------------------------------------------


def test_enabled_rules_are_parsed_with_the_store_id_and_version(repo: RuleRepository) -> None:
    a = repo.create("ana", rule("a"))
    repo.create("bob", rule("off", enabled=False))
    b = repo.create("bob", rule("b"))
    b2 = repo.update(b.id, rule("b", threshold=5))
    loaded = repo.enabled_rules(["1min", "5min"])
    assert loaded == [
        parse_rule(rule("a"), rule_id=a.id, version=1),
        parse_rule(rule("b", threshold=5), rule_id=b.id, version=b2.version),
    ]


def test_enabled_rules_skip_a_rule_invalid_for_the_windows_given(
    repo: RuleRepository, caplog: pytest.LogCaptureFixture
) -> None:
    five = repo.create("ana", rule("five"))
    one = repo.create("ana", rule("one", conditions=[
        {"metric": "window.1min.buy_count", "op": ">", "value": 1}]))  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert [r.id for r in repo.enabled_rules(["1min"])] == [one.id]
    assert f"rule_id={five.id}" in caplog.text


# --- notifications ---------------------------------------------------------------------------


def test_on_change_is_called_once_per_committed_change(
    repo: RuleRepository, changes: Changes
) -> None:
    a = repo.create("ana", rule("a"))
    b, c = repo.create_many("ana", [rule("b"), rule("c")])
    repo.update(a.id, rule("a2"))
    repo.patch(b.id, enabled=False)
    repo.rollback(a.id, 1)
    repo.delete(c.id)
    repo.get(a.id), repo.list(), repo.versions(a.id), repo.enabled_rules()  # reads: silent
    assert changes == [a.id, b.id, c.id, a.id, b.id, a.id, c.id]


def test_failing_on_change_is_logged_and_the_change_kept(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    migrate(pg_dsn)

    def broken(rule_id: str) -> None:
        raise ConnectionError("redis down")

    with RuleRepository(pg_dsn, on_change=broken) as repo, caplog.at_level(logging.WARNING):
        stored = repo.create("ana", rule())
        assert repo.get(stored.id) == stored
    assert "notification failed" in caplog.text
