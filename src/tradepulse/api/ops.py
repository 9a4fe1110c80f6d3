"""Operations endpoints of the api process (the worker's surface, ARCHITECTURE §8)::

    GET  /health                          live and ready (503 when not ready)
    GET  /health/live                     the event loop answers
    GET  /health/ready                    Redis answers a PING (PostgreSQL reported only:
                                          the live statistics do not need it)
    GET  /metrics                         Prometheus text exposition (default registry)
    GET  /metrics/json                    the same samples as JSON
    GET  /performance                     memory, CPU, threads, GC of this process
    POST /performance/gc                  full garbage collection now
    POST /performance/optimize/throughput rare GC of a frozen heap
    POST /performance/optimize/latency    default GC thresholds, heap unfrozen

The api process has no batch loop, so ``optimize`` changes only the garbage collector and
answers what changed.
"""

from __future__ import annotations

import gc
import os
import threading
import time

import anyio
import anyio.to_thread
import psutil
import redis
from litestar import Response, Router, get, post

from tradepulse import metrics
from tradepulse.adapters.ops_http import PROMETHEUS_CONTENT_TYPE
from tradepulse.api.context import ApiContext, Ctx
from tradepulse.core.errors import StoreUnavailableError

READY_TIMEOUT_S = 2.0
_GC_GOALS = {"throughput": (100_000, 50, 100), "latency": (700, 10, 10)}

Body = dict[str, object]


def _reply(ok: bool, body: Body) -> Response[Body]:
    return Response(body, status_code=200 if ok else 503)


def _live(ctx: ApiContext) -> Body:
    return {"pid": os.getpid(), "uptime_s": round(time.time() - ctx.started_s, 3)}


async def _redis_ok(ctx: ApiContext) -> bool:
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            return await ctx.live.ping()
    except (redis.RedisError, OSError, TimeoutError):
        return False


async def _postgres(ctx: ApiContext) -> Body:
    try:
        await anyio.to_thread.run_sync(ctx.history.check)
    except StoreUnavailableError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True}


async def _ready(ctx: ApiContext) -> tuple[bool, Body]:
    redis_ok = await _redis_ok(ctx)
    return redis_ok, {"redis": redis_ok, "postgres": await _postgres(ctx)}


@get("/health", opt={"query": ()})
async def health(ctx: Ctx) -> Response[Body]:
    ready, body = await _ready(ctx)
    return _reply(ready, {"status": "ok" if ready else "not_ready", "live": True,
                          "ready": ready, **_live(ctx), **body})  # fmt: skip


@get("/health/live", opt={"query": ()})
async def health_live(ctx: Ctx) -> Body:
    return {"live": True, **_live(ctx)}


@get("/health/ready", opt={"query": ()})
async def health_ready(ctx: Ctx) -> Response[Body]:
    ready, body = await _ready(ctx)
    return _reply(ready, {"ready": ready, **body})


@get("/metrics", opt={"query": ()}, media_type=PROMETHEUS_CONTENT_TYPE)
async def metrics_text() -> bytes:
    return metrics.exposition()


@get("/metrics/json", opt={"query": ()})
async def metrics_json() -> Body:
    return metrics.snapshot()


def _gc_state() -> Body:
    return {"gc_thresholds": list(gc.get_threshold()), "gc_frozen_objects": gc.get_freeze_count()}


@get("/performance", opt={"query": ()}, sync_to_thread=False)
def performance(ctx: Ctx) -> Body:
    proc = psutil.Process()
    cpu = proc.cpu_times()
    return {**_live(ctx), "rss_bytes": proc.memory_info().rss, "cpu_user_s": cpu.user,
            "cpu_system_s": cpu.system, "threads": threading.active_count(),
            "gc_counts": list(gc.get_count()), **_gc_state()}  # fmt: skip


@post("/performance/gc", opt={"query": ()}, status_code=200, sync_to_thread=True)
def collect_garbage() -> Body:
    """A full collection now (in a worker thread): objects freed, memory before/after."""
    proc = psutil.Process()
    before = proc.memory_info().rss
    started = time.perf_counter()
    freed = gc.collect()
    return {"collected_objects": freed, "rss_before_bytes": before,
            "rss_after_bytes": proc.memory_info().rss,
            "seconds": round(time.perf_counter() - started, 6)}  # fmt: skip


def _optimize(goal: str) -> Body:
    """``throughput``: freeze the heap and collect rarely; ``latency``: unfreeze and the
    default thresholds. Answers ``{goal, changed: {key: {from, to}}, now}``."""
    before = _gc_state()
    if goal == "throughput":
        gc.freeze()
    else:
        gc.unfreeze()
    gc.set_threshold(*_GC_GOALS[goal])
    after = _gc_state()
    changed = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    return {"goal": goal, "changed": changed, "now": after}


@post("/performance/optimize/throughput", opt={"query": ()}, status_code=200, sync_to_thread=False)
def optimize_throughput() -> Body:
    return _optimize("throughput")


@post("/performance/optimize/latency", opt={"query": ()}, status_code=200, sync_to_thread=False)
def optimize_latency() -> Body:
    return _optimize("latency")


OPS_HANDLERS = [health, health_live, health_ready, metrics_text, metrics_json, performance,
                collect_garbage, optimize_throughput, optimize_latency]  # fmt: skip
ops_router = Router("/", route_handlers=OPS_HANDLERS)
