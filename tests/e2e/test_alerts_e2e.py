"""Alerts end to end: trades on Kafka → worker scans (rules from a file, event clock) →
the ``alerts`` stream → the persister (``--persist``) → PostgreSQL ``alerts``; the worker
is killed with SIGKILL twice and restarted, and still no alert is sent twice.

Exactly once here means: every alert id is unique, a (rule, token) pair never fires twice
within its cooldown, and every alert of the stream is a row in PostgreSQL. (Which scans see
which trades depends on how partitions interleave in batches, so two runs need not fire
at the same instants; duplicates would come from a restart forgetting what was sent.)

Rules in the database are reloaded when ``rules.updated`` announces a change: a rule
created while the worker runs starts firing without a restart.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import msgspec
import psycopg
import pytest
import redis

from tests.support.workers import (
    committed_total,
    produce_synthetic,
    start_worker,
    stop_worker,
    wait_until,
    worker_env,
)
from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.postgres_rules import RuleRepository
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.core.alerts import Alert

TRADES = 60_000
PARTITIONS = 4
COOLDOWN_S = 20
RULES = [
    {"name": "busy", "conditions": [{"metric": "window.1min.trade_count", "op": ">", "value": 30}],
     "cooldown": COOLDOWN_S, "trigger": "level", "enabled": True},
    {"name": "buyers", "conditions": {"all": [
        {"metric": "window.5min.unique_buyers", "op": ">=", "value": 3},
        {"not": {"metric": "window.5min.total_volume", "op": "<=", "value": 0}}]},
     "cooldown": COOLDOWN_S, "trigger": "level", "enabled": True},
]  # fmt: skip


def stream_alerts(client: redis.Redis, store: RedisStore) -> list[Alert]:
    return [msgspec.json.decode(f[b"alert"], type=Alert)
            for _id, f in client.xrange(store.alerts_key)]  # fmt: skip


def alert_rows(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {str(r[0]) for r in conn.execute("SELECT id FROM alerts").fetchall()}


@pytest.mark.slow
def test_alerts_reach_postgresql_once_across_worker_kills(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str,
    pg_dsn: str, tmp_path: Path,
) -> None:  # fmt: skip
    migrate(pg_dsn)
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps(RULES))
    produce_synthetic(kafka_bootstrap, topic, TRADES, PARTITIONS, event_rate=500)
    group = f"alerts-{uuid.uuid4().hex[:8]}"
    env = worker_env(kafka_bootstrap, topic, group, redis_prefix, TRADEPULSE_PG_DSN=pg_dsn,
                     TRADEPULSE_RULES=str(rules_file), TRADEPULSE_BATCH_SIZE="2000",
                     TRADEPULSE_PERSIST_GROUP=f"p-{group}")  # fmt: skip
    store = RedisStore(redis_client, prefix=redis_prefix)

    def progress() -> int:
        return committed_total(kafka_bootstrap, topic, group, PARTITIONS)

    worker = start_worker(env, "--persist")
    try:
        for k in (1, 2):
            wait_until(lambda k=k: progress() >= k * TRADES // 3, worker)
            assert progress() < TRADES, "the kill would come after the work: test is vacuous"
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            worker = start_worker(env, "--persist")
        wait_until(lambda: progress() == TRADES, worker)
        time.sleep(2)  # the last scans
    finally:
        assert stop_worker(worker) == 0
    # alerts stored after the worker's persister stopped are still in the stream: a
    # persister run picks them up (nothing is lost)
    persister = subprocess.Popen([sys.executable, "-m", "tradepulse", "persist"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(3)  # started and reading (a SIGTERM before its handlers would kill it)
        wait_until(lambda: alert_rows(pg_dsn) == {a.id for a in stream_alerts(redis_client, store)},
                   persister, 60)  # fmt: skip
    finally:
        assert stop_worker(persister) == 0

    alerts = stream_alerts(redis_client, store)
    assert len({a.rule_id for a in alerts}) == 2 and len(alerts) > 50, "rules never fired"
    assert len({a.id for a in alerts}) == len(alerts), "an alert was sent twice"
    fired: dict[tuple[str, str], list[int]] = defaultdict(list)
    for a in alerts:
        fired[(a.rule_id, a.token)].append(a.triggered_ms)
    for key, times in fired.items():
        times.sort()
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(g >= COOLDOWN_S * 1000 for g in gaps), (key, gaps)
    assert alert_rows(pg_dsn) == {a.id for a in alerts}
    assert all(a.values for a in alerts) and all(a.lag_ms >= 0 for a in alerts)


def test_rule_created_in_the_store_is_loaded_without_restart(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    migrate(pg_dsn)
    produce_synthetic(kafka_bootstrap, topic, 5_000, 1)
    group = f"reload-{uuid.uuid4().hex[:8]}"
    env = worker_env(kafka_bootstrap, topic, group, redis_prefix, TRADEPULSE_PG_DSN=pg_dsn,
                     TRADEPULSE_RULES="db", TRADEPULSE_CLOCK="wall")  # fmt: skip
    store = RedisStore(redis_client, prefix=redis_prefix)
    worker = start_worker(env)
    try:
        wait_until(lambda: committed_total(kafka_bootstrap, topic, group, 1) == 5_000, worker)
        time.sleep(1.5)
        assert stream_alerts(redis_client, store) == []  # no rules yet
        channel = f"{redis_prefix}rules.updated"
        with RuleRepository(pg_dsn, on_change=lambda i: redis_client.publish(channel, i)) as repo:
            rule = repo.create("alice", {"name": "any trade", "cooldown": 3600, "conditions": [
                {"metric": "window.1hour.trade_count", "op": ">", "value": 0}]})  # fmt: skip
        wait_until(lambda: len(stream_alerts(redis_client, store)) > 0, worker, 20)
    finally:
        assert stop_worker(worker) == 0
    alerts = stream_alerts(redis_client, store)
    assert {a.rule_id for a in alerts} == {rule.id}
    assert len({a.token for a in alerts}) == len(alerts) > 10  # one per token (cooldown 1 h)
