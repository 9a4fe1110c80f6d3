"""``tradepulse worker --processes N``: several consumers in one group behind one port.

* Two processes end with exactly the Redis state of one (event clock: the group's
  processes share their partitions' newest trade times, so they converge to the clock of
  one process reading every partition).
* A child killed with SIGKILL is restarted, the port keeps serving every child, and
  SIGTERM stops the whole group within 10 s.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
import redis

from tests.support.broker import free_port
from tests.support.workers import (
    assert_same_state,
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
from tradepulse.adapters.redis_store import RedisStore

TRADES = 60_000
PARTITIONS = 4


@pytest.mark.slow
def test_two_processes_in_one_group_end_with_the_state_of_one(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis
) -> None:
    produce_synthetic(kafka_bootstrap, topic, TRADES, PARTITIONS, event_rate=500)
    prefixes = [f"tradepulse-test-{uuid.uuid4().hex[:12]}:" for _ in range(2)]
    try:
        for prefix, processes in zip(prefixes, (1, 2), strict=True):
            group = f"group-{uuid.uuid4().hex[:8]}"
            port = free_port()
            env = worker_env(kafka_bootstrap, topic, group, prefix,
                             TRADEPULSE_HTTP_PORT=str(port))  # fmt: skip
            worker = start_worker(env, "--processes", str(processes))
            try:

                def committed(g: str = group) -> bool:
                    return committed_total(kafka_bootstrap, topic, g, PARTITIONS) == TRADES

                wait_until(committed, worker)
                wait_until(lambda p=port: ops_ready(p), worker, 30)
                if processes == 2:
                    held = [a["answer"]["partitions"] for a in ops(port, "/health/ready")[1]
                            ["processes"]]  # fmt: skip
                    assert all(held), f"a process read nothing, the test is vacuous: {held}"
                time.sleep(2)  # sweeps (every 200 ms) bring every token to the final clock
            finally:
                assert stop_worker(worker) == 0
        one, two = (RedisStore(redis_client, prefix=p) for p in prefixes)
        assert assert_same_state(one, two, redis_client, redis_client) > 1_000
    finally:
        for prefix in prefixes:
            for key in redis_client.scan_iter(match=prefix + "*", count=1000):
                redis_client.delete(key)


def _child_pids(port: int) -> list[int]:
    return [a["answer"]["pid"] for a in ops(port, "/health/live")[1]["processes"]]


@pytest.mark.slow
def test_group_restarts_a_killed_child_and_stops_within_ten_seconds(
    kafka_bootstrap: str, topic: str, redis_prefix: str
) -> None:
    produce_synthetic(kafka_bootstrap, topic, 5_000, 2)
    port = free_port()
    env = worker_env(kafka_bootstrap, topic, f"restart-{topic}", redis_prefix,
                     TRADEPULSE_HTTP_PORT=str(port))  # fmt: skip
    worker = start_worker(env, "--processes", "2")
    children: list[int] = []
    try:
        wait_until(lambda: ops_ready(port), worker, 60)
        children = _child_pids(port)
        os.kill(children[0], signal.SIGKILL)
        wait_until(lambda: ops_ready(port) and _child_pids(port)[0] != children[0], worker, 60)
        children = _child_pids(port)
        parsed = samples(ops(port, "/metrics")[1])
        assert parsed["tradepulse_worker_restarts_total"] == [({}, 1.0)]
        consumed = {labels["process"] for labels, _ in parsed["tradepulse_trades_consumed_total"]}
        assert consumed == {"0", "1"}
        assert ops(port, "/health")[1]["processes"][0]["restarts"] == 1
    finally:
        started = time.monotonic()
        assert stop_worker(worker) == 0
        assert time.monotonic() - started < 10
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
