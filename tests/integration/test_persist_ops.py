"""``tradepulse persist`` as a process, against real Redis and PostgreSQL: its operations
endpoints (health flips with PostgreSQL, metrics count the bars, backlog gauge) and the
trimming of what it acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.integration.test_persister import bar, expected, postgres_down, stored
from tests.support.broker import free_port
from tests.support.workers import ops, samples
from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.redis_stream import add_bar, stream_key

PERSIST_CLAIM_IDLE = "60s"


def wait_for(
    condition: Callable[[], bool], proc: subprocess.Popen[bytes], timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, "tradepulse persist exited on its own"
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def status(port: int, path: str) -> int:
    try:
        return ops(port, path)[0]
    except OSError:
        return -1


def metric(port: int, name: str, **labels: str) -> float | None:
    for found, value in samples(ops(port, "/metrics")[1]).get(name, []):
        if labels.items() <= found.items():
            return value
    return None


@pytest.fixture
def persist(redis_prefix: str, pg_dsn: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A running ``tradepulse persist`` (schema migrated) and its operations port."""
    migrate(pg_dsn)
    port = free_port()
    env = {**os.environ, "TRADEPULSE_PG_DSN": pg_dsn, "TRADEPULSE_REDIS_PREFIX": redis_prefix,
           "TRADEPULSE_PERSIST_HTTP_PORT": str(port), "TRADEPULSE_PERSIST_CONSUMER": "ops-test",
           "TRADEPULSE_PERSIST_CLAIM_IDLE": PERSIST_CLAIM_IDLE, "LOG_LEVEL": "WARN"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "tradepulse", "persist"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for(lambda: status(port, "/health/ready") == 200, proc)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0  # SIGTERM: the round in hand finished, a clean exit
        finally:
            proc.kill()
            assert proc.stderr is not None
            proc.stderr.close()


def test_persist_serves_health_metrics_and_performance_of_written_bars(
    persist: tuple[subprocess.Popen[bytes], int],
    redis_client: redis.Redis,
    redis_prefix: str,
    pg_dsn: str,
) -> None:
    proc, port = persist
    bars = [bar(f"T{i % 4}", i // 4) for i in range(40)]
    for b in bars:
        add_bar(redis_client, redis_prefix, b)
    wait_for(lambda: metric(port, "tradepulse_bars_persisted_total") == len(bars), proc)
    assert stored(pg_dsn) == expected(bars)
    code, health = ops(port, "/health")
    assert code == 200 and health["status"] == "ok"
    assert health["redis"] is True and health["postgres"] is True
    code, perf = ops(port, "/performance")
    bars_perf = perf["streams"]["bars.finalized"]
    assert code == 200 and bars_perf["written"] == len(bars) and bars_perf["acked"] == len(bars)
    assert bars_perf["recent_rows_per_s"] > 0 and bars_perf["batch_seconds_p99"] > 0
    assert set(perf["streams"]) == {"bars.finalized", "alerts"} and perf["rss_bytes"] > 0
    code, changed = ops(port, "/performance/optimize/throughput", "POST")
    assert code == 200 and changed["now"]["batch_size"] == 5_000
    assert ops(port, "/performance/gc", "POST")[0] == 200


def test_persist_trims_what_it_acknowledged_and_reports_no_backlog(
    persist: tuple[subprocess.Popen[bytes], int],
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    proc, port = persist
    for m in range(25):
        add_bar(redis_client, redis_prefix, bar("A", m))
    key = stream_key(redis_prefix)
    wait_for(lambda: redis_client.xlen(key) == 0, proc)  # upkeep: every 5 s
    wait_for(lambda: metric(port, "tradepulse_stream_entries_trimmed_total",
                            stream="bars.finalized") == 25, proc)  # fmt: skip
    backlog = lambda: metric(port, "tradepulse_persister_backlog_entries",  # noqa: E731
                             stream="bars.finalized")  # fmt: skip
    wait_for(lambda: backlog() == 0, proc)  # read before the trim of its round: maybe later


def test_persist_postgres_unreachable_not_ready_still_live_backlog_grows(
    persist: tuple[subprocess.Popen[bytes], int],
    redis_client: redis.Redis,
    redis_prefix: str,
    pg_dsn: str,
    pg_admin_dsn: str,
) -> None:
    proc, port = persist
    during = [bar("B", m) for m in range(30)]
    with postgres_down(pg_admin_dsn, pg_dsn):
        wait_for(lambda: status(port, "/health/ready") == 503, proc)
        code, ready = ops(port, "/health/ready")
        assert (code, ready["postgres"], ready["redis"]) == (503, False, True)
        assert status(port, "/health") == 503
        for b in during:
            add_bar(redis_client, redis_prefix, b)
        backlog = lambda: metric(port, "tradepulse_persister_backlog_entries",  # noqa: E731
                                 stream="bars.finalized")  # fmt: skip
        wait_for(lambda: backlog() == len(during), proc)
        assert redis_client.xlen(stream_key(redis_prefix)) == len(during)  # nothing trimmed
        assert status(port, "/health/live") == 200  # waiting out an outage is not stuck
    wait_for(lambda: status(port, "/health/ready") == 200, proc)
    wait_for(lambda: stored(pg_dsn) == expected(during), proc)
    wait_for(lambda: redis_client.xlen(stream_key(redis_prefix)) == 0, proc)
