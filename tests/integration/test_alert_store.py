"""The alert store against the real PostgreSQL: idempotent inserts, the owner taken from the
rules table, filters, and cursor pagination that stays stable while alerts arrive. The
tests of the ``store`` fixture also run against the demo's ``MemoryAlertStore``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tradepulse.adapters.memory_rules import MemoryAlertStore
from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.postgres_rules import AlertRepository, RuleRepository, StoredAlert
from tradepulse.core.alerts import Alert, alert_ids

T0 = 1_760_000_000_000


def alert(rule_id: str, token: str, triggered_ms: int, *, version: int = 1) -> Alert:
    alert_id, trace_id = alert_ids(json.dumps([rule_id, version, token, triggered_ms]).encode())
    return Alert(
        id=alert_id, rule_id=rule_id, rule_name=f"name of {rule_id}", rule_version=version,
        token=token, triggered_ms=triggered_ms,
        values={"window.5min.buy_count": 21, "price": 1.25e-7, "ind.rsi_14": None},
        window_bounds={"5min": (triggered_ms - 300_000, triggered_ms - 5)},
        lag_ms=5, trace_id=trace_id,
    )  # fmt: skip


RULE = {"name": "r", "cooldown": 0,
        "conditions": [{"metric": "window.5min.buy_count", "op": ">", "value": 20}]}  # fmt: skip


@pytest.fixture
def pg_store(pg_dsn: str) -> Iterator[AlertRepository]:
    migrate(pg_dsn)
    with AlertRepository(pg_dsn) as repository:
        yield repository


@pytest.fixture(params=["postgres", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[AlertRepository]:
    """The PostgreSQL repository, then the in-memory store with the same methods."""
    if request.param == "memory":
        yield MemoryAlertStore()  # type: ignore[misc]
        return
    yield request.getfixturevalue("pg_store")


def ids(alerts: list[StoredAlert]) -> list[str]:
    return [a.id for a in alerts]


def test_insert_is_idempotent_and_round_trips_every_field(store: AlertRepository) -> None:
    batch = [alert("r1", "TOK", T0 + i) for i in range(5)]
    assert store.insert([(a, "ana") for a in batch + batch[:2]]) == 5  # repeats in one call
    assert store.insert([(a, "ana") for a in batch]) == 0  # redelivered
    assert store.store(batch) == 0
    got = store.get(batch[3].id)
    assert got is not None and got.alert == batch[3]
    assert got.values["window.5min.buy_count"] == 21 and isinstance(got.values["price"], float)
    assert got.owner == "ana" and got.stored_ms > 1_700_000_000_000
    assert store.get("no-such-alert") is None


def test_owner_comes_from_the_rules_table_also_for_deleted_rules(
    pg_store: AlertRepository, pg_dsn: str
) -> None:
    store = pg_store
    with RuleRepository(pg_dsn) as rules:
        kept, gone = rules.create("ana", RULE), rules.create("bob", RULE)
        rules.delete(gone.id)
    given = alert(kept.id, "TOK", T0 + 3)
    assert store.store([alert(kept.id, "TOK", T0), alert(gone.id, "TOK", T0 + 1),
                        alert("unknown", "TOK", T0 + 2)]) == 3  # fmt: skip
    assert store.insert([(given, "carl")]) == 1  # an owner given wins
    owners = {a.rule_id + str(a.triggered_ms - T0): a.owner for a in store.list().alerts}
    assert owners == {f"{kept.id}0": "ana", f"{gone.id}1": "bob", "unknown2": None,
                      f"{kept.id}3": "carl"}  # fmt: skip


def test_list_filters_combine(store: AlertRepository) -> None:
    keys = [("r1", "A"), ("r1", "B"), ("r2", "A"), ("r2", "B"), ("r1", "A")]
    alerts = [alert(r, t, T0 + i * 1000) for i, (r, t) in enumerate(keys)]
    store.insert([(a, "ana" if a.rule_id == "r1" else "bob") for a in alerts])
    assert ids(store.list().alerts) == [a.id for a in reversed(alerts)]
    assert ids(store.list(token="A").alerts) == [alerts[4].id, alerts[2].id, alerts[0].id]
    assert ids(store.list(rule_id="r2").alerts) == [alerts[3].id, alerts[2].id]
    assert ids(store.list(owner="ana", token="B").alerts) == [alerts[1].id]
    assert ids(store.list(from_ms=T0 + 1000, to_ms=T0 + 3000).alerts) == [alerts[2].id,
                                                                          alerts[1].id]  # fmt: skip
    assert ids(store.list(owner="nobody").alerts) == []


def test_cursor_pages_visit_every_alert_once_while_new_alerts_arrive(
    store: AlertRepository,
) -> None:
    # 30 alerts over 10 distinct times: ties on triggered_ms are ordered by id
    batch = [alert(f"r{i % 3}", "TOK", T0 + i // 3) for i in range(30)]
    store.insert([(a, "ana") for a in batch])
    expected = [a.id for a in sorted(batch, key=lambda a: (a.triggered_ms, a.id), reverse=True)]
    seen: list[str] = []
    page = store.list(limit=7)
    while True:
        seen += ids(page.alerts)
        store.insert([(alert("late", "TOK", T0 + 10_000 + len(seen)), "ana")])  # newer ones
        if page.next_cursor is None:
            break
        assert len(page.alerts) == 7
        page = store.list(limit=7, before=page.next_cursor)
    assert seen == expected
    full = store.list(limit=30, token="TOK", before=None)
    assert full.next_cursor is not None  # the late ones make more than 30
    exact = store.list(limit=30, to_ms=T0 + 10)
    assert ids(exact.alerts) == expected and exact.next_cursor is None


def test_list_rejects_a_bad_limit_or_cursor(store: AlertRepository) -> None:
    for limit in (0, 1_001):
        with pytest.raises(ValueError, match="limit"):
            store.list(limit=limit)
    for cursor in ("", "abc", "12", ":x", "1.5:x"):
        with pytest.raises(ValueError, match="invalid cursor"):
            store.list(before=cursor)
