"""Composition root: Settings -> adapters -> service. The only module that picks concrete
adapters for the service layer."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import redis

from tradepulse import logs, metrics
from tradepulse.adapters.clock import WallClock, wall_now_ms
from tradepulse.adapters.kafka import DeadLetterProducer, TradeConsumer, ensure_topic
from tradepulse.adapters.ops_http import OpsServer
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.config import Settings
from tradepulse.core.clock import EventClock
from tradepulse.core.market import Market
from tradepulse.service import runner
from tradepulse.service.ops import LocalOps, Tuning, WorkerState
from tradepulse.service.pipeline import Pipeline


def configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)


class Worker(msgspec.Struct):
    """One worker process: its consumer, pipeline and operations surface."""

    consumer: TradeConsumer
    pipeline: Pipeline
    ops: LocalOps


def run_worker(
    settings: Settings, stop: threading.Event, host: str, port: int, port_file: Path | None = None
) -> Worker:
    """Build a worker, serve its operations endpoints on ``host:port`` (the port actually
    bound is written to ``port_file`` when given) and process batches until ``stop`` is
    set. Returns the worker (for its final counts)."""
    worker = build_worker(settings)
    server = OpsServer(worker.ops, host, port).start()
    if port_file is not None:
        partial = port_file.with_suffix(".partial")
        partial.write_text(str(server.port))
        partial.replace(port_file)
    try:
        runner.run(worker.consumer, worker.pipeline, stop, tuning=worker.ops.tuning,
                   state=worker.ops.state,
                   maintenance_interval_ms=settings.maintenance_interval_ms,
                   stale_after_ms=settings.stale_after_ms)  # fmt: skip
    finally:
        server.stop()
    return worker


def build_worker(settings: Settings) -> Worker:
    """The consumer, pipeline and operations surface of one worker process (creates the
    dead-letter topic if missing). Raises ``TradepulseError`` subclasses when a service
    cannot be reached."""
    clock = EventClock() if settings.clock == "event" else WallClock()
    ensure_topic(settings.kafka_bootstrap, settings.dlq_topic, 1)
    store = RedisStore(
        redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5),
        prefix=settings.redis_prefix,
        ttl_s=settings.windows[-1].duration_ms // 1000,
    )
    pipeline = Pipeline(
        Market(settings.windows),
        clock,
        store,
        DeadLetterProducer(settings.kafka_bootstrap, settings.dlq_topic),
        wall_ms=wall_now_ms,
        max_future_skew_ms=settings.max_future_skew_ms,
    )

    state = WorkerState()

    def assigned(partitions: list[int]) -> None:
        """The event clock reads the partitions assigned, continuing from the newest trade
        times the last owner stored (a restart re-reads only what was not committed)."""
        state.assigned = tuple(partitions)
        metrics.ASSIGNED_PARTITIONS.set(len(partitions))
        pipeline.assign(partitions)

    consumer = TradeConsumer(
        settings.kafka_bootstrap,
        settings.kafka_topic,
        settings.kafka_group,
        on_assign=assigned,
        on_revoke=pipeline.forget,
    )
    tuning = Tuning(batch_size=settings.batch_size, batch_wait_ms=settings.batch_wait_ms)
    return Worker(consumer, pipeline, LocalOps(state, tuning, store.ping))
