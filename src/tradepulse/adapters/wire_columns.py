"""Wire-format trade lines decoded into columns (NumPy arrays and a few lists) instead of
one ``Trade`` object per line, for the columnar replay.

The validation is ``adapters.wire``'s, unchanged: every line is decoded with the same
``WireTrade`` decoder. A chunk whose lines all decode and pass the checks that are cheap
to vectorize (side exactly ``buy``/``sell``, times as epoch numbers that are non-negative
integers, nothing in the future, no overflowing USD volume) becomes columns directly.
Any other chunk (a rejected or blank line, an RFC 3339 time, a side in another case...)
goes through ``decode_batch``, line by line, exactly as the object replay reads it, and
its ``Trade`` objects are turned into columns: rejections, their reasons and line
numbers are the object path's by construction.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import Meta

from tradepulse.adapters.wire import decode_batch
from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.trade import (
    EPOCH_SECONDS_LIMIT,
    MAX_AMOUNT,
    MAX_TOKEN_LENGTH,
    MIN_PRICE_USD,
    Trade,
)
from tradepulse.core.types import TsMs

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B1 = npt.NDArray[np.bool_]


class _EpochWireTrade(msgspec.Struct, frozen=True, gc=False):
    """``WireTrade`` with the time as a non-negative integer only: every line it accepts,
    ``WireTrade`` accepts with the same values (the others go line by line)."""

    token: Annotated[str, Meta(min_length=1, max_length=MAX_TOKEN_LENGTH)]
    wallet: Annotated[str, Meta(min_length=1)]
    sell_buy: str
    native_amount: Annotated[float, Meta(ge=0, le=MAX_AMOUNT)]
    token_amount: Annotated[float, Meta(gt=0, le=MAX_AMOUNT)]
    price_usd: Annotated[float, Meta(ge=MIN_PRICE_USD, le=MAX_AMOUNT)]
    trans_time: Annotated[int, Meta(ge=0)]
    tx_hash: Annotated[str, Meta(min_length=1)]
    event_index: Annotated[int, Meta(ge=0)] = 0


_decoder = msgspec.json.Decoder(_EpochWireTrade)
# Numeric fields are read with C-level getters straight into arrays (no list in between).
_TIME = attrgetter("trans_time")
_TOKEN_AMOUNT = attrgetter("token_amount")
_PRICE = attrgetter("price_usd")
_NATIVE_AMOUNT = attrgetter("native_amount")


class Codes:
    """Tokens and wallets numbered 0, 1, ... in order of first appearance (each table is a
    ``defaultdict`` whose factory is a counter, so numbering runs without Python code per
    name)."""

    __slots__ = ("tokens", "wallets")

    def __init__(self) -> None:
        self.tokens: defaultdict[str, int] = defaultdict(itertools.count().__next__)
        self.wallets: defaultdict[str, int] = defaultdict(itertools.count().__next__)

    def code(self, names: list[str], *, wallets: bool = False) -> I64:
        """The code of each of ``names`` (new names get the next codes)."""
        table = self.wallets if wallets else self.tokens
        return np.fromiter(map(table.__getitem__, names), np.int64, len(names))


@dataclass(frozen=True, slots=True)
class PackedStrings:
    """A list of strings as one string and the end of each (cheap to send to another
    process); ``packed[i]`` is the ``i``-th string."""

    joined: str
    ends: I64

    @classmethod
    def pack(cls, strings: list[str]) -> PackedStrings:
        lengths = np.fromiter(map(len, strings), np.int64, len(strings))
        return cls("".join(strings), np.cumsum(lengths))

    def __getitem__(self, i: int) -> str:
        start = int(self.ends[i - 1]) if i else 0
        return self.joined[start : int(self.ends[i])]


@dataclass(frozen=True, slots=True)
class TradeColumns:
    """Valid trades of one chunk, in read order (row ``i`` is the ``i``-th valid trade);
    tokens and wallets as ``Codes``."""

    token: I64
    wallet: I64
    is_buy: B1
    native_amount: F64
    token_amount: F64
    price_usd: F64
    volume_usd: F64
    ts_ms: I64
    tx_hash: list[str] | PackedStrings
    event_index: list[int]
    identity: I64  # hash of (tx_hash, event_index): equal identities, equal hashes

    def __len__(self) -> int:
        return len(self.token)


def decode_columns(
    lines: list[bytes],
    first_line_no: int,
    now_ms: TsMs,
    max_future_skew_ms: int,
    codes: Codes,
) -> tuple[TradeColumns, list[tuple[int, InvalidTradeError]]]:
    """The valid trades of ``lines`` (numbered from ``first_line_no``) as columns, and
    ``(line_number, error)`` for each rejected line, as ``decode_batch`` reports them."""
    fast = _fast_columns(lines, now_ms + max_future_skew_ms, codes)
    if fast is not None:
        return fast, []
    trades, rejected = decode_batch(lines, first_line_no, now_ms, max_future_skew_ms)
    return columns_of(trades, codes), rejected


def _fast_columns(lines: list[bytes], latest_ms: TsMs, codes: Codes) -> TradeColumns | None:
    """Columns of a chunk with nothing unusual in it, else None."""
    decode = _decoder.decode
    try:
        wires = [decode(line) for line in lines]
    except msgspec.MsgspecError:
        return None
    n = len(wires)
    sides = [w.sell_buy for w in wires]
    buys = sides.count("buy")
    if buys + sides.count("sell") != n:
        return None
    ts = _epoch_ms(map(_TIME, wires), n)
    if ts is None or (n and int(ts.max()) > latest_ms):
        return None
    token_amount = np.fromiter(map(_TOKEN_AMOUNT, wires), np.float64, n)
    price = np.fromiter(map(_PRICE, wires), np.float64, n)
    volume = token_amount * price
    if np.isinf(volume).any():
        return None
    return TradeColumns(
        token=codes.code([w.token for w in wires]),
        wallet=codes.code([w.wallet for w in wires], wallets=True),
        is_buy=np.fromiter(map("buy".__eq__, sides), np.bool_, n),
        native_amount=np.fromiter(map(_NATIVE_AMOUNT, wires), np.float64, n),
        token_amount=token_amount,
        price_usd=price,
        volume_usd=volume,
        ts_ms=ts,
        tx_hash=(tx := [w.tx_hash for w in wires]),
        event_index=(events := [w.event_index for w in wires]),
        identity=_identity(tx, events),
    )


def _epoch_ms(times: Iterator[int], n: int) -> I64 | None:
    """Epoch milliseconds of ``n`` non-negative int times (seconds below 10^11, as
    ``to_trade`` reads them); None when one does not fit 64 bits."""
    try:
        raw = np.fromiter(times, np.int64, n)  # every one an int >= 0 (decoder)
    except OverflowError:
        return None
    return np.where(raw < EPOCH_SECONDS_LIMIT, raw * 1000, raw)


def columns_of(trades: list[Trade], codes: Codes) -> TradeColumns:
    """Columns of decoded ``Trade`` objects."""
    n = len(trades)
    return TradeColumns(
        token=codes.code([t.token for t in trades]),
        wallet=codes.code([t.wallet for t in trades], wallets=True),
        is_buy=np.fromiter((t.is_buy for t in trades), dtype=np.bool_, count=n),
        native_amount=np.fromiter((t.native_amount for t in trades), np.float64, n),
        token_amount=np.fromiter((t.token_amount for t in trades), np.float64, n),
        price_usd=np.fromiter((t.price_usd for t in trades), np.float64, n),
        volume_usd=np.fromiter((t.volume_usd for t in trades), np.float64, n),
        ts_ms=np.fromiter((t.ts_ms for t in trades), np.int64, n),
        tx_hash=(tx := [t.tx_hash for t in trades]),
        event_index=(events := [t.event_index for t in trades]),
        identity=_identity(tx, events),
    )


def _identity(tx_hash: list[str], event_index: list[int]) -> I64:
    n = len(tx_hash)
    tx = np.fromiter(map(hash, tx_hash), np.int64, n)
    out: I64 = tx * np.int64(1_000_003) + np.fromiter(map(hash, event_index), np.int64, n)
    return out
