"""Composition of the ``tradepulse persist`` process: the bar persister (in the calling
thread), the alert persister and the stream upkeep (daemon threads), and the operations
endpoints on ``TRADEPULSE_HTTP_HOST:TRADEPULSE_PERSIST_HTTP_PORT``."""

from __future__ import annotations

import threading

import msgspec
import redis

from tradepulse.adapters.clock import wall_now_ms
from tradepulse.adapters.ops_http import OpsServer
from tradepulse.adapters.postgres_base import reachable
from tradepulse.adapters.redis_trim import RedisStreamUpkeep
from tradepulse.config import Settings
from tradepulse.service.ops import Tuning
from tradepulse.service.persister import PersisterStats, run_persister
from tradepulse.service.persister_ops import PersisterOps
from tradepulse.service.upkeep import UpkeepState, run_upkeep

BARS, ALERTS = "bars.finalized", "alerts"


class PersistRun(msgspec.Struct):
    """The counts of a finished ``run_persist``, by stream."""

    bars: PersisterStats
    alerts: PersisterStats


def stream_upkeeps(settings: Settings, client: redis.Redis) -> list[RedisStreamUpkeep]:
    """``bars.finalized`` trimmed to what every group acknowledged; ``alerts`` also keeps
    ``TRADEPULSE_ALERTS_RETENTION`` of acknowledged entries (readers resume from it by id)."""
    prefix, group = settings.redis_prefix, settings.persist_group
    return [
        RedisStreamUpkeep(client, f"{prefix}{BARS}", BARS, group),
        RedisStreamUpkeep(
            client, f"{prefix}{ALERTS}", ALERTS, group, keep_ms=settings.alerts_retention_ms
        ),
    ]


def upkeep_in_thread(
    settings: Settings, stop: threading.Event, state: UpkeepState
) -> threading.Thread:
    """The stream upkeep (backlog gauge, trimming) in a daemon thread until ``stop``."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    streams = stream_upkeeps(settings, client)
    thread = threading.Thread(target=run_upkeep, args=(streams, stop, state),
                              kwargs={"now_ms": wall_now_ms}, name="stream-upkeep",
                              daemon=True)  # fmt: skip
    thread.start()
    return thread


def persister_ops(settings: Settings, loops: dict[str, PersisterStats], state: UpkeepState,
                  tuning: Tuning) -> PersisterOps:  # fmt: skip
    """The operations backend; readiness pings Redis and connects to PostgreSQL."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)

    def redis_ok() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    checks = {"redis": redis_ok, "postgres": lambda: reachable(settings.pg_dsn)}
    return PersisterOps(loops, state, tuning, checks)


def run_persist(settings: Settings, stop: threading.Event) -> PersistRun:
    """Serve the operations endpoints (``OSError`` when the port cannot be bound), check the
    stores (``TradepulseError``), then persist bars and alerts and keep the streams trimmed
    until ``stop`` is set."""
    from tradepulse.wiring import alerts_in_thread, build_persister

    run = PersistRun(PersisterStats(), PersisterStats())
    state = UpkeepState()
    tuning = Tuning(batch_size=settings.persist_batch_size, batch_wait_ms=1_000)
    ops = persister_ops(settings, {BARS: run.bars, ALERTS: run.alerts}, state, tuning)
    server = OpsServer(ops, settings.http_host, settings.persist_http_port).start()
    try:
        stream, repo = build_persister(settings)
        with repo:
            alerts = alerts_in_thread(settings, stop, stats=run.alerts, tuning=tuning)
            upkeep = upkeep_in_thread(settings, stop, state)
            run_persister(stream, repo, stop, batch_size=settings.persist_batch_size,
                          stats=run.bars, tuning=tuning)  # fmt: skip
        alerts.join(timeout=5)
        upkeep.join(timeout=5)
    finally:
        stop.set()
        server.stop()
    return run
