"""Scenario tables for the edges of a window (ARCHITECTURE §4).

Timeline of the 1-minute window evaluated at T = 120_000::

      60_000 (T - W)                 120_000 (T)
    ──────(────────────────────────────]──────>
     out  │ in                          │ in
"""

from __future__ import annotations

import math

import pytest

from tests.support.factories import trade
from tradepulse.core.windows import AddResult, TokenWindows, WindowStats, parse_windows

MIN = 60_000
SPECS = parse_windows("1min,5min")


def stats_1min(trades: list[tuple[int, float]], t_eval: int) -> WindowStats:
    tw = TokenWindows(SPECS)
    for ts, price in trades:
        assert tw.add(trade(ts, price), floor_ms=0) is AddResult.APPLIED
    return tw.stats(t_eval)["1min"]


@pytest.mark.parametrize(
    ("trades", "t_eval", "count", "first", "last"),
    [
        pytest.param([(60_000, 1.0)], 120_000, 0, None, None, id="at-T-minus-W-is-out"),
        pytest.param([(60_001, 1.0)], 120_000, 1, 60_001, 60_001, id="just-after-T-minus-W-is-in"),
        pytest.param([(120_000, 1.0)], 120_000, 1, 120_000, 120_000, id="at-T-is-in"),
        pytest.param(
            [(1_000, 1.0), (59_000, 2.0), (100_000, 3.0)],
            120_000,
            1,
            100_000,
            100_000,
            id="older-trades-evicted",
        ),
        pytest.param(
            [(100_000, 1.0), (100_000, 2.0)], 120_000, 2, 100_000, 100_000, id="equal-times-both-in"
        ),
    ],
)
def test_window_edges_half_open_on_the_left(
    trades: list[tuple[int, float]], t_eval: int, count: int, first: int | None, last: int | None
) -> None:
    s = stats_1min(trades, t_eval)
    assert (s.trade_count, s.first_trade_ms, s.last_trade_ms, s.updated_ms) == (
        count, first, last, t_eval,
    )  # fmt: skip


def test_start_price_comes_from_last_trade_before_window() -> None:
    s = stats_1min([(10_000, 2.0), (50_000, 4.0), (90_000, 5.0), (110_000, 3.0)], 120_000)
    assert (s.start_price, s.end_price) == (4.0, 3.0)
    assert s.price_change_pct == pytest.approx(-25.0)
    assert (s.high_price, s.low_price) == (5.0, 3.0)


def test_start_price_without_earlier_trade_is_first_in_window() -> None:
    s = stats_1min([(90_000, 5.0), (110_000, 3.0)], 120_000)
    assert s.start_price == 5.0
    assert s.price_change_pct == pytest.approx(-40.0)


def test_start_price_at_exactly_t_minus_w_is_the_price_in_force() -> None:
    s = stats_1min([(60_000, 8.0), (61_000, 10.0)], 120_000)
    assert (s.start_price, s.trade_count) == (8.0, 1)


def test_empty_window_carries_last_known_price() -> None:
    s = stats_1min([(1_000, 2.0), (2_000, 7.0)], 200_000)
    assert s == WindowStats(
        0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, 7.0, 7.0, 7.0, 7.0, 0.0, None, None, None, 200_000
    )


def test_single_trade_fills_every_statistic() -> None:
    tw = TokenWindows(SPECS)
    tw.add(trade(5_000, price=2.0, amount=3.0, native=0.25, buy=False, wallet="a"), 0)
    s = tw.stats(5_000)["1min"]
    assert s == WindowStats(
        0, 1, 1, 0.0, 6.0, 6.0, 0.25, 1, 0, 1, 2.0, 2.0, 2.0, 2.0, 0.0, 2.0, 5_000, 5_000, 5_000
    )


def test_equal_times_keep_arrival_order_for_end_price() -> None:
    s = stats_1min([(100_000, 1.0), (100_000, 9.0), (100_000, 4.0)], 120_000)
    assert s.end_price == 4.0


def test_unique_wallets_buyers_sellers_counted_per_side() -> None:
    tw = TokenWindows(SPECS)
    for ts, wallet, buy in [(1, "a", True), (2, "a", False), (3, "b", True), (4, "a", True)]:
        tw.add(trade(ts, wallet=wallet, buy=buy), 0)
    s = tw.stats(10)["1min"]
    assert (s.unique_wallets, s.unique_buyers, s.unique_sellers) == (2, 2, 1)
    assert (s.buy_count, s.sell_count) == (3, 1)


