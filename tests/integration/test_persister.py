"""The bar persister end to end: real Redis stream in, real PostgreSQL out.

Outages and crashes are real: PostgreSQL is taken away with ``ALLOW_CONNECTIONS false`` plus
``pg_terminate_backend``; a consumer is killed with SIGKILL (a subprocess) or abandoned after
reading without acknowledging.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tradepulse.adapters.postgres import BarRepository, migrate
from tradepulse.adapters.redis_stream import RedisBarStream, add_bar, stream_key
from tradepulse.core.bars import Bar
from tradepulse.service.persister import Backoff, PersisterStats, run_persister

MIN = 60_000
T0 = 1_760_000_000_000 - 1_760_000_000_000 % MIN
FAST = Backoff(first_s=0.02, max_s=0.2)
GROUP = "tradepulse-persister"


def bar(token: str, minute: int, *, revision: int = 0, close: float = 1.0) -> Bar:
    return Bar(token, T0 + minute * MIN, 1.0, max(close, 1.0), min(close, 1.0), close, 2.0,
               2.0 * close, close, close, 4, close, revision)  # fmt: skip


def stored(dsn: str) -> dict[tuple[str, int], tuple[float, int]]:
    """``(token, open_ms) -> (close, revision)`` of every stored bar."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT token, open_ms, close, revision FROM bars_1m").fetchall()
    return {(t, o): (c, r) for t, o, c, r in rows}


def expected(bars: list[Bar]) -> dict[tuple[str, int], tuple[float, int]]:
    """The newest revision of every bar (first seen wins a tie: equal revisions are equal)."""
    out: dict[tuple[str, int], tuple[float, int]] = {}
    for b in bars:
        key = (b.token, b.open_ms)
        if key not in out or out[key][1] < b.revision:
            out[key] = (b.close, b.revision)
    return out


def pending(client: redis.Redis, prefix: str) -> int:
    return int(client.xpending(stream_key(prefix), GROUP)["pending"])


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@contextmanager
def persister(
    client: redis.Redis, prefix: str, dsn: str, *, consumer: str = "p1", claim_idle_ms: int = 60_000
) -> Iterator[PersisterStats]:
    """``run_persister`` in a thread for the duration of the block; stopped after it."""
    stream = RedisBarStream(client, prefix=prefix, consumer=consumer, claim_idle_ms=claim_idle_ms)
    stats, stop = PersisterStats(), threading.Event()
    with BarRepository(dsn) as repo:
        thread = threading.Thread(
            target=run_persister, args=(stream, repo, stop),
            kwargs={"batch_size": 7, "block_ms": 50, "backoff": FAST, "stats": stats},
        )  # fmt: skip
        thread.start()
        try:
            yield stats
        finally:
            stop.set()
            thread.join(10)
    assert not thread.is_alive()


@contextmanager
def postgres_down(admin_dsn: str, dsn: str) -> Iterator[None]:
    """The test database refuses connections and its open ones are terminated; allowed
    again when the block ends."""
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        allow = sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}")
        admin.execute(allow.format(sql.Identifier(name), sql.SQL("false")))
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                      (name,))  # fmt: skip
        try:
            yield
        finally:
            admin.execute(allow.format(sql.Identifier(name), sql.SQL("true")))


