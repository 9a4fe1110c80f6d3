"""No trade the wire accepts can make a statistic overflow (ARCHITECTURE §3 as tightened in
docs/decisions.md: amounts and prices at most ``MAX_AMOUNT``, prices at least
``MIN_PRICE_USD``). Before the limits, two trades of 1e308 tokens made a window's token
amount sum overflow and the batch raise on every retry: a poison pill. Trades at every
extreme the limits allow go through the windows, the bars and the indicators, and every
number comes out finite and reads back from its JSON as it was."""

from __future__ import annotations

import math

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tradepulse.core.tokenbars import TokenBars
from tradepulse.core.trade import MAX_AMOUNT, MIN_PRICE_USD, Trade, make_trade
from tradepulse.core.windows import TokenWindows, WindowStats, parse_windows

SPECS = parse_windows("1min,5min")
T0 = 1_700_000_000_000
extreme = st.sampled_from([MIN_PRICE_USD, 1e-30, 1.0, 1e30, MAX_AMOUNT])


def numbers(value: object) -> list[float]:
    """Every float inside ``value`` (structs, dicts, lists)."""
    if isinstance(value, float):
        return [value]
    if isinstance(value, msgspec.Struct):
        value = msgspec.structs.asdict(value)
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in numbers(v)]
    return []


row_st = st.tuples(extreme, extreme, st.sampled_from([0.0, 1.0, MAX_AMOUNT]), st.booleans(),
                   st.integers(0, 90_000))  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(row_st, min_size=1, max_size=300))
def test_trades_at_the_limits_give_finite_statistics_bars_and_indicators(
    rows: list[tuple[float, float, float, bool, int]],
) -> None:
    trades: list[Trade] = [
        make_trade(token="T", wallet=f"w{i % 7}", is_buy=buy, native_amount=native,
                   token_amount=amount, price_usd=price, ts_ms=T0 + dt, tx_hash=f"h{i}")
        for i, (amount, price, native, buy, dt) in enumerate(rows)
    ]  # fmt: skip
    tw = TokenWindows(SPECS)
    bars = TokenBars.new("T", horizon_ms=SPECS[-1].duration_ms)
    for trade in trades:
        tw.add(trade, T0)
    bars.add_many(sorted(trades, key=lambda t: t.ts_ms))
    for t_ms in (T0 + 30_000, T0 + 100_000, T0 + 400_000):
        stats = tw.stats(t_ms)
        finals = bars.advance(t_ms)
        outputs = [stats, finals, bars.forming(t_ms), bars.indicators.values()]
        assert all(math.isfinite(x) for x in numbers(outputs)), outputs
        # what Redis is given reads back the same (an inf would be written as null)
        again = msgspec.json.decode(msgspec.json.encode(stats), type=dict[str, WindowStats])
        assert again == stats