def test_wallet_leaving_window_stops_counting() -> None:
    tw = TokenWindows(SPECS)
    tw.add(trade(1_000, wallet="a"), 0)
    tw.add(trade(30_000, wallet="b"), 0)
    tw.add(trade(70_000, wallet="b"), 0)
    s = tw.stats(70_000)
    assert s["1min"].unique_wallets == 1
    assert s["5min"].unique_wallets == 2


def test_out_of_order_trade_corrects_every_window() -> None:
    tw = TokenWindows(SPECS)
    tw.add(trade(200_000, price=2.0, wallet="a"), 0)
    assert tw.stats(200_000)["1min"].trade_count == 1
    tw.add(trade(150_000, price=9.0, wallet="b"), 0)
    tw.add(trade(100_000, price=1.0, wallet="c"), 0)
    s = tw.stats(200_000)
    assert (s["1min"].trade_count, s["1min"].start_price, s["1min"].high_price) == (2, 1.0, 9.0)
    assert (s["5min"].trade_count, s["5min"].unique_wallets, s["5min"].low_price) == (3, 3, 1.0)


def test_late_trade_is_dropped_and_reported() -> None:
    tw = TokenWindows(SPECS)
    tw.add(trade(10 * MIN), 0)
    assert tw.add(trade(5 * MIN), 0) is AddResult.LATE  # exactly T - longest
    assert tw.add(trade(5 * MIN + 1), 0) is AddResult.APPLIED
    assert tw.stats(10 * MIN)["5min"].trade_count == 2


def test_late_uses_the_clock_floor() -> None:
    tw = TokenWindows(SPECS)
    assert tw.add(trade(1_000), floor_ms=1_000 + 5 * MIN) is AddResult.LATE


def test_duplicate_trade_changes_nothing() -> None:
    tw = TokenWindows(SPECS)
    assert tw.add(trade(1_000, tx="h", event_index=1), 0) is AddResult.APPLIED
    assert tw.add(trade(1_000, price=5.0, tx="h", event_index=1), 0) is AddResult.DUPLICATE
    assert tw.add(trade(1_000, tx="h", event_index=2), 0) is AddResult.APPLIED
    assert tw.stats(1_000)["1min"].trade_count == 2


def test_evaluation_time_never_goes_back() -> None:
    tw = TokenWindows(SPECS)
    tw.add(trade(100_000), 0)
    assert tw.stats(500_000)["1min"].updated_ms == 500_000
    assert tw.stats(200_000)["1min"].updated_ms == 500_000


def test_rebuild_from_retained_trades_gives_identical_stats() -> None:
    tw = TokenWindows(SPECS)
    for i in range(400):
        tw.add(trade(i * 7_919 % 400_000 + 1, price=1 + i % 13, wallet=f"w{i % 17}",
                     buy=i % 3 == 0), 0)  # fmt: skip
    before = tw.stats(450_000)
    rebuilt = TokenWindows.rebuild(SPECS, tw.retained_trades(), tw.t_ms)
    assert rebuilt.stats(450_000) == before
    assert len(tw.retained_trades()) < 400


@pytest.mark.parametrize("text", ["6hour", "24hour", "1day"])
def test_long_windows_work_the_same(text: str) -> None:
    specs = parse_windows(f"1min,{text}")
    tw = TokenWindows(specs)
    hour = 60 * MIN
    for h in range(30):
        tw.add(trade(h * hour, price=1.0 + h), 0)
    s = tw.stats(29 * hour)[text]
    expected = min(30, specs[-1].duration_ms // hour)
    assert s.trade_count == expected
    assert s.start_price == 1.0 + 29 - expected


def test_window_sum_on_a_rounding_midpoint_is_rounded_once_whatever_the_prefix() -> None:
    """The two newest trades sum exactly to a midpoint between two doubles; the prefix
    sums in front of them hold 8.4e14 (kept by the 5-minute window). The window sum must
    still be the exact sum rounded once (ties to even), as ``math.fsum`` gives."""
    tw = TokenWindows(parse_windows("5s,5min"))
    rows = [(0, 687167.6479599705, 3.0), (140_996, 840361.7553729741, 1e9),
            (181_492, 284916.8987601295, 1.0), (181_742, 2.00001, 0.001),
            (250_239, 915522.1023768446, 1.0), (251_238, 0.001, 1e9)]  # fmt: skip
    for ts, price, amount in rows:
        assert tw.add(trade(ts, price, amount), floor_ms=0) is AddResult.APPLIED
        tw.stats(ts)  # evaluated after each trade: the store keeps every one
    got = tw.stats(251_238)
    assert got["5s"].buy_volume == math.fsum([915522.1023768446 * 1.0, 0.001 * 1e9])
    assert got["5min"].buy_volume == math.fsum(p * a for _, p, a in rows)
