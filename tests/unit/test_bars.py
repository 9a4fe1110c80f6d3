"""Scenario tables for the 1-minute bar builder (ARCHITECTURE §6).

Timeline of the first bar with the default grace of 2 s (times in ms)::

    0                           60_000      62_000
    [──────── bar 0 ────────────)[─── bar 60_000 ───...
                                 │  grace  │
                                           T >= 62_000: bar 0 is final, emitted (revision 0);
                                           a later trade of minute 0 re-emits it (revision 1)

Expected values are written out by hand from the specification.
"""

from __future__ import annotations

import math

import msgspec
import pytest

from tests.support.factories import trade
from tests.support.realdata import binance_xrpeth_trades, ohlcv_1m_rows, require_real_data
from tradepulse.core.bars import Bar, BarBuilder, BarBuilderSnapshot, minute_of
from tradepulse.core.trade import Trade, make_trade
from tradepulse.core.windows import AddResult

MIN = 60_000
TOKEN = "TOKEN"


def builder(*trades: Trade, grace_ms: int = 2_000, horizon_ms: int = 3_600_000) -> BarBuilder:
    b = BarBuilder(TOKEN, grace_ms=grace_ms, horizon_ms=horizon_ms)
    for t in trades:
        assert b.add(t) is AddResult.APPLIED
    return b


def priced(*ts_price: tuple[int, float]) -> list[Trade]:
    return [trade(ts, price) for ts, price in ts_price]


# ---------------------------------------------------------------------- alignment and content


@pytest.mark.parametrize(
    ("ts_ms", "open_ms"),
    [
        (0, 0),
        (59_999, 0),
        (60_000, 60_000),
        (1_570_752_059_999, 1_570_752_000_000),  # 2019-10-11T00:00:59.999Z
        (1_570_752_060_000, 1_570_752_060_000),
    ],
)
def test_bar_alignment_trade_time_floored_to_utc_minute(ts_ms: int, open_ms: int) -> None:
    assert minute_of(ts_ms) == open_ms
    assert [bar.open_ms for bar in builder(trade(ts_ms)).bars()] == [open_ms]


def test_bar_fields_from_four_trades_match_hand_computed_bar() -> None:
    b = builder(
        trade(10_000, price=2.0, amount=3.0, buy=True),  # 6 USD
        trade(20_000, price=4.0, amount=1.0, buy=False),  # 4 USD
        trade(15_000, price=1.0, amount=2.0, buy=True),  # 2 USD (arrives out of order)
        trade(20_000, price=3.0, amount=2.0, buy=True),  # 6 USD, same time, later: the close
    )
    assert b.advance(62_000) == [Bar(TOKEN, 0, 2.0, 4.0, 1.0, 3.0, 8.0, 18.0, 14.0, 4.0, 4, 2.25)]


@pytest.mark.parametrize(
    ("arrivals", "open_", "close"),
    [
        pytest.param([(30, 2.0), (10, 1.0), (50, 3.0)], 1.0, 3.0, id="middle-first"),
        pytest.param([(50, 3.0), (30, 2.0), (10, 1.0)], 1.0, 3.0, id="reversed"),
        pytest.param([(10, 1.0), (10, 9.0), (10, 4.0)], 1.0, 4.0, id="equal-times-arrival"),
        pytest.param([(20, 5.0), (10, 1.0), (10, 9.0), (20, 6.0)], 1.0, 6.0, id="two-ties"),
        pytest.param([(59_999, 7.0), (0, 8.0)], 8.0, 7.0, id="minute-edges"),
    ],
)
def test_bar_open_close_out_of_order_follow_time_then_arrival(
    arrivals: list[tuple[int, float]], open_: float, close: float
) -> None:
    (bar,) = builder(*priced(*arrivals)).bars()
    assert (bar.open, bar.close) == (open_, close)
    assert (bar.high, bar.low) == (max(p for _, p in arrivals), min(p for _, p in arrivals))


def test_bars_minutes_without_trades_have_no_bar() -> None:
    #   minute:  0    1    2    3    4    5
    #   trades:  ●         ●              ●
    b = builder(*priced((30_000, 1.0), (2 * MIN + 10_000, 2.0), (5 * MIN, 3.0)))
    out = b.advance(10 * MIN)
    assert [(bar.open_ms, bar.close) for bar in out] == [(0, 1.0), (2 * MIN, 2.0), (5 * MIN, 3.0)]


# ------------------------------------------------------------------------- finalization


