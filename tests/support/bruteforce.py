"""A deliberately naive oracle for window statistics: plain loops over a list.

Written from ARCHITECTURE §4 alone, independently of ``tradepulse.core.windows``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class T:
    ts_ms: int
    price: float
    token_amount: float
    native: float
    is_buy: bool
    wallet: str

    @property
    def volume(self) -> float:
        return self.token_amount * self.price


def window_stats(history: list[T], t_eval: int, window_ms: int) -> dict[str, Any]:
    """Statistics of the window (t_eval - window_ms, t_eval] over ``history``.

    ``history`` holds every applied trade of the token in arrival order; ordering by time
    with ties in arrival order is done here.
    """
    ordered = sorted(history, key=lambda x: x.ts_ms)  # stable: arrival order on ties
    lo = t_eval - window_ms
    inside = [x for x in ordered if lo < x.ts_ms <= t_eval]
    before = [x for x in ordered if x.ts_ms <= lo]
    upto = [x for x in ordered if x.ts_ms <= t_eval]
    last_price = upto[-1].price
    buys = [x for x in inside if x.is_buy]
    sells = [x for x in inside if not x.is_buy]
    if not inside:
        start = end = high = low = last_price
        vwap = first = last = None
    else:
        start = before[-1].price if before else inside[0].price
        end = inside[-1].price
        high = max(x.price for x in inside)
        low = min(x.price for x in inside)
        vwap = math.fsum(x.volume for x in inside) / math.fsum(x.token_amount for x in inside)
        first, last = inside[0].ts_ms, inside[-1].ts_ms
    return {
        "buy_count": len(buys),
        "sell_count": len(sells),
        "trade_count": len(inside),
        "buy_volume": math.fsum(x.volume for x in buys),
        "sell_volume": math.fsum(x.volume for x in sells),
        "total_volume": math.fsum(x.volume for x in inside),
        "native_volume": math.fsum(x.native for x in inside),
        "unique_wallets": len({x.wallet for x in inside}),
        "unique_buyers": len({x.wallet for x in buys}),
        "unique_sellers": len({x.wallet for x in sells}),
        "start_price": start,
        "end_price": end,
        "high_price": high,
        "low_price": low,
        "price_change_pct": (end - start) / start * 100.0,
        "vwap": vwap,
        "first_trade_ms": first,
        "last_trade_ms": last,
        "updated_ms": t_eval,
    }


def close(a: Any, b: Any, rel: float = 1e-9) -> bool:
    """Equal, or floats within ``rel`` relative (absolute 1e-12 near zero)."""
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return False
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
    return bool(a == b)
