"""The compiled reduction of ``BarBuilder.add_many`` (``core/_kernels.pyx``:
``minute_runs``) against the Python code: its exact sums equal ``sum(map(_exact, ...))``
for any finite doubles (signed zeros, subnormals, the largest ones, both signs), its runs
are the minutes of consecutive trades with the open, close, high and low that adding one
trade at a time leaves, and a builder fed through it holds exactly what the Python path
holds. (``test_batch_paths`` compares ``add_many`` with ``add`` of each trade as well.)"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tradepulse.core.bars as bars_mod
from tradepulse.core.bars import BarBuilder, _exact
from tradepulse.core.trade import Trade

MIN = 60_000

needs_kernels = pytest.mark.skipif(
    bars_mod._minute_runs is None,
    reason="the compiled kernel is not built here (no C compiler at install): "
    "the bars run their Python code, which the other property tests check",
)

extreme = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            0.0,
            -0.0,
            5e-324,
            -5e-324,
            2.2250738585072014e-308,
            sys.float_info.max,
            -sys.float_info.max,
            1e-300,
            1.0,
            3.0,
            0.1,
        ]
    ),
)
row_st = st.tuples(st.integers(0, 3 * MIN), extreme, extreme, extreme, st.booleans())


def trades_of(rows: list[tuple[int, float, float, float, bool]], token: str = "X") -> list[Trade]:
    return [Trade(token, "w", buy, 0.0, amount, price, volume, 10 * MIN + dt, f"h{i}")
            for i, (dt, price, amount, volume, buy) in enumerate(rows)]  # fmt: skip


def python_runs(trades: list[Trade]) -> list[tuple[Any, ...]]:
    """The runs as the Python code sees them: consecutive trades of one minute, reduced
    one trade at a time."""
    runs: list[tuple[Any, ...]] = []
    run: list[Trade] = []
    for trade in [*trades, None]:
        start = None if trade is None else trade.ts_ms - trade.ts_ms % MIN
        if run and (trade is None or start != run[0].ts_ms - run[0].ts_ms % MIN):
            first = last = run[0]
            high = low = run[0].price_usd
            for t in run[1:]:
                if t.ts_ms < first.ts_ms:
                    first = t
                if t.ts_ms >= last.ts_ms:
                    last = t
                high, low = max(high, t.price_usd), min(low, t.price_usd)
            runs.append((
                run[0].ts_ms - run[0].ts_ms % MIN, len(run), first.ts_ms, first.price_usd,
                last.ts_ms, last.price_usd, high, low, sum(_exact(t.token_amount) for t in run),
                sum(_exact(t.volume_usd) for t in run if t.is_buy),
                sum(_exact(t.volume_usd) for t in run if not t.is_buy),
            ))  # fmt: skip
            run = []
        if trade is not None:
            run.append(trade)
    return runs


@needs_kernels
@settings(max_examples=500, deadline=None)
@given(rows=st.lists(row_st, max_size=60))
def test_runs_and_exact_sums_equal_the_python_reduction(
    rows: list[tuple[int, float, float, float, bool]],
) -> None:
    trades = trades_of(rows)
    assert bars_mod._minute_runs is not None
    got = bars_mod._minute_runs(trades, "X")
    assert got == (python_runs(trades), -1)


@needs_kernels
@given(values=st.lists(extreme, min_size=1, max_size=300))
def test_a_long_run_sums_exactly(values: list[float]) -> None:
    """Many values of one minute, of every magnitude and sign: one exact sum."""
    trades = [Trade("X", "w", True, 0.0, v, 1.0, -v, 10 * MIN, f"h{i}")
              for i, v in enumerate(values)]  # fmt: skip
    assert bars_mod._minute_runs is not None
    reduced = bars_mod._minute_runs(trades, "X")
    assert reduced is not None
    (run,), _ = reduced
    assert run[8] == sum(map(_exact, values))
    assert run[9] == -run[8]


@needs_kernels
def test_another_tokens_trade_ends_the_runs_before_it() -> None:
    mine = trades_of([(0, 1.0, 1.0, 1.0, True), (MIN, 2.0, 1.0, 2.0, False)])
    other = trades_of([(0, 3.0, 1.0, 3.0, True)], token="Y")
    assert bars_mod._minute_runs is not None
    assert bars_mod._minute_runs([*mine, *other, *mine], "X") == (python_runs(mine), 2)


@needs_kernels
def test_a_trade_with_an_amount_that_is_not_finite_is_left_to_the_python_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trades = trades_of([(0, 1.0, 1.0, 1.0, True), (1, 1.0, float("inf"), 1.0, True)])
    assert bars_mod._minute_runs is not None
    assert bars_mod._minute_runs(trades, "X") is None
    errors = []
    for kernel in (bars_mod._minute_runs, None):
        monkeypatch.setattr(bars_mod, "_minute_runs", kernel)
        with pytest.raises(OverflowError) as caught:
            BarBuilder("X").add_many(trades)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]


@needs_kernels
@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(row_st, max_size=30), min_size=1, max_size=6))
def test_a_builder_fed_through_the_kernel_holds_what_the_python_path_holds(
    batches: list[list[tuple[int, float, float, float, bool]]],
) -> None:
    """Every minute's state (open, close, times, extremes, exact sums, counts) after each
    batch, and the bars built from it."""
    kernel = bars_mod._minute_runs
    compiled, python = BarBuilder("X"), BarBuilder("X")
    for rows in batches:
        trades = trades_of([(dt, abs(p) or 1.0, a, v, b) for dt, p, a, v, b in rows])
        compiled.add_many(trades)
        bars_mod._minute_runs = None
        try:
            python.add_many(trades)
        finally:
            bars_mod._minute_runs = kernel
        assert held(compiled) == held(python)


def held(builder: BarBuilder) -> dict[int, tuple[Any, ...]]:
    return {start: (m.first_ms, m.last_ms, m.open, m.close, m.high, m.low, m.trades, m.amount,
                    m.buys, m.sells, m.sent)
            for start, m in builder._minutes.items()}  # fmt: skip


def test_where_a_c_compiler_exists_the_bars_kernel_is_in_use() -> None:
    import tradepulse.core.windows as windows_mod

    if windows_mod._KERNELS is None:
        pytest.skip("the extension is not built here: the bars run their Python code")
    assert bars_mod._minute_runs is not None, "the extension built without minute_runs"
