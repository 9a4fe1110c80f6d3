"""Per-token indicators over final 1-minute bars (ARCHITECTURE §6), TA-Lib conventions.

Two kinds of indicator, on two axes:

* **Per bar** (TA-Lib over the sequence of final bars; a minute without trades has no bar,
  so it is not a period). ``sma_N`` is the mean of the last N closes. ``ema_N`` is seeded
  with the SMA of the first N closes, then ``ema += (close - ema) * 2 / (N + 1)``.
  ``rsi_14`` (Wilder): the first 14 changes give the seed averages (simple means of gains
  and losses), then ``avg = (avg * 13 + change) / 14``; ``rsi = 100 * gain / (gain + loss)``,
  0 when both are 0 (a price that never moved), as ``talib.RSI``. The operations are
  TA-Lib's, in its order, so values agree with ``talib`` over the same closes to rounding.
  ``rel_volume`` = USD volume of the last bar / mean USD volume of the 20 bars before it.
* **Per minute** (a time range of N minutes ending with the minute of the last final bar
  ``L``: bars with ``L - (N-1)*60_000 <= open_ms <= L``). ``vwap_Nm`` = Σ volume_usd /
  Σ volume over those bars (null when Σ volume is 0); ``avg_volume_Nm`` = Σ volume_usd / N
  (an empty minute counts as a bar of zero volume). ``price_change_Nm`` = percent change
  from the close in force N minutes earlier (close of the newest bar with
  ``open_ms <= L - N*60_000``) to the last close.

A value is None until warmed up: per-bar ones until N bars (RSI 15, rel_volume 21) were
seen; per-minute ones until the token's first bar is at or before the range's first
minute (for a price change: at or before ``L - N*60_000``).

History: the indicators run incrementally from the first bar this object saw (EMA and RSI
depend on every bar since their seed, as in TA-Lib over the full series). The last
``retained_bars`` bars are kept with the recursive state after each, so a corrected bar (a
higher revision of a held minute) or a bar arriving out of order is applied exactly: the
state is rewound to the bar before it and the later bars are replayed (O(bars after it)).
A bar older than the retained history is refused (``UpdateResult.TOO_OLD``). Consequence:
values depend on where the history starts; a process that starts from fewer bars (e.g. the
last few hours from ``bars_1m``) has other EMA/RSI values until the seed's weight fades,
unless it continues from ``snapshot()``, which reproduces the state bit for bit.

Sums are exact: the SMA running sums are kept as exact partial sums (Shewchuk), and range
sums use ``math.fsum``; an SMA value is therefore the same whichever way it was reached.
Cost per appended bar: O(1) for EMA/RSI/SMA; ``values()`` sums at most 60 bars per range.
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_left, bisect_right
from enum import IntEnum
from typing import Any

import msgspec

from tradepulse.core.bars import MINUTE_MS, Bar
from tradepulse.core.types import TokenId, TsMs

RSI_PERIOD = 14
EMA_PERIODS = (20, 50, 200)
SMA_PERIODS = (20, 50, 200)
MINUTE_RANGES = ((5, "5m"), (15, "15m"), (60, "1h"))
PRICE_CHANGE_MINUTES = (1, 5, 15)
REL_VOLUME_BARS = 20
DEFAULT_RETAINED_BARS = 256
_TRIM_SLACK = 64  # trim the history by at least this many bars at a time

INDICATOR_NAMES: tuple[str, ...] = (
    "rsi_14",
    *(f"ema_{n}" for n in EMA_PERIODS),
    *(f"sma_{n}" for n in SMA_PERIODS),
    *(f"vwap_{label}" for _, label in MINUTE_RANGES),
    *(f"avg_volume_{label}" for _, label in MINUTE_RANGES),
    "rel_volume",
    *(f"price_change_{n}m" for n in PRICE_CHANGE_MINUTES),
)

State = tuple[int, float, float, float, float, float, float]
"""Recursive state after a bar: ``(bars seen, close, avg gain, avg loss, ema_20, ema_50,
ema_200)``. While fewer than 15 bars were seen the gain/loss are running sums, and while
fewer than N the ema slot holds the running sum of the closes (the seed)."""

INITIAL_STATE: State = (0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class UpdateResult(IntEnum):
    """What ``Indicators.update`` did with a bar."""

    APPENDED = 0  # newer than every bar held
    RECOMPUTED = 1  # a new revision of a held bar, or a bar inserted out of order
    STALE = 2  # a lower revision than the one held: ignored
    TOO_OLD = 3  # older than the retained history: ignored


class IndicatorsSnapshot(msgspec.Struct, frozen=True):
    """Everything ``Indicators.restore`` needs: the retained bars' open times, closes,
    volumes, USD volumes and revisions (packed little-endian arrays: bytes, base64 in
    JSON, which encodes ~20x faster than lists of floats and keeps every bit), the state
    before the first of them, whether older bars were dropped, and the open time of the
    first bar ever seen."""

    token: TokenId
    first_open_ms: TsMs | None
    trimmed: bool
    base: State
    opens: bytes
    closes: bytes
    volumes: bytes
    usds: bytes
    revisions: bytes

    @property
    def bars(self) -> list[tuple[TsMs, float, float, float, int]]:
        """The retained bars as ``(open_ms, close, volume, volume_usd, revision)``."""
        columns = (_unpack("q", self.opens), _unpack("d", self.closes),
                   _unpack("d", self.volumes), _unpack("d", self.usds),
                   _unpack("q", self.revisions))  # fmt: skip
        return list(zip(*columns, strict=True))


def _pack(code: str, values: list[int] | list[float]) -> bytes:
    packed = array(code, values)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _unpack(code: str, raw: bytes) -> list[Any]:
    values = array(code)
    values.frombytes(raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def _grow(partials: list[float], x: float) -> None:
    """Add ``x`` to an exact sum kept as non-overlapping floats (Shewchuk's algorithm);
    ``math.fsum(partials)`` is then the exact sum, correctly rounded."""
    i = 0
    for part in partials:
        big, small = (part, x) if abs(x) < abs(part) else (x, part)
        hi = big + small
        lo = small - (hi - big)  # exact rounding error of big + small
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


def _rsi_step(n: int, prev: float, gain: float, loss: float, close: float) -> tuple[float, float]:
    """Gain/loss after the change ``close - prev``, the ``n``-th change (TA-Lib's order)."""
    if n == 0:
        return 0.0, 0.0
    change = close - prev
    if n > RSI_PERIOD:
        gain *= RSI_PERIOD - 1
        loss *= RSI_PERIOD - 1
    if change < 0:
        loss -= change
    else:
        gain += change
    if n >= RSI_PERIOD:
        gain /= RSI_PERIOD
        loss /= RSI_PERIOD
    return gain, loss


def _ema_step(ema: float, seen: int, close: float, period: int) -> float:
    """EMA slot after its ``seen``-th close: seed sum, seed mean, then the recursion."""
    if seen < period:
        return ema + close
    if seen == period:
        return (ema + close) / period
    return ((close - ema) * (2.0 / (period + 1))) + ema


def step(state: State, close: float) -> State:
    """The recursive state after one more bar closing at ``close``."""
    n, prev, gain, loss, e20, e50, e200 = state
    gain, loss = _rsi_step(n, prev, gain, loss, close)
    seen = n + 1
    return (
        seen,
        close,
        gain,
        loss,
        _ema_step(e20, seen, close, EMA_PERIODS[0]),
        _ema_step(e50, seen, close, EMA_PERIODS[1]),
        _ema_step(e200, seen, close, EMA_PERIODS[2]),
    )


class Indicators:
    """The indicators of one token; see the module docstring for definitions and history.

    Feed final bars with ``update``; read ``values()`` (computed once per change)."""

    __slots__ = ("_base", "_closes", "_first_open_ms", "_opens", "_retained", "_revisions",
                 "_states", "_sums", "_trimmed", "_usds", "_values", "_volumes",
                 "token")  # fmt: skip

    def __init__(self, token: TokenId, *, retained_bars: int = DEFAULT_RETAINED_BARS) -> None:
        if retained_bars <= max(SMA_PERIODS):
            raise ValueError(f"retained_bars must be > {max(SMA_PERIODS)}, got {retained_bars}")
        self.token = token
        self._retained = retained_bars
        self._opens: list[TsMs] = []
        self._closes: list[float] = []
        self._volumes: list[float] = []
        self._usds: list[float] = []
        self._revisions: list[int] = []
        self._states: list[State] = []  # state after each retained bar
        self._base: State = INITIAL_STATE  # state before the first retained bar
        self._trimmed = False  # whether older bars were dropped
        self._first_open_ms: TsMs | None = None  # first bar ever seen: history start
        self._sums: list[list[float]] = [[] for _ in SMA_PERIODS]  # exact sums of closes
        self._values: dict[str, float | None] | None = None

    @property
    def last_open_ms(self) -> TsMs | None:
        """Open time of the newest bar: the bar ``values()`` refer to (None before any)."""
        return self._opens[-1] if self._opens else None

    def update(self, bar: Bar) -> UpdateResult:
        """Take a final bar (any order, any revision). Raises ``ValueError`` for another
        token's bar."""
        if bar.token != self.token:
            raise ValueError(f"bar of token {bar.token!r} given to indicators of {self.token!r}")
        opens = self._opens
        start = bar.open_ms
        if not opens or start > opens[-1]:
            self._append(bar)
            return UpdateResult.APPENDED
        i = bisect_left(opens, start)
        if opens[i] == start:
            if bar.revision < self._revisions[i]:
                return UpdateResult.STALE
            self._set(i, bar)
        elif i == 0 and self._trimmed:
            return UpdateResult.TOO_OLD
        else:
            self._insert(i, bar)
        self._replay(i)
        return UpdateResult.RECOMPUTED

    def _append(self, bar: Bar) -> None:
        state = step(self._states[-1] if self._states else self._base, bar.close)
        self._insert(len(self._opens), bar)
        self._states.append(state)
        seen, closes = state[0], self._closes
        for partials, period in zip(self._sums, SMA_PERIODS, strict=True):
            _grow(partials, bar.close)
            if seen > period:
                _grow(partials, -closes[-1 - period])
        if len(self._opens) >= self._retained + _TRIM_SLACK:
            self._trim()

    def _insert(self, i: int, bar: Bar) -> None:
        self._opens.insert(i, bar.open_ms)
        self._closes.insert(i, bar.close)
        self._volumes.insert(i, bar.volume)
        self._usds.insert(i, bar.volume_usd)
        self._revisions.insert(i, bar.revision)
        if i < len(self._states):
            self._states.insert(i, INITIAL_STATE)  # placeholder, replayed next
        if self._first_open_ms is None or bar.open_ms < self._first_open_ms:
            self._first_open_ms = bar.open_ms
        self._values = None

    def _set(self, i: int, bar: Bar) -> None:
        self._closes[i] = bar.close
        self._volumes[i] = bar.volume
        self._usds[i] = bar.volume_usd
        self._revisions[i] = bar.revision

    def _replay(self, i: int) -> None:
        """Recompute the states from position ``i`` on, and the SMA sums."""
        states, closes = self._states, self._closes
        state = states[i - 1] if i else self._base
        for j in range(i, len(closes)):
            state = step(state, closes[j])
            states[j] = state
        for k, period in enumerate(SMA_PERIODS):
            partials: list[float] = []
            self._sums[k] = partials
            for close in closes[-period:]:
                _grow(partials, close)
        self._values = None

    def _trim(self) -> None:
        drop = len(self._opens) - self._retained
        self._base = self._states[drop - 1]
        for column in (self._opens, self._closes, self._volumes, self._usds, self._revisions,
                       self._states):  # fmt: skip
            del column[:drop]
        self._trimmed = True

    def values(self) -> dict[str, float | None]:
        """Every indicator (``INDICATOR_NAMES``) at the newest bar; None when not warm."""
        if self._values is None:
            self._values = self._compute()
        return dict(self._values)

    def _compute(self) -> dict[str, float | None]:
        out: dict[str, float | None] = dict.fromkeys(INDICATOR_NAMES)
        if not self._states:
            return out
        seen, _, gain, loss, *emas = self._states[-1]
        if seen > RSI_PERIOD:
            total = gain + loss
            out["rsi_14"] = 100.0 * (gain / total) if total != 0 else 0.0
        for period, ema in zip(EMA_PERIODS, emas, strict=True):
            out[f"ema_{period}"] = ema if seen >= period else None
        for period, partials in zip(SMA_PERIODS, self._sums, strict=True):
            out[f"sma_{period}"] = math.fsum(partials) / period if seen >= period else None
        for minutes, label in MINUTE_RANGES:
            out[f"vwap_{label}"], out[f"avg_volume_{label}"] = self._minute_range(minutes)
        out["rel_volume"] = self._rel_volume(seen)
        for minutes in PRICE_CHANGE_MINUTES:
            out[f"price_change_{minutes}m"] = self._price_change(minutes)
        return out

    def _minute_range(self, minutes: int) -> tuple[float | None, float | None]:
        """``(vwap, avg USD volume per minute)`` over the last ``minutes`` minutes."""
        first_ms = self._opens[-1] - (minutes - 1) * MINUTE_MS
        if self._first_open_ms is None or self._first_open_ms > first_ms:
            return None, None
        i = bisect_left(self._opens, first_ms)
        usd = math.fsum(self._usds[i:])
        volume = math.fsum(self._volumes[i:])
        return (usd / volume if volume > 0 else None), usd / minutes

    def _rel_volume(self, seen: int) -> float | None:
        if seen <= REL_VOLUME_BARS:
            return None
        mean = math.fsum(self._usds[-1 - REL_VOLUME_BARS : -1]) / REL_VOLUME_BARS
        return self._usds[-1] / mean if mean > 0 else None

    def _price_change(self, minutes: int) -> float | None:
        """Percent change of the last close from the close in force ``minutes`` earlier."""
        i = bisect_right(self._opens, self._opens[-1] - minutes * MINUTE_MS) - 1
        if i < 0 or self._closes[i] == 0:
            return None
        ref = self._closes[i]
        return (self._closes[-1] - ref) / ref * 100.0

    def snapshot(self) -> IndicatorsSnapshot:
        """The state, as a msgspec-serializable record (about 40 bytes per retained bar)."""
        return IndicatorsSnapshot(
            self.token, self._first_open_ms, self._trimmed, self._base,
            _pack("q", self._opens), _pack("d", self._closes), _pack("d", self._volumes),
            _pack("d", self._usds), _pack("q", self._revisions),
        )  # fmt: skip

    @classmethod
    def restore(
        cls, snapshot: IndicatorsSnapshot, *, retained_bars: int = DEFAULT_RETAINED_BARS
    ) -> Indicators:
        """The ``Indicators`` that took ``snapshot``: same values, same future results."""
        ind = cls(snapshot.token, retained_bars=retained_bars)
        ind._base = snapshot.base
        ind._trimmed = snapshot.trimmed
        ind._first_open_ms = snapshot.first_open_ms
        for start, close, volume, usd, revision in snapshot.bars:
            ind._opens.append(start)
            ind._closes.append(close)
            ind._volumes.append(volume)
            ind._usds.append(usd)
            ind._revisions.append(revision)
            ind._states.append(INITIAL_STATE)
        if ind._opens:
            ind._replay(0)
        return ind
