"""API latency and WebSocket fan-out against a real ``tradepulse api`` process on loopback;
writes bench/results/api.json.

    python bench/api.py [--tokens 3000] [--rate 1000] [--seconds 5] [--clients 1000,10000]
                        [--redis URL]

1. ``--tokens`` tokens (about 20 trades each, five windows) are written to Redis under a
   prefix of their own through ``RedisStore.write``, the workers' write path.
2. ``tradepulse api`` starts as a child process on a free port (``ulimit -n`` raised to the
   hard limit first, inherited by the child).
3. REST, open loop: requests are scheduled at ``--rate`` per second for ``--seconds`` and
   sent over 64 keep-alive connections; latency is measured from the *scheduled* time (a
   server that falls behind is charged for the queueing: no coordinated omission). First
   ``GET /api/v1/tokens/{addr}`` (random tokens), then ``GET /api/v1/tokens?sort=...``.
   Before each, the closed-loop capacity (8 connections, 2 s) is measured; when it is below
   1.1 × the target, the paced run uses 80 % of the capacity instead (the highest rate it
   sustains) and says so. Every answer must be 200 and a detail must name its token.
4. WebSocket fan-out: N clients connect (one admin token: the per-user limit raised), all
   subscribe to ``alerts`` (the heartbeat is set to 10 min: these clients never talk, and
   connecting 10,000 of them takes longer than two default heartbeats); alerts are added to
   the stream at a paced rate; the latency of a delivery is the client's receive time minus
   the stream entry's id time (Redis's clock: same host). The clients run in this process,
   on the same cores as the server: their receive cost is part of the figure. The server's
   own view (``ws_alert_delivery_seconds``: stream entry to frame written) is read from its
   ``/metrics`` before and after, reported as the bucket bound holding p50/p99. Checked:
   every client received every alert exactly once.

Bounded: about two minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import redis
import websockets
from rich.console import Console
from rich.table import Table

from tradepulse.adapters.redis_alerts import ALERT_FIELD, stream_key
from tradepulse.adapters.redis_store import RedisStore, TokenUpdate
from tradepulse.api.auth import issue_token
from tradepulse.core.alerts import Alert
from tradepulse.core.trade import Trade
from tradepulse.core.windows import TokenWindows, parse_windows

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SECRET = "bench-secret-0123456789abcdef0123456789"
SPECS = parse_windows("1min,5min,15min,30min,1hour")
SORT = "-window.5min.total_volume"
CONNECTIONS = 64


def seed_tokens(client: redis.Redis, prefix: str, n: int) -> list[str]:
    rnd = random.Random(7)
    now_ms = int(time.time() * 1000)
    store, tokens, updates = RedisStore(client, prefix=prefix), [], []
    for i in range(n):
        token = f"BENCH{i:05d}"
        tw = TokenWindows(SPECS)
        for k in range(20):
            amount, price = rnd.uniform(1, 1e4), rnd.uniform(1e-6, 1e-3)
            ts = now_ms - rnd.randrange(3_000_000)
            tw.add(Trade(token, f"w{rnd.randrange(50)}", rnd.random() < 0.5, 0.1, amount, price,
                         amount * price, ts, f"tx{k}", 0), ts)  # fmt: skip
        updates.append(TokenUpdate(token, tw.sync_view(full=True), tw.stats(now_ms),
                                   tw.newest_ms, now_ms))  # fmt: skip
        tokens.append(token)
        if len(updates) == 500:
            assert store.write(updates) == []
            updates = []
    assert store.write(updates) == []
    return tokens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(redis_url: str, prefix: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TRADEPULSE_REDIS_URL": redis_url, "TRADEPULSE_REDIS_PREFIX": prefix,
           "TRADEPULSE_JWT_SECRET": SECRET, "TRADEPULSE_WS_MAX_PER_USER": "100000",
           "TRADEPULSE_WS_SEND_QUEUE": "10000", "TRADEPULSE_WS_HEARTBEAT": "10min",
           "LOG_LEVEL": "WARN"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "tradepulse", "api", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("tradepulse api exited at start") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("tradepulse api did not start in 30 s")


async def http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   path: str) -> tuple[int, bytes]:  # fmt: skip
    """One keep-alive HTTP/1.1 GET: (status, body)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def open_loop(port: int, paths: list[str], rate: float, seconds: float,
                    check: Any) -> dict[str, float]:  # fmt: skip
    """Requests scheduled at ``rate``/s; latency from the scheduled time (ms)."""
    total = int(rate * seconds)
    queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
    latencies: list[float] = []
    start = time.perf_counter() + 0.2

    async def schedule() -> None:
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((due, paths[i % len(paths)]))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            due, path = await queue.get()
            status, body = await http_get(reader, writer, path)
            latencies.append(time.perf_counter() - due)
            check(path, status, body)
            queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(CONNECTIONS)]
    await schedule()
    await queue.join()
    elapsed = time.perf_counter() - start
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    ms = np.array(latencies) * 1000
    return {"target_rps": rate, "achieved_rps": round(total / elapsed, 1), "requests": total,
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2)}  # fmt: skip


