"""The compiled batch steps of the worker give what their Python code gives.

``EventClock.observe_all`` (``_kernels.observe_floors``) and ``market.batch_columns``
(``_kernels.batch_columns``) run compiled where the extension is built; here each is
compared, on random inputs, with its Python code (the kernel switched off) and with the
one-at-a-time calls it replaces.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tradepulse.core.clock as clock_mod
import tradepulse.core.market as market_mod
from tradepulse.core.clock import EventClock
from tradepulse.core.market import batch_columns
from tradepulse.core.trade import Trade

needs_kernels = pytest.mark.skipif(
    clock_mod._observe_floors is None or market_mod._batch_columns_c is None,
    reason="the compiled kernels are not built (no C compiler at install)",
)

# times of every size: beyond 64 bits and negative ones take the kernel's general compare
time_st = st.one_of(
    st.integers(0, 60).map(lambda b: b * 1_000),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**62), -(2**62) - 1]),
)
clock_step_st = st.one_of(
    st.tuples(st.just("trade"), st.integers(0, 3), time_st),
    st.tuples(st.just("merge"), st.integers(2, 5), time_st),
    st.tuples(st.just("assign"), st.integers(0, 3), st.just(0)),
)


def run_clock(steps: list[tuple[str, int, int]], assigned: tuple[int, ...], split: int) -> Any:
    """Every floor ``observe_all`` gave (runs of trades cut in pieces of ``split``) and the
    clock after each merge or assignment."""
    clock = EventClock(assigned)
    out: list[Any] = []
    run: list[tuple[int, int]] = []

    def flush() -> None:
        for lo in range(0, len(run), split):
            piece = run[lo : lo + split]
            out.append(clock.observe_all([p for p, _ in piece], [t for _, t in piece]))
        run.clear()

    for kind, a, b in steps:
        if kind == "trade":
            run.append((a, b))
            continue
        flush()
        if kind == "merge":
            clock.merge({a: b})
        else:
            clock.assign(tuple(range(a + 1)))
        out.append((clock.now_ms(), clock.partitions))
    flush()
    out.append((clock.now_ms(), clock.partitions))
    return out


def one_by_one(steps: list[tuple[str, int, int]], assigned: tuple[int, ...]) -> Any:
    """The floors of ``observe`` then ``now_ms`` per trade (flattened) and the clock."""
    clock = EventClock(assigned)
    floors: list[int] = []
    for kind, a, b in steps:
        if kind == "trade":
            clock.observe(a, b)
            floors.append(clock.now_ms())
        elif kind == "merge":
            clock.merge({a: b})
        else:
            clock.assign(tuple(range(a + 1)))
    return floors, clock.now_ms(), clock.partitions


@needs_kernels
@settings(max_examples=400, deadline=None)
@given(
    steps=st.lists(clock_step_st, max_size=60),
    assigned=st.sets(st.integers(0, 3), max_size=4),
    split=st.integers(1, 9),
)
def test_the_compiled_floors_are_those_of_the_python_loop_and_of_observe(
    steps: list[tuple[str, int, int]], assigned: set[int], split: int
) -> None:
    parts = tuple(sorted(assigned))
    compiled = run_clock(steps, parts, split)
    saved = clock_mod._observe_floors
    clock_mod._observe_floors = None
    try:
        python = run_clock(steps, parts, split)
    finally:
        clock_mod._observe_floors = saved
    assert compiled == python
    floors = [f for item in compiled if isinstance(item, list) for f in item]
    assert (floors, *compiled[-1]) == one_by_one(steps, parts)


@needs_kernels
def test_the_compiled_floors_refuse_columns_of_two_lengths() -> None:
    with pytest.raises(ValueError, match="2 partitions but 1 times"):
        EventClock((0,)).observe_all([0, 0], [5])


class _OtherTrade(Trade, frozen=True, gc=False):
    """A subclass: the kernel reads its fields through ``getattr``."""


row_st = st.tuples(st.integers(0, 6), st.integers(0, 3), st.integers(0, 2**64))


def python_columns(
    trades: list[Trade], partitions: list[int], known: dict[str, Any]
) -> tuple[list[int], set[str], dict[str, int]]:
    new = {t.token: p for p, t in zip(partitions, trades, strict=True) if t.token not in known}
    return [t.ts_ms for t in trades], {t.token for t in trades}, new


@needs_kernels
@settings(max_examples=300, deadline=None)
@given(rows=st.lists(row_st, max_size=50), known=st.sets(st.integers(0, 6), max_size=7))
def test_the_compiled_batch_columns_are_those_of_the_comprehensions(
    rows: list[tuple[int, int, int]], known: set[int]
) -> None:
    """Times in order, the tokens traded, and each token not known with the partition of
    its last trade (a token read from two partitions included); for trades of a subclass
    too."""
    held = {f"T{k}": object() for k in known}
    partitions = [p for _, p, _ in rows]
    for cls in (Trade, _OtherTrade):
        trades: list[Trade] = [cls(f"T{k}", "w", True, 1.0, 1.0, 1.0, 1.0, ts, f"h{i}", 0)
                               for i, (k, _, ts) in enumerate(rows)]  # fmt: skip
        got = batch_columns(trades, partitions, held)
        want = python_columns(trades, partitions, held)
        assert got == want
        assert list(got[2]) == list(want[2])  # the same order of the new tokens
        assert all(a is b for a, b in zip(got[0], want[0], strict=True))  # the trades' own ints


def test_batch_columns_refuse_columns_of_two_lengths() -> None:
    trade = Trade("T", "w", True, 1.0, 1.0, 1.0, 1.0, 5, "h", 0)
    with pytest.raises(ValueError, match="2 trades but 1 partitions"):
        batch_columns([trade, trade], [0], {})
    with pytest.raises(ValueError, match="2 trades but 1 partitions"):
        batch_columns((trade, trade), (0,), {})  # not lists: the Python code
