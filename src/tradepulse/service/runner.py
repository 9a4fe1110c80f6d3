"""The worker's loop: poll a batch, process it, commit, until asked to stop."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from tradepulse import metrics, tracing
from tradepulse.adapters.kafka import ConsumedMessage, MessageBatch
from tradepulse.core.errors import StoreUnavailableError, TradepulseError
from tradepulse.core.rules import Rule
from tradepulse.service.maintenance import Maintenance
from tradepulse.service.ops import Tuning, WorkerState
from tradepulse.service.pipeline import AppliedBatch, Pipeline

log = logging.getLogger(__name__)


class Source(Protocol):
    def poll_batch(self, max_messages: int, max_wait_s: float) -> Sequence[ConsumedMessage]: ...

    def commit(self, next_offsets: dict[int, int]) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def idle(self, seconds: float) -> None: ...

    def close(self) -> None: ...


T = TypeVar("T")
R = TypeVar("R")
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0


def _until_stored(
    source: Source,
    stop: threading.Event,
    attempt: Callable[[T], R],
    arg: T,
    state: WorkerState,
) -> R | None:
    """``attempt(arg)`` until Redis accepts it (circuit open meanwhile: partitions paused,
    nothing committed, exponential backoff with jitter). ``None`` if stopped first."""
    delay = _BACKOFF_FIRST_S
    paused = False
    while True:
        try:
            result = attempt(arg)
        except StoreUnavailableError as exc:
            metrics.REDIS_ERRORS.inc()
            if not paused:
                log.warning("redis unavailable, consumption paused: %s", exc)
                source.pause()
                paused = state.circuit_open = True
                metrics.CIRCUIT_OPEN.set(1)
            if stop.is_set():
                return None
            state.turned()
            source.idle(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _BACKOFF_MAX_S)
            continue
        if paused:
            log.warning("redis available again, consumption resumed")
            source.resume()
            state.circuit_open = False
            metrics.CIRCUIT_OPEN.set(0)
        return result


def _write(job: tuple[Pipeline, AppliedBatch]) -> bool:
    pipeline, applied = job
    pipeline.write(applied)
    return True


def run(
    source: Source,
    pipeline: Pipeline,
    stop: threading.Event,
    *,
    tuning: Tuning | None = None,
    state: WorkerState | None = None,
    rules: RuleFeed | None = None,
    maintenance_interval_ms: int = 60_000,
    stale_after_ms: int = 10_000,
) -> None:
    """Process batches until ``stop`` is set; the batch in hand is finished, written and
    committed before returning (so a SIGTERM loses nothing and repeats nothing). While
    Redis is unavailable the batch is retried with backoff and nothing is consumed or
    committed; stopping then returns without committing (the batch is read again). Every
    ``maintenance_interval_ms`` tokens idle for ``stale_after_ms`` are advanced and
    rewritten (between batches, so a sweep never interleaves with a batch's writes).
    ``tuning`` (batch size and wait) is read at every batch, so it can change at run time."""
    tuning = tuning or Tuning(batch_size=10_000, batch_wait_ms=100)
    if rules is not None:
        _load_rules(pipeline, rules)
    state = state or WorkerState()
    maintenance = Maintenance(pipeline, maintenance_interval_ms, stale_after_ms)
    try:
        while not stop.is_set():
            state.turned()
            if maintenance.tick() is not None:
                metrics.ACTIVE_TOKENS.set(len(pipeline.market.tokens))
                metrics.WATERMARK.set(pipeline.clock.now_ms())
            if rules is not None and rules.changed():
                _load_rules(pipeline, rules)
            _scan(pipeline)
            batch = source.poll_batch(tuning.batch_size, tuning.batch_wait_ms / 1000)
            if not batch:
                continue
            started = time.perf_counter()
            if not _batch(source, pipeline, stop, batch, state):
                return  # stopped while Redis was down: nothing committed, nothing lost
            _report(batch, time.perf_counter() - started, pipeline, state)
    finally:
        source.close()


def _batch(
    source: Source,
    pipeline: Pipeline,
    stop: threading.Event,
    batch: Sequence[ConsumedMessage],
    state: WorkerState,
) -> bool:
    """Apply, write (retried while Redis is down) and commit one batch, in a ``batch``
    span; ``False`` when ``stop`` was set before the batch was written."""
    with tracing.span("batch") as span:
        applied = _until_stored(source, stop, pipeline.apply, batch, state)
        if applied is None:
            return False
        if span.is_recording():
            span.set_attribute("tradepulse.trades", len(batch))
            span.set_attribute("tradepulse.tokens", len(applied.tokens))
            span.set_attribute("tradepulse.partitions", sorted(applied.next_offsets))
        if _until_stored(source, stop, _write, (pipeline, applied), state) is None:
            return False
        with tracing.span("kafka.commit"):
            source.commit(applied.next_offsets)
    return True


class RuleFeed(Protocol):
    """Where the enabled rules come from (a file, the rule store)."""

    interval_ms: int

    def load(self) -> list[Rule]:
        """The enabled rules now (raises ``TradepulseError`` when they cannot be read)."""
        ...

    def changed(self) -> bool:
        """Whether the rules may have changed since the last ``load``."""
        ...


def _load_rules(pipeline: Pipeline, rules: RuleFeed) -> None:
    try:
        loaded = rules.load()
    except TradepulseError as exc:
        log.warning("rules not (re)loaded, keeping the previous ones: %s", exc)
        return
    pipeline.set_rules(loaded, rules.interval_ms)
    metrics.RULES_LOADED.set(sum(r.enabled for r in loaded))
    log.info("rules loaded", extra={"rules": len(loaded)})


def _scan(pipeline: Pipeline) -> None:
    started = time.perf_counter()
    try:
        alerts = pipeline.scan()
    except StoreUnavailableError as exc:
        metrics.REDIS_ERRORS.inc()
        log.warning("scan not stored, retried at the next turn: %s", exc)
        return
    if alerts is not None:
        metrics.SCAN_SECONDS.observe(time.perf_counter() - started)
        metrics.ALERTS.inc(alerts)


def _report(
    batch: Sequence[ConsumedMessage], seconds: float, pipeline: Pipeline, state: WorkerState
) -> None:
    """Metrics, state and the batch log line of one committed batch."""
    size = len(batch)
    state.batch_done(size, seconds)
    market = pipeline.market
    metrics.TRADES_CONSUMED.inc(size)
    metrics.BATCH_SIZE.observe(size)
    metrics.BATCH_SECONDS.observe(seconds)
    outcomes = pipeline.take_outcomes()
    metrics.TRADES_APPLIED.inc(outcomes.pop("applied", 0))
    metrics.TRADES_DUPLICATE.inc(outcomes.pop("duplicates", 0))
    metrics.TRADES_LATE.inc(outcomes.pop("late", 0))
    for reason, count in outcomes.items():
        metrics.TRADES_REJECTED.labels(reason).inc(count)
    metrics.ACTIVE_TOKENS.set(len(market.tokens))
    metrics.WATERMARK.set(pipeline.clock.now_ms())
    log.info("Batch processing completed", extra={
        "total_trades": size,
        "unique_tokens": len(set(MessageBatch.of(batch).keys)),
        "processing_time": round(seconds, 6),
        "trades_per_sec": round(size / seconds) if seconds > 0 else 0,
    })  # fmt: skip