def test_persister_stores_every_bar_once_newest_revision_and_acks_all(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    migrate(pg_dsn)
    bars = [bar(f"T{i % 5}", i // 5) for i in range(50)]
    bars += [bar("T0", 0), bar("T1", 0, revision=1, close=7.0),  # duplicate, correction
             bar("T2", 0, revision=2, close=9.0), bar("T2", 0, revision=1, close=8.0)]  # fmt: skip
    for b in bars:
        add_bar(redis_client, redis_prefix, b)
    with persister(redis_client, redis_prefix, pg_dsn) as stats:
        wait_for(lambda: stats.acked == len(bars))
    assert stored(pg_dsn) == expected(bars)
    assert stored(pg_dsn)[("T2", T0)] == (9.0, 2)  # the late, older revision was ignored
    assert pending(redis_client, redis_prefix) == 0
    assert (stats.entries, stats.malformed, stats.retries) == (len(bars), 0, 0)


def test_persister_acks_and_counts_malformed_entries(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    migrate(pg_dsn)
    key = stream_key(redis_prefix)
    good = [bar("A", m) for m in range(3)]
    bad: list[dict[Any, Any]] = [
        {"bar": b"{not json"},
        {"bar": b'{"token": "A"}'},  # required fields missing
        {"other": b"x"},  # no bar field
        {"bar": b'{"token":"A","open_ms":1,"open":1,"high":1,"low":1,"close":1,"volume":1,'
                b'"volume_usd":1,"buy_volume_usd":1,"sell_volume_usd":0,"trades":1,"vwap":1}'},
        {"bar": b'{"token":"","open_ms":0,"open":1,"high":1,"low":1,"close":1,"volume":1,'
                b'"volume_usd":1,"buy_volume_usd":1,"sell_volume_usd":0,"trades":1,"vwap":1}'},
    ]  # fmt: skip
    add_bar(redis_client, redis_prefix, good[0])
    for fields in bad:
        redis_client.xadd(key, fields)
    for b in good[1:]:
        add_bar(redis_client, redis_prefix, b)
    with persister(redis_client, redis_prefix, pg_dsn) as stats:
        wait_for(lambda: stats.acked == len(good) + len(bad))
    assert stats.malformed == len(bad)
    assert stored(pg_dsn) == expected(good)
    assert pending(redis_client, redis_prefix) == 0


def test_postgres_outage_acks_nothing_while_down_and_loses_nothing(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str, pg_admin_dsn: str
) -> None:
    migrate(pg_dsn)
    before = [bar("A", m) for m in range(5)]
    during = [bar("B", m) for m in range(20)] + [bar("A", 0, revision=1, close=5.0)]
    for b in before:
        add_bar(redis_client, redis_prefix, b)
    with persister(redis_client, redis_prefix, pg_dsn) as stats:
        wait_for(lambda: stats.acked == len(before))  # the connection is open now
        with postgres_down(pg_admin_dsn, pg_dsn):
            for b in during:
                add_bar(redis_client, redis_prefix, b)
            wait_for(lambda: stats.retries >= 5)
            assert stats.acked == len(before)
            held = stats.entries - len(before)  # one batch read, held, not acked
            assert 0 < held <= 7 and pending(redis_client, redis_prefix) == held
            with pytest.raises(psycopg.OperationalError, match="not currently accepting"):
                psycopg.connect(pg_dsn)
        wait_for(lambda: stats.acked == len(before) + len(during))
    assert stored(pg_dsn) == expected(before + during)
    assert pending(redis_client, redis_prefix) == 0


def test_consumer_dead_after_commit_before_ack_restarted_consumer_rereads_its_pending(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    migrate(pg_dsn)
    bars = [bar("A", m, close=1.0 + m) for m in range(10)]
    for b in bars:
        add_bar(redis_client, redis_prefix, b)
    crashed = RedisBarStream(redis_client, prefix=redis_prefix, consumer="p1")
    read = crashed.read(100, 0)
    with BarRepository(pg_dsn) as repo:  # committed, then "killed" before the ack
        repo.upsert([d.bar for d in read if d.bar is not None])
    assert pending(redis_client, redis_prefix) == len(bars)
    del crashed
    with persister(redis_client, redis_prefix, pg_dsn, consumer="p1") as stats:
        wait_for(lambda: stats.acked == len(bars))  # claim_idle is 60 s: own pending re-read
    assert stored(pg_dsn) == expected(bars)
    assert pending(redis_client, redis_prefix) == 0


def persist_process(dsn: str, prefix: str, consumer: str) -> subprocess.Popen[bytes]:
    """``persist_cmd`` in a subprocess (the command as ``tradepulse persist`` will run it)."""
    env = {**os.environ, "TRADEPULSE_PG_DSN": dsn, "TRADEPULSE_REDIS_PREFIX": prefix,
           "TRADEPULSE_PERSIST_CONSUMER": consumer,
           "TRADEPULSE_PERSIST_BATCH_SIZE": "1000"}  # fmt: skip
    script = "import typer; from tradepulse.history_cli import persist_cmd; typer.run(persist_cmd)"
    return subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)


def consumer_pending(client: redis.Redis, prefix: str, name: str) -> int:
    """Entries pending for consumer ``name``; -1 before it (or its group) exists."""
    try:
        consumers = client.xinfo_consumers(stream_key(prefix), GROUP)
    except redis.ResponseError:
        return -1
    for c in consumers:
        if c["name"] in (name, name.encode()):
            return int(c["pending"])
    return -1


def test_consumer_killed_before_ack_its_entries_are_claimed_by_another(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str, pg_admin_dsn: str
) -> None:
    migrate(pg_dsn)
    victim = persist_process(pg_dsn, redis_prefix, "victim")
    try:
        wait_for(lambda: consumer_pending(redis_client, redis_prefix, "victim") == 0)
        assert victim.poll() is None
        bars = [bar("A", m) for m in range(40)]
        with postgres_down(pg_admin_dsn, pg_dsn):
            with redis_client.pipeline(transaction=True) as pipe:  # one read takes them all
                for b in bars:
                    add_bar(pipe, redis_prefix, b)
                pipe.execute()
            wait_for(lambda: consumer_pending(redis_client, redis_prefix, "victim") == 40)
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(10) == -signal.SIGKILL
    finally:
        victim.kill()
        victim.wait(10)
        assert victim.stderr is not None
        victim.stderr.close()
    assert stored(pg_dsn) == {}
    with persister(redis_client, redis_prefix, pg_dsn, consumer="rescuer",
                   claim_idle_ms=300) as stats:  # fmt: skip
        wait_for(lambda: stats.acked == len(bars))
    assert stored(pg_dsn) == expected(bars)
    assert pending(redis_client, redis_prefix) == 0


def test_stop_during_outage_returns_without_ack(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str, pg_admin_dsn: str
) -> None:
    migrate(pg_dsn)
    for m in range(3):
        add_bar(redis_client, redis_prefix, bar("A", m))
    with postgres_down(pg_admin_dsn, pg_dsn):
        with persister(redis_client, redis_prefix, pg_dsn) as stats:
            wait_for(lambda: stats.retries >= 2)
        assert stats.acked == 0
        assert pending(redis_client, redis_prefix) == 3


def test_stream_deleted_while_running_group_is_recreated_and_new_bars_stored(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    migrate(pg_dsn)
    first, second = [bar("A", m) for m in range(3)], [bar("B", m) for m in range(4)]
    for b in first:
        add_bar(redis_client, redis_prefix, b)
    with persister(redis_client, redis_prefix, pg_dsn) as stats:
        wait_for(lambda: stats.acked == len(first))
        redis_client.delete(stream_key(redis_prefix))  # Redis lost the stream and its group
        for b in second:
            add_bar(redis_client, redis_prefix, b)
        wait_for(lambda: stats.acked == len(first) + len(second))
    assert stored(pg_dsn) == expected(first + second)