@pytest.mark.parametrize(
    ("grace_ms", "now_ms", "final"),
    [
        (2_000, 61_999, False),
        (2_000, 62_000, True),
        (0, 59_999, False),
        (0, 60_000, True),
        (10_000, 69_999, False),
        (10_000, 70_000, True),
    ],
)
def test_bar_finalization_at_end_plus_grace_exactly(
    grace_ms: int, now_ms: int, final: bool
) -> None:
    b = builder(trade(30_000, 5.0), grace_ms=grace_ms)
    forming = b.forming(now_ms)
    out = b.advance(now_ms)
    assert [bar.open_ms for bar in out] == ([0] if final else [])
    assert (forming is None) == final


def test_advance_final_bar_emitted_once() -> None:
    b = builder(trade(30_000, 5.0))
    assert len(b.advance(62_000)) == 1
    assert b.advance(63_000) == []
    assert b.advance(10 * MIN) == []


def test_advance_clock_never_goes_back() -> None:
    b = builder(trade(30_000, 5.0), trade(70_000, 6.0))
    b.advance(200_000)
    assert b.advance(1_000) == []
    assert b.clock_ms == 200_000
    assert b.forming(1_000) is None  # evaluated at max(1_000, T) = 200_000: all final


# ------------------------------------------------------------------------- late trades


def test_late_trade_reemits_corrected_bar_with_next_revision() -> None:
    #   arrival:  10s p1, 30s p2 | advance 62s | 40s p5 | advance 63s | 5s p0.5, 50s p3 | 64s
    b = builder(*priced((10_000, 1.0), (30_000, 2.0)))
    (rev0,) = b.advance(62_000)
    assert (rev0.revision, rev0.open, rev0.close, rev0.trades) == (0, 1.0, 2.0, 2)
    assert b.add(trade(40_000, 5.0)) is AddResult.APPLIED
    (rev1,) = b.advance(63_000)
    assert (rev1.revision, rev1.open, rev1.high, rev1.close, rev1.trades) == (1, 1.0, 5.0, 5.0, 3)
    b.add(trade(5_000, 0.5))
    b.add(trade(50_000, 3.0))  # two late trades between two calls: one revision
    (rev2,) = b.advance(64_000)
    assert (rev2.revision, rev2.open, rev2.low, rev2.close, rev2.trades) == (2, 0.5, 0.5, 3.0, 5)
    assert rev2.volume == 5.0 and rev2.volume_usd == 11.5 and rev2.vwap == 2.3
    assert b.advance(65_000) == []


def test_late_trade_in_empty_final_minute_creates_bar_with_revision_zero() -> None:
    b = builder(*priced((10_000, 1.0), (2 * MIN + 10_000, 3.0)))
    assert [bar.open_ms for bar in b.advance(3 * MIN + 2_000)] == [0, 2 * MIN]
    b.add(trade(MIN + 5, 2.0))
    assert [(bar.open_ms, bar.revision, bar.close) for bar in b.advance(3 * MIN + 3_000)] == [
        (MIN, 0, 2.0)
    ]


def test_advance_corrections_and_new_final_bars_oldest_first() -> None:
    b = builder(trade(10_000, 1.0))
    b.advance(62_000)
    b.add(trade(20_000, 2.0))  # correction of minute 0
    b.add(trade(MIN + 30_000, 3.0))  # minute 1, final at 122_000
    out = b.advance(122_000)
    assert [(bar.open_ms, bar.revision) for bar in out] == [(0, 1), (MIN, 0)]


@pytest.mark.parametrize(
    ("ts_ms", "result", "emitted"),
    [
        pytest.param(179_999, AddResult.LATE, [], id="minute-before-cut"),
        pytest.param(219_999, AddResult.LATE, [], id="minute-start-at-or-before-cut"),
        pytest.param(230_000, AddResult.LATE, [], id="after-cut-but-minute-starts-before"),
        pytest.param(240_000, AddResult.APPLIED, [240_000], id="minute-after-cut-final"),
        pytest.param(399_000, AddResult.APPLIED, [], id="current-minute-forming"),
    ],
)
def test_add_beyond_horizon_refused_whole_minutes(
    ts_ms: int, result: AddResult, emitted: list[int]
) -> None:
    # horizon 3 min, T = 400_000: cut = 220_000; a minute is accepted when it starts after it
    b = builder(trade(390_000), horizon_ms=3 * MIN)
    b.advance(400_000)
    assert b.add(trade(ts_ms)) is result
    assert [bar.open_ms for bar in b.advance(401_000)] == emitted


def test_advance_forgets_bars_beyond_horizon() -> None:
    b = builder(*priced((10_000, 1.0), (4 * MIN, 2.0), (5 * MIN, 3.0)), horizon_ms=3 * MIN)
    b.advance(6 * MIN + 2_000)
    assert [bar.open_ms for bar in b.bars()] == [4 * MIN, 5 * MIN]


# ------------------------------------------------------------------------- forming bar


