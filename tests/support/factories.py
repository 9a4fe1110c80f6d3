"""Small builders for trades in tests."""

from __future__ import annotations

import itertools

from tradepulse.core.trade import Trade, make_trade

_seq = itertools.count()


def trade(
    ts_ms: int,
    price: float = 1.0,
    amount: float = 1.0,
    *,
    buy: bool = True,
    wallet: str = "w1",
    token: str = "TOKEN",
    native: float = 0.5,
    tx: str | None = None,
    event_index: int = 0,
) -> Trade:
    """A valid trade; ``tx`` defaults to a fresh unique hash."""
    return make_trade(
        token=token,
        wallet=wallet,
        is_buy=buy,
        native_amount=native,
        token_amount=amount,
        price_usd=price,
        ts_ms=ts_ms,
        tx_hash=tx if tx is not None else f"tx{next(_seq)}",
        event_index=event_index,
    )
