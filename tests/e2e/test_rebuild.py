"""``tradepulse rebuild`` against a real broker and the real Redis: a worker's state, lost
(this test's keys flushed), is rebuilt token by token; records older than the start are
skipped on the scan path (the Tansu broker has no offsets by time); nothing is committed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import msgspec
import pytest
import redis
from confluent_kafka import Producer

from tests.support.workers import (
    committed_total,
    final_bars,
    produce_synthetic,
    start_worker,
    stop_worker,
    wait_until,
    worker_env,
)
from tradepulse.adapters.clock import wall_now_ms
from tradepulse.adapters.kafka import ensure_topic
from tradepulse.adapters.kafka_rebuild import RebuildReader
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.config import load_settings
from tradepulse.service.rebuild import rebuild
from tradepulse.wiring import build_rebuild

TRADES = 6_000
HOUR_MS = 3_600_000
ON_TANSU = not os.environ.get("TRADEPULSE_KAFKA_BOOTSTRAP")


def snapshot(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Everything a rebuild restores: per token its windows, trades list, forming bar and
    indicators; the active index, the watermarks and the newest revision of each bar."""
    store = RedisStore(client, prefix=prefix)
    active = client.zrange(store.active_key, 0, -1, withscores=True)
    tokens = {}
    for raw, _ in active:
        token = raw.decode()
        livebar, ind = (client.get(k) for k in store.bar_keys(token)[1:])
        tokens[token] = (store.read_stats(token), store.read_trades(token), livebar, ind)
    return {"active": active, "watermarks": store.read_watermarks(), "tokens": tokens,
            "bars": final_bars(store, client)}  # fmt: skip


def flush(client: redis.Redis, prefix: str) -> None:
    """Redis lost this test's data (only its keys: other tests share the server)."""
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    assert not list(client.scan_iter(match=prefix + "*"))


def run_rebuild(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tradepulse", "rebuild", *args], env=env,
                          capture_output=True, timeout=300, check=False)  # fmt: skip


