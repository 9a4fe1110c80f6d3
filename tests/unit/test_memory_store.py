"""What the in-memory store adds to the contract it shares with Redis
(``tests/integration/test_live_store_contract.py``): expiry on its clock, bar history
bounds, alerts kept and announced to listeners."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tradepulse.adapters.memory_store import INDICATORS_TTL_MS, MemoryStore, Notice
from tradepulse.adapters.redis_store import TokenUpdate
from tradepulse.api.memory_reader import MemoryLiveReader
from tradepulse.core.alerts import Alert
from tradepulse.core.bars import Bar
from tradepulse.core.trade import Trade
from tradepulse.core.windows import TokenWindows, parse_windows

SPECS = parse_windows("1min,1hour")
T_MS = 1_750_000_000_000


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def update(token: str, written_ms: int = T_MS, **extra: object) -> TokenUpdate:
    tw = TokenWindows(SPECS)
    return TokenUpdate(token, tw.sync_view(), tw.stats(written_ms), written_ms - 10, written_ms,
                       **extra)  # type: ignore[arg-type]  # fmt: skip


def bar(minute: int, token: str = "TOK") -> Bar:
    return Bar(token, T_MS - T_MS % 60_000 + minute * 60_000, 1, 2, 0.5, 1.5, 10, 15, 9, 6, 3, 1.5)


def alert(token: str, n: int) -> Alert:
    return Alert(f"id-{n}", "rule-1", "rule one", 1, token, T_MS + n, {"price": 1.0}, {}, 0,
                 f"trace-{n}")  # fmt: skip


def test_token_not_written_for_the_ttl_expires_from_summaries_and_detail() -> None:
    clock = Clock(T_MS)
    store = MemoryStore(clock, ttl_ms=3_600_000)
    reader = MemoryLiveReader(store)
    store.write([update("OLD", T_MS), update("NEW", T_MS + 1_000)])
    clock.now_ms = T_MS + 3_600_000  # OLD's write is exactly one TTL old: gone
    assert [s.token for s in asyncio.run(reader.summaries())] == ["NEW"]
    assert asyncio.run(reader.detail("OLD")) is None
    assert asyncio.run(reader.detail("NEW")) is not None


def test_indicators_expire_ten_minutes_after_their_last_write() -> None:
    clock = Clock(T_MS)
    store = MemoryStore(clock)
    store.write([update("TOK", T_MS, indicators={"rsi_14": 50.0})])
    store.write([update("TOK", T_MS + INDICATORS_TTL_MS - 1)])  # no new indicators
    clock.now_ms = T_MS + INDICATORS_TTL_MS - 1
    detail = asyncio.run(MemoryLiveReader(store).detail("TOK"))
    assert detail is not None and detail.indicators == {"rsi_14": 50.0}
    clock.now_ms = T_MS + INDICATORS_TTL_MS
    detail = asyncio.run(MemoryLiveReader(store).detail("TOK"))
    assert detail is not None and detail.indicators is None


def test_bar_history_keeps_only_history_ms_before_the_newest_bar() -> None:
    store = MemoryStore(Clock(T_MS), history_ms=10 * 60_000)
    store.write([update("TOK", finals=[bar(m) for m in range(15)])])
    opens = [c.open_ms for c in store.candles("TOK", "1m", 0, T_MS + 3_600_000)]
    assert opens == [bar(m).open_ms for m in range(4, 15)]


def test_alerts_of_a_write_are_stored_and_announced_after_the_token() -> None:
    store = MemoryStore(Clock(T_MS))
    seen: list[Notice] = []
    store.subscribe(seen.append)
    store.write([update("A", alerts=[alert("A", 1), alert("A", 2)]), update("B")])
    assert [(n.kind, n.token, n.alert.id if n.alert else None) for n in seen] == [
        ("token", "A", None), ("alert", "A", "id-1"), ("alert", "A", "id-2"),
        ("token", "B", None),
    ]  # fmt: skip
    assert [a.id for a in store.alerts.list().alerts] == ["id-2", "id-1"]
    store.unsubscribe(seen.append)
    store.write([update("C")])
    assert len(seen) == 4


def test_failing_listener_is_logged_and_the_write_and_other_listeners_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore(Clock(T_MS))
    seen: list[str] = []

    def broken(_notice: Notice) -> None:
        raise RuntimeError("listener bug")

    store.subscribe(broken)
    store.subscribe(lambda n: seen.append(n.token))
    with caplog.at_level(logging.WARNING):
        assert store.write([update("A")]) == []
    assert seen == ["A"]
    assert "listener failed" in caplog.text
    assert asyncio.run(MemoryLiveReader(store).detail("A")) is not None


def test_nothing_survives_the_process_so_nothing_is_restored() -> None:
    store = MemoryStore(Clock(T_MS))
    store.write([update("A")], {0: T_MS})
    assert store.load_many(["A"], SPECS) == {}
    assert store.partition_tokens([0]) == {}
    assert store.read_watermarks() == {0: T_MS}
    assert store.group_watermarks == {0: T_MS}


def test_retained_trades_follow_every_write_as_the_redis_list_does() -> None:
    """Writes every 20 s over 4 minutes of trades, a 2-minute longest window: the head
    moves, so the store must drop the trades the worker no longer retains."""
    specs = parse_windows("30s,2min")
    clock = Clock(T_MS)
    store = MemoryStore(clock, ttl_ms=120_000)
    tw = TokenWindows(specs)
    trades = [Trade("TOK", "w", i % 2 == 0, 0.1, 1.0, 1.0 + i, 1.0 + i, T_MS + i * 3_000,
                    f"tx{i}", 0) for i in range(80)]  # fmt: skip
    for step in range(13):
        at_ms = T_MS + step * 20_000
        for trade in trades:
            if at_ms - 20_000 < trade.ts_ms <= at_ms:
                tw.add(trade, at_ms)
        stats = tw.stats(at_ms)
        store.write([TokenUpdate("TOK", tw.sync_view(), stats, tw.newest_ms, at_ms)])
        tw.mark_synced()
        clock.now_ms = at_ms
        ((token, updated_ms, kept),) = store.retained_trades(["TOK", "NONE"])
        expected = [t for t in trades if t.ts_ms <= at_ms]
        oldest_kept = max((t for t in expected if t.ts_ms <= at_ms - 120_000),
                          key=lambda t: t.ts_ms, default=None)  # fmt: skip
        start = expected.index(oldest_kept) if oldest_kept is not None else 0
        assert (token, updated_ms) == ("TOK", at_ms)
        assert kept == expected[start:]  # the window, and the price in force when it opened
