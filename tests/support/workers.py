"""Driving ``tradepulse worker`` processes in tests, and comparing their Redis states."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import msgspec
import redis
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tradepulse.adapters.redis_store import RedisStore
from tradepulse.core.bars import Bar


def worker_env(bootstrap: str, topic: str, group: str, prefix: str, **extra: str) -> dict[str, str]:
    """Environment of a worker on the event clock with fast maintenance."""
    return {**os.environ, "TRADEPULSE_KAFKA_BOOTSTRAP": bootstrap, "TRADEPULSE_KAFKA_TOPIC": topic,
            "TRADEPULSE_KAFKA_GROUP": group, "TRADEPULSE_REDIS_PREFIX": prefix,
            "TRADEPULSE_CLOCK": "event", "TRADEPULSE_BATCH_SIZE": "5000",
            "TRADEPULSE_BATCH_WAIT_MS": "50", "TRADEPULSE_MAINTENANCE_INTERVAL": "200ms",
            "TRADEPULSE_STALE_AFTER": "1ms", "LOG_LEVEL": "WARN", "TRADEPULSE_HTTP_PORT": "0",
            "TRADEPULSE_PERSIST_HTTP_PORT": "0",
            **extra}  # fmt: skip


def produce_synthetic(
    bootstrap: str, topic: str, trades: int, partitions: int, event_rate: float = 10_000
) -> None:
    """``tradepulse produce --synthetic`` into a new topic of ``partitions`` partitions,
    ``event_rate`` trades per second of trade time."""
    produced = subprocess.run(
        [sys.executable, "-m", "tradepulse", "produce", "--synthetic", str(trades), "--topic",
         topic, "--bootstrap", bootstrap, "--partitions", str(partitions),
         "--event-rate", str(event_rate)],
        capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr.decode()


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tradepulse", "worker", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def committed_total(bootstrap: str, topic: str, group: str, partitions: int) -> int:
    """Messages the group has committed over all partitions."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def wait_until(
    condition: Callable[[], bool], worker: subprocess.Popen[bytes], timeout_s: float = 240
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert worker.poll() is None, "the worker exited on its own"
        assert time.monotonic() < deadline, "the run did not progress in time"
        time.sleep(0.2)


def stop_worker(worker: subprocess.Popen[bytes]) -> int:
    worker.send_signal(signal.SIGTERM)
    return worker.wait(timeout=15)


def assert_same_state(
    a: RedisStore,
    b: RedisStore,
    client_a: redis.Redis,
    client_b: redis.Redis,
    *,
    bars_stream: bool = True,
) -> int:
    """Every token's windows and trades list, tokens:active and the watermarks are equal,
    and the newest version of every final bar (content and revision). Returns the number
    of tokens compared."""
    active = client_a.zrange(a.active_key, 0, -1, withscores=True)
    assert client_b.zrange(b.active_key, 0, -1, withscores=True) == active
    assert b.read_watermarks() == a.read_watermarks()
    for raw, _score in active:
        token = raw.decode()
        assert b.read_stats(token) == a.read_stats(token), token
        assert b.read_trades(token) == a.read_trades(token), token
        for key_a, key_b in zip(a.bar_keys(token)[1:], b.bar_keys(token)[1:], strict=True):
            assert client_b.get(key_b) == client_a.get(key_a), key_a  # livebar, ind
    if bars_stream:
        bars_a, bars_b = final_bars(a, client_a), final_bars(b, client_b)
        differ = sorted(k for k in bars_a.keys() | bars_b.keys() if bars_a.get(k) != bars_b.get(k))
        assert not differ, [(k, bars_a.get(k), bars_b.get(k)) for k in differ[:3]]
    return len(active)


def final_bars(store: RedisStore, client: redis.Redis) -> dict[tuple[str, int], Bar]:
    """The newest revision of every bar in the ``bars.finalized`` stream; fails if one
    revision of a bar was emitted twice (exactly once)."""
    newest: dict[tuple[str, int], Bar] = {}
    seen: set[tuple[str, int, int]] = set()
    for _id, fields in client.xrange(store.bars_stream_key):
        bar = msgspec.json.decode(fields[b"bar"], type=Bar)
        key = (bar.token, bar.open_ms, bar.revision)
        assert key not in seen, f"bar emitted twice: {key}"
        seen.add(key)
        old = newest.get(key[:2])
        if old is None or old.revision < bar.revision:
            newest[key[:2]] = bar
    return newest


def ops(port: int, path: str, method: str = "GET") -> tuple[int, Any]:
    """``(status, decoded body)`` of an operations endpoint (text for ``/metrics``)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, (body.decode() if path == "/metrics" else json.loads(body))


def ops_ready(port: int) -> bool:
    try:
        return ops(port, "/health/ready")[0] == 200
    except OSError:
        return False


def samples(exposition: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text parsed: sample name -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out
