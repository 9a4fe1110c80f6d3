"""Clocks that need no system time: the event clock (watermark) and a manual clock.

A clock answers ``now_ms()``: the floor of every token's evaluation time. A token is
evaluated at ``T = max(its newest trade, clock.now_ms())``.

Event clock: the watermark is the smallest, over the partitions being read, of the newest
trade time seen in each partition. A partition that runs ahead therefore never makes
another partition's trades late::

    partition 0: ──●──●────●──●──●──●──●──────>  newest 0 ─┐
    partition 1: ──●───●──●───>                  newest 1 ─┴─ watermark = min

The wall clock reads system time and therefore lives in ``tradepulse.adapters.clock``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tradepulse.core.types import TsMs

NEVER: TsMs = -(1 << 62)


class EventClock:
    """Watermark over partitions; partitions must be registered (or observed) to count.

    Partitions read by other processes of the group count too once their newest trade
    times are known (``merge``, from the group's shared record), so every process of a
    group converges to the watermark one process reading every partition would have. The
    watermark never moves back (a partition newly assigned or merged that is behind holds
    it where it is until it catches up)."""

    __slots__ = ("_newest", "_others", "_watermark")

    def __init__(self, partitions: tuple[int, ...] = ()) -> None:
        self._newest: dict[int, TsMs] = dict.fromkeys(partitions, NEVER)
        self._others: dict[int, TsMs] = {}
        self._watermark: TsMs = NEVER

    def _recompute(self) -> None:
        low = min(self._newest.values(), default=NEVER)
        if self._others:
            low = min(low, *self._others.values()) if self._newest else min(self._others.values())
        self._watermark = max(self._watermark, low)

    def observe(self, partition: int, ts_ms: TsMs) -> None:
        """Record a trade time read from ``partition``."""
        newest = self._newest
        old = newest.get(partition)
        if old is None or ts_ms > old:
            newest[partition] = ts_ms
            if old is None or old <= self._watermark:
                self._others.pop(partition, None)
                self._recompute()

    def observe_all(self, partitions: Sequence[int], times_ms: Sequence[TsMs]) -> list[TsMs]:
        """``observe`` each ``(partition, time)`` in order; returns ``now_ms()`` right after
        each one (the floor of each trade of a batch), in one call."""
        newest = self._newest
        watermark = self._watermark
        out: list[TsMs] = []
        append = out.append
        for partition, ts_ms in zip(partitions, times_ms, strict=True):
            old = newest.get(partition)
            if old is None or ts_ms > old:
                newest[partition] = ts_ms
                if old is None or old <= watermark:  # the watermark may move: as ``observe``
                    self._others.pop(partition, None)
                    self._recompute()
                    watermark = self._watermark
            append(watermark)
        return out

    def assign(self, partitions: tuple[int, ...]) -> None:
        """Replace the set of partitions read (keeps what was seen of those still read)."""
        self._newest = {p: self._newest.get(p, NEVER) for p in partitions}
        for p in partitions:
            self._others.pop(p, None)
        self._recompute()

    def merge(self, known: dict[int, TsMs]) -> None:
        """Newest trade times per partition as the group last recorded them; those of
        partitions this process does not read join the watermark."""
        self._others = {p: t for p, t in known.items() if p not in self._newest}
        self._recompute()

    def now_ms(self) -> TsMs:
        return self._watermark

    @property
    def partitions(self) -> dict[int, TsMs]:
        """Newest trade time per partition read by this process."""
        return dict(self._newest)


class ManualClock:
    """A clock tests move by hand."""

    __slots__ = ("_now",)

    def __init__(self, now_ms: TsMs = 0) -> None:
        self._now = now_ms

    def now_ms(self) -> TsMs:
        return self._now

    def set(self, now_ms: TsMs) -> None:
        self._now = now_ms

    def advance(self, delta_ms: int) -> None:
        self._now += delta_ms

    def observe(self, partition: int, ts_ms: TsMs) -> None:
        """Manual clocks ignore trade times."""

    def observe_all(self, partitions: Sequence[int], times_ms: Sequence[TsMs]) -> list[TsMs]:
        """Manual clocks ignore trade times: ``now_ms()`` for each."""
        return [self._now] * len(times_ms)

    def merge(self, known: dict[int, TsMs]) -> None:
        """Manual clocks ignore other processes."""

    def assign(self, partitions: tuple[int, ...]) -> None:
        """Manual clocks ignore partitions."""

    @property
    def partitions(self) -> dict[int, TsMs]:
        return {}