def test_rebuild_after_redis_lost_restores_every_token_as_the_worker_left_it(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    group = f"rb-{topic}"
    env = worker_env(kafka_bootstrap, topic, group, redis_prefix, TRADEPULSE_RULES="off")
    produce_synthetic(kafka_bootstrap, topic, TRADES, 2, event_rate=80)  # 75 s: bars final
    worker = start_worker(env)
    try:
        wait_until(lambda: committed_total(kafka_bootstrap, topic, group, 2) == TRADES, worker)
        time.sleep(1.5)  # maintenance sweeps (every 200 ms) write every token at the clock
    finally:
        assert stop_worker(worker) == 0
    before = snapshot(redis_client, redis_prefix)
    assert len(before["tokens"]) > 100 and before["bars"]
    flush(redis_client, redis_prefix)

    done = run_rebuild(env, "--json", "--idle", "2s")
    assert done.returncode == 0, done.stderr.decode()
    summary = msgspec.json.decode(done.stdout)
    assert summary["partitions"] == [0, 1] and summary["messages"] == TRADES
    assert (summary["skipped"], summary["tokens"]) == (0, len(before["tokens"]))
    assert summary["by_timestamp"] is not ON_TANSU
    assert b"rebuilt partitions [0, 1]: 6,000 messages" in done.stderr

    after = snapshot(redis_client, redis_prefix)
    assert after["active"] == before["active"]
    assert after["watermarks"] == before["watermarks"]
    for token, state in before["tokens"].items():
        assert after["tokens"][token] == state, token
    assert after["bars"] == before["bars"]
    assert committed_total(kafka_bootstrap, topic, group, 2) == TRADES  # nothing committed


def wire(token: str, i: int, at_ms: int) -> bytes:
    return msgspec.json.encode({"token": token, "wallet": f"w{i % 7}", "sell_buy": "buy",
                                "native_amount": 1.0, "token_amount": 2.0, "price_usd": 1.5,
                                "trans_time": at_ms, "tx_hash": f"tx{i}"})  # fmt: skip


def produce_old_and_new(bootstrap: str, topic: str, now_ms: int) -> None:
    """60 records stamped (and traded) 2 hours ago, then 90 stamped a minute ago; token
    ``OLDk``/``NEWk`` in partition ``k % 2`` (NEW1 and NEW3: 36 records in partition 1)."""
    ensure_topic(bootstrap, topic, 2)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(150):
        name, k = ("OLD", i % 3) if i < 60 else ("NEW", i % 5)
        at_ms = now_ms - (2 * HOUR_MS if i < 60 else 60_000) + i
        producer.produce(topic, key=f"{name}{k}", value=wire(f"{name}{k}", i, at_ms),
                         partition=k % 2, timestamp=at_ms)  # fmt: skip
    assert producer.flush(30) == 0


@pytest.mark.parametrize("forced", [False, None], ids=["scan-forced", "detected"])
def test_rebuild_scan_path_skips_records_stamped_before_the_start(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str,
    forced: bool | None,
) -> None:  # fmt: skip
    produce_old_and_new(kafka_bootstrap, topic, wall_now_ms())
    env = worker_env(kafka_bootstrap, topic, f"rb-{topic}", redis_prefix)
    settings = load_settings({k: v for k, v in env.items() if k.startswith("TRADEPULSE_")},
                             dotenv=None)  # fmt: skip
    reader, pipeline = build_rebuild(settings, HOUR_MS, idle_ms=1_500, by_timestamp=forced)
    try:
        summary = rebuild(reader, pipeline)
    finally:
        reader.close()
    assert summary.by_timestamp is (False if forced is False else not ON_TANSU)
    skipped = 0 if summary.by_timestamp else 60  # by time, the old ones are never read
    assert (summary.messages, summary.skipped, summary.tokens) == (90, skipped, 5)
    active = {t.decode() for t in redis_client.zrange(f"{redis_prefix}tokens:active", 0, -1)}
    assert active == {f"NEW{i}" for i in range(5)}
    stats = RedisStore(redis_client, prefix=redis_prefix).read_stats("NEW0")
    assert stats["1hour"].trade_count == 18


def test_rebuild_partitions_option_reads_only_those(
    kafka_bootstrap: str, topic: str, redis_prefix: str
) -> None:
    produce_old_and_new(kafka_bootstrap, topic, wall_now_ms())
    env = worker_env(kafka_bootstrap, topic, f"rb-{topic}", redis_prefix)
    settings = load_settings({k: v for k, v in env.items() if k.startswith("TRADEPULSE_")},
                             dotenv=None)  # fmt: skip
    reader, pipeline = build_rebuild(settings, HOUR_MS, [1], idle_ms=1_500)
    try:
        assert isinstance(reader, RebuildReader) and reader.partitions == (1,)
        summary = rebuild(reader, pipeline)
    finally:
        reader.close()
    assert (summary.partitions, summary.messages, summary.tokens) == ([1], 36, 2)


@pytest.mark.parametrize(("args", "named"), [
    (["--since", "30min"], "--since"), (["--partitions", "0,7"], "--partitions"),
    (["--partitions", "x"], "--partitions"), (["--since", "soon"], "--since"),
])  # fmt: skip
def test_rebuild_bad_option_exits_2_naming_it(
    kafka_bootstrap: str, topic: str, redis_prefix: str, args: list[str], named: str
) -> None:
    ensure_topic(kafka_bootstrap, topic, 2)
    done = run_rebuild(worker_env(kafka_bootstrap, topic, f"rb-{topic}", redis_prefix), *args)
    assert done.returncode == 2
    assert named in done.stderr.decode()


def test_rebuild_help_describes_every_option() -> None:
    from typer.testing import CliRunner

    from tradepulse.cli import app

    result = CliRunner().invoke(app, ["rebuild", "--help"])
    assert result.exit_code == 0
    for option in ("--since", "--partitions", "--idle", "--json"):
        assert option in result.stdout
