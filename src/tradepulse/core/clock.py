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

from collections.abc import Callable, Sequence

from tradepulse.core.types import TsMs

NEVER: TsMs = -(1 << 62)

_ObserveFloors = Callable[
    [dict[int, TsMs], TsMs, list[int], list[TsMs], Callable[[int, TsMs], TsMs]], list[TsMs]
]


def _compiled_floors() -> _ObserveFloors | None:
    """``EventClock.observe_all``'s loop compiled (``_kernels.observe_floors``), or None
    where the extension is not built (the Python loop then runs: the same floors)."""
    try:
        from tradepulse.core._kernels import observe_floors
    except ImportError:
        return None
    return observe_floors


_observe_floors = _compiled_floors()


class EventClock:
    """Watermark over partitions; partitions must be registered (or observed) to count.

    Partitions read by other processes of the group count too once their newest trade
    times are known (``merge``, from the group's shared record), so every process of a
    group converges to the watermark one process reading every partition would have.

    That watermark is a minimum over *every* partition of the topic: one that no process
    has read yet is at ``NEVER``. Once the topic's partitions are known (``assign`` with
    ``topic``), a partition neither read here nor in the record therefore holds the
    watermark; so does having no partition at all (before the first assignment, the record
    alone may not cover the topic). Otherwise a process could pass the end of a minute that
    a partition it is about to read (at a restart, or when it is handed over) still has
    trades of, and finalize bars early.

    The watermark never moves back (a partition newly assigned or merged that is behind
    holds it where it is until it catches up): every time it was computed from is a point
    up to which that partition's trades were applied and stored."""

    __slots__ = ("_complete", "_newest", "_others", "_topic", "_watermark")

    def __init__(self, partitions: tuple[int, ...] = ()) -> None:
        self._newest: dict[int, TsMs] = dict.fromkeys(partitions, NEVER)
        self._others: dict[int, TsMs] = {}
        self._topic: frozenset[int] | None = None  # every partition of the topic, once known
        self._complete = False  # has partitions, and every one of the topic is known
        self._watermark: TsMs = NEVER
        self._known_changed()

    def _known_changed(self) -> None:
        """After a change of the partitions read here or recorded."""
        topic, newest, others = self._topic, self._newest, self._others
        self._complete = bool(newest) and (
            topic is None or all(p in newest or p in others for p in topic)
        )

    def _recompute(self) -> None:
        if not self._complete:
            return  # a partition of the topic is unknown: it may be at NEVER
        low = min(self._newest.values())
        if self._others:
            low = min(low, *self._others.values())
        self._watermark = max(self._watermark, low)

    def observe(self, partition: int, ts_ms: TsMs) -> None:
        """Record a trade time read from ``partition``."""
        newest = self._newest
        old = newest.get(partition)
        if old is None or ts_ms > old:
            newest[partition] = ts_ms
            if old is None or old <= self._watermark:
                if old is None:
                    self._others.pop(partition, None)
                    self._known_changed()
                self._recompute()

    def observe_all(self, partitions: Sequence[int], times_ms: Sequence[TsMs]) -> list[TsMs]:
        """``observe`` each ``(partition, time)`` in order; returns ``now_ms()`` right after
        each one (the floor of each trade of a batch), in one call."""
        if _observe_floors is not None and type(partitions) is list and type(times_ms) is list:
            return _observe_floors(self._newest, self._watermark, partitions, times_ms,
                                   self._observe_then_now)  # fmt: skip
        newest = self._newest
        watermark = self._watermark
        out: list[TsMs] = []
        append = out.append
        for partition, ts_ms in zip(partitions, times_ms, strict=True):
            old = newest.get(partition)
            if old is None or ts_ms > old:
                if old is None or old <= watermark:  # the watermark may move
                    self.observe(partition, ts_ms)
                    watermark = self._watermark
                else:  # the partition was ahead of the watermark: only its time moves
                    newest[partition] = ts_ms
            append(watermark)
        return out

    def _observe_then_now(self, partition: int, ts_ms: TsMs) -> TsMs:
        self.observe(partition, ts_ms)
        return self._watermark

    def assign(self, partitions: tuple[int, ...], topic: tuple[int, ...] | None = None) -> None:
        """Replace the set of partitions read (keeps what was seen of those still read);
        ``topic``: every partition of the topic, when known."""
        self._newest = {p: self._newest.get(p, NEVER) for p in partitions}
        for p in partitions:
            self._others.pop(p, None)
        if topic is not None:
            self._topic = frozenset(topic)
            self._others = {p: t for p, t in self._others.items() if p in self._topic}
        self._known_changed()
        self._recompute()

    def merge(self, known: dict[int, TsMs]) -> None:
        """Newest trade times per partition as the group last recorded them; those of
        partitions this process does not read (and of the topic, when it is known) join
        the watermark."""
        topic = self._topic
        self._others = {p: t for p, t in known.items()
                        if p not in self._newest and (topic is None or p in topic)}  # fmt: skip
        self._known_changed()
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

    def assign(self, partitions: tuple[int, ...], topic: tuple[int, ...] | None = None) -> None:
        """Manual clocks ignore partitions."""

    @property
    def partitions(self) -> dict[int, TsMs]:
        return {}
