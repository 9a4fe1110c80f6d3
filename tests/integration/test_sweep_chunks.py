"""Maintenance sweeps a part at a time (against the real Redis): a round of many stale
tokens is rewritten in chunks between batches, the longest unwritten first, each token once
per round, and the round ends by itself; ``Maintenance`` carries a round over its ticks."""

from __future__ import annotations

import time

import redis

from tests.integration.test_pipeline_batch import RecordedDeadLetters
from tradepulse.adapters.kafka import ConsumedMessage
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.adapters.wire import encode_trade
from tradepulse.core.clock import EventClock
from tradepulse.core.market import Market
from tradepulse.core.trade import Trade
from tradepulse.core.windows import parse_windows
from tradepulse.service.maintenance import Maintenance
from tradepulse.service.pipeline import Pipeline

SPECS = parse_windows("1min,5min")
T0 = 1_760_000_000_000


class Wall:
    """The pipeline's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def loaded(client: redis.Redis, prefix: str, tokens: int) -> tuple[Pipeline, Wall]:
    """A pipeline on partition 0 whose ``tokens`` tokens were written one by one, token
    ``i`` at wall time ``T0 + i``."""
    wall, dead = Wall(), RecordedDeadLetters()
    pipeline = Pipeline(Market(SPECS), EventClock(), RedisStore(client, prefix=prefix), dead,
                        wall_ms=wall)  # fmt: skip
    pipeline.assign([0])
    for i in range(tokens):
        wall.ms = T0 + i
        trade = Trade(f"T{i:04}", "w", True, 1.0, 2.0, 3.0, 6.0, T0 + i, f"h{i}")
        pipeline.process([msg(i, trade)])
    assert dead.sent == [], "no message is rejected here"
    return pipeline, wall


def msg(offset: int, trade: Trade) -> ConsumedMessage:
    return ConsumedMessage(0, offset, trade.token.encode(), encode_trade(trade))


def written_at(pipeline: Pipeline) -> dict[str, int]:
    return dict(pipeline._written_ms)


def test_a_round_is_rewritten_in_chunks_longest_unwritten_first_each_token_once(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    pipeline, wall = loaded(redis_client, redis_prefix, 600)
    wall.ms = T0 + 10_000  # every token stale for stale_after 0 and 5 s
    order = sorted(written_at(pipeline), key=written_at(pipeline).__getitem__)
    before = written_at(pipeline)
    assert pipeline.sweep(5_000, limit=256, new_round=True) == 256
    first = {t for t, w in written_at(pipeline).items() if w != before[t]}
    assert first == set(order[:256])  # the longest unwritten first
    wall.ms += 1
    assert pipeline.sweep(0, limit=256, new_round=False) == 256
    wall.ms += 1
    assert pipeline.sweep(0, limit=256, new_round=False) == 88
    wall.ms += 1  # all 600 were rewritten once: the round is over, nothing is left
    assert pipeline.sweep(0, limit=256, new_round=False) == 0
    assert all(w >= T0 + 10_000 for w in written_at(pipeline).values())
    # a new round takes every token stale now again (stale_after 0)
    assert pipeline.sweep(0, limit=1_000, new_round=True) == 600


def test_chunks_write_what_one_whole_sweep_writes(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The same aggregates in Redis after a chunked round as after one whole sweep."""
    stores = (RedisStore(redis_client, prefix=redis_prefix + "a:"),
              RedisStore(redis_client, prefix=redis_prefix + "b:"))  # fmt: skip
    whole, wall_a = loaded(redis_client, redis_prefix + "a:", 300)
    chunked, wall_b = loaded(redis_client, redis_prefix + "b:", 300)
    wall_a.ms = wall_b.ms = T0 + 400_000
    assert whole.sweep(10_000) == 300
    assert chunked.sweep(10_000, limit=100, new_round=True) == 100
    while chunked.sweep(10_000, limit=100, new_round=False) == 100:
        pass
    for i in range(300):
        a, b = (store.read_stats(f"T{i:04}") for store in stores)
        assert a and a == b
        assert a["1min"].updated_ms == T0 + 299  # advanced to the clock (the last trade)


class Recorded:
    """A sweep target that rewrites a given number of tokens per call."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = counts
        self.calls: list[tuple[int | None, bool]] = []

    def sweep(
        self, stale_after_ms: int, *, limit: int | None = None, new_round: bool = True
    ) -> int:
        self.calls.append((limit, new_round))
        return self.counts.pop(0)


def test_maintenance_continues_a_round_at_every_tick_then_waits_an_interval() -> None:
    target = Recorded([10, 10, 3, 10, 0])
    maintenance = Maintenance(target, interval_ms=200, stale_after_ms=0, chunk=10)
    assert maintenance.tick() is None  # not due yet
    time.sleep(0.25)
    assert [maintenance.tick() for _ in range(3)] == [10, 10, 3]
    assert target.calls == [(10, True), (10, False), (10, False)]
    assert maintenance.tick() is None and maintenance.sweeps == 1  # the round is over
    time.sleep(0.25)
    assert maintenance.tick() == 10 and maintenance.tick() == 0
    assert target.calls[3:] == [(10, True), (10, False)] and maintenance.sweeps == 2
