"""1-minute bars: the record shared by the bar builder, the Redis hand-off and PostgreSQL,
and ``BarBuilder``, which makes them from one token's trades (pure: time is passed in)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from heapq import heappop, heappush
from math import fsum

import msgspec

from tradepulse.core.clock import NEVER
from tradepulse.core.trade import Trade
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import AddResult

MINUTE_MS = 60_000


class Bar(msgspec.Struct, frozen=True, gc=False):
    """One token's trades of one UTC minute ``[open_ms, open_ms + 60_000)``.

    ``volume`` is in token units, the ``*_usd`` volumes in USD, ``vwap = volume_usd / volume``.
    ``revision`` is 0 for the first final version of a bar and grows by one each time a
    late trade corrects it (same ``(token, open_ms)`` key, higher revision wins).
    """

    token: TokenId
    open_ms: TsMs
    open: float
    high: float
    low: float
    close: float
    volume: float
    volume_usd: float
    buy_volume_usd: float
    sell_volume_usd: float
    trades: int
    vwap: float
    revision: int = 0


DEFAULT_GRACE_MS = 2_000
DEFAULT_HORIZON_MS = 3_600_000


def minute_of(ts_ms: TsMs) -> TsMs:
    """Start of the UTC minute holding ``ts_ms`` (floor, also for negative times)."""
    return ts_ms - ts_ms % MINUTE_MS


class BarBuilderSnapshot(msgspec.Struct, frozen=True):
    """What a ``BarBuilder`` knows beyond its trades (see ``BarBuilder.restore``).

    ``clock_ms`` is ``T`` of the last ``advance``; bars with ``open_ms < final_before_ms`` are
    final. ``revised`` maps a final bar already emitted with a revision >= 1 to that revision
    (every other emitted final bar was emitted with revision 0); ``pending`` maps a final bar
    whose current content has not been emitted yet to the revision it will be emitted with.
    """

    clock_ms: TsMs
    final_before_ms: TsMs
    revised: dict[TsMs, int] = {}
    pending: dict[TsMs, int] = {}


#: Every finite double is an integer multiple of 2**-1074: scaled by 2**1074, sums of doubles
#: are exact Python integers, and ``int / int`` rounds the exact sum correctly (as math.fsum).
_SCALE_BITS = 1074
_SCALE = 1 << _SCALE_BITS


def _exact(x: float) -> int:
    """``x * 2**1074`` as an exact integer."""
    numerator, denominator = x.as_integer_ratio()
    return numerator << (_SCALE_BITS + 1 - denominator.bit_length())


def _exact_sum(values: list[float]) -> int:
    """``sum(map(_exact, values))`` in a few C-level passes of ``math.fsum`` instead of one
    big-integer step per value (``values`` is consumed: parts are appended to it).

    Each pass takes ``part``, the rounded sum of what remains, out of it: ``part`` joins the
    result (exactly, by ``_exact``) and ``-part`` the values, so the result plus the exact sum
    of the values stays the exact sum sought. A pass that gives 0 ends it: the remainder is a
    multiple of 2**-1074, and a non-zero one would not round to 0. Two or three passes in
    practice (each takes out about 53 more bits). Raises ``OverflowError`` when a sum exceeds
    the float range (the caller then sums value by value)."""
    total = 0
    while (part := fsum(values)) != 0.0:
        total += _exact(part)
        values.append(-part)
    return total


#: A run of at least this many trades of one minute is reduced with C-level passes
#: (``_Minute.extend``); shorter ones one trade at a time.
_RUN_VECTOR_MIN = 16

#: A run: ``(start, trades, first_ms, open, last_ms, close, high, low, amount, bought,
#: sold)``, the sums as ``_exact`` integers.
_Run = tuple[TsMs, int, TsMs, float, TsMs, float, float, float, int, int, int]
_MinuteRuns = Callable[[list[Trade], TokenId], "tuple[list[_Run], int] | None"]


def _compiled_runs() -> _MinuteRuns | None:
    """The compiled reduction of ``BarBuilder.add_many`` (``_kernels.minute_runs``), or
    None where the extension is not built (the Python code then runs: the same results)."""
    try:
        from tradepulse.core._kernels import minute_runs
    except ImportError:
        return None
    return minute_runs


_minute_runs = _compiled_runs()


class _Minute:
    """The trades of one minute, reduced to what a bar needs, kept exact.

    Open and close are the prices of the first and last trade by time; ties keep arrival
    order (a later arrival with an equal time replaces the close, never the open), so the
    result is that of sorting by ``(ts_ms, arrival)``. The amounts are summed exactly as
    integers (``_exact``) and rounded once when a bar is built: the sums are exactly rounded,
    hence independent of arrival order, a late trade corrects them exactly, and both adding a
    trade and building the bar cost O(1).
    """

    __slots__ = ("amount", "bar", "buys", "close", "first_ms", "high", "last_ms", "low", "open",
                 "sells", "sent", "trades")  # fmt: skip

    def __init__(self, trade: Trade) -> None:
        price = trade.price_usd
        self.first_ms = self.last_ms = trade.ts_ms
        self.open = self.close = self.high = self.low = price
        self.trades = 1
        self.amount = _exact(trade.token_amount)
        usd = _exact(trade.volume_usd)
        self.buys, self.sells = (usd, 0) if trade.is_buy else (0, usd)
        self.sent = -1  # revision last emitted; -1: never
        self.bar: Bar | None = None  # cache of the current content (revision 0)

    @classmethod
    def of_run(cls, run: _Run) -> _Minute:
        """The minute of one reduced run (what ``_Minute(first)`` and ``extend`` of the
        rest give)."""
        self = cls.__new__(cls)
        (_, self.trades, self.first_ms, self.open, self.last_ms, self.close, self.high,
         self.low, self.amount, self.buys, self.sells) = run  # fmt: skip
        self.sent = -1
        self.bar = None
        return self

    def merge(self, run: _Run) -> None:
        """``extend`` by the trades of a reduced run, with the same result: the open is
        taken when the run's earliest time is earlier, the close when its latest is not
        earlier (as ``add`` one at a time does)."""
        _, count, first_ms, open_, last_ms, close, high, low, amount, bought, sold = run
        if first_ms < self.first_ms:
            self.first_ms, self.open = first_ms, open_
        if last_ms >= self.last_ms:
            self.last_ms, self.close = last_ms, close
        self.high = max(self.high, high)
        self.low = min(self.low, low)
        self.amount += amount
        self.buys += bought
        self.sells += sold
        self.trades += count
        self.bar = None

    def add(self, trade: Trade) -> None:
        ts, price = trade.ts_ms, trade.price_usd
        if ts < self.first_ms:
            self.first_ms, self.open = ts, price
        if ts >= self.last_ms:
            self.last_ms, self.close = ts, price
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.trades += 1
        self.amount += _exact(trade.token_amount)
        if trade.is_buy:
            self.buys += _exact(trade.volume_usd)
        else:
            self.sells += _exact(trade.volume_usd)
        self.bar = None

    def extend(self, trades: Sequence[Trade]) -> None:
        """``add`` of each trade in order, with the same result: a long run by C-level
        passes over its columns (``_extend_columns``), a short one trade by trade with the
        state in local variables meanwhile (the same sequence of steps as ``add``)."""
        if len(trades) >= _RUN_VECTOR_MIN:
            try:
                self._extend_columns(trades)
                return
            except OverflowError:
                pass  # sums beyond the float range: exact integers step by step, as ``add``
        first_ms, last_ms, open_, close = self.first_ms, self.last_ms, self.open, self.close
        high, low = self.high, self.low
        amount, buys, sells = self.amount, self.buys, self.sells
        for trade in trades:
            ts, price = trade.ts_ms, trade.price_usd
            if ts < first_ms:
                first_ms, open_ = ts, price
            if ts >= last_ms:
                last_ms, close = ts, price
            if price > high:
                high = price
            elif price < low:
                low = price
            numerator, denominator = trade.token_amount.as_integer_ratio()  # ``_exact``
            amount += numerator << (_SCALE_BITS + 1 - denominator.bit_length())
            numerator, denominator = trade.volume_usd.as_integer_ratio()
            if trade.is_buy:
                buys += numerator << (_SCALE_BITS + 1 - denominator.bit_length())
            else:
                sells += numerator << (_SCALE_BITS + 1 - denominator.bit_length())
        self.first_ms, self.last_ms, self.open, self.close = first_ms, last_ms, open_, close
        self.high, self.low = high, low
        self.amount, self.buys, self.sells = amount, buys, sells
        self.trades += len(trades)
        self.bar = None

    def _extend_columns(self, trades: Sequence[Trade]) -> None:
        """``extend`` by whole columns. The sums are exact (``_exact_sum``); the open is the
        price of the first trade with the earliest time and the close that of the last one
        with the latest time, taken only when they are earlier (the open) or not earlier
        (the close) than those held: what ``add`` one at a time leaves. Nothing changes
        when it raises ``OverflowError``."""
        amount = _exact_sum([t.token_amount for t in trades])
        bought = _exact_sum([t.volume_usd for t in trades if t.is_buy])
        sold = _exact_sum([t.volume_usd for t in trades if not t.is_buy])
        times = [t.ts_ms for t in trades]
        prices = [t.price_usd for t in trades]
        first_ms, last_ms = min(times), max(times)
        if first_ms < self.first_ms:
            self.first_ms, self.open = first_ms, prices[times.index(first_ms)]
        if last_ms >= self.last_ms:
            times.reverse()
            self.last_ms, self.close = last_ms, prices[-1 - times.index(last_ms)]
        high, low = max(prices), min(prices)
        self.high = max(self.high, high)
        self.low = min(self.low, low)
        self.amount += amount
        self.buys += bought
        self.sells += sold
        self.trades += len(trades)
        self.bar = None

    def to_bar(self, token: TokenId, open_ms: TsMs, revision: int) -> Bar:
        """The bar with ``revision`` (cached until a trade arrives)."""
        bar = self.bar
        if bar is None:
            volume = self.amount / _SCALE
            volume_usd = (self.buys + self.sells) / _SCALE
            bar = self.bar = Bar(
                token, open_ms, self.open, self.high, self.low, self.close, volume, volume_usd,
                self.buys / _SCALE, self.sells / _SCALE, self.trades, volume_usd / volume,
            )  # fmt: skip
        return bar if revision == 0 else msgspec.structs.replace(bar, revision=revision)


class BarBuilder:
    """The 1-minute bars of one token, fed one trade at a time; pure (time is passed in).

    Timeline of one bar with ``grace_ms = 2_000`` (times relative to ``open_ms``)::

        0                            60_000     62_000
        [───── trades of the bar ─────)           │
                                      │  grace   │
                                                 T >= 62_000: final, emitted (revision 0)
        a trade of the bar arriving later corrects it: the next ``advance`` re-emits it
        with revision + 1, as long as the minute is inside the horizon

    * ``add(trade)`` files the trade under its minute ``ts_ms - ts_ms % 60_000``. It does not
      deduplicate: the caller (the window engine) drops repeated trades first.
    * ``advance(now_ms)`` moves the token's clock ``T`` (it never goes back; pass the token's
      evaluation time, which already covers its newest trade) and returns, oldest first,
      the bars that became final (``open_ms + 60_000 + grace_ms <= T``, revision 0) and
      the final bars changed by late trades since the previous call (revision + 1, once per
      call however many late trades arrived). A minute without trades has no bar; a trade
      arriving after such a minute became final creates its bar, emitted with revision 0.
    * The horizon: a trade whose minute starts at or before ``T - horizon_ms`` (``T`` of the
      last ``advance``) is refused (``AddResult.LATE``), and such bars are forgotten. Every
      bar held therefore consists of trades newer than ``T - horizon_ms``, which the window
      engine retains when ``horizon_ms`` is at most its longest window: a restart can rebuild
      the bars exactly from those trades (``restore``).

    Cost: ``add`` O(1); building a bar is O(trades in its minute) (exact sums), done once per
    change; ``advance`` O(bars emitted + log bars held).
    """

    __slots__ = ("_clock_ms", "_final_before_ms", "_live", "_minutes", "_order", "_unsent",
                 "grace_ms", "horizon_ms", "token")  # fmt: skip

    def __init__(
        self,
        token: TokenId,
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
        horizon_ms: int = DEFAULT_HORIZON_MS,
    ) -> None:
        if grace_ms < 0:
            raise ValueError(f"grace_ms must be >= 0, got {grace_ms}")
        if horizon_ms < MINUTE_MS + grace_ms:
            raise ValueError(f"horizon_ms must be >= 60_000 + grace_ms, got {horizon_ms}")
        self.token = token
        self.grace_ms = grace_ms
        self.horizon_ms = horizon_ms
        self._clock_ms: TsMs = NEVER
        self._final_before_ms: TsMs = NEVER  # bars with open_ms < this are final
        self._minutes: dict[TsMs, _Minute] = {}
        self._order: list[TsMs] = []  # heap of the minutes held, to forget the oldest
        self._live: set[TsMs] = set()  # minutes not final yet
        self._unsent: set[TsMs] = set()  # final minutes whose content was not emitted

    @property
    def clock_ms(self) -> TsMs:
        """``T`` of the last ``advance`` (``NEVER`` before the first)."""
        return self._clock_ms

    def add(self, trade: Trade) -> AddResult:
        """File ``trade``: ``APPLIED``, or ``LATE`` when its minute is beyond the horizon.

        Raises ``ValueError`` for a trade of another token."""
        if trade.token != self.token:
            raise ValueError(f"trade of token {trade.token!r} given to bars of {self.token!r}")
        ts = trade.ts_ms
        start = ts - ts % MINUTE_MS
        if start <= self._clock_ms - self.horizon_ms:
            return AddResult.LATE
        minute = self._minutes.get(start)
        if minute is None:
            self._hold(start, _Minute(trade))
        else:
            minute.add(trade)
            self._changed(start)
        return AddResult.APPLIED

    def add_many(self, trades: Sequence[Trade]) -> None:
        """``add`` of each trade in order (trades beyond the horizon are dropped), in one
        call: the trades are filed a run of one minute at a time.

        Raises ``ValueError`` for a trade of another token (those before it are filed)."""
        token = self.token
        if _minute_runs is not None and type(trades) is list:
            reduced = _minute_runs(trades, token)
            if reduced is not None:  # None: an amount not finite, left to the Python code
                runs, foreign = reduced
                for reduced_run in runs:
                    self._file_run(reduced_run)
                if foreign >= 0:
                    other = trades[foreign].token
                    raise ValueError(f"trade of token {other!r} given to bars of {token!r}")
                return
        run: list[Trade] = []
        run_start = NEVER
        for trade in trades:
            if trade.token != token:
                self._file(run_start, run)
                raise ValueError(f"trade of token {trade.token!r} given to bars of {token!r}")
            ts = trade.ts_ms
            start = ts - ts % MINUTE_MS
            if start == run_start:
                run.append(trade)
            else:
                self._file(run_start, run)
                run_start, run = start, [trade]
        self._file(run_start, run)

    def _file(self, start: TsMs, trades: list[Trade]) -> None:
        """``add`` of trades of the minute ``start``, in order."""
        if not trades or start <= self._clock_ms - self.horizon_ms:
            return
        minute = self._minutes.get(start)
        if minute is None:
            minute = _Minute(trades[0])
            if len(trades) > 1:
                minute.extend(trades[1:])
            self._hold(start, minute)
        else:
            minute.extend(trades)
            self._changed(start)

    def _file_run(self, run: _Run) -> None:
        """``_file`` of a run reduced by ``_kernels.minute_runs``."""
        start = run[0]
        if start <= self._clock_ms - self.horizon_ms:
            return
        minute = self._minutes.get(start)
        if minute is None:
            self._hold(start, _Minute.of_run(run))
        else:
            minute.merge(run)
            self._changed(start)

    def _hold(self, start: TsMs, minute: _Minute) -> None:
        """Keep a new minute: in the forget order, live, or unsent when already final."""
        self._minutes[start] = minute
        heappush(self._order, start)
        (self._live if start >= self._final_before_ms else self._unsent).add(start)

    def _changed(self, start: TsMs) -> None:
        """A held minute took trades: a final one is emitted again (next revision)."""
        if start < self._final_before_ms:
            self._unsent.add(start)

    def advance(self, now_ms: TsMs) -> list[Bar]:
        """Move ``T`` to ``max(T, now_ms)``; return the bars to emit, oldest first."""
        self._clock_ms = max(self._clock_ms, now_ms)
        boundary = minute_of(self._clock_ms - self.grace_ms)
        if boundary > self._final_before_ms:
            self._final_before_ms = boundary
            done = [start for start in self._live if start < boundary]
            self._live.difference_update(done)
            self._unsent.update(done)
        out: list[Bar] = []
        if self._unsent:
            for start in sorted(self._unsent):
                minute = self._minutes[start]
                minute.sent += 1
                out.append(minute.to_bar(self.token, start, minute.sent))
            self._unsent.clear()
        self._forget(self._clock_ms - self.horizon_ms)
        return out

    def _forget(self, cut_ms: TsMs) -> None:
        """Drop the bars whose minute starts at or before ``cut_ms`` (all final and sent)."""
        order = self._order
        while order and order[0] <= cut_ms:
            del self._minutes[heappop(order)]

    def forming(self, now_ms: TsMs) -> Bar | None:
        """The newest bar when it is not final at ``max(T, now_ms)`` (revision 0), else None.

        During a grace period two bars can be non-final; this is the newer one."""
        if not self._live:
            return None
        newest = max(self._live)
        t_ms = max(now_ms, self._clock_ms)
        if newest < minute_of(t_ms - self.grace_ms):
            return None
        return self._minutes[newest].to_bar(self.token, newest, 0)

    def bars(self) -> list[Bar]:
        """Every bar held, oldest first, each with the revision it was last emitted with, or
        will be emitted with when it has unsent changes (0 for bars not final)."""
        out = []
        for start in sorted(self._minutes):
            minute = self._minutes[start]
            revision = minute.sent + 1 if start in self._unsent else max(minute.sent, 0)
            out.append(minute.to_bar(self.token, start, revision))
        return out

    def snapshot(self) -> BarBuilderSnapshot:
        """The state that trades alone cannot rebuild (small: usually two numbers)."""
        minutes, unsent = self._minutes, self._unsent
        return BarBuilderSnapshot(
            clock_ms=self._clock_ms,
            final_before_ms=self._final_before_ms,
            revised={s: m.sent for s, m in minutes.items() if m.sent > 0 and s not in unsent},
            pending={s: minutes[s].sent + 1 for s in sorted(unsent)},
        )

    @classmethod
    def restore(
        cls,
        token: TokenId,
        snapshot: BarBuilderSnapshot,
        trades: Iterable[Trade],
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
        horizon_ms: int = DEFAULT_HORIZON_MS,
    ) -> BarBuilder:
        """The builder that took ``snapshot``, rebuilt from the trades it had accepted.

        ``trades``: oldest first, equal times in arrival order (the window engine's
        retained trades), at least every trade accepted with a minute starting after
        ``snapshot.clock_ms - horizon_ms``; older ones are ignored. The result then emits
        exactly what the original would have emitted (bit for bit)."""
        builder = cls(token, grace_ms=grace_ms, horizon_ms=horizon_ms)
        builder._clock_ms = snapshot.clock_ms
        builder._final_before_ms = snapshot.final_before_ms
        for trade in trades:
            builder.add(trade)
        for start in list(builder._unsent):  # final bars: sent unless pending
            minute = builder._minutes[start]
            pending = snapshot.pending.get(start)
            if pending is None:
                minute.sent = snapshot.revised.get(start, 0)
                builder._unsent.discard(start)
            else:
                minute.sent = pending - 1
        return builder
