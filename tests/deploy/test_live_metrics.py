"""``promtool check metrics`` on the live /metrics of a real worker (real broker, real
Redis), of a real ``tradepulse persist`` and of a real ``tradepulse api``: the exposition
parses and follows Prometheus' naming rules, except for the known deviations listed here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import redis
from confluent_kafka import Producer

from tests.deploy.support import declared_metric_names, require_promtool
from tests.support.broker import free_port
from tests.support.workers import (
    committed_total,
    ops,
    ops_ready,
    produce_synthetic,
    samples,
    start_worker,
    stop_worker,
    wait_until,
    worker_env,
)

TRADES = 3_000
#: promtool's lint findings on metrics declared in src/tradepulse/metrics.py that are kept
#: for compatibility (renaming a series breaks dashboards and alerts of existing
#: deployments). Anything else promtool reports fails the test.
KNOWN_LINT = {"tradepulse_watermark_ms metric names should not contain abbreviated units"}


def check_metrics(exposition: str) -> set[str]:
    """promtool's findings; fails when promtool cannot parse the exposition at all."""
    result = subprocess.run(
        [require_promtool(), "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = {ln.strip() for ln in (result.stdout + result.stderr).splitlines() if ln.strip()}
    assert result.returncode in (0, 3), f"promtool could not parse /metrics: {findings}"
    assert (result.returncode == 0) == (not findings), findings
    return findings


def test_check_metrics_reports_a_bad_exposition() -> None:
    assert check_metrics("# TYPE x_seconds counter\nx_seconds 1\n") != set()


def test_worker_metrics_pass_promtool_check_metrics(
    kafka_bootstrap: str, topic: str, redis_prefix: str
) -> None:
    produce_synthetic(kafka_bootstrap, topic, TRADES, 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"bad", value=b"not json")  # a rejected-by-reason series
    assert producer.flush(30) == 0
    port = free_port()
    group = f"deploy-{topic}"
    worker = start_worker(
        worker_env(kafka_bootstrap, topic, group, redis_prefix, TRADEPULSE_HTTP_PORT=str(port))
    )
    try:
        wait_until(lambda: committed_total(kafka_bootstrap, topic, group, 2) == TRADES + 1, worker)
        wait_until(lambda: ops_ready(port), worker, 30)
        exposition = ops(port, "/metrics")[1]
    finally:
        assert stop_worker(worker) == 0
    assert check_metrics(exposition) <= KNOWN_LINT
    parsed = samples(exposition)
    assert sum(v for _, v in parsed["tradepulse_trades_applied_total"]) == TRADES
    assert set(parsed) <= declared_metric_names()


def start_api(port: int, redis_prefix: str, pg_dsn: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRADEPULSE_REDIS_PREFIX": redis_prefix,
        "TRADEPULSE_PG_DSN": pg_dsn,
        "LOG_LEVEL": "WARN",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tradepulse", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def get(port: int, path: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.read().decode() if response.status == 200 else None
    except OSError:
        return None


def test_api_metrics_pass_promtool_check_metrics(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    port = free_port()
    api = start_api(port, redis_prefix, pg_dsn)
    try:
        deadline = time.monotonic() + 60
        while get(port, "/health/live") is None:
            assert api.poll() is None, "the api exited on its own"
            assert time.monotonic() < deadline, "the api did not start"
            time.sleep(0.2)
        get(port, "/api/v1/tokens")  # at least one request-labelled series
        exposition = get(port, "/metrics")
    finally:
        api.terminate()
        api.wait(timeout=15)
    assert exposition is not None
    assert check_metrics(exposition) <= KNOWN_LINT
    assert set(samples(exposition)) <= declared_metric_names()


def test_persister_metrics_pass_promtool_check_metrics(
    redis_client: redis.Redis, redis_prefix: str, pg_dsn: str
) -> None:
    from tradepulse.adapters.postgres import migrate
    from tradepulse.adapters.redis_stream import add_bar
    from tradepulse.core.bars import Bar

    migrate(pg_dsn)
    for minute in range(5):
        open_ms = 1_760_000_040_000 + minute * 60_000
        add_bar(redis_client, redis_prefix, Bar("T", open_ms, 1, 1, 1, 1, 2, 2, 1, 1, 4, 1, 0))
    port = free_port()
    env = {**os.environ, "TRADEPULSE_REDIS_PREFIX": redis_prefix, "TRADEPULSE_PG_DSN": pg_dsn,
           "TRADEPULSE_PERSIST_HTTP_PORT": str(port), "LOG_LEVEL": "WARN"}  # fmt: skip
    persister = subprocess.Popen([sys.executable, "-m", "tradepulse", "persist"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "tradepulse_bars_persisted_total 5.0" not in (get(port, "/metrics") or ""):
            assert persister.poll() is None, "tradepulse persist exited on its own"
            assert time.monotonic() < deadline, "the bars were not persisted"
            time.sleep(0.2)
        exposition = get(port, "/metrics")
    finally:
        persister.terminate()
        persister.wait(timeout=15)
    assert exposition is not None
    assert check_metrics(exposition) <= KNOWN_LINT
    parsed = samples(exposition)
    assert set(parsed) <= declared_metric_names()
    streams = {labels["stream"] for labels, _ in parsed["tradepulse_persister_backlog_entries"]}
    assert streams == {"bars.finalized", "alerts"}
