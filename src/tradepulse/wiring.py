"""Composition root: Settings -> adapters -> service. The only module that picks concrete
adapters for the service layer."""

from __future__ import annotations

import gc
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec
import redis

from tradepulse import logs, metrics
from tradepulse.adapters.clock import WallClock, wall_now_ms
from tradepulse.adapters.kafka import DeadLetterProducer, TradeConsumer, ensure_topic
from tradepulse.adapters.ops_http import OpsServer
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.config import Settings
from tradepulse.core.clock import NEVER, EventClock
from tradepulse.core.errors import TradepulseError
from tradepulse.core.market import Market
from tradepulse.service import runner
from tradepulse.service.ops import WORKER_GC, LocalOps, Tuning, WorkerState
from tradepulse.service.pipeline import DeadLetters, Pipeline
from tradepulse.service.runner import RuleFeed

if TYPE_CHECKING:
    from tradepulse.adapters.kafka_rebuild import RebuildReader
    from tradepulse.adapters.postgres import BarRepository
    from tradepulse.adapters.redis_stream import RedisBarStream
    from tradepulse.service.persister import PersisterStats


def configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)


class Worker(msgspec.Struct):
    """One worker process: its consumer, pipeline and operations surface."""

    consumer: TradeConsumer
    pipeline: Pipeline
    ops: LocalOps


def rule_feed(settings: Settings) -> RuleFeed | None:
    """The worker's rules: ``TRADEPULSE_RULES`` = ``db`` (the rule store, reloaded on
    ``rules.updated``), ``off``, or a JSON file."""
    from tradepulse.adapters.rule_feeds import FileRules, StoreRules

    windows = [w.name for w in settings.windows]
    if settings.rules == "off":
        return None
    if settings.rules != "db":
        return FileRules(Path(settings.rules), windows, settings.scan_interval_ms)
    from tradepulse.adapters.postgres_rules import RuleRepository

    repository: list[RuleRepository] = []

    def store() -> RuleRepository:
        if not repository:
            repository.append(RuleRepository(settings.pg_dsn))
        return repository[0]

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    channel = f"{settings.redis_prefix}rules.updated"
    return StoreRules(store, windows, settings.scan_interval_ms, client, channel)


class _Checked(Protocol):
    def check_schema(self) -> None: ...

    def close(self) -> None: ...


class _Group(Protocol):
    def ensure_group(self) -> None: ...


R = TypeVar("R", bound=_Checked)


def _reader_options(settings: Settings) -> dict[str, Any]:
    """The consumer-group options of a persister's stream reader (bars or alerts)."""
    return {
        "prefix": settings.redis_prefix,
        "group": settings.persist_group,
        "consumer": settings.persist_consumer or socket.gethostname(),
        "claim_idle_ms": settings.persist_claim_idle_ms,
    }


def _redis_for_streams(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)


def _checked(stream: _Group, repo: R) -> R:
    """``repo`` once its schema is there and ``stream``'s consumer group exists (closed and
    ``TradepulseError`` raised otherwise)."""
    try:
        repo.check_schema()
        stream.ensure_group()
    except TradepulseError:
        repo.close()
        raise
    return repo


