"""Exactly-once results across restarts and rebalances, without Kafka's timing: the worker's
``Pipeline`` against the real Redis, fed by a simulated consumer group over a 4-partition
topic of synthetic trades (each token in one partition, partitions in time order).

Each scenario runs the topic once through one uninterrupted process, once through processes
that die (before the write, in the middle of the write's pipeline, after the write but before
the commit), restart, join and leave the group, and sweep (maintenance) at any point,
including while waiting for an assignment. The two runs must end with the same Redis state
(windows, trades lists, forming bars, indicators, watermarks) and the same ``bars.finalized``
entries, token by token and in order, revisions included.
"""

from __future__ import annotations

import os
import random
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.workers import assert_same_state
from tradepulse.adapters.kafka import ConsumedMessage
from tradepulse.adapters.redis_store import RedisStore, TokenUpdate
from tradepulse.adapters.synthetic import SyntheticMarket
from tradepulse.adapters.wire import encode_trade
from tradepulse.core.bars import Bar
from tradepulse.core.clock import EventClock
from tradepulse.core.market import Market
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import DEFAULT_WINDOWS, parse_windows
from tradepulse.service.pipeline import Pipeline
from tradepulse.service.rebuild import CountedDeadLetters

PARTITIONS = (0, 1, 2, 3)
START_MS = 1_760_000_000_000


def make_topic(trades: int, seed: int) -> list[list[ConsumedMessage]]:
    """``trades`` synthetic trades (40 tokens, 8 per second of trade time) keyed by token."""
    market = SyntheticMarket(seed=seed, tokens=40, wallets=300, start_ms=START_MS,
                             rate_per_s=8, zipf_s=0.5)  # fmt: skip
    topic: list[list[ConsumedMessage]] = [[] for _ in PARTITIONS]
    for trade in market.generate(trades):
        p = zlib.crc32(trade.token.encode()) % len(PARTITIONS)
        message = ConsumedMessage(p, len(topic[p]), trade.token.encode(), encode_trade(trade))
        topic[p].append(message)
    assert all(topic), "a partition without trades: the scenarios would be vacuous"
    return topic


TOPIC = make_topic(4_000, seed=7)


class KilledError(Exception):
    """The process was killed (SIGKILL) at this point."""


class DyingStore(RedisStore):
    """A Redis store whose next write is cut after ``die_after`` tokens: the process was
    killed while sending the pipeline (what Redis received ran, the watermarks did not)."""

    die_after: int | None = None

    def write(
        self, updates: Iterable[TokenUpdate], watermarks: dict[int, TsMs] | None = None
    ) -> list[TokenId]:
        if self.die_after is None:
            return super().write(updates, watermarks)
        super().write(list(updates)[: self.die_after])
        raise KilledError