async def capacity(port: int, paths: list[str], seconds: float, check: Any) -> float:
    """Closed loop, 8 connections: responses per second."""
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        while time.perf_counter() < stop:
            path = paths[i % len(paths)]
            check(path, *(await http_get(reader, writer, path)))
            done += 1
            i += 8
        writer.close()

    await asyncio.gather(*(worker(k) for k in range(8)))
    return done / seconds


def check_ok(path: str, status: int, body: bytes) -> None:
    if status != 200:
        raise AssertionError(f"GET {path}: status {status}")
    if "/tokens/" in path and json.loads(body)["token"] != path.rsplit("/", 1)[1]:
        raise AssertionError(f"GET {path}: another token answered")


async def rest(port: int, tokens: list[str], rate: float, seconds: float) -> dict[str, Any]:
    rnd = random.Random(3)
    detail = [f"/api/v1/tokens/{rnd.choice(tokens)}" for _ in range(5_000)]
    listing = [f"/api/v1/tokens?sort={SORT}&limit=50"]
    out: dict[str, Any] = {}
    for name, paths in (("token_detail", detail), ("token_list_sorted", listing)):
        cap = await capacity(port, paths, 2.0, check_ok)
        target = rate if cap >= 1.1 * rate else max(1.0, round(0.8 * cap))
        run = await open_loop(port, paths, target, seconds, check_ok)
        out[name] = {"capacity_rps": round(cap, 1), "runs": [run],
                     "sustains_target": target == rate}  # fmt: skip
    return out


async def fanout(port: int, client: redis.Redis, prefix: str, clients: int,
                 alerts: int, rate: float) -> dict[str, Any]:  # fmt: skip
    token = issue_token(SECRET, "HS256", "bench", admin=True, ttl_s=3600,
                        now_s=int(time.time()))  # fmt: skip
    url = f"ws://127.0.0.1:{port}/ws"
    headers = {"Authorization": f"Bearer {token}"}
    sockets = []
    for i in range(0, clients, 200):
        sockets += await asyncio.gather(*(websockets.connect(url, additional_headers=headers,
                                                             compression=None, open_timeout=60)
                                          for _ in range(min(200, clients - i))))  # fmt: skip
    for ws in sockets:
        await ws.send('{"op":"subscribe","channel":"alerts"}')
    for ws in sockets:
        reply = json.loads(await ws.recv())
        while reply["type"] == "heartbeat":
            reply = json.loads(await ws.recv())
        assert reply["type"] == "subscribed", reply
    latencies: list[float] = []
    counts = [dict[str, int]() for _ in sockets]

    async def receive(k: int, ws: Any) -> None:
        while sum(counts[k].values()) < alerts:
            message = json.loads(await ws.recv())
            if message["type"] == "alert":
                now = time.time()
                counts[k][message["id"]] = counts[k].get(message["id"], 0) + 1
                latencies.append(now - int(message["id"].split("-")[0]) / 1000)

    receivers = [asyncio.create_task(receive(k, ws)) for k, ws in enumerate(sockets)]
    started = time.perf_counter()
    for i in range(alerts):
        body = Alert(str(uuid.uuid4()), "bench-rule", "bench", 1, "BENCH00001", i, {"x": 1.0},
                     {}, 0, "bench")  # fmt: skip
        await asyncio.to_thread(client.xadd, stream_key(prefix),
                                {ALERT_FIELD: msgspec.json.encode(body)})  # fmt: skip
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
    await asyncio.wait_for(asyncio.gather(*receivers), timeout=60)
    for ws in sockets:
        await ws.close()
    exact = all(len(c) == alerts and set(c.values()) == {1} for c in counts)
    ms = np.array(latencies) * 1000
    return {"clients": clients, "alerts": alerts, "alert_rate": rate,
            "deliveries": len(latencies), "exactly_once": exact,
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2)}  # fmt: skip


