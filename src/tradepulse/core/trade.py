"""The trade: one swap of one token by one wallet, the unit everything is computed from.

A ``Trade`` is only ever built from values that passed the rules below (``make_trade``):
the wire adapter decodes bytes, then calls ``make_trade``; tests and generators do the same.
Identity of a trade is ``(token, tx_hash, event_index)``: seeing it twice changes nothing.
"""

from __future__ import annotations

import math

import msgspec

from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.types import TokenId, TsMs, WalletId

MAX_TOKEN_LENGTH = 128
DEFAULT_MAX_FUTURE_SKEW_MS = 5_000
#: Epoch numbers below this are seconds, at or above it milliseconds (10^11 s is year 5138).
EPOCH_SECONDS_LIMIT = 100_000_000_000
#: Amounts and prices at most this (any on-chain amount, a uint256, is below 1.2e77), and
#: prices at least ``MIN_PRICE_USD``: every sum, VWAP and price change of any window or bar
#: then stays far inside the float range (a sum of 10^100 volumes of 10^200 at most), so no
#: trade can make a statistic overflow.
MAX_AMOUNT = 1e100
MIN_PRICE_USD = 1e-100


class Trade(msgspec.Struct, frozen=True, gc=False):
    """A validated trade. Amounts are floats, time is epoch milliseconds (UTC).

    ``volume_usd`` is ``token_amount * price_usd``, computed once by ``make_trade``.
    """

    token: TokenId
    wallet: WalletId
    is_buy: bool
    native_amount: float
    token_amount: float
    price_usd: float
    volume_usd: float
    ts_ms: TsMs
    tx_hash: str
    event_index: int = 0

    @property
    def key(self) -> tuple[str, int]:
        """Identity of the trade inside its token: ``(tx_hash, event_index)``."""
        return (self.tx_hash, self.event_index)

    @property
    def side(self) -> str:
        return "buy" if self.is_buy else "sell"


def epoch_to_ms(value: float) -> TsMs:
    """Epoch seconds (``< 10^11``) or milliseconds to integer milliseconds (rounded)."""
    if not math.isfinite(value) or value < 0:
        raise InvalidTradeError("trans_time", "range", "epoch time must be a finite number >= 0")
    if value < EPOCH_SECONDS_LIMIT:
        return round(value * 1000)
    return round(value)


def check_amount(field: str, value: float, *, allow_zero: bool, least: float = 0.0) -> None:
    """Raise unless ``value`` is finite, > 0 (or >= 0 with ``allow_zero``; or >= ``least``
    when given) and <= ``MAX_AMOUNT``."""
    if not math.isfinite(value):
        raise InvalidTradeError(field, "non_finite", "must be a finite number")
    if value < 0 or (value == 0 and not allow_zero):
        op = ">= 0" if allow_zero else "> 0"
        raise InvalidTradeError(field, "range", f"must be {op}, got {value!r}")
    if value < least:
        raise InvalidTradeError(field, "range", f"must be >= {least!r}, got {value!r}")
    if value > MAX_AMOUNT:
        raise InvalidTradeError(field, "range", f"must be <= {MAX_AMOUNT!r}, got {value!r}")


def check_not_future(ts_ms: TsMs, now_ms: TsMs, max_future_skew_ms: int) -> None:
    """Raise when ``ts_ms`` is later than ``now_ms + max_future_skew_ms``."""
    if ts_ms > now_ms + max_future_skew_ms:
        raise InvalidTradeError(
            "trans_time",
            "future",
            f"is {ts_ms - now_ms} ms in the future (allowed skew {max_future_skew_ms} ms)",
        )


def parse_side(value: str) -> bool:
    """``"buy"``/``"sell"`` in any case to ``is_buy``."""
    if value == "buy":
        return True
    if value == "sell":
        return False
    lowered = value.lower()
    if lowered in ("buy", "sell"):
        return lowered == "buy"
    raise InvalidTradeError("sell_buy", "enum", f"must be 'buy' or 'sell', got {value[:32]!r}")


def make_trade(
    *,
    token: str,
    wallet: str,
    is_buy: bool,
    native_amount: float,
    token_amount: float,
    price_usd: float,
    ts_ms: TsMs,
    tx_hash: str,
    event_index: int = 0,
) -> Trade:
    """Check every rule of the trade and build it (the slow, complete path).

    The wire decoder enforces the same rules inside msgspec for speed and calls ``Trade``
    directly; this function is the reference for everything else.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidTradeError("token", "length", f"must be 1..{MAX_TOKEN_LENGTH} characters")
    if not wallet:
        raise InvalidTradeError("wallet", "length", "must not be empty")
    if not tx_hash:
        raise InvalidTradeError("tx_hash", "length", "must not be empty")
    if event_index < 0:
        raise InvalidTradeError("event_index", "range", "must be >= 0")
    check_amount("native_amount", native_amount, allow_zero=True)
    check_amount("token_amount", token_amount, allow_zero=False)
    check_amount("price_usd", price_usd, allow_zero=False, least=MIN_PRICE_USD)
    volume_usd = token_amount * price_usd
    if not math.isfinite(volume_usd):
        raise InvalidTradeError("token_amount", "non_finite", "token_amount * price_usd overflows")
    return Trade(
        token=token,
        wallet=wallet,
        is_buy=is_buy,
        native_amount=float(native_amount),
        token_amount=float(token_amount),
        price_usd=float(price_usd),
        volume_usd=volume_usd,
        ts_ms=ts_ms,
        tx_hash=tx_hash,
        event_index=event_index,
    )