def _daemon(name: str, work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread


def build_persister(settings: Settings) -> tuple[RedisBarStream, BarRepository]:
    """The bar stream reader and the PostgreSQL repository of a persister, checked: the
    schema is migrated and the consumer group exists (``TradepulseError`` otherwise)."""
    from tradepulse.adapters.postgres import BarRepository
    from tradepulse.adapters.redis_stream import RedisBarStream

    stream = RedisBarStream(_redis_for_streams(settings), **_reader_options(settings))
    return stream, _checked(stream, BarRepository(settings.pg_dsn))


def alerts_in_thread(
    settings: Settings,
    stop: threading.Event,
    *,
    stats: PersisterStats | None = None,
    tuning: Tuning | None = None,
) -> threading.Thread:
    """The alert persister (``{prefix}alerts`` → PostgreSQL ``alerts``) in a daemon thread
    until ``stop`` (checked first: raises ``TradepulseError``)."""
    from tradepulse.adapters.postgres_alerts import AlertRepository
    from tradepulse.adapters.redis_alerts import alert_stream
    from tradepulse.service.alert_persister import run_alert_persister

    stream = alert_stream(_redis_for_streams(settings), **_reader_options(settings))
    repo = _checked(stream, AlertRepository(settings.pg_dsn))

    def persist() -> None:
        try:
            run_alert_persister(stream, repo, stop, batch_size=settings.persist_batch_size,
                                stats=stats, tuning=tuning)  # fmt: skip
        finally:
            repo.close()

    return _daemon("alert-persister", persist)


def persist_in_thread(settings: Settings, stop: threading.Event) -> threading.Thread:
    """The bar and alert persisters and their stream upkeep (backlog gauge, trimming)
    running in daemon threads until ``stop`` (checked first: raises ``TradepulseError``
    when PostgreSQL or the schema is missing). Returns the bar persister's thread (it stops
    with the others)."""
    from tradepulse.persist_wiring import upkeep_in_thread
    from tradepulse.service.persister import run_persister
    from tradepulse.service.upkeep import UpkeepState

    stream, repo = build_persister(settings)
    alerts = alerts_in_thread(settings, stop)
    upkeep = upkeep_in_thread(settings, stop, UpkeepState())

    def persist() -> None:
        try:
            run_persister(stream, repo, stop, batch_size=settings.persist_batch_size)
        finally:
            repo.close()
            alerts.join(timeout=5)
            upkeep.join(timeout=5)

    return _daemon("persister", persist)


def run_worker(
    settings: Settings,
    stop: threading.Event,
    host: str,
    port: int,
    port_file: Path | None = None,
    *,
    persist: bool = False,
) -> Worker:
    """Build a worker, serve its operations endpoints on ``host:port`` (the port actually
    bound is written to ``port_file`` when given) and process batches until ``stop`` is
    set; with ``persist``, the bar persister runs in a thread of the same process. Returns
    the worker (for its final counts)."""
    worker = build_worker(settings)
    persister = persist_in_thread(settings, stop) if persist else None
    server = OpsServer(worker.ops, host, port).start()
    if port_file is not None:
        partial = port_file.with_suffix(".partial")
        partial.write_text(str(server.port))
        partial.replace(port_file)
    try:
        runner.run(worker.consumer, worker.pipeline, stop, tuning=worker.ops.tuning,
                   state=worker.ops.state, rules=rule_feed(settings),
                   maintenance_interval_ms=settings.maintenance_interval_ms,
                   stale_after_ms=settings.stale_after_ms)  # fmt: skip
    finally:
        server.stop()
        if persister is not None:
            stop.set()
            persister.join(timeout=5)
    return worker


def tune_gc() -> None:
    """Move everything allocated so far (modules, settings, clients) out of the collector's
    reach (``gc.freeze``) and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*WORKER_GC)


def _redis_store(settings: Settings) -> RedisStore:
    return RedisStore(
        redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5),
        prefix=settings.redis_prefix,
        ttl_s=settings.windows[-1].duration_ms // 1000,
    )


def _pipeline(
    settings: Settings,
    dead_letters: DeadLetters,
    bars_from_ms: int = NEVER,
    store: RedisStore | None = None,
) -> Pipeline:
    """The worker's pipeline (clock, Redis store, engine) as configured."""
    return Pipeline(
        Market(settings.windows),
        EventClock() if settings.clock == "event" else WallClock(),
        _redis_store(settings) if store is None else store,
        dead_letters,
        wall_ms=wall_now_ms,
        max_future_skew_ms=settings.max_future_skew_ms,
        bar_grace_ms=settings.bar_grace_ms,
        bars_enabled=settings.bars,
        bars_from_ms=bars_from_ms,
    )


def build_rebuild(
    settings: Settings,
    since_ms: int,
    partitions: list[int] | None = None,
    *,
    idle_ms: int = 5_000,
    by_timestamp: bool | None = None,
) -> tuple[RebuildReader, Pipeline]:
    """The reader of the last ``since_ms`` of the trade topic (plus the allowed future
    skew: a trade may be stamped by Kafka before its own time) and a worker's pipeline
    that sends no dead letters and withholds the bars of minutes read in part. Raises
    ``TradepulseError`` subclasses (``ConfigError`` for unknown partitions)."""
    from tradepulse.adapters.kafka_rebuild import RebuildReader
    from tradepulse.service.rebuild import CountedDeadLetters, bars_from_ms

    now_ms = wall_now_ms()
    start_ms = now_ms - since_ms - settings.max_future_skew_ms
    reader = RebuildReader(settings.kafka_bootstrap, settings.kafka_topic, start_ms, now_ms,
                           partitions=partitions, idle_ms=idle_ms,
                           by_timestamp=by_timestamp)  # fmt: skip
    return reader, _pipeline(settings, CountedDeadLetters(), bars_from_ms(start_ms))


def build_worker(settings: Settings) -> Worker:
    """The consumer, pipeline and operations surface of one worker process (creates the
    dead-letter topic if missing). Raises ``TradepulseError`` subclasses when a service
    cannot be reached."""
    ensure_topic(settings.kafka_bootstrap, settings.dlq_topic, 1)
    dead_letters = DeadLetterProducer(settings.kafka_bootstrap, settings.dlq_topic)
    store = _redis_store(settings)
    pipeline = _pipeline(settings, dead_letters, store=store)

    state = WorkerState()

    def assigned(partitions: list[int]) -> None:
        """The event clock reads the partitions assigned, continuing from the newest trade
        times the last owner stored (a restart re-reads only what was not committed), and
        waits for every partition of the topic to be read by some process."""
        state.assigned = tuple(partitions)
        metrics.ASSIGNED_PARTITIONS.set(len(partitions))
        pipeline.assign(partitions, consumer.topic_partitions())

    consumer = TradeConsumer(
        settings.kafka_bootstrap,
        settings.kafka_topic,
        settings.kafka_group,
        on_assign=assigned,
        on_revoke=pipeline.forget,
    )
    tuning = Tuning(batch_size=settings.batch_size, batch_wait_ms=settings.batch_wait_ms)
    return Worker(consumer, pipeline, LocalOps(state, tuning, store.ping))