def delivery_buckets(port: int) -> dict[float, float]:
    """The api's ``ws_alert_delivery_seconds`` histogram: upper bound -> cumulative count."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("tradepulse_ws_alert_delivery_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(bound)] = float(line.rsplit(" ", 1)[1])
    return out


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound (ms) of the bucket holding quantile ``q`` of what was added."""
    total = after[float("inf")] - before.get(float("inf"), 0.0)
    for bound in sorted(after):
        if after[bound] - before.get(bound, 0.0) >= q * total:
            return bound * 1000
    return float("inf")


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def table(results: dict[str, Any]) -> Table:
    out = Table(title="tradepulse api")
    for col in ("measure", "rate", "p50 ms", "p99 ms", "max ms", "note"):
        out.add_column(col)
    for name, entry in results["rest"].items():
        for run in entry["runs"]:
            out.add_row(name, f"{run['achieved_rps']}/{run['target_rps']:.0f} req/s",
                        str(run["p50_ms"]), str(run["p99_ms"]), str(run["max_ms"]),
                        f"capacity {entry['capacity_rps']} req/s")  # fmt: skip
    for run in results["fanout"]:
        out.add_row(f"ws alerts x{run['clients']}", f"{run['alert_rate']} alerts/s",
                    str(run["p50_ms"]), str(run["p99_ms"]), str(run["max_ms"]),
                    f"{run['deliveries']} sent, once each: {run['exactly_once']}; server "
                    f"p50 <= {run['server_p50_ms_at_most']:g} ms, "
                    f"p99 <= {run['server_p99_ms_at_most']:g} ms")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=3_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1000,10000")
    parser.add_argument("--redis", default=os.environ.get("TRADEPULSE_REDIS_URL",
                                                          "redis://127.0.0.1:6379/0"))  # fmt: skip
    args = parser.parse_args()
    nofile = raise_nofile()
    client = redis.Redis.from_url(args.redis)
    prefix = f"tradepulse-bench-{uuid.uuid4().hex[:12]}:"
    port = free_port()
    proc = None
    try:
        tokens = seed_tokens(client, prefix, args.tokens)
        proc = start_api(args.redis, prefix, port)
        results: dict[str, Any] = {"tokens": args.tokens, "nofile": nofile,
                                   "machine": f"{platform.machine()} {os.cpu_count()} cpus"}
        results["rest"] = asyncio.run(rest(port, tokens, args.rate, args.seconds))
        results["fanout"] = []
        for n in (int(c) for c in args.clients.split(",")):
            if n + 100 > nofile:
                print(f"skipping {n} clients: ulimit -n is {nofile}")
                continue
            alerts, rate = (50, 10.0) if n <= 2_000 else (10, 1.0)
            before = delivery_buckets(port)
            run = asyncio.run(fanout(port, client, prefix, n, alerts, rate))
            after = delivery_buckets(port)
            run["server_p50_ms_at_most"] = bucket_quantile(before, after, 0.5)
            run["server_p99_ms_at_most"] = bucket_quantile(before, after, 0.99)
            results["fanout"].append(run)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "api.json").write_text(json.dumps(results, indent=2) + "\n")
        Console().print(table(results))
        if not all(run["exactly_once"] for run in results["fanout"]):
            raise SystemExit("some client missed or repeated an alert")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)


if __name__ == "__main__":
    main()
