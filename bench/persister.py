"""Persister throughput: finalized bars from the Redis stream into PostgreSQL ``bars_1m``;
writes bench/results/persister.json.

    python bench/persister.py [--tokens T] [--minutes M] [--batch-sizes 500,5000] [--repeat K]
                              [--postgres DSN] [--redis URL]

What is measured: T × M (default 2,000 × 100 = 200,000) bars are added beforehand (not timed)
to a stream of its own (``tradepulse-bench-<hex>:bars.finalized``, one pipelined XADD per bar,
field ``bar`` = the msgspec JSON of the ``Bar``, as ``add_bar`` writes it); then
``run_persister(RedisBarStream, BarRepository, stop, batch_size=B)`` runs in a thread, timed
from its start until it has acknowledged every entry (it acknowledges only after PostgreSQL
committed the batch). Each batch size runs K times (default 2), interleaved, each time into an
emptied ``bars_1m`` from a fresh stream; the best run is reported, with the time spent inside
``read`` (XREADGROUP + decoding), ``upsert`` and ``ack`` (XACK).

Checks after each run: ``bars_1m`` holds exactly the bars sent (row count, Σ trades, Σ USD
volume, number of tokens), a random sample of 1,000 rows equals the bars sent field by field,
the stream's pending list is empty, and the persister saw no malformed entry and no retry.

Uses a database of its own, ``tp_bench_<hex>``, created through ``--postgres`` (default the
local ``test`` database) and migrated with ``tradepulse.adapters.postgres.migrate``; the
database and the Redis keys are removed at the end, also when a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np
import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo
from rich.console import Console
from rich.table import Table

from tradepulse.adapters.postgres import BarRepository, migrate
from tradepulse.adapters.redis_stream import BAR_FIELD, RedisBarStream, stream_key
from tradepulse.adapters.synthetic import random_names
from tradepulse.core.bars import MINUTE_MS, Bar
from tradepulse.service.persister import BarDelivery, PersisterStats, run_persister

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
SAMPLE = 1_000
TIMEOUT_S = 600.0


def make_bars(tokens: int, minutes: int, seed: int = 7) -> list[Bar]:
    """``tokens × minutes`` plausible bars, minute by minute (the order the worker emits)."""
    rng = np.random.default_rng(seed)
    names = random_names(rng, tokens, 40, "pump")
    n = tokens * minutes
    open_ = 10 ** rng.uniform(-8, -2, n)
    close = open_ * np.exp(rng.normal(0, 0.01, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    vwap = low + (high - low) * rng.uniform(0, 1, n)
    volume = rng.lognormal(15, 2, n)
    usd = volume * vwap
    buy = usd * rng.uniform(0, 1, n)
    trades = rng.integers(1, 500, n)
    columns = [c.tolist() for c in (open_, high, low, close, volume, usd, buy, usd - buy)]
    counts = trades.tolist()
    bars = []
    for i in range(n):
        o, h, lo, c, vol, u, b, s = (col[i] for col in columns)
        open_ms = START_MS + (i // tokens) * MINUTE_MS
        bars.append(Bar(names[i % tokens], open_ms, o, h, lo, c, vol, u, b, s, counts[i], u / vol))
    return bars


def publish(client: redis.Redis, key: str, bars: Sequence[Bar], chunk: int = 10_000) -> None:
    """XADD every bar (the same entry as ``add_bar``), pipelined."""
    encode = msgspec.json.Encoder().encode
    for i in range(0, len(bars), chunk):
        pipe = client.pipeline(transaction=False)
        for bar in bars[i : i + chunk]:
            pipe.xadd(key, {BAR_FIELD: encode(bar)})
        pipe.execute()
    assert client.xlen(key) == len(bars), "stream length after XADD"


class Timed:
    """A ``BarSource`` and ``BarSink`` in one: forwards, and sums the seconds per call."""

    def __init__(self, source: RedisBarStream, sink: BarRepository) -> None:
        self.source, self.sink = source, sink
        self.seconds = {"read": 0.0, "upsert": 0.0, "ack": 0.0}

    def read(self, max_count: int, block_ms: int) -> list[BarDelivery]:
        started = time.perf_counter()
        try:
            return self.source.read(max_count, block_ms)
        finally:
            self.seconds["read"] += time.perf_counter() - started

    def ack(self, entry_ids: Sequence[str]) -> None:
        started = time.perf_counter()
        try:
            self.source.ack(entry_ids)
        finally:
            self.seconds["ack"] += time.perf_counter() - started

    def upsert(self, bars: Sequence[Bar]) -> int:
        started = time.perf_counter()
        try:
            return self.sink.upsert(bars)
        finally:
            self.seconds["upsert"] += time.perf_counter() - started


def timed_run(client: redis.Redis, dsn: str, bars: list[Bar], batch_size: int) -> dict[str, object]:
    """One persister run over a fresh stream into an empty ``bars_1m``, checked."""
    prefix = f"tradepulse-bench-{uuid.uuid4().hex[:12]}:"
    stop = threading.Event()
    repo = BarRepository(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE bars_1m")
    try:
        publish(client, stream_key(prefix), bars)
        stream = RedisBarStream(client, prefix=prefix, group="bench", consumer="bench")
        timed, stats = Timed(stream, repo), PersisterStats()
        thread = threading.Thread(target=run_persister, args=(timed, timed, stop),
                                  kwargs={"batch_size": batch_size, "block_ms": 200,
                                          "stats": stats}, daemon=True)  # fmt: skip
        started = time.perf_counter()
        thread.start()
        while stats.acked < len(bars):
            if not thread.is_alive() or time.perf_counter() - started > TIMEOUT_S:
                raise SystemExit(f"persister stopped or stalled at {stats}")
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        inside = dict(timed.seconds)
        stop.set()
        thread.join()
        assert stats.written == len(bars), stats
        assert stats.malformed == 0 and stats.retries == 0, stats
        assert client.xpending(stream.key, stream.group)["pending"] == 0, "entries left pending"
        check_rows(dsn, bars)
    finally:
        stop.set()
        repo.close()
        client.delete(stream_key(prefix), *client.scan_iter(f"{prefix}*"))
    return {"batch_size": batch_size, "rows": len(bars), "seconds": seconds,
            "rows_per_s": len(bars) / seconds, "rounds": -(-len(bars) // batch_size),
            "seconds_inside": inside}  # fmt: skip


def check_rows(dsn: str, bars: list[Bar]) -> None:
    """``bars_1m`` holds exactly ``bars``: totals, and a sample compared field by field."""
    with psycopg.connect(dsn) as conn:
        rows, trades, usd, tokens = conn.execute(
            "SELECT count(*), sum(trades), sum(volume_usd), count(DISTINCT token) FROM bars_1m"
        ).fetchone() or (0, 0, 0.0, 0)
        assert rows == len(bars), f"bars_1m has {rows} rows, {len(bars)} were sent"
        assert trades == sum(b.trades for b in bars), "Σ trades differs"
        assert math.isclose(usd, math.fsum(b.volume_usd for b in bars), rel_tol=1e-9)
        assert tokens == len({b.token for b in bars}), "number of tokens differs"
        rng = np.random.default_rng(len(bars))
        sample = [bars[i] for i in rng.choice(len(bars), min(SAMPLE, len(bars)), replace=False)]
        stored = conn.execute(
            "SELECT b.token, b.open_ms, open, high, low, close, volume, volume_usd, "
            "buy_volume_usd, sell_volume_usd, trades, vwap, revision FROM bars_1m b "
            "JOIN unnest(%s::text[], %s::bigint[]) AS k(token, open_ms) USING (token, open_ms)",
            ([b.token for b in sample], [b.open_ms for b in sample]),
        ).fetchall()
    by_key = {(row[0], row[1]): row for row in stored}
    assert len(by_key) == len(sample), "sampled rows missing"
    for bar in sample:
        assert by_key[bar.token, bar.open_ms] == msgspec.structs.astuple(bar), bar


def scratch_database(admin_dsn: str, name: str, *, create: bool) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        else:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2_000)
    parser.add_argument("--minutes", type=int, default=100)
    parser.add_argument("--batch-sizes", default="500,5000")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    console = Console()
    bars = make_bars(args.tokens, args.minutes)
    client = redis.Redis.from_url(args.redis)
    name = f"tp_bench_{uuid.uuid4().hex[:12]}"
    scratch_database(args.postgres, name, create=True)
    runs: dict[int, list[dict[str, object]]] = {size: [] for size in sizes}
    try:
        dsn = make_conninfo(args.postgres, dbname=name)
        migrate(dsn)
        for round_ in range(1, args.repeat + 1):
            for size in sizes:
                with console.status(f"round {round_}/{args.repeat}: batch size {size:,}"):
                    runs[size].append(timed_run(client, dsn, bars, size))
    finally:
        scratch_database(args.postgres, name, create=False)
        client.close()
    results = {str(size): best(r) for size, r in runs.items()}
    report = {
        "benchmark": "persister",
        "rows": len(bars),
        "tokens": args.tokens,
        "minutes": args.minutes,
        "repeat": args.repeat,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "persister.json").write_text(json.dumps(report, indent=2) + "\n")
    show(console, report, results)


def best(runs: list[dict[str, object]]) -> dict[str, object]:
    top = dict(min(runs, key=lambda r: float(r["seconds"])))  # type: ignore[arg-type]
    top["all_rows_per_s"] = [r["rows_per_s"] for r in runs]
    return top


def show(
    console: Console, report: dict[str, object], results: dict[str, dict[str, object]]
) -> None:
    table = Table(title=f"persister, {report['rows']:,} bars (best of {report['repeat']})")
    for col in ("batch", "rows/s", "s", "read s", "upsert s", "ack s"):
        table.add_column(col, justify="right")
    for size, r in results.items():
        inside: dict[str, float] = r["seconds_inside"]  # type: ignore[assignment]
        table.add_row(f"{int(size):,}", f"{r['rows_per_s']:,.0f}", f"{r['seconds']:.2f}",
                      *(f"{inside[k]:.2f}" for k in ("read", "upsert", "ack")))  # fmt: skip
    console.print(table)
    console.print(f"results: {RESULTS / 'persister.json'}")


if __name__ == "__main__":
    main()