class Group:
    """The consumer group: what it committed, shared by its processes."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.committed: dict[int, int] = {}
        self.wall_ms = START_MS + 3_600_000

    def wall(self) -> TsMs:
        self.wall_ms += 3
        return self.wall_ms


class Process:
    """One worker process: its pipeline and its read positions, driven as the runner and
    ``TradeConsumer`` drive them (assignment and revocation callbacks, batch, commit)."""

    def __init__(self, group: Group) -> None:
        self.group = group
        self.store = DyingStore(group.client, prefix=group.prefix)
        self.pipeline = Pipeline(Market(parse_windows(DEFAULT_WINDOWS)), EventClock(),
                                 self.store, CountedDeadLetters(), wall_ms=group.wall)  # fmt: skip
        self.positions: dict[int, int] = {}

    def assign(self, partitions: Sequence[int]) -> None:
        self.positions = {p: self.group.committed.get(p, 0) for p in partitions}
        self.pipeline.assign(list(partitions), topic_partitions=list(PARTITIONS))

    def revoke(self) -> None:
        """Revocation: what was processed is committed first (it is, after each batch)."""
        self.pipeline.forget(sorted(self.positions))
        self.positions = {}

    def sweep(self) -> None:
        self.pipeline.sweep(0)

    def poll(self, sizes: dict[int, int]) -> list[ConsumedMessage]:
        """Up to ``sizes[p]`` messages of each assigned partition ``p``, partition after
        partition (as fetched)."""
        batch: list[ConsumedMessage] = []
        for p in sorted(self.positions, key=lambda p: (-sizes.get(p, 0), p)):
            chunk = TOPIC[p][self.positions[p] : self.positions[p] + sizes.get(p, 0)]
            self.positions[p] += len(chunk)
            batch += chunk
        return batch

    def batch(self, sizes: dict[int, int], die: str | None = None, cut: int = 0) -> bool:
        """One turn of the runner: poll, apply, write, commit; ``die`` kills the process
        ``"before_write"``, ``"in_write"`` (after ``cut`` tokens) or ``"before_commit"``.
        Returns whether anything was read."""
        return self.process(self.poll(sizes), die, cut)

    def process(
        self, messages: list[ConsumedMessage], die: str | None = None, cut: int = 0
    ) -> bool:
        """Apply, write and commit ``messages`` (see ``batch``)."""
        if not messages:
            return False
        applied = self.pipeline.apply(messages)
        if die == "before_write":
            raise KilledError
        self.store.die_after = cut if die == "in_write" else None
        self.pipeline.write(applied)
        if die == "before_commit":
            raise KilledError
        self.group.committed.update(applied.next_offsets)
        return True

    @property
    def done(self) -> bool:
        return all(self.positions.get(p, 0) >= len(TOPIC[p]) for p in PARTITIONS)


def finish(*processes: Process) -> None:
    """Maintenance after the last trade: every process sweeps (twice, so that each knows
    how far the others got) and every token is evaluated at the final watermark."""
    for _ in range(2):
        for process in processes:
            process.sweep()


def bar_stream(client: redis.Redis, store: RedisStore) -> dict[str, list[Bar]]:
    """Every entry of ``bars.finalized``, token by token, in stream order."""
    out: dict[str, list[Bar]] = {}
    for _id, fields in client.xrange(store.bars_stream_key):
        bar = msgspec.json.decode(fields[b"bar"], type=Bar)
        out.setdefault(bar.token, []).append(bar)
    return out


@pytest.fixture
def new_prefix(redis_client: redis.Redis) -> Iterator[Callable[[], str]]:
    """Key prefixes for the runs of one test (their keys, only theirs, deleted afterwards)."""
    made: list[str] = []

    def new() -> str:
        made.append(f"tradepulse-test-{uuid.uuid4().hex[:12]}:")
        return made[-1]

    yield new
    for prefix in made:
        for key in redis_client.scan_iter(match=prefix + "*", count=1000):
            redis_client.delete(key)


@pytest.fixture(scope="module")
def calm() -> Iterator[RedisStore]:
    """The results of one uninterrupted process, shared by the module's tests."""
    client = redis.Redis.from_url(
        os.environ.get("TRADEPULSE_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    prefix = f"tradepulse-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield uninterrupted(client, prefix)
    finally:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
        client.close()


def uninterrupted(client: redis.Redis, prefix: str, size: int = 150) -> RedisStore:
    """One process reads the whole topic (every partition at the same pace)."""
    group = Group(client, prefix)
    process = Process(group)
    process.assign(PARTITIONS)
    while process.batch(dict.fromkeys(PARTITIONS, size)):
        pass
    finish(process)
    return process.store


def assert_same_results(client: redis.Redis, calm: RedisStore, other: RedisStore) -> None:
    assert_same_state(calm, other, client, client)
    expected, got = bar_stream(client, calm), bar_stream(client, other)
    assert sum(map(len, expected.values())) > 100  # bars were emitted: not vacuous
    differ = sorted(t for t in expected.keys() | got.keys() if expected.get(t) != got.get(t))
    assert not differ, [(t, expected.get(t), got.get(t)) for t in differ[:2]]


def test_restart_after_the_first_process_never_read_a_partition(
    redis_client: redis.Redis, new_prefix: Callable[[], str], calm: RedisStore
) -> None:
    """The first process dies before reading partition 0 at all: the watermarks it stored
    cover three partitions. The next one sweeps while it waits for its assignment."""
    group = Group(redis_client, new_prefix())
    first = Process(group)
    first.assign(PARTITIONS)
    for _ in range(6):
        first.batch({1: 150, 2: 150, 3: 150})
    with pytest.raises(KilledError):
        first.batch({1: 150, 2: 150, 3: 150}, die="before_commit")
    second = Process(group)
    second.sweep()  # maintenance runs while the process joins the group
    second.assign(PARTITIONS)
    while second.batch(dict.fromkeys(PARTITIONS, 150)):
        pass
    finish(second)
    assert_same_results(redis_client, calm, second.store)


def test_process_joining_a_group_whose_other_partitions_were_read(
    redis_client: redis.Redis, new_prefix: Callable[[], str], calm: RedisStore
) -> None:
    """A second process starts while the first has read partitions 0 and 1 for a while;
    it sweeps before its assignment (2 and 3, not read by anyone yet)."""
    group = Group(redis_client, new_prefix())
    a, b = Process(group), Process(group)
    a.assign([0, 1])
    for _ in range(5):
        a.batch({0: 150, 1: 150})
    b.sweep()
    b.assign([2, 3])
    while a.batch({0: 150, 1: 150}) | b.batch({2: 150, 3: 150}):
        pass
    finish(a, b)
    assert_same_results(redis_client, calm, b.store)


def test_partition_nobody_read_handed_to_a_process_that_counted_the_others(
    redis_client: redis.Redis, new_prefix: Callable[[], str], calm: RedisStore
) -> None:
    """Process B reads partition 2 but not yet 3, then dies; A, which counted partitions
    0, 1 and 2 in its watermark, takes over all four."""
    group = Group(redis_client, new_prefix())
    a, b = Process(group), Process(group)
    a.assign([0, 1])
    b.assign([2, 3])
    for _ in range(5):
        a.batch({0: 150, 1: 150})
        b.batch({2: 60})
    with pytest.raises(KilledError):
        b.batch({2: 60}, die="in_write", cut=3)
    a.revoke()
    a.assign(PARTITIONS)
    while a.batch(dict.fromkeys(PARTITIONS, 40)):
        pass
    finish(a)
    assert_same_results(redis_client, calm, a.store)


def test_sweep_between_revocation_and_assignment_leaves_the_new_owners_tokens_alone(
    redis_client: redis.Redis, new_prefix: Callable[[], str], calm: RedisStore
) -> None:
    """A reads every partition, then B joins: A's partitions are revoked and A sweeps before
    it is assigned 0 and 1 again. Tokens of 2 and 3 are B's from then on: A must neither
    rewrite them from its old copies nor finalize their bars."""
    group = Group(redis_client, new_prefix())
    a, b = Process(group), Process(group)
    a.assign(PARTITIONS)
    for _ in range(2):
        a.batch(dict.fromkeys(PARTITIONS, 150))
    a.revoke()
    a.sweep()
    a.assign([0, 1])
    b.assign([2, 3])
    while a.batch({0: 150, 1: 150}) | b.batch({2: 150, 3: 150}):
        a.sweep()
    finish(a, b)
    assert_same_results(redis_client, calm, a.store)


def test_messages_fetched_before_a_revocation_are_left_to_the_new_owner(
    redis_client: redis.Redis, new_prefix: Callable[[], str], calm: RedisStore
) -> None:
    """A's partitions are revoked while it fetches (the revocation callback runs inside
    the consumer's poll): the batch it returns holds messages of partitions that B reads
    from now on, from the committed offsets."""
    group = Group(redis_client, new_prefix())
    a, b = Process(group), Process(group)
    a.assign(PARTITIONS)
    for _ in range(2):
        a.batch(dict.fromkeys(PARTITIONS, 150))
    fetched = a.poll(dict.fromkeys(PARTITIONS, 150))
    a.revoke()
    a.assign([0, 1])
    b.assign([2, 3])
    a.process(fetched)  # its messages of 0 and 1 are read again (fetched from the commit)
    while a.batch({0: 150, 1: 150}) | b.batch({2: 150, 3: 150}):
        a.sweep()
    finish(a, b)
    assert_same_results(redis_client, calm, a.store)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rnd=st.randoms(use_true_random=False))
def test_any_schedule_of_deaths_restarts_and_rebalances_gives_one_process_results(
    redis_client: redis.Redis,
    new_prefix: Callable[[], str],
    calm: RedisStore,
    rnd: random.Random,
) -> None:
    """Random schedules for a group of up to two processes: batches of random sizes per
    partition (a partition may wait long before its first fetch), deaths at any point of
    a batch, restarts, rebalances (revoke everything, reassign among the live processes;
    also while a process fetches, whose batch then holds messages of partitions it lost),
    sweeps at any time (also between revocation and assignment, and before the first
    assignment). Results equal those of one uninterrupted process."""
    group = Group(redis_client, new_prefix())
    slots: list[Process | None] = [None, None]

    def rebalance() -> None:
        live = [p for p in slots if p is not None]
        for process in live:
            process.revoke()
            if rnd.random() < 0.5:
                process.sweep()
        order = rnd.sample(PARTITIONS, len(PARTITIONS))
        for i, process in enumerate(live):
            process.assign(sorted(order[i :: len(live)]))

    for _ in range(rnd.randint(10, 80)):
        i = rnd.randrange(2)
        process = slots[i]
        action = rnd.random()
        if process is None:
            slots[i] = Process(group)
            for _ in range(rnd.randint(0, 2)):
                slots[i].sweep()  # waiting for the assignment
            rebalance()
        elif action < 0.08:
            slots[i] = None  # left the group (died or stopped between batches)
            if any(slots):
                rebalance()
        elif action < 0.13:
            rebalance()
        elif action < 0.17:  # a rebalance while the consumer fetches: then the batch
            fetched = process.poll({p: rnd.choice([0, 20, 150]) for p in PARTITIONS})
            rebalance()
            process.process(fetched)
        elif action < 0.25:
            process.sweep()
        else:
            sizes = {p: rnd.choice([0, 0, 20, 150, 400]) for p in PARTITIONS}
            die = rnd.choice([None] * 12 + ["before_write", "in_write", "before_commit"])
            try:
                process.batch(sizes, die, cut=rnd.randint(0, 20))
            except KilledError:
                slots[i] = None
                if any(slots):
                    rebalance()
    survivor = slots[0] or slots[1] or Process(group)
    for process in slots:
        if process is not None and process is not survivor:
            process.revoke()
    survivor.revoke()
    survivor.assign(PARTITIONS)
    while survivor.batch(dict.fromkeys(PARTITIONS, 400)):
        pass
    finish(survivor)
    assert_same_results(redis_client, calm, survivor.store)
