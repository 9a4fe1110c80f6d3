"""``tradepulse demo``: the whole system in one process, on embedded defaults.

::

    synthetic market ─┐   engine thread (every TICK_S of the wall clock)      main thread
    (or --replay FILE)└─> Pipeline: windows · bars · indicators · scanner ──> MemoryStore
                                                                                │
                      uvicorn: REST /api/v1 · /ws · dashboard / · /health  <────┘

The engine runs the worker's code (``service/pipeline.py``: the same decode, windows,
bars, indicators and rule scans) on the wall clock; the store is the in-memory one
(``adapters/memory_store.py``), or Redis with ``--redis-url``. Rules live in an
in-memory rule store seeded with ``EXAMPLE_RULES``, owned by the demo user. Without a
configured JWT key the process makes up a secret, so the token it prints is valid for
this run only. SIGINT/SIGTERM stop uvicorn; the engine thread is then stopped and joined.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import msgspec
from litestar import Litestar

from tradepulse.adapters.clock import WallClock, wall_now_ms
from tradepulse.adapters.files import iter_lines, open_input
from tradepulse.adapters.kafka import ConsumedMessage, TradeConsumer
from tradepulse.adapters.memory_rules import (
    MemoryAlertStore,
    MemoryProfileStore,
    MemoryRuleStore,
)
from tradepulse.adapters.memory_store import MemoryStore
from tradepulse.adapters.redis_store import Restored, TokenUpdate
from tradepulse.adapters.wire import encode_trade
from tradepulse.api.auth import issue_token
from tradepulse.api.sources import CandleSource
from tradepulse.config import Settings
from tradepulse.core.market import Market
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import WindowSpec
from tradepulse.service.pipeline import LiveStore, Pipeline
from tradepulse.terminal import ReplaySource, SyntheticSource, TradeFeed

log = logging.getLogger(__name__)

#: Seconds between two steps of the engine.
TICK_S = 0.25
SWEEP_EVERY_S = 5.0
DEMO_USER = "demo"
TOKEN_TTL_S = 7 * 24 * 3600

EXAMPLE_RULES: list[dict[str, Any]] = [
    {"name": "5-minute pump", "cooldown": 300,
     "conditions": {"all": [{"metric": "window.5min.price_change_pct", "op": ">", "value": 20},
                            {"metric": "window.5min.trade_count", "op": ">=", "value": 20}]}},
    {"name": "buying frenzy", "cooldown": 120,
     "conditions": {"all": [{"metric": "window.1min.buy_count", "op": ">=", "value": 100},
                            {"metric": "window.1min.unique_buyers", "op": ">=", "value": 50}]}},
    {"name": "volume surge", "cooldown": 300, "trigger": "edge",
     "conditions": {"all": [{"metric": "window.1min.total_volume", "op": ">", "value": 50000}]}},
    {"name": "5-minute dump", "cooldown": 300, "enabled": False,
     "conditions": {"all": [{"metric": "window.5min.price_change_pct", "op": "<", "value": -30}]}},
]  # fmt: skip
"""Rules the demo starts with (the last one disabled, to show both states)."""


class _NoDeadLetters:
    """The demo's trades come from our own encoder or are skipped by the replay reader:
    a rejection is only logged."""

    def send(self, msg: ConsumedMessage, reason: str, detail: str, at_ms: int) -> None:
        log.warning("demo trade rejected offset=%s reason=%s detail=%s", msg.offset, reason,
                    detail)  # fmt: skip

    def flush(self, timeout_s: float = 0.0) -> int:
        return 0


@dataclass
class DemoOptions:
    """What ``tradepulse demo`` was asked for (see its ``--help``)."""

    replay: Path | None = None
    speed: float = 1.0
    seed: int = 0
    tokens: int = 200
    rate_per_s: float = 200.0
    backfill_s: float = 600.0
    redis_url: str | None = None
    pg_dsn: str | None = None
    kafka_bootstrap: str | None = None


class MessageFeed(Protocol):
    """Where the engine's messages come from: wire-format trades, as a worker reads them."""

    label: str

    def poll(self, now_ms: TsMs) -> Sequence[ConsumedMessage]: ...

    def commit(self, next_offsets: dict[int, int]) -> None: ...


class TradeMessages:
    """A trade feed (synthetic or replay) encoded as the messages of one partition."""

    def __init__(self, feed: TradeFeed) -> None:
        self.label = feed.label
        self._feed = feed
        self._offset = 0

    def poll(self, now_ms: TsMs) -> list[ConsumedMessage]:
        trades = self._feed.poll(now_ms)
        first, self._offset = self._offset, self._offset + len(trades)
        return [ConsumedMessage(0, first + i, None, encode_trade(t)) for i, t in enumerate(trades)]

    def commit(self, next_offsets: dict[int, int]) -> None:
        """Nothing to commit: the feed is not replayed."""


