"""A worker killed with SIGKILL at random moments and restarted ends with exactly the
Redis state of a worker that was never interrupted (event clock, real broker and Redis).

200,000 synthetic trades (2,000 tokens) on a 4-partition topic are consumed twice, by two
groups into two key prefixes: once without interruption, once with three SIGKILLs and
restarts. After each run has committed every message and a maintenance sweep has brought
every token to the final watermark, every token's windows and trades list are compared.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from tradepulse.adapters.redis_store import RedisStore

TRADES = 200_000
PARTITIONS = 4


def committed_total(bootstrap: str, topic: str, group: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tradepulse", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def run_to_end(env: dict[str, str], progress: Callable[[], int], kills: int, seed: int) -> None:
    """Run a worker until every message is committed, killing (SIGKILL) and restarting it
    ``kills`` times on the way (after 1/(kills+1), 2/(kills+1)... of the messages, plus a
    random delay); then let maintenance settle and stop it with SIGTERM."""
    rnd = random.Random(seed)
    worker = start_worker(env)
    try:
        for k in range(1, kills + 1):
            wait_until(lambda k=k: progress() >= k * TRADES // (kills + 1), worker)
            time.sleep(rnd.uniform(0.0, 0.3))
            assert progress() < TRADES, "the kill would come after the work: test is vacuous"
            worker.kill()
            worker.wait(timeout=10)
            worker = start_worker(env)
        wait_until(lambda: progress() == TRADES, worker)
        time.sleep(2)  # sweeps (every 200 ms) bring every token to the final watermark
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)


def wait_until(condition: Callable[[], bool], worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 240
    while not condition():
        assert worker.poll() is None, "the worker exited on its own"
        assert time.monotonic() < deadline, "the run did not progress in time"
        time.sleep(0.2)


@pytest.mark.slow
def test_killed_and_restarted_worker_ends_identical_to_uninterrupted(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis
) -> None:
    produced = subprocess.run(
        [sys.executable, "-m", "tradepulse", "produce", "--synthetic", str(TRADES), "--topic",
         topic, "--bootstrap", kafka_bootstrap, "--partitions", str(PARTITIONS)],
        capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr.decode()
    prefixes = [f"tradepulse-test-{uuid.uuid4().hex[:12]}:" for _ in range(2)]
    try:
        for prefix, kills, seed in ((prefixes[0], 0, 1), (prefixes[1], 3, 2)):
            group = f"crash-{uuid.uuid4().hex[:8]}"
            env = {**os.environ, "TRADEPULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
                   "TRADEPULSE_KAFKA_TOPIC": topic, "TRADEPULSE_KAFKA_GROUP": group,
                   "TRADEPULSE_REDIS_PREFIX": prefix, "TRADEPULSE_CLOCK": "event",
                   "TRADEPULSE_BATCH_SIZE": "5000", "TRADEPULSE_BATCH_WAIT_MS": "50",
                   "TRADEPULSE_MAINTENANCE_INTERVAL": "200ms", "TRADEPULSE_STALE_AFTER": "1ms",
                   "LOG_LEVEL": "WARN"}  # fmt: skip

            def progress(group: str = group) -> int:
                return committed_total(kafka_bootstrap, topic, group)

            run_to_end(env, progress, kills, seed)
        calm, crashed = (RedisStore(redis_client, prefix=p) for p in prefixes)
        tokens = [t.decode() for t in redis_client.zrange(calm.active_key, 0, -1)]
        assert len(tokens) > 1_000
        assert redis_client.zrange(crashed.active_key, 0, -1, withscores=True) == (
            redis_client.zrange(calm.active_key, 0, -1, withscores=True)
        )
        assert crashed.read_watermarks() == calm.read_watermarks()
        for token in tokens:
            assert crashed.read_stats(token) == calm.read_stats(token), token
            assert crashed.read_trades(token) == calm.read_trades(token), token
    finally:
        for prefix in prefixes:
            for key in redis_client.scan_iter(match=prefix + "*", count=1000):
                redis_client.delete(key)
