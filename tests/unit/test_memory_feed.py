"""The demo's WebSocket feed over the in-memory store's notices (``api/memory_feed.py``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from tests.support.api import alert
from tradepulse.adapters.memory_store import Notice
from tradepulse.api.feeds import StreamId
from tradepulse.api.memory_feed import MemoryFeed, MemoryRuleOwners


class _Store:
    """Stands in for ``MemoryStore``'s listener registry only (no state is read)."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[Notice], None]] = []

    def subscribe(self, listener: Callable[[Notice], None]) -> None:
        self.listeners.append(listener)

    def notify(self, notice: Notice) -> None:
        for listener in self.listeners:
            listener(notice)


def _alert_notice(n: int) -> Notice:
    made = alert("r1", "TOK", 1_000 + n, n)
    return Notice("alert", made.token, made)


def _feed(clock: list[int]) -> tuple[_Store, MemoryFeed]:
    store = _Store()
    feed = MemoryFeed(store, wall_ms=lambda: clock[0])  # type: ignore[arg-type]
    return store, feed


def test_memory_feed_alert_ids_increase_when_the_clock_steps_back() -> None:
    clock = [5_000]
    store, feed = _feed(clock)
    for n, now in enumerate([5_000, 5_000, 4_000, 6_000]):
        clock[0] = now
        store.notify(_alert_notice(n))
    entries = asyncio.run(feed.alerts_after(StreamId(0, 0), count=10))
    assert [e.id for e in entries] == [
        StreamId(5_000, 0), StreamId(5_000, 1), StreamId(5_000, 2), StreamId(6_000, 0)
    ]
    assert asyncio.run(feed.last_alert_id()) == StreamId(6_000, 0)


def test_memory_feed_alerts_after_resumes_past_the_given_id_with_count() -> None:
    clock = [1]
    store, feed = _feed(clock)
    for n in range(5):
        clock[0] = 10 + n
        store.notify(_alert_notice(n))
    entries = asyncio.run(feed.alerts_after(StreamId(11, 0), count=2))
    assert [e.id for e in entries] == [StreamId(12, 0), StreamId(13, 0)]
    assert [e.alert.triggered_ms for e in entries] == [1_002, 1_003]


def test_memory_feed_blocking_read_wakes_on_an_alert_from_another_thread() -> None:
    clock = [100]
    store, feed = _feed(clock)

    async def scenario() -> list[StreamId]:
        assert await feed.alerts_after(StreamId(0, 0), count=5, block_ms=10) == []
        timer = threading.Timer(0.2, store.notify, args=(_alert_notice(1),))
        timer.start()
        got = await feed.alerts_after(StreamId(0, 0), count=5, block_ms=5_000)
        timer.join()
        return [e.id for e in got]

    assert asyncio.run(scenario()) == [StreamId(100, 0)]


def test_memory_feed_token_updates_batch_each_token_once_in_order() -> None:
    store, feed = _feed([1])

    async def scenario() -> list[str]:
        updates = feed.token_updates()
        first = await anext(updates)  # attaches; nothing was written: a quiet second
        assert first == []
        for token in ["B", "A", "B", "C"]:
            store.notify(Notice("token", token))
        batch = await anext(updates)
        await updates.aclose()
        return batch

    assert asyncio.run(scenario()) == ["B", "A", "C"]


@pytest.mark.parametrize(("known", "expected"), [({"r1": "alice"}, {"r1": "alice"}), ({}, {})])
def test_memory_rule_owners_answer_only_known_rules(
    known: dict[str, str], expected: dict[str, str]
) -> None:
    owners = MemoryRuleOwners(known.get)
    assert asyncio.run(owners.owners(["r1", "r2"])) == expected
