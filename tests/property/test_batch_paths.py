"""The worker's batch paths give what their one-at-a-time counterparts give.

A batch of messages is decoded by ``decode_many``, its trades' floors come from one
``observe_all`` of the clock, the windows take them through ``Market.add_all`` and each
token's bars through one ``BarBuilder.add_many``. Each is compared here, on random inputs,
with the per-message or per-trade call it replaces: ``decode_trade``, ``observe`` then
``now_ms``, ``Market.add``, ``BarBuilder.add``.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.unit.test_wire import BAD, NOW, with_
from tradepulse.adapters.wire import decode_many, decode_trade
from tradepulse.core.bars import BarBuilder
from tradepulse.core.clock import EventClock
from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.market import Market
from tradepulse.core.trade import Trade
from tradepulse.core.windows import AddResult, parse_windows

MIN = 60_000
SPECS = parse_windows("1s,5s,30s")

# Good values in every accepted form, and every kind of rejected value, including some
# that a decoder of concatenated or newline-delimited values would split or join.
GOOD_VALUES = [
    with_(),
    with_(sell_buy="SELL", tx_hash="b"),
    with_(trans_time="2023-11-14T22:13:19.123Z", tx_hash="c"),
    with_(trans_time=1_699_999_999.5, tx_hash="d"),
    with_(trans_time=1_699_999_999, event_index=0),
    b'  {"token":"T","wallet":"w","sell_buy":"buy","native_amount":0,"token_amount":2,\n'
    b'"price_usd":3,"trans_time":1699999999000,"tx_hash":"e"}  ',
]
SPLITTING = [
    with_() + b" " + with_(tx_hash="z"),
    with_() + b"\n" + with_(tx_hash="y"),
    b"",
    b"   ",
    b"\n",
    with_()[:40],
    with_()[40:],
]
value_st = st.one_of(
    st.sampled_from(GOOD_VALUES),
    st.sampled_from([raw for raw, _ in BAD] + SPLITTING),
    st.binary(max_size=24),
)


def one_by_one(values: list[bytes]) -> tuple[list[Trade], list[tuple[int, str, str]]]:
    trades: list[Trade] = []
    rejected: list[tuple[int, str, str]] = []
    for i, raw in enumerate(values):
        try:
            trades.append(decode_trade(raw, NOW))
        except InvalidTradeError as exc:
            rejected.append((i, exc.reason, exc.detail))
    return trades, rejected


@settings(max_examples=300, deadline=None)
@given(values=st.lists(value_st, max_size=40))
def test_decode_many_equals_decode_trade_of_each_value(values: list[bytes]) -> None:
    trades, rejected = decode_many(values, NOW)
    assert (trades, [(i, e.reason, e.detail) for i, e in rejected]) == one_by_one(values)


def test_decode_many_rejects_each_bad_value_of_a_long_batch_with_its_own_reason() -> None:
    values = [with_(tx_hash=f"h{i}") for i in range(3_000)]
    for i, (raw, _) in zip(range(7, 3_000, 61), BAD, strict=False):
        values[i] = raw
    trades, rejected = decode_many(values, NOW)
    expected_trades, expected_rejected = one_by_one(values)
    assert len(rejected) == len(BAD) and len(trades) == 3_000 - len(BAD)
    assert trades == expected_trades
    assert [(i, e.reason, e.detail) for i, e in rejected] == expected_rejected
    assert [e.reason for _, e in rejected] == [reason for _, reason in BAD]


# --- the event clock ------------------------------------------------------------------------

clock_step_st = st.one_of(
    st.tuples(st.just("trade"), st.integers(0, 3), st.integers(0, 50)),
    st.tuples(st.just("merge"), st.integers(2, 5), st.integers(0, 50)),
    st.tuples(st.just("assign"), st.integers(0, 3), st.integers(0, 0)),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(clock_step_st, max_size=60),
    assigned=st.sets(st.integers(0, 3), max_size=4),
    split=st.integers(1, 9),
)
def test_observe_all_equals_observe_then_now_of_each_trade(
    steps: list[tuple[str, int, int]], assigned: set[int], split: int
) -> None:
    """Runs of trades between merges and reassignments: ``observe_all`` over a run (cut in
    pieces of ``split``) returns the floors one ``observe`` + ``now_ms`` per trade gives,
    and leaves the same clock."""
    one, batched = EventClock(tuple(sorted(assigned))), EventClock(tuple(sorted(assigned)))
    run: list[tuple[int, int]] = []

    def flush() -> None:
        expected = []
        for p, t in run:
            one.observe(p, t)
            expected.append(one.now_ms())
        got: list[int] = []
        for lo in range(0, len(run), split):
            piece = run[lo : lo + split]
            got += batched.observe_all([p for p, _ in piece], [t for _, t in piece])
        assert got == expected
        run.clear()

    for kind, a, b in steps:
        if kind == "trade":
            run.append((a, b * 1_000))
            continue
        flush()
        for clock in (one, batched):
            if kind == "merge":
                clock.merge({a: b * 1_000})
            else:
                clock.assign(tuple(range(a + 1)))
        assert (one.now_ms(), one.partitions) == (batched.now_ms(), batched.partitions)
    flush()
    assert (one.now_ms(), one.partitions) == (batched.now_ms(), batched.partitions)


# --- windows and bars -----------------------------------------------------------------------

trade_st = st.tuples(
    st.integers(0, 4),  # token
    st.integers(0, 90_000),  # time offset
    st.integers(0, 30),  # tx (a small pool: resends are duplicates)
    st.sampled_from([1e-9, 0.5, 1.0, 3.0, 1e9]),  # price
    st.sampled_from([1e-3, 1.0, 7.0]),  # amount
    st.booleans(),
)


def make_trades(rows: list[tuple[int, int, int, float, float, bool]]) -> list[Trade]:
    return [Trade(f"T{tok}", f"w{tx % 4}", buy, 0.5, amount, price, amount * price,
                  1_700_000_000_000 + dt, f"h{tx}")
            for tok, dt, tx, price, amount, buy in rows]  # fmt: skip


@settings(max_examples=300, deadline=None)
@example(  # a new token's first trade is late (the token is not kept), its next one is not
    rows=[(0, 80_000, 1, 1.0, 1.0, True), (1, 0, 2, 1.0, 1.0, True),
          (1, 90_000, 3, 1.0, 1.0, False)],
    floor_steps=[100_000] + [0] * 79,
    shard=(0, 1),
)  # fmt: skip
@given(
    rows=st.lists(trade_st, max_size=80),
    floor_steps=st.lists(st.integers(0, 40_000), min_size=80, max_size=80),
    shard=st.sampled_from([(0, 1), (0, 2), (1, 2)]),
)
def test_market_add_all_equals_add_of_each_trade(
    rows: list[tuple[int, int, int, float, float, bool]],
    floor_steps: list[int],
    shard: tuple[int, int],
) -> None:
    """Applied, duplicate, late (floors that jump ahead) and other shards' trades: the same
    counts, windows and, per token, the applied trades in order."""
    trades = make_trades(rows)
    floors, floor = [], 1_700_000_000_000 - 60_000
    for step in floor_steps[: len(trades)]:
        floor += step
        floors.append(floor)
    one, batched = Market(SPECS, shard), Market(SPECS, shard)
    expected: dict[str, list[Trade]] = {}
    for trade, f in zip(trades, floors, strict=True):
        if one.add(trade, f) is AddResult.APPLIED:
            expected.setdefault(trade.token, []).append(trade)
    assert batched.add_all(trades, floors) == expected
    assert (batched.applied, batched.duplicates, batched.late) == (
        one.applied, one.duplicates, one.late
    )  # fmt: skip
    assert sorted(batched.tokens) == sorted(one.tokens)
    t = floors[-1] if floors else 0
    for token in one.tokens:
        assert batched.stats(token, t) == one.stats(token, t)


bar_trade_st = st.tuples(
    st.integers(-12 * MIN, 3 * MIN),  # behind or ahead of the stream's clock
    st.one_of(st.sampled_from([1e-9, 1e-3, 0.5, 3.0, 1e9]), st.floats(1e-6, 1e6)),
    st.sampled_from([5e-324, 1e-9, 1e-3, 1.0, 1e6, 1e200]),  # subnormal to huge amounts
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    batches=st.lists(st.lists(bar_trade_st, max_size=30), max_size=12),
    grace_ms=st.sampled_from([0, 2_000]),
    horizon_extra_ms=st.sampled_from([0, 5 * MIN]),
)
def test_bar_builder_add_many_equals_add_of_each_trade(
    batches: list[list[tuple[int, float, float, bool]]], grace_ms: int, horizon_extra_ms: int
) -> None:
    """Batches of trades (out of order, beyond the horizon, into final minutes) each
    followed by an advance: the same bars emitted, bars held, forming bar and snapshot,
    bit for bit."""
    horizon_ms = MIN + grace_ms + horizon_extra_ms
    one = BarBuilder("X", grace_ms=grace_ms, horizon_ms=horizon_ms)
    batched = BarBuilder("X", grace_ms=grace_ms, horizon_ms=horizon_ms)
    clock, n = 100 * MIN, 0
    for rows in batches:
        trades = []
        for dt, price, amount, buy in rows:
            trades.append(Trade("X", "w", buy, 0.0, amount, price, amount * price,
                                clock + dt, f"h{n}"))  # fmt: skip
            n += 1
        for trade in trades:
            one.add(trade)
        batched.add_many(trades)
        assert msgspec.json.encode(batched.bars()) == msgspec.json.encode(one.bars())
        clock += 40_000
        assert batched.advance(clock) == one.advance(clock)
        assert batched.forming(clock) == one.forming(clock)
        assert batched.snapshot() == one.snapshot()


def test_bar_builder_add_many_refuses_another_tokens_trade_after_filing_the_ones_before() -> None:
    one, batched = BarBuilder("X"), BarBuilder("X")
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % MIN
    mine = [Trade("X", "w", True, 0.0, 1.0, 2.0, 2.0, t0 + i, f"h{i}") for i in range(3)]
    other = Trade("Y", "w", True, 0.0, 1.0, 2.0, 2.0, t0, "y")
    for trade in mine:
        one.add(trade)
    with pytest.raises(ValueError, match="'Y'"):
        batched.add_many([*mine, other, mine[0]])
    assert batched.bars() == one.bars()


run_trade_st = st.tuples(
    st.integers(0, MIN - 1),  # inside one minute
    st.one_of(st.sampled_from([1e-9, 1e-3, 0.5, 3.0, 1e9]), st.floats(1e-12, 1e12)),
    st.one_of(st.sampled_from([5e-324, 1e-300, 1e-9, 1.0, 1e6, 1e200]), st.floats(1e-6, 1e15)),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    runs=st.lists(st.lists(run_trade_st, min_size=1, max_size=120), min_size=1, max_size=4),
    minute=st.integers(0, 2),
)
def test_long_runs_of_one_minute_are_summed_exactly_as_trade_by_trade(
    runs: list[list[tuple[int, float, float, bool]]], minute: int
) -> None:
    """Runs long enough for the column-wise reduction (sums with ``math.fsum`` passes),
    amounts from subnormal to 1e200 and equal times: the same bars, bit for bit, as one
    ``add`` per trade (whose sums are exact integers)."""
    one, batched = BarBuilder("X"), BarBuilder("X")
    start, n = 100 * MIN + minute * MIN, 0
    for rows in runs:
        trades = []
        for dt, price, amount, buy in rows:
            trades.append(Trade("X", "w", buy, 0.0, amount, price, amount * price,
                                start + dt // 7 * 7, f"h{n}"))  # fmt: skip
            n += 1
        for trade in trades:
            one.add(trade)
        batched.add_many(trades)
        assert msgspec.json.encode(batched.bars()) == msgspec.json.encode(one.bars())
    assert batched.advance(start + 5 * MIN) == one.advance(start + 5 * MIN)


def test_run_whose_sum_exceeds_the_float_range_is_filed_as_trade_by_trade() -> None:
    """``math.fsum`` overflows: the run is summed value by value; building the bar then
    fails in both builders alike (the sum is beyond the float range)."""
    start = 100 * MIN
    trades = [Trade("X", "w", i % 2 == 0, 0.0, 1e308, 1.5, 1.5e308, start + i, f"h{i}")
              for i in range(40)]  # fmt: skip
    one, batched = BarBuilder("X"), BarBuilder("X")
    for trade in trades:
        one.add(trade)
    batched.add_many(trades)
    assert batched.snapshot() == one.snapshot()
    for builder in (one, batched):
        with pytest.raises(OverflowError):
            builder.bars()
    small = [Trade("X", "w", True, 0.0, 1.0, 2.0, 2.0, start + 1 + i, f"s{i}") for i in range(20)]
    for trade in small:
        one.add(trade)
    batched.add_many(small)
    with pytest.raises(OverflowError):
        batched.bars()
