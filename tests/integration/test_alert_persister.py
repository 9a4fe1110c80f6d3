"""The alert persister end to end: real Redis stream ``{prefix}alerts`` in, real PostgreSQL
out. PostgreSQL outages are real (``ALLOW_CONNECTIONS false`` + ``pg_terminate_backend``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import redis

from tests.integration.test_persister import FAST, postgres_down, wait_for
from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.postgres_rules import AlertRepository, RuleRepository
from tradepulse.adapters.redis_alerts import add_alert, alert_stream, stream_key
from tradepulse.core.alerts import Alert, alert_ids
from tradepulse.service.alert_persister import run_alert_persister
from tradepulse.service.persister import PersisterStats

T0 = 1_760_000_000_000
GROUP = "tradepulse-persister"
RULE = {"name": "r", "cooldown": 0,
        "conditions": [{"metric": "window.5min.buy_count", "op": ">", "value": 20}]}  # fmt: skip


def alert(rule_id: str, token: str, triggered_ms: int) -> Alert:
    alert_id, trace_id = alert_ids(json.dumps([rule_id, 1, token, triggered_ms]).encode())
    return Alert(alert_id, rule_id, "r", 1, token, triggered_ms, {"window.5min.buy_count": 21},
                 {"5min": (triggered_ms - 300_000, triggered_ms)}, 3, trace_id)  # fmt: skip


def stored(dsn: str) -> dict[str, tuple[str, str | None]]:
    """``id -> (token, owner)`` of every stored alert."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, token, owner FROM alerts").fetchall()
    return {i: (t, o) for i, t, o in rows}


def pending(client: redis.Redis, prefix: str) -> int:
    return int(client.xpending(stream_key(prefix), GROUP)["pending"])


@contextmanager
def persister(client: redis.Redis, prefix: str, dsn: str) -> Iterator[PersisterStats]:
    """``run_alert_persister`` in a thread for the duration of the block."""
    stream = alert_stream(client, prefix=prefix, consumer="p1")
    stats, stop = PersisterStats(), threading.Event()
    with AlertRepository(dsn) as repo:
        thread = threading.Thread(
            target=run_alert_persister, args=(stream, repo, stop),
            kwargs={"batch_size": 7, "block_ms": 50, "backoff": FAST, "stats": stats},
        )  # fmt: skip
        thread.start()
        try:
            yield stats
        finally:
            stop.set()
            thread.join(10)
    assert not thread.is_alive()


def test_alerts_are_stored_once_with_the_rule_owner_and_all_acked(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    migrate(pg_dsn)
    with RuleRepository(pg_dsn) as rules:
        rule_id = rules.create("ana", RULE).id
    alerts = [alert(rule_id, f"T{i % 4}", T0 + i) for i in range(20)]
    sent = alerts + alerts[:5] + alerts[3:4] * 3  # redelivered and duplicated entries
    for a in sent:
        add_alert(redis_client, redis_prefix, a)
    with persister(redis_client, redis_prefix, pg_dsn) as stats:
        wait_for(lambda: stats.acked == len(sent))
    assert stored(pg_dsn) == {a.id: (a.token, "ana") for a in alerts}
    assert (stats.entries, stats.written, stats.malformed) == (len(sent), len(alerts), 0)
    assert pending(redis_client, redis_prefix) == 0


def test_malformed_entries_are_logged_counted_and_acked(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    migrate(pg_dsn)
    good = [alert("r", "A", T0 + i) for i in range(3)]
    fine = json.loads(json.dumps({"id": "x", "rule_id": "r", "rule_name": "r", "rule_version": 1,
                                  "token": "A", "triggered_ms": T0, "values": {},
                                  "window_bounds": {}, "lag_ms": 0, "trace_id": "t"}))  # fmt: skip
    bad: list[dict[Any, Any]] = [
        {"alert": b"{not json"},
        {"alert": b'{"id": "x"}'},  # required fields missing
        {"other": b"x"},  # no alert field
        {"alert": json.dumps({**fine, "token": ""})},
        {"alert": json.dumps({**fine, "token": "A\x00B"})},  # PostgreSQL refuses NUL
        {"alert": json.dumps({**fine, "rule_version": 2**40})},
        {"alert": json.dumps({**fine, "values": {"price": "high"}})},
    ]
    add_alert(redis_client, redis_prefix, good[0])
    for fields in bad:
        redis_client.xadd(stream_key(redis_prefix), fields)
    for a in good[1:]:
        add_alert(redis_client, redis_prefix, a)
    with persister(redis_client, redis_prefix, pg_dsn) as stats:
        wait_for(lambda: stats.acked == len(good) + len(bad))
    assert stats.malformed == len(bad)
    assert stored(pg_dsn) == {a.id: ("A", None) for a in good}
    assert pending(redis_client, redis_prefix) == 0


def test_postgres_outage_acks_nothing_while_down_and_loses_nothing(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str, pg_admin_dsn: str
) -> None:
    migrate(pg_dsn)
    before = [alert("r", "A", T0 + i) for i in range(5)]
    during = [alert("r", "B", T0 + i) for i in range(20)] + before[:2]
    for a in before:
        add_alert(redis_client, redis_prefix, a)
    with persister(redis_client, redis_prefix, pg_dsn) as stats:
        wait_for(lambda: stats.acked == len(before))  # the connection is open now
        with postgres_down(pg_admin_dsn, pg_dsn):
            for a in during:
                add_alert(redis_client, redis_prefix, a)
            wait_for(lambda: stats.retries >= 5)
            assert stats.acked == len(before)
            held = stats.entries - len(before)  # one batch read, held, not acked
            assert 0 < held <= 7 and pending(redis_client, redis_prefix) == held
            with pytest.raises(psycopg.OperationalError, match="not currently accepting"):
                psycopg.connect(pg_dsn)
        wait_for(lambda: stats.acked == len(before) + len(during))
    assert stored(pg_dsn) == {a.id: (a.token, None) for a in before + during}
    assert pending(redis_client, redis_prefix) == 0


def test_stop_during_outage_returns_without_ack_and_a_restart_stores_everything(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str, pg_admin_dsn: str
) -> None:
    migrate(pg_dsn)
    alerts = [alert("r", "A", T0 + i) for i in range(3)]
    for a in alerts:
        add_alert(redis_client, redis_prefix, a)
    with postgres_down(pg_admin_dsn, pg_dsn):
        with persister(redis_client, redis_prefix, pg_dsn) as stats:
            wait_for(lambda: stats.retries >= 2)
        assert stats.acked == 0
        assert pending(redis_client, redis_prefix) == 3
    with persister(redis_client, redis_prefix, pg_dsn) as stats:  # same consumer: own pending
        wait_for(lambda: stats.acked == 3)
    assert set(stored(pg_dsn)) == {a.id for a in alerts}