class KafkaMessages:
    """The trade topic read by a consumer group of its own, committed after each write."""

    def __init__(self, consumer: TradeConsumer, batch_size: int) -> None:
        self.label = f"kafka topic {consumer.topic}"
        self._consumer = consumer
        self._batch_size = batch_size

    def poll(self, now_ms: TsMs) -> Sequence[ConsumedMessage]:
        return self._consumer.poll_batch(self._batch_size, 0.0)

    def commit(self, next_offsets: dict[int, int]) -> None:
        self._consumer.commit(next_offsets)


@dataclass
class Engine:
    """The worker's pipeline fed from a message feed on the wall clock."""

    pipeline: Pipeline
    feed: MessageFeed
    rules: MemoryRuleStore
    settings: Settings
    rules_changed: threading.Event = field(default_factory=threading.Event)

    def step(self, now_ms: TsMs) -> int:
        """Feed the messages due by ``now_ms``, scan; return how many were fed."""
        if self.rules_changed.is_set():
            self.rules_changed.clear()
            self.pipeline.set_rules(self.rules.enabled_rules(), self.settings.scan_interval_ms)
        messages = self.feed.poll(now_ms)
        if messages:
            self.feed.commit(self.pipeline.process(messages))
        self.pipeline.scan()
        return len(messages)

    def run(self, stop: threading.Event) -> None:
        """``step`` every ``TICK_S`` and sweep idle tokens every ``SWEEP_EVERY_S`` until
        ``stop``; an error of one step (a store, a feed, a bug) is logged with its traceback
        and the next tick tries again, so the API keeps answering."""
        next_sweep = time.monotonic() + SWEEP_EVERY_S
        while not stop.wait(TICK_S):
            try:
                self.step(wall_now_ms())
                if time.monotonic() >= next_sweep:
                    next_sweep += SWEEP_EVERY_S
                    self.pipeline.sweep(self.settings.stale_after_ms)
            except Exception:  # the demo keeps serving; the next step tries again
                log.exception("demo engine step failed")


def demo_settings(settings: Settings, options: DemoOptions) -> tuple[Settings, str]:
    """``settings`` with the service switches of ``options`` and a JWT key (a secret for
    this run when none is configured), and a token of the demo user (an admin) signed with
    it; RS256 deployments get no token (the demo holds no private key)."""
    if options.redis_url is not None:
        settings = msgspec.structs.replace(settings, redis_url=options.redis_url)
    if settings.jwt_public_key:
        return settings, ""
    secret = settings.jwt_secret or secrets.token_urlsafe(48)
    settings = msgspec.structs.replace(settings, jwt_secret=secret)
    token = issue_token(secret, "HS256", DEMO_USER, admin=True, ttl_s=TOKEN_TTL_S,
                        now_s=int(time.time()))  # fmt: skip
    return settings, token


def _feed(settings: Settings, options: DemoOptions, pipeline: Pipeline,
          stack: ExitStack) -> MessageFeed:  # fmt: skip
    """Kafka (``--kafka-bootstrap``), a replayed file (``--replay``) or synthetic trades."""
    now_ms = wall_now_ms()
    if options.kafka_bootstrap is not None:
        consumer = TradeConsumer(options.kafka_bootstrap, settings.kafka_topic,
                                 f"{settings.kafka_group}-demo", on_assign=pipeline.assign,
                                 on_revoke=pipeline.forget)  # fmt: skip
        stack.callback(consumer.close)
        return KafkaMessages(consumer, settings.batch_size)
    if options.replay is None:
        return TradeMessages(SyntheticSource(
            seed=options.seed, tokens=options.tokens, rate_per_s=options.rate_per_s,
            now_ms=now_ms, backfill_ms=round(options.backfill_s * 1000)))  # fmt: skip
    stream, _size = stack.enter_context(open_input(str(options.replay)))
    return TradeMessages(ReplaySource(iter_lines(stream), name=options.replay.name,
                                      speed=options.speed, start_ms=now_ms))  # fmt: skip


class TeeStore:
    """``primary`` (Redis, with ``--redis-url``) mirrors the live state; every update it
    accepted is also given to each of ``copies`` (the in-memory store, which keeps the
    bars, alerts and notices; PostgreSQL with ``--pg-dsn``)."""

    def __init__(
        self, primary: LiveStore, copies: list[Callable[[list[TokenUpdate]], Any]]
    ) -> None:
        self._primary = primary
        self._copies = copies

    @property
    def group_watermarks(self) -> dict[int, TsMs]:
        return self._primary.group_watermarks

    def write(
        self, updates: Iterable[TokenUpdate], watermarks: dict[int, TsMs] | None = None
    ) -> list[TokenId]:
        updates = list(updates)
        gaps = self._primary.write(updates, watermarks)
        accepted = [u for u in updates if u.token not in set(gaps)]
        for copy in self._copies:
            copy(accepted)
        return gaps

    def read_watermarks(self) -> dict[int, TsMs]:
        return self._primary.read_watermarks()

    def partition_tokens(self, partitions: Sequence[int]) -> dict[TokenId, int]:
        return self._primary.partition_tokens(partitions)

    def load_many(
        self, tokens: Sequence[TokenId], specs: tuple[WindowSpec, ...]
    ) -> dict[TokenId, Restored]:
        return self._primary.load_many(tokens, specs)


