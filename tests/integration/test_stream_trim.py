"""Trimming a persisted stream against the real Redis: what every consumer group
acknowledged goes, nothing a group has not acknowledged (pending or not yet delivered) ever
does, and ``alerts`` keeps its retention."""

from __future__ import annotations

import redis

from tradepulse.adapters.redis_trim import Backlog, RedisStreamUpkeep

NOW_MS = 1_760_000_000_000


def ids_of(client: redis.Redis, key: str) -> list[str]:
    return [i.decode() for i, _ in client.xrange(key)]


def fill(client: redis.Redis, key: str, count: int, first_ms: int = 1_000) -> list[str]:
    """``count`` entries with explicit ids ``first_ms+i``-0 (old: trimmable by time)."""
    return [client.xadd(key, {"n": i}, id=f"{first_ms + i}-0").decode() for i in range(count)]


def read(client: redis.Redis, key: str, group: str, consumer: str, count: int) -> list[str]:
    reply = client.xreadgroup(group, consumer, {key: ">"}, count=count)
    return [i.decode() for _, entries in reply for i, _ in entries]


def test_trim_acknowledged_by_the_only_group_removes_them(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}bars.finalized"
    ids = fill(redis_client, key, 10)
    redis_client.xgroup_create(key, "p", id="0")
    done = read(redis_client, key, "p", "c1", 6)
    redis_client.xack(key, "p", *done)
    upkeep = RedisStreamUpkeep(redis_client, key, "bars.finalized", "p")
    assert upkeep.trim(NOW_MS) == 6
    assert ids_of(redis_client, key) == ids[6:]
    assert upkeep.trim(NOW_MS) == 0  # idempotent


def test_trim_two_groups_one_lagging_keeps_what_the_lagging_one_has_not_read(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}bars.finalized"
    ids = fill(redis_client, key, 10)
    for group in ("p", "slow"):
        redis_client.xgroup_create(key, group, id="0")
    redis_client.xack(key, "p", *read(redis_client, key, "p", "c1", 10))
    redis_client.xack(key, "slow", *read(redis_client, key, "slow", "s1", 3))
    upkeep = RedisStreamUpkeep(redis_client, key, "bars.finalized", "p")
    assert upkeep.trim(NOW_MS) == 3
    assert ids_of(redis_client, key) == ids[3:]  # ids[3] not yet delivered to "slow"


def test_trim_pending_entry_of_a_dead_consumer_is_kept_and_everything_after_it(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}bars.finalized"
    ids = fill(redis_client, key, 10)
    redis_client.xgroup_create(key, "p", id="0")
    done = read(redis_client, key, "p", "alive", 4)
    redis_client.xack(key, "p", *done)
    held = read(redis_client, key, "p", "dead", 2)  # read, never acknowledged
    redis_client.xack(key, "p", *read(redis_client, key, "p", "alive", 4))
    assert held == ids[4:6]
    upkeep = RedisStreamUpkeep(redis_client, key, "bars.finalized", "p")
    assert upkeep.trim(NOW_MS) == 4
    assert ids_of(redis_client, key) == ids[4:]
    redis_client.xack(key, "p", *held)  # claimed and stored later
    assert upkeep.trim(NOW_MS) == 6
    assert ids_of(redis_client, key) == []


def test_trim_stream_without_groups_or_missing_is_left_alone(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}alerts"
    upkeep = RedisStreamUpkeep(redis_client, key, "alerts", "p", keep_ms=1_000)
    assert upkeep.trim(NOW_MS) == 0  # no stream
    ids = fill(redis_client, key, 5)
    assert upkeep.trim(NOW_MS) == 0  # no group: nobody said what is done
    assert ids_of(redis_client, key) == ids


def test_trim_alerts_keep_acknowledged_entries_within_the_retention(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}alerts"
    old = fill(redis_client, key, 4, first_ms=NOW_MS - 120_000)
    young = fill(redis_client, key, 3, first_ms=NOW_MS - 30_000)
    redis_client.xgroup_create(key, "p", id="0")
    redis_client.xack(key, "p", *read(redis_client, key, "p", "c1", 7))
    upkeep = RedisStreamUpkeep(redis_client, key, "alerts", "p", keep_ms=60_000)
    assert upkeep.trim(NOW_MS) == len(old)
    assert ids_of(redis_client, key) == young


def test_trim_alerts_retention_never_removes_unacknowledged_old_entries(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}alerts"
    old = fill(redis_client, key, 6, first_ms=NOW_MS - 120_000)
    redis_client.xgroup_create(key, "p", id="0")
    redis_client.xack(key, "p", *read(redis_client, key, "p", "c1", 2))
    upkeep = RedisStreamUpkeep(redis_client, key, "alerts", "p", keep_ms=60_000)
    assert upkeep.trim(NOW_MS) == 2
    assert ids_of(redis_client, key) == old[2:]


def test_trim_sequence_at_its_maximum_moves_to_the_next_millisecond(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}bars.finalized"
    top = redis_client.xadd(key, {"n": 0}, id="5-18446744073709551615").decode()
    nxt = redis_client.xadd(key, {"n": 1}, id="6-0").decode()
    redis_client.xgroup_create(key, "p", id="0")
    redis_client.xack(key, "p", *read(redis_client, key, "p", "c1", 1))
    assert RedisStreamUpkeep(redis_client, key, "b", "p").trim(NOW_MS) == 1
    assert ids_of(redis_client, key) == [nxt] != [top]


def test_backlog_is_lag_plus_pending_of_the_named_group(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}bars.finalized"
    upkeep = RedisStreamUpkeep(redis_client, key, "bars.finalized", "p")
    assert upkeep.backlog() == Backlog(0, 0, 0, 0)  # no stream yet
    fill(redis_client, key, 10)
    assert upkeep.backlog() == Backlog(10, 0, 10, 10)  # no group yet: all of it
    redis_client.xgroup_create(key, "p", id="0")
    redis_client.xgroup_create(key, "other", id="$")
    done = read(redis_client, key, "p", "c1", 3)
    redis_client.xack(key, "p", *done)
    read(redis_client, key, "p", "c1", 2)  # pending
    assert upkeep.backlog() == Backlog(10, 2, 5, 7)
    upkeep.trim(NOW_MS)  # "other" is at the end: p's 3 acknowledged entries go
    assert upkeep.backlog() == Backlog(7, 2, 5, 7)