def test_forming_without_trades_is_none() -> None:
    assert builder().forming(0) is None


def test_forming_returns_newest_non_final_bar_revision_zero() -> None:
    b = builder(*priced((30_000, 1.0), (61_000, 2.0)))
    bar = b.forming(61_500)  # bar 0 is in its grace, bar 60_000 is the newer one
    assert bar is not None
    assert (bar.open_ms, bar.close, bar.revision) == (MIN, 2.0, 0)


def test_forming_does_not_move_the_clock() -> None:
    b = builder(trade(30_000, 1.0))
    assert b.forming(200_000) is None
    assert b.advance(1_000) == []
    assert b.forming(1_000) is not None


# ------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("grace_ms", "horizon_ms"), [(-1, 3_600_000), (2_000, 61_999), (0, 59_999)]
)
def test_builder_invalid_configuration_raises(grace_ms: int, horizon_ms: int) -> None:
    with pytest.raises(ValueError, match="_ms must be"):
        BarBuilder(TOKEN, grace_ms=grace_ms, horizon_ms=horizon_ms)


def test_add_trade_of_other_token_raises() -> None:
    with pytest.raises(ValueError, match="OTHER"):
        builder().add(trade(1, token="OTHER"))


# ------------------------------------------------------------------------- snapshot / restore


def roundtrip(snap: BarBuilderSnapshot) -> BarBuilderSnapshot:
    return msgspec.json.decode(msgspec.json.encode(snap), type=BarBuilderSnapshot)


def scenario() -> tuple[BarBuilder, list[Trade]]:
    """A builder holding every kind of bar, and the trades it accepted in arrival order::

    minute 0: final, revised twice (revision 2)
    minute 1: final, a correction pending (revision 1)
    minute 2: already final when its first trade came: pending (revision 0)
    minute 3: final, sent once             minute 4: no trade       minute 5: forming
    """
    b = BarBuilder(TOKEN)
    sent: list[Trade] = []

    def add(*ts_price: tuple[int, float]) -> None:
        for t in priced(*ts_price):
            assert b.add(t) is AddResult.APPLIED
            sent.append(t)

    add((10_000, 1.0), (MIN + 1, 2.0), (3 * MIN, 3.0), (3 * MIN, 3.5))
    assert [bar.open_ms for bar in b.advance(5 * MIN)] == [0, MIN, 3 * MIN]
    add((20_000, 1.5))
    assert [bar.revision for bar in b.advance(5 * MIN + 1)] == [1]
    add((30_000, 0.5))
    assert [bar.revision for bar in b.advance(5 * MIN + 2)] == [2]
    add((MIN + 2, 2.5), (2 * MIN + 7, 4.0), (5 * MIN, 6.0), (5 * MIN, 6.5))
    return b, sent


def test_snapshot_of_scenario_lists_revised_and_pending_bars() -> None:
    b, _ = scenario()
    assert b.snapshot() == BarBuilderSnapshot(
        clock_ms=5 * MIN + 2, final_before_ms=4 * MIN, revised={0: 2}, pending={MIN: 1, 2 * MIN: 0}
    )


def test_restore_from_snapshot_and_trades_equals_original() -> None:
    original, sent = scenario()
    in_time_order = sorted(sent, key=lambda t: t.ts_ms)  # stable: ties keep arrival order
    restored = BarBuilder.restore(TOKEN, roundtrip(original.snapshot()), in_time_order)
    assert restored.bars() == original.bars()
    assert [(bar.open_ms, bar.revision) for bar in restored.bars()] == [
        (0, 2), (MIN, 1), (2 * MIN, 0), (3 * MIN, 0), (5 * MIN, 0),
    ]  # fmt: skip
    assert restored.snapshot() == original.snapshot()
    assert restored.forming(5 * MIN) == original.forming(5 * MIN) is not None
    for b in (original, restored):
        b.add(trade(40_000, 9.0))
        b.add(trade(5 * MIN + 1, 7.0))
    out = original.advance(7 * MIN)
    assert [(bar.open_ms, bar.revision) for bar in out] == [
        (0, 3), (MIN, 1), (2 * MIN, 0), (5 * MIN, 0),
    ]  # fmt: skip
    assert restored.advance(7 * MIN) == out
    assert restored.snapshot() == original.snapshot()


def test_restore_ignores_trades_beyond_horizon() -> None:
    b = builder(*priced((5 * MIN, 1.0), (6 * MIN, 2.0)), horizon_ms=3 * MIN)
    b.advance(8 * MIN)  # cut = 5 min: minute 5 is forgotten
    old = [trade(MIN, 9.0), trade(5 * MIN + 1, 9.0)]
    restored = BarBuilder.restore(
        TOKEN, b.snapshot(), [*old, trade(6 * MIN, 2.0)], horizon_ms=3 * MIN
    )
    assert restored.bars() == b.bars()
    assert [bar.open_ms for bar in restored.bars()] == [6 * MIN]


