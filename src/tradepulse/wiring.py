"""Composition root: Settings -> adapters -> service. The only module that picks concrete
adapters for the service layer."""

from __future__ import annotations

import logging

import redis

from tradepulse.adapters.clock import WallClock, wall_now_ms
from tradepulse.adapters.kafka import DeadLetterProducer, TradeConsumer, ensure_topic
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.config import Settings
from tradepulse.core.clock import EventClock
from tradepulse.core.market import Market
from tradepulse.service.pipeline import Pipeline

_LEVELS = {"WARN": logging.WARNING, "FATAL": logging.CRITICAL}


def configure_logging(settings: Settings) -> None:
    level = _LEVELS.get(settings.log_level, getattr(logging, settings.log_level, logging.INFO))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def build_worker(settings: Settings) -> tuple[TradeConsumer, Pipeline]:
    """The consumer and the pipeline of one worker process (creates the dead-letter topic
    if missing). Raises ``TradepulseError`` subclasses when a service cannot be reached."""
    clock = EventClock() if settings.clock == "event" else WallClock()
    ensure_topic(settings.kafka_bootstrap, settings.dlq_topic, 1)
    store = RedisStore(
        redis.Redis.from_url(settings.redis_url),
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

    def assigned(partitions: list[int]) -> None:
        """The event clock reads the partitions assigned, continuing from the newest trade
        times the last owner stored (a restart re-reads only what was not committed)."""
        pipeline.assign(partitions)
        if isinstance(clock, EventClock):
            clock.assign(tuple(partitions))
            stored = store.read_watermarks()
            for partition in partitions:
                if partition in stored:
                    clock.observe(partition, stored[partition])

    consumer = TradeConsumer(
        settings.kafka_bootstrap,
        settings.kafka_topic,
        settings.kafka_group,
        on_assign=assigned,
        on_revoke=pipeline.forget,
    )
    return consumer, pipeline
