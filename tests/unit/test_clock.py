"""The event clock's watermark rule (ARCHITECTURE §4) and the manual clock."""

from __future__ import annotations

import time

from tradepulse.adapters.clock import WallClock
from tradepulse.core.clock import NEVER, EventClock, ManualClock


def test_watermark_is_min_over_partitions_of_newest_trade() -> None:
    clock = EventClock(partitions=(0, 1))
    clock.observe(0, 5_000)
    assert clock.now_ms() == NEVER  # partition 1 has seen nothing yet
    clock.observe(1, 3_000)
    assert clock.now_ms() == 3_000
    clock.observe(0, 9_000)  # partition 0 runs ahead: the watermark waits for 1
    assert clock.now_ms() == 3_000
    clock.observe(1, 7_000)
    assert clock.now_ms() == 7_000


def test_older_trade_does_not_move_watermark_back() -> None:
    clock = EventClock()
    clock.observe(0, 5_000)
    clock.observe(0, 1_000)
    assert clock.now_ms() == 5_000


def test_single_partition_watermark_is_newest_trade() -> None:
    clock = EventClock()
    for ts in (1, 7, 3, 9, 2):
        clock.observe(0, ts)
    assert clock.now_ms() == 9


def test_reassignment_keeps_what_was_seen_of_kept_partitions_and_never_goes_back() -> None:
    clock = EventClock(partitions=(0, 1))
    clock.observe(0, 10)
    clock.observe(1, 20)
    clock.assign((1, 2))
    assert clock.now_ms() == 10  # partition 2 unseen: the watermark waits, not back
    clock.observe(2, 15)
    assert clock.now_ms() == 15
    clock.observe(2, 30)
    assert (clock.now_ms(), clock.partitions) == (20, {1: 20, 2: 30})


def test_merged_partitions_of_other_processes_hold_the_watermark() -> None:
    clock = EventClock(partitions=(0, 1))
    clock.observe(0, 50)
    clock.observe(1, 60)
    assert clock.now_ms() == 50
    clock.merge({0: 40, 1: 60, 2: 55, 3: 70})  # own partitions: own values count
    assert clock.now_ms() == 50
    clock.observe(0, 80)
    assert clock.now_ms() == 55  # partition 2 (another process) is behind
    clock.merge({2: 90, 3: 95})
    assert clock.now_ms() == 60
    clock.merge({2: 10})  # a stale record never moves the watermark back
    assert clock.now_ms() == 60
    assert clock.partitions == {0: 80, 1: 60}


def test_record_alone_does_not_move_a_clock_without_partitions() -> None:
    """Before its first assignment a process knows only what the others recorded, which
    need not be every partition: a partition it is about to read may be far behind."""
    clock = EventClock()
    clock.merge({0: 50, 1: 60})
    assert clock.now_ms() == NEVER
    clock.assign((2,), topic=(0, 1, 2))
    clock.observe(2, 10)
    assert clock.now_ms() == 10  # the record counts along with a partition of its own


def test_partition_of_the_topic_nobody_read_holds_the_watermark() -> None:
    clock = EventClock()
    clock.assign((0, 1), topic=(0, 1, 2, 3))
    clock.observe(0, 50)
    clock.observe(1, 60)
    clock.merge({2: 55})
    assert clock.now_ms() == NEVER  # partition 3: no trade read by any process yet
    clock.merge({2: 55, 3: 70})
    assert clock.now_ms() == 50
    clock.merge({2: 55, 3: 70, 9: 1})  # not a partition of the topic: ignored
    assert clock.now_ms() == 50
    clock.assign((0, 1, 2, 3))  # handed over: restored from the record (here, by hand)
    clock.observe(0, 80)
    assert clock.now_ms() == 50  # partitions 2 and 3 are not read here yet: NEVER, held
    clock.observe(2, 55)
    clock.observe(3, 70)
    assert clock.now_ms() == 55


def test_manual_clock_moves_only_by_hand() -> None:
    clock = ManualClock(100)
    clock.observe(0, 10_000)
    assert clock.now_ms() == 100
    clock.advance(50)
    clock.set(clock.now_ms() + 1)
    assert clock.now_ms() == 151


def test_wall_clock_reads_system_time_and_ignores_trades() -> None:
    clock = WallClock()
    before = time.time_ns() // 1_000_000
    clock.observe(0, 1)
    now = clock.now_ms()
    assert before <= now <= time.time_ns() // 1_000_000
