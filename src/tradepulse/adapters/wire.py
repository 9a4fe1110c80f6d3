"""The JSON wire format of an incoming trade (ARCHITECTURE §3) and its conversion to ``Trade``.

Most rules are enforced inside msgspec while decoding (types, required fields, lengths,
ranges, RFC 3339 with an offset); the rest (side in any case, epoch seconds vs
milliseconds, the future-time limit, overflow of the USD volume) right after. msgspec's
messages are translated into ``InvalidTradeError(field, rule, detail)``; ``field:rule``
is a bounded label (``price_usd:range``, ``$:malformed_json`` ...).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from sys import intern
from typing import Annotated

import msgspec
from msgspec import Meta

from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.trade import (
    DEFAULT_MAX_FUTURE_SKEW_MS,
    EPOCH_SECONDS_LIMIT,
    MAX_AMOUNT,
    MAX_TOKEN_LENGTH,
    MIN_PRICE_USD,
    Trade,
    check_not_future,
    epoch_to_ms,
    parse_side,
)
from tradepulse.core.types import TsMs

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class WireTrade(msgspec.Struct, frozen=True, gc=False):
    """One trade as it arrives on the wire (unknown fields are ignored)."""

    token: Annotated[str, Meta(min_length=1, max_length=MAX_TOKEN_LENGTH)]
    wallet: Annotated[str, Meta(min_length=1)]
    sell_buy: str
    native_amount: Annotated[float, Meta(ge=0, le=MAX_AMOUNT)]
    token_amount: Annotated[float, Meta(gt=0, le=MAX_AMOUNT)]
    price_usd: Annotated[float, Meta(ge=MIN_PRICE_USD, le=MAX_AMOUNT)]
    trans_time: Annotated[datetime, Meta(tz=True)] | int | float
    tx_hash: Annotated[str, Meta(min_length=1)]
    event_index: Annotated[int, Meta(ge=0)] = 0


class WireTradeOut(msgspec.Struct, frozen=True, gc=False):
    """What tradepulse writes when it produces trades (times as epoch milliseconds)."""

    token: str
    wallet: str
    sell_buy: str
    native_amount: float
    token_amount: float
    price_usd: float
    trans_time: int
    tx_hash: str
    event_index: int = 0


_decoder = msgspec.json.Decoder(WireTrade)
_encoder = msgspec.json.Encoder()

_PATH_RE = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING_RE = re.compile(r"^Object missing required field `([^`]+)`")
_RULES = (
    ("Number out of range", "non_finite"),
    ("Invalid RFC3339", "time_format"),
    ("with a timezone", "timezone"),
    ("of length", "length"),
    ("` >", "range"),
    ("` <", "range"),
    ("Expected `", "type"),
)


def _translate(exc: msgspec.MsgspecError) -> InvalidTradeError:
    message = str(exc)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return InvalidTradeError("$", "malformed_json", message)
    missing = _MISSING_RE.match(message)
    if missing:
        return InvalidTradeError(missing.group(1), "missing", "required field is missing")
    path = _PATH_RE.search(message)
    field = (path.group(1) or "$") if path else "$"
    detail = message[: path.start()] if path else message
    rule = next((r for needle, r in _RULES if needle in detail), "invalid")
    return InvalidTradeError(field, rule, detail)


def time_to_ms(value: datetime | int | float) -> TsMs:
    """RFC 3339 datetime (floored to the millisecond) or epoch s/ms number to epoch ms."""
    if isinstance(value, datetime):
        return (value - _EPOCH) // _ONE_MS
    return epoch_to_ms(value)


def decode_trade(
    raw: bytes | str, now_ms: TsMs, max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS
) -> Trade:
    """Decode and validate one wire message; raise ``InvalidTradeError`` naming field and rule.

    ``now_ms`` is wall-clock now: a trade later than ``now_ms + max_future_skew_ms`` is
    rejected whatever clock the windows run on.
    """
    try:
        wire = _decoder.decode(raw)
    except msgspec.MsgspecError as exc:
        raise _translate(exc) from exc
    return to_trade(wire, now_ms, max_future_skew_ms)


def decode_many(
    values: Iterable[bytes | str],
    now_ms: TsMs,
    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS,
) -> tuple[list[Trade], list[tuple[int, InvalidTradeError]]]:
    """``decode_trade`` of every value, in order: the good trades and ``(index, error)`` of
    each rejected value (``index`` counts from 0 over ``values``), exactly what one
    ``decode_trade`` per value gives, without a Python call per value: the values are
    decoded by a ``map`` over the decoder, and a value msgspec refuses ends that ``map``
    only (it is rejected with its own reason, and decoding resumes with the next value)."""
    trades: list[Trade] = []
    rejected: list[tuple[int, InvalidTradeError]] = []
    remaining = iter(values)
    decode = _decoder.decode

    def slow(wire: WireTrade) -> None:  # what the compiled loop leaves to ``_convert``
        _convert((wire,), now_ms, max_future_skew_ms, trades, rejected)

    while True:
        try:
            if _compiled_convert is None:
                _convert(map(decode, remaining), now_ms, max_future_skew_ms, trades, rejected)
            else:  # the usual trade converted in compiled code, any other by ``slow``
                _compiled_convert(map(decode, remaining), now_ms + max_future_skew_ms, trades,
                                  slow)  # fmt: skip
        except msgspec.MsgspecError as exc:  # ``map`` had taken the value: the rest follows
            rejected.append((len(trades) + len(rejected), _translate(exc)))
            continue
        return trades, rejected


def decode_batch(
    lines: list[bytes],
    first_line_no: int,
    now_ms: TsMs,
    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS,
) -> tuple[list[Trade], list[tuple[int, InvalidTradeError]]]:
    """Decode consecutive lines (numbered from ``first_line_no``): the good trades in order
    and ``(line_number, error)`` for the rejected ones. Blank lines are skipped."""
    trades, rejected = decode_many(lines, now_ms, max_future_skew_ms)
    return trades, [(first_line_no + i, exc) for i, exc in rejected if lines[i].strip()]


def to_trade(wire: WireTrade, now_ms: TsMs, max_future_skew_ms: int) -> Trade:
    """The checks msgspec cannot express, then the domain ``Trade``."""
    trades: list[Trade] = []
    rejected: list[tuple[int, InvalidTradeError]] = []
    _convert((wire,), now_ms, max_future_skew_ms, trades, rejected)
    if rejected:
        raise rejected[0][1]
    return trades[0]


def _convert(
    wires: Iterable[WireTrade],
    now_ms: TsMs,
    max_future_skew_ms: int,
    trades: list[Trade],
    rejected: list[tuple[int, InvalidTradeError]],
) -> None:
    """``to_trade`` of each wire trade, appended to ``trades``, or its error with its index
    (``len(trades) + len(rejected)`` before it) to ``rejected``. One loop for a batch: the
    per-trade work is inline."""
    append = trades.append
    latest_ms = now_ms + max_future_skew_ms
    inf = math.inf
    for wire in wires:
        try:
            side = wire.sell_buy
            is_buy = side == "buy" or (side != "sell" and parse_side(side))
            tt = wire.trans_time
            if type(tt) is int and tt >= 0:
                ts_ms = tt * 1000 if tt < EPOCH_SECONDS_LIMIT else tt
            else:
                ts_ms = time_to_ms(tt)
            if ts_ms > latest_ms:
                check_not_future(ts_ms, now_ms, max_future_skew_ms)
            volume = wire.token_amount * wire.price_usd
            if volume == inf:
                raise InvalidTradeError("token_amount", "non_finite",
                                        "token_amount * price_usd overflows")  # fmt: skip
            append(Trade(
                intern(wire.token),  # one string per token and wallet, not one per trade
                intern(wire.wallet),
                is_buy,
                wire.native_amount,
                wire.token_amount,
                wire.price_usd,
                volume,
                ts_ms,
                wire.tx_hash,
                wire.event_index,
            ))  # fmt: skip
        except InvalidTradeError as exc:
            rejected.append((len(trades) + len(rejected), exc))


ConvertKernel = Callable[[Iterable[WireTrade], int, list[Trade], Callable[[WireTrade], None]], None]
RowsKernel = Callable[[Iterable[Trade]], list[tuple[object, ...]]]


def _bind_compiled() -> tuple[ConvertKernel | None, RowsKernel | None]:
    """The compiled ``convert`` and ``line_rows`` (``adapters/_wire.pyx``), given the slot
    offsets of ``WireTrade`` and ``Trade``; ``(None, None)`` where the module is not built."""
    try:
        from tradepulse.adapters import _wire
    except ImportError:
        return None, None
    _wire.bind(WireTrade, Trade, EPOCH_SECONDS_LIMIT)
    return _wire.convert, _wire.line_rows


_compiled_convert, compiled_line_rows = _bind_compiled()


def encode_trade(trade: Trade) -> bytes:
    """The wire JSON of ``trade`` (time as epoch milliseconds)."""
    return _encoder.encode(
        WireTradeOut(
            trade.token,
            trade.wallet,
            trade.side,
            trade.native_amount,
            trade.token_amount,
            trade.price_usd,
            trade.ts_ms,
            trade.tx_hash,
            trade.event_index,
        )
    )
