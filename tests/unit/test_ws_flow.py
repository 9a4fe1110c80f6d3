"""The pieces of the WebSocket gateway that need no network: the send queue, the token
bucket, stream ids and the rule-owner cache."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tradepulse import metrics
from tradepulse.api.feeds import StreamId, parse_stream_id
from tradepulse.api.owners import CachedRuleOwners
from tradepulse.api.ws_flow import Outbox, TokenBucket


async def drain(box: Outbox) -> list[str]:
    out = []
    while len(box) or box._latest:
        out.append((await box.get())[0])
    return out


def test_outbox_keeps_only_the_newest_stats_per_channel_and_counts_the_dropped() -> None:
    box = Outbox(limit=10)
    before = metrics.WS_DROPPED.labels("token")._value.get()
    box.put_latest("token:A", "a1", "token")
    box.put_latest("token:B", "b1", "token")
    box.put_latest("token:A", "a2", "token")
    box.put_latest("token:A", "a3", "token")
    assert asyncio.run(drain(box)) == ["a3", "b1"]
    assert metrics.WS_DROPPED.labels("token")._value.get() == before + 2


def test_outbox_sends_queued_messages_in_order_before_any_stats() -> None:
    box = Outbox(limit=10)
    box.put_latest("token:A", "stats", "token")
    box.put("subscribed", "control")
    box.put("alert-1", "alerts", 1.0)
    assert asyncio.run(drain(box)) == ["subscribed", "alert-1", "stats"]


def test_outbox_full_queue_refuses_and_keeps_what_it_holds() -> None:
    box = Outbox(limit=3)
    assert [box.put(f"m{i}", "alerts") for i in range(4)] == [True, True, True, False]
    box.put_latest("token:A", "stats", "token")  # slots are not bounded by the queue
    assert asyncio.run(drain(box)) == ["m0", "m1", "m2", "stats"]


def test_outbox_discard_forgets_the_waiting_update_of_a_channel() -> None:
    box = Outbox(limit=3)
    box.put_latest("token:A", "a", "token")
    box.put_latest("token:B", "b", "token")
    box.discard("token:A")
    assert asyncio.run(drain(box)) == ["b"]


def test_outbox_wait_room_blocks_above_half_full_until_drained() -> None:
    async def scenario() -> list[str]:
        box = Outbox(limit=4)
        for i in range(3):
            box.put(f"m{i}", "alerts")
        waiter = asyncio.create_task(box.wait_room())
        await asyncio.sleep(0.01)
        events = ["waiting" if not waiter.done() else "free"]
        await box.get()
        await asyncio.sleep(0.01)
        events.append("free" if waiter.done() else "waiting")
        return events

    assert asyncio.run(scenario()) == ["waiting", "free"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.rejected == 1
    clock.now += 0.5  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
    assert bucket.rejected == 2
    clock.now += 10  # full again: the refusals are forgiven
    assert bucket.take()
    assert bucket.rejected == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000000-5", StreamId(1_700_000_000_000, 5)),
        ("1700000000000", StreamId(1_700_000_000_000, 0)),
        ("0-0", StreamId(0, 0)),
        ("", None),
        ("-", None),
        ("1-2-3", None),
        ("abc-1", None),
        ("$", None),
    ],
)
def test_parse_stream_id_accepts_ms_seq_or_ms(text: str, expected: StreamId | None) -> None:
    assert parse_stream_id(text) == expected


def test_stream_ids_order_by_ms_then_seq() -> None:
    assert StreamId(5, 10) < StreamId(6, 0) < StreamId(6, 1)
    assert str(StreamId(6, 1)) == "6-1"


class Lookups:
    """A lookup over a fixed table that records what it was asked."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def __call__(self, ids: Sequence[str]) -> dict[str, str]:
        self.calls.append(list(ids))
        return {i: self.table[i] for i in ids if i in self.table}


def test_owner_cache_asks_once_per_known_rule_and_again_for_unknown_after_ttl() -> None:
    lookups, clock = Lookups({"r1": "alice", "r2": "bob"}), FakeClock()
    cache = CachedRuleOwners(lookups, unknown_ttl_s=60, clock=clock)
    assert asyncio.run(cache.owners(["r1", "r2", "r1", "zz"])) == {"r1": "alice", "r2": "bob"}
    assert asyncio.run(cache.owners(["r2", "zz", "r1"])) == {"r2": "bob", "r1": "alice"}
    lookups.table["zz"] = "carol"
    clock.now += 61
    assert asyncio.run(cache.owners(["zz", "r1"])) == {"zz": "carol", "r1": "alice"}
    assert lookups.calls == [["r1", "r2", "zz"], ["zz"]]


def test_owner_cache_is_bounded_oldest_first() -> None:
    lookups = Lookups({f"r{i}": "u" for i in range(5)})
    cache = CachedRuleOwners(lookups, size=2)
    for i in range(3):
        asyncio.run(cache.owners([f"r{i}"]))
    asyncio.run(cache.owners(["r2", "r1", "r0"]))
    assert lookups.calls == [["r0"], ["r1"], ["r2"], ["r0"]]


def test_token_query_redactor_hides_the_jwt_of_a_handshake_log_line() -> None:
    import logging

    from tradepulse.api.ws import TokenQueryRedactor

    record = logging.LogRecord("uvicorn.error", logging.INFO, "x", 1,
                               '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5", "/ws?a=1&token=eyJ.abc.def&b=2"), None)  # fmt: skip
    assert TokenQueryRedactor().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "WebSocket /ws?a=1&token=***&b=2" [accepted]'
