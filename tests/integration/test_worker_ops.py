"""The worker's operations endpoints, on a real worker process reading a real broker and
writing the real Redis: health, Prometheus metrics that count what happened, the JSON
views, and the tuning POSTs."""

from __future__ import annotations

import time

import redis
from confluent_kafka import Producer

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
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.core import windows

TRADES = 20_000
BAD = [b"not json", b'{"token": "X"}', b'{"token": "Y", "wallet": 5}']


def produce_bad(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in BAD:
        producer.produce(topic, key=b"bad", value=value)
    assert producer.flush(30) == 0


def value(parsed: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _, v in parsed[name])


def test_worker_ops_endpoints_report_what_happened_and_apply_tuning(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    produce_synthetic(kafka_bootstrap, topic, TRADES, 2)
    produce_bad(kafka_bootstrap, topic)
    total = TRADES + len(BAD)
    port = free_port()
    worker = start_worker(worker_env(kafka_bootstrap, topic, f"ops-{topic}", redis_prefix,
                                     TRADEPULSE_HTTP_PORT=str(port)))  # fmt: skip
    try:
        wait_until(lambda: committed_total(kafka_bootstrap, topic, f"ops-{topic}", 2) == total,
                   worker)  # fmt: skip
        wait_until(lambda: ops_ready(port), worker, 30)
        status, ready = ops(port, "/health/ready")
        assert (status, sorted(ready["partitions"]), ready["redis"]) == (200, [0, 1], True)
        assert ops(port, "/health/live")[0] == 200
        assert ops(port, "/health")[1]["status"] == "ok"

        parsed = samples(ops(port, "/metrics")[1])
        assert value(parsed, "tradepulse_trades_consumed_total") == total
        assert value(parsed, "tradepulse_trades_applied_total") == TRADES
        assert value(parsed, "tradepulse_trades_rejected_total") == len(BAD)
        assert all(
            ":" in labels["reason"] for labels, _ in parsed["tradepulse_trades_rejected_total"]
        )
        assert value(parsed, "tradepulse_batch_size_trades_sum") == total
        assert value(parsed, "tradepulse_batch_seconds_count") >= 1
        assert value(parsed, "tradepulse_redis_call_seconds_count") >= 1
        store = RedisStore(redis_client, prefix=redis_prefix)
        assert value(parsed, "tradepulse_active_tokens") == redis_client.zcard(store.active_key)
        assert value(parsed, "tradepulse_assigned_partitions") == 2
        assert value(parsed, "tradepulse_watermark_ms") == min(store.read_watermarks().values())
        assert value(parsed, "tradepulse_process_rss_bytes") > 10_000_000

        def lag_reported() -> bool:  # librdkafka's statistics arrive every 5 s
            lag = samples(ops(port, "/metrics")[1]).get("tradepulse_consumer_lag_messages", [])
            return sorted((labels["partition"], v) for labels, v in lag) == [("0", 0), ("1", 0)]

        wait_until(lag_reported, worker, 20)

        as_json = ops(port, "/metrics/json")[1]
        assert as_json["tradepulse_trades_consumed_total"][0]["value"] == total
        performance = ops(port, "/performance")[1]
        assert performance["trades"] == total and performance["batch_seconds_p99"] > 0
        assert performance["window_kernel"] == windows.WINDOW_KERNEL  # this install's build

        status, fast = ops(port, "/performance/optimize/throughput", "POST")
        assert status == 200 and fast["now"]["gc_thresholds"] == [100_000, 50, 100]
        status, tuned = ops(port, "/performance/optimize/latency", "POST")
        assert status == 200
        assert tuned["changed"]["batch_size"] == {"from": 50_000, "to": 1000}
        # the worker's own short young collections on a frozen heap, not CPython's default
        assert tuned["changed"]["gc_thresholds"] == {"from": [100_000, 50, 100],
                                                     "to": [20_000, 10, 10]}  # fmt: skip
        assert tuned["now"]["gc_frozen_objects"] > 0
        assert ops(port, "/performance")[1]["tuning"]["batch_size"] == 1000
        status, collected = ops(port, "/performance/gc", "POST")
        assert status == 200 and collected["collected_objects"] >= 0

        status, problem = ops(port, "/nope")
        assert (status, problem["status"]) == (404, 404)
        assert ops(port, "/performance/gc")[0] == 405
    finally:
        started = time.monotonic()
        assert stop_worker(worker) == 0
        assert time.monotonic() - started < 10


def test_worker_not_ready_while_redis_is_unreachable_but_live(
    kafka_bootstrap: str, topic: str, redis_prefix: str
) -> None:
    produce_synthetic(kafka_bootstrap, topic, 1_000, 1)
    port = free_port()
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    worker = start_worker(worker_env(kafka_bootstrap, topic, f"nr-{topic}", redis_prefix,
                                     TRADEPULSE_HTTP_PORT=str(port),
                                     TRADEPULSE_REDIS_URL=dead_redis))  # fmt: skip
    try:

        def circuit_open() -> bool:
            try:
                return ops(port, "/health/ready")[1].get("circuit_open") is True
            except OSError:
                return False

        wait_until(circuit_open, worker, 60)
        status, ready = ops(port, "/health/ready")
        assert (status, ready["redis"]) == (503, False)
        assert ops(port, "/health/live")[0] == 200
        assert ops(port, "/health")[0] == 503
        parsed = samples(ops(port, "/metrics")[1])
        assert value(parsed, "tradepulse_redis_circuit_open") == 1
        assert value(parsed, "tradepulse_redis_errors_total") >= 1
        assert value(parsed, "tradepulse_trades_consumed_total") == 0  # nothing committed
    finally:
        started = time.monotonic()
        assert stop_worker(worker) == 0
        assert time.monotonic() - started < 10
    assert committed_total(kafka_bootstrap, topic, f"nr-{topic}", 1) == 0