# ------------------------------------------------------------------------- real data


def xrpeth_trades() -> list[Trade]:
    return [
        make_trade(
            token=w["token"],
            wallet=w["wallet"],
            is_buy=w["sell_buy"] == "buy",
            native_amount=w["native_amount"],
            token_amount=w["token_amount"],
            price_usd=w["price_usd"],
            ts_ms=w["trans_time"],
            tx_hash=w["tx_hash"],
            event_index=w["event_index"],
        )
        for w in binance_xrpeth_trades()
    ]


def assert_bars_equal_freqtrade_ohlcv(bars: list[Bar], trades: list[Trade]) -> None:
    """OHLC and volume against the file; trade count, USD volumes and VWAP against the
    trades grouped by minute here (the file has neither)."""
    rows = ohlcv_1m_rows("binance_xrpeth")
    assert [bar.open_ms for bar in bars] == [row["open_ms"] for row in rows]
    by_minute: dict[int, list[Trade]] = {}
    for t in trades:
        by_minute.setdefault(t.ts_ms - t.ts_ms % MIN, []).append(t)
    for bar, row in zip(bars, rows, strict=True):
        ohlc = (row["open"], row["high"], row["low"], row["close"])
        assert (bar.open, bar.high, bar.low, bar.close) == ohlc
        assert bar.volume == pytest.approx(row["volume"], rel=1e-12, abs=0)
        group = by_minute[bar.open_ms]
        usd = math.fsum(t.volume_usd for t in group)
        buy = math.fsum(t.volume_usd for t in group if t.is_buy)
        assert (bar.trades, bar.volume_usd, bar.buy_volume_usd) == (len(group), usd, buy)
        assert bar.sell_volume_usd == math.fsum(t.volume_usd for t in group if not t.is_buy)
        assert bar.vwap == usd / math.fsum(t.token_amount for t in group)
        # volume_usd is rounded per trade, so vwap may leave [low, high] by an ulp or two
        assert bar.low * (1 - 1e-14) <= bar.vwap <= bar.high * (1 + 1e-14)


@pytest.mark.realdata
def test_bars_from_binance_xrpeth_trades_equal_freqtrade_ohlcv() -> None:
    """1,231 bars built from the 6,722 XRP/ETH aggregate trades, fed in time order on the
    event clock (T = newest trade), equal the freqtrade 1-minute OHLCV of the same trades."""
    require_real_data()
    trades = xrpeth_trades()
    b = BarBuilder("XRPETH")
    out: list[Bar] = []
    for t in trades:
        assert b.add(t) is AddResult.APPLIED
        out += b.advance(t.ts_ms)
    out += b.advance(trades[-1].ts_ms + 10 * MIN)
    assert {bar.revision for bar in out} == {0}
    assert_bars_equal_freqtrade_ohlcv(out, trades)


@pytest.mark.realdata
def test_bars_from_shuffled_xrpeth_trades_latest_revisions_equal_freqtrade_ohlcv() -> None:
    """The same trades arriving shuffled within blocks of 20 minutes (trades sharing a
    millisecond stay together, in file order: ties keep arrival order), on the event
    clock (T = newest trade so far): late trades revise final bars, revisions count up by
    one, and the latest revision of every bar equals the file."""
    require_real_data()
    trades = xrpeth_trades()
    b = BarBuilder("XRPETH")
    latest: dict[int, Bar] = {}
    clock = 0
    blocks: dict[int, dict[int, list[Trade]]] = {}  # 20-minute block -> time -> trades
    for t in trades:
        blocks.setdefault(t.ts_ms // (20 * MIN), {}).setdefault(t.ts_ms, []).append(t)
    for block in blocks.values():
        times = list(block)
        shuffled = times[1::2][::-1] + times[0::2]  # a fixed, thorough shuffle of the times
        for t in (t for ts in shuffled for t in block[ts]):
            assert b.add(t) is AddResult.APPLIED
            clock = max(clock, t.ts_ms)
            for bar in b.advance(clock):
                previous = latest.get(bar.open_ms)
                assert bar.revision == (previous.revision + 1 if previous else 0)
                latest[bar.open_ms] = bar
    for bar in b.advance(trades[-1].ts_ms + 10 * MIN):
        latest[bar.open_ms] = bar
    assert max(bar.revision for bar in latest.values()) > 0  # the shuffle did revise bars
    assert_bars_equal_freqtrade_ohlcv([latest[k] for k in sorted(latest)], trades)
