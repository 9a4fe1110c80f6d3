"""The wall clock: the only place that reads system time for the windows."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tradepulse.core.types import TsMs


class WallClock:
    """``now_ms()`` is system time in epoch milliseconds; trades do not move it."""

    __slots__ = ()

    def now_ms(self) -> TsMs:
        return time.time_ns() // 1_000_000

    def observe(self, partition: int, ts_ms: TsMs) -> None:
        """The wall clock ignores trade times."""

    def observe_all(self, partitions: Sequence[int], times_ms: Sequence[TsMs]) -> list[TsMs]:
        """The wall clock ignores trade times: the time now, read once per trade (as one
        ``now_ms()`` per trade would)."""
        time_ns = time.time_ns
        return [time_ns() // 1_000_000 for _ in times_ms]

    def merge(self, known: dict[int, TsMs]) -> None:
        """The wall clock ignores other processes."""

    def assign(self, partitions: tuple[int, ...], topic: tuple[int, ...] | None = None) -> None:
        """The wall clock ignores partitions."""

    @property
    def partitions(self) -> dict[int, TsMs]:
        return {}


def wall_now_ms() -> TsMs:
    """System time in epoch milliseconds (for the future-time check of incoming trades)."""
    return time.time_ns() // 1_000_000
