"""A worker killed with SIGKILL at random moments and restarted ends with exactly the
Redis state of a worker that was never interrupted (event clock, real broker and Redis).

200,000 synthetic trades (2,000 tokens, 500 per second of trade time: almost 7 minutes of
bars) on a 4-partition topic are consumed twice, by two groups into two key prefixes: once
without interruption, once with three SIGKILLs and restarts. After each run has committed
every message and a maintenance sweep has brought every token to the final watermark, every
token's windows, trades list, forming bar and indicators are compared, and the final bars
in the stream: the same bars with the same revisions, none emitted twice.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

import pytest
import redis

from tests.support.workers import (
    assert_same_state,
    committed_total,
    final_bars,
    produce_synthetic,
    start_worker,
    stop_worker,
    wait_until,
    worker_env,
)
from tradepulse.adapters.redis_store import RedisStore

TRADES = 200_000
PARTITIONS = 4


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
        stop_worker(worker)


@pytest.mark.slow
def test_killed_and_restarted_worker_ends_identical_to_uninterrupted(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis
) -> None:
    produce_synthetic(kafka_bootstrap, topic, TRADES, PARTITIONS, event_rate=500)
    prefixes = [f"tradepulse-test-{uuid.uuid4().hex[:12]}:" for _ in range(2)]
    try:
        for prefix, kills, seed in ((prefixes[0], 0, 1), (prefixes[1], 3, 2)):
            group = f"crash-{uuid.uuid4().hex[:8]}"
            env = worker_env(kafka_bootstrap, topic, group, prefix)

            def progress(group: str = group) -> int:
                return committed_total(kafka_bootstrap, topic, group, PARTITIONS)

            run_to_end(env, progress, kills, seed)
        calm, crashed = (RedisStore(redis_client, prefix=p) for p in prefixes)
        assert assert_same_state(calm, crashed, redis_client, redis_client) > 1_000
        assert len(final_bars(calm, redis_client)) > 2_000  # bars were emitted: not vacuous
    finally:
        for prefix in prefixes:
            for key in redis_client.scan_iter(match=prefix + "*", count=1000):
                redis_client.delete(key)