def _redis_store(settings: Settings, stack: ExitStack) -> LiveStore:
    import redis

    from tradepulse.adapters.redis_store import RedisStore

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    stack.callback(client.close)
    return RedisStore(client, prefix=settings.redis_prefix,
                      ttl_s=settings.windows[-1].duration_ms // 1000)  # fmt: skip


def _postgres_copy(dsn: str, stack: ExitStack) -> Callable[[list[TokenUpdate]], Any]:
    """Final bars and alerts of the updates stored in PostgreSQL (migrated first)."""
    from tradepulse.adapters.postgres import BarRepository, migrate
    from tradepulse.adapters.postgres_alerts import AlertRepository

    migrate(dsn)
    bars = stack.enter_context(BarRepository(dsn))
    alerts = stack.enter_context(AlertRepository(dsn))

    def copy(updates: list[TokenUpdate]) -> None:
        bars.upsert([bar for u in updates for bar in u.finals])
        alerts.store([alert for u in updates for alert in u.alerts])

    return copy


@dataclass
class Demo:
    """Everything the demo process holds; ``app`` is the Litestar application."""

    settings: Settings
    token: str
    engine: Engine
    memory: MemoryStore
    rules: MemoryRuleStore
    app: Litestar


def _store(
    settings: Settings, options: DemoOptions, memory: MemoryStore, stack: ExitStack
) -> LiveStore:
    """The in-memory store alone, or teed behind Redis and/or PostgreSQL."""
    copies: list[Callable[[list[TokenUpdate]], Any]] = []
    if options.pg_dsn is not None:
        copies.append(_postgres_copy(options.pg_dsn, stack))
    if options.redis_url is None and not copies:
        return memory
    primary = memory if options.redis_url is None else _redis_store(settings, stack)
    if primary is not memory:
        copies.insert(0, memory.write)
    return TeeStore(primary, copies)


def build_demo(settings: Settings, options: DemoOptions, stack: ExitStack) -> Demo:
    """Stores, rules, pipeline and the API application of one demo run."""
    from tradepulse.api.app import ApiDeps, create_app
    from tradepulse.api.memory_feed import MemoryFeed, MemoryRuleOwners
    from tradepulse.api.memory_reader import MemoryLiveReader
    from tradepulse.api.reader import HistoryPool

    settings, token = demo_settings(settings, options)
    names = [s.name for s in settings.windows]
    changed = threading.Event()
    rules = MemoryRuleStore(windows=names, on_change=lambda _rule_id: changed.set())
    owner_of = _owner_lookup(rules)
    memory = MemoryStore(wall_now_ms, ttl_ms=settings.windows[-1].duration_ms,
                         alerts=MemoryAlertStore(owners=owner_of))  # fmt: skip
    store = _store(settings, options, memory, stack)
    pipeline = Pipeline(Market(settings.windows), WallClock(), store, _NoDeadLetters(),
                        wall_ms=wall_now_ms,
                        max_future_skew_ms=settings.max_future_skew_ms,
                        bar_grace_ms=settings.bar_grace_ms)  # fmt: skip
    feed = _feed(settings, options, pipeline, stack)
    engine = Engine(pipeline, feed, rules, settings, rules_changed=changed)
    rules.create_many(DEMO_USER, _usable(EXAMPLE_RULES, names))
    live = None if options.redis_url else lambda: MemoryLiveReader(memory)
    history: Callable[[], CandleSource] = partial(_itself, memory)
    if options.pg_dsn is not None:
        history = partial(HistoryPool, options.pg_dsn)
    profiles = MemoryProfileStore()
    deps = dataclasses.replace(
        ApiDeps.from_settings(settings), live_factory=live, history_factory=history,
        feed_factory=lambda _deps, _client: MemoryFeed(memory),
        owners_factory=lambda _deps: (MemoryRuleOwners(owner_of), _nothing),
        rule_store=lambda _deps, _announce: rules,  # the engine hears changes itself
        alert_store=lambda _deps: memory.alerts, profile_store=lambda _deps: profiles,
    )  # fmt: skip
    return Demo(settings, token, engine, memory, rules, create_app(deps))


def _nothing() -> None:
    """Nothing to close."""


def _itself(store: MemoryStore) -> MemoryStore:
    return store


def _usable(definitions: list[dict[str, Any]], windows: list[str]) -> list[dict[str, Any]]:
    """The example rules whose windows are configured (all of them by default)."""
    return [d for d in definitions
            if all(c["metric"].split(".")[1] in windows
                   for c in d["conditions"]["all"])]  # fmt: skip


def _owner_lookup(rules: MemoryRuleStore) -> Callable[[str], str | None]:
    def owner_of(rule_id: str) -> str | None:
        rule = rules.get(rule_id)
        return None if rule is None else rule.owner

    return owner_of
