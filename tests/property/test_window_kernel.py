"""The compiled kernels (``core/_kernels.pyx``: the append to the columns, the window moves,
the add loop and a window's statistics) leave every column and count of the window engine,
and give every statistic, exactly as the engine's Python code does: the same streams (out of
order, duplicates, late trades, rollbacks, compactions) are run once with each, and the whole
state is compared after every evaluation, floats bit for bit."""

from __future__ import annotations

import math
import random
import shutil
import sysconfig
from array import array
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tradepulse.core.windows as windows_mod
from tests.property.test_window_properties import SPECS, Step, python_engine, step_st
from tradepulse.core.market import Market
from tradepulse.core.trade import Trade
from tradepulse.core.windows import TokenWindows

needs_kernels = pytest.mark.skipif(
    windows_mod._KERNELS is None,
    reason="the compiled kernel is not built here (no C compiler at install): "
    "the engine runs its Python code, which the other property tests check",
)

_COLUMNS = ("_ts", "_px", "_bvh", "_bvl", "_svh", "_svl", "_nvh", "_nvl", "_amh", "_aml",
            "_nbuy", "_wprev", "_wmark", "_bprev", "_sprev", "_smark")  # fmt: skip
_OTHERS = ("_trades", "_keys", "_keyset", "_wlast", "_blast", "_slast", "_hstk", "_lstk",
           "_end", "_seq0", "_synced", "newest_ms", "t_ms")  # fmt: skip


def state(tw: TokenWindows) -> dict[str, Any]:
    """Everything the engine keeps, floats as their bytes (so -0.0 and 0.0 differ)."""
    out: dict[str, Any] = {}
    for name in _COLUMNS:
        column: array[Any] = getattr(tw, name)
        out[name] = (column.typecode, column.tobytes())
    for name in _OTHERS:
        value = getattr(tw, name)
        out[name] = value.copy() if hasattr(value, "copy") else value
    out["windows"] = [(w.start, w.wallets, w.sides) for w in tw.windows]
    return out


def run(steps: list[Step]) -> list[dict[str, Any]]:
    """The state after every evaluation of ``steps`` (and at the end)."""
    tw = TokenWindows(SPECS)
    sent: list[Trade] = []
    clock = 1_000_000
    states = []
    for n, s in enumerate(steps):
        clock += s.dt_ms
        if s.kind == "eval":
            got = tw.stats(clock)
            states.append({**state(tw), "stats": msgspec.msgpack.encode(got)})  # floats' bits
            continue
        if s.dup_of is not None and s.dup_of < len(sent):
            tr = sent[s.dup_of]
        else:
            tr = Trade("X", f"w{s.wallet}", s.buy, s.native, s.amount, s.price,
                       s.amount * s.price, clock - s.back_ms, f"h{n}", n % 2)  # fmt: skip
        sent.append(tr)
        tw.add(tr, clock)
    got = tw.stats(clock)
    states.append({**state(tw), "stats": msgspec.msgpack.encode(got)})
    return states


@pytest.fixture(params=["default", "tiny-buffers"])
def thresholds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "tiny-buffers":  # compactions and prunes every few trades
        monkeypatch.setattr(windows_mod, "_PENDING_LIMIT", 3)
        monkeypatch.setattr(windows_mod, "_COMPACT_MIN", 2)


def compare(steps: list[Step], monkeypatch: pytest.MonkeyPatch, vector_min: int) -> None:
    compiled = run(steps)
    with monkeypatch.context() as m:
        python_engine(m)
        m.setattr(windows_mod, "_VECTOR_MIN", vector_min)
        python = run(steps)
    assert len(compiled) == len(python)
    for i, (c, p) in enumerate(zip(compiled, python, strict=True)):
        for name in c:
            assert c[name] == p[name], (i, name)


@needs_kernels
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step_st, min_size=1, max_size=150), vector_min=st.sampled_from([4, 10**9]))
def test_the_kernel_leaves_every_column_as_the_python_code_does(
    thresholds: None, monkeypatch: pytest.MonkeyPatch, steps: list[Step], vector_min: int
) -> None:
    """Against the Python loop and against the NumPy path (``vector_min`` 4)."""
    compare(steps, monkeypatch, vector_min)


@needs_kernels
def test_long_streams_with_many_wallets_end_in_the_same_state(
    thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rnd = random.Random(11)
    steps = [
        Step(rnd.choice(["trade"] * 20 + ["eval"]), rnd.choice([0, 1, 40, 400, 2_000]),
             rnd.choice([0] * 9 + [rnd.randrange(0, 35_000)]), rnd.uniform(1e-9, 1e6),
             rnd.choice([1e-3, 1.0, 1e4, 1e12]), rnd.choice([0.0, 1.0, 3.5]),
             rnd.random() < 0.5, rnd.randrange(500),
             rnd.randrange(5000) if rnd.random() < 0.03 else None)
        for _ in range(6000)
    ]  # fmt: skip
    compare(steps, monkeypatch, 48)


@needs_kernels
def test_the_compiled_kernels_are_the_ones_in_use() -> None:
    assert windows_mod.WINDOW_KERNEL == "compiled"


row_st = st.tuples(
    st.integers(0, 5),  # token
    st.integers(-40_000, 3_000),  # time relative to the stream's clock
    st.integers(0, 3_000),  # how far the clock moves first
    st.integers(0, 40),  # tx hash (repeats: duplicates)
    st.integers(0, 2),  # event index
    st.booleans(),
    st.integers(0, 4),  # wallet
)


def add_batches(batches: list[list[tuple[int, ...]]], shard: tuple[int, int]) -> list[Any]:
    """``Market.add_all`` of each batch (floors: the stream's clock at each trade), then
    what it returned, the counters, the tokens held (in order) and each one's state."""
    market = Market(SPECS, shard)
    clock = 1_000_000
    out: list[Any] = []
    for rows in batches:
        trades, floors = [], []
        for token, dt, step, h, ev, buy, wallet in rows:
            clock += step
            trades.append(Trade(f"T{token}", f"w{wallet}", buy, 1.0, 2.0, 1.5, 3.0,
                                clock + dt, f"h{h}", ev))  # fmt: skip
            floors.append(clock)
        applied = market.add_all(trades, floors)
        by_token = [(t, [x.tx_hash for x in v]) for t, v in applied.items()]
        out.append((by_token, market.applied, market.duplicates, market.late, list(market.tokens)))
        stats = {t: msgspec.msgpack.encode(tw.stats(clock)) for t, tw in market.tokens.items()}
        out.append(({t: state(tw) for t, tw in market.tokens.items()}, stats))
    return out


@needs_kernels
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.lists(row_st, max_size=40), min_size=1, max_size=6),
    shard=st.sampled_from([(0, 1), (0, 2), (1, 2)]),
)
def test_the_compiled_add_loop_gives_what_the_python_loop_gives(
    thresholds: None, monkeypatch: pytest.MonkeyPatch, batches: list[list[Any]],
    shard: tuple[int, int],
) -> None:  # fmt: skip
    """Applied trades by token (in order), counters, tokens held (in order, late-only
    tokens dropped, other shards' skipped) and every token's state."""
    compiled = add_batches(batches, shard)
    with monkeypatch.context() as m:
        python_engine(m)
        python = add_batches(batches, shard)
    assert compiled == python


class _OtherTrade(Trade, frozen=True, gc=False):
    """A subclass: the kernels read its fields through ``getattr``, not by slot offset."""


def _trades_of(cls: type[Trade], rows: list[tuple[int, ...]]) -> tuple[list[Trade], list[int]]:
    trades, floors, clock = [], [], 1_000_000
    for token, dt, step, h, ev, buy, wallet in rows:
        clock += step
        trades.append(cls(f"T{token}", f"w{wallet}", buy, 1.0 + h, 2.0 * wallet + 1.0, 1.5 + dt,
                          3.0, clock + dt, f"h{h}", ev))  # fmt: skip
        floors.append(clock)
    return trades, floors


@needs_kernels
def test_the_kernels_read_the_slots_of_the_engine_objects_directly() -> None:
    from tradepulse.core import _kernels

    assert _kernels.bound(), "core.windows did not bind the kernels to its classes"


@needs_kernels
@settings(max_examples=100, deadline=None)
@given(rows=st.lists(row_st, min_size=1, max_size=120))
def test_objects_of_a_subclass_are_read_as_the_bound_class_is(rows: list[tuple[int, ...]]) -> None:
    """The same trades as ``Trade`` (slots read directly) and as a subclass (read through
    ``getattr``) leave every token of the market in the same state."""
    out = []
    for cls in (Trade, _OtherTrade):
        market = Market(SPECS)
        trades, floors = _trades_of(cls, rows)
        applied = market.add_all(trades, floors)
        t = floors[-1]
        tokens = {}
        for k, tw in market.tokens.items():
            stats = msgspec.msgpack.encode(tw.stats(t))  # the trades ingested into columns
            held = state(tw)
            held["_trades"] = [msgspec.structs.astuple(x) for x in held["_trades"]]
            tokens[k] = (held, stats)
        out.append(({k: [x.tx_hash for x in v] for k, v in applied.items()}, tokens))
    assert out[0] == out[1]


def test_a_batch_with_fewer_floors_than_trades_is_refused() -> None:
    trade = Trade("T", "w", True, 1.0, 1.0, 1.0, 1.0, 5, "h", 0)
    with pytest.raises(ValueError):
        Market(SPECS).add_all([trade, trade], [5])


def test_where_a_c_compiler_exists_the_kernels_were_built() -> None:
    """The extension is optional at install (a machine without a compiler still installs):
    where there is a compiler, a kernel that failed to build is a failure, not a skip."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) on this machine: the Python code runs")
    assert windows_mod._KERNELS is not None, "the compiled kernels did not build: pip install -e ."


# A sum the prefixes cannot settle (on a rounding midpoint, or tiny next to the history) is
# made by the kernel itself, as ``math.fsum`` makes it: values built to land on midpoints.
tie_value_st = st.builds(
    lambda m, e: m * 2.0**e, st.integers(1, 2**53 - 1), st.sampled_from([-80, -53, -52, 0, 1])
)


def _window_trades(values: list[tuple[float, bool]]) -> list[Trade]:
    return [Trade("X", f"w{i % 3}", buy, v / 3, v * 2, 0.5, v, 1_000_000 + i, f"h{i}", 0)
            for i, (v, buy) in enumerate(values)]  # fmt: skip


@needs_kernels
@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.tuples(tie_value_st, st.booleans()), min_size=1, max_size=12))
def test_sums_the_prefixes_cannot_settle_are_math_fsum_of_the_window(
    values: list[tuple[float, bool]],
) -> None:
    """Every window's volumes and amounts are ``math.fsum`` of its trades' values, bit for
    bit, whichever of the kernel's two ways made them; and the kernel made every window
    (no window left to the Python code)."""
    tw = TokenWindows(SPECS)
    trades = _window_trades(values)
    for trade in trades:
        tw.add(trade, trade.ts_ms)
    stats = tw.stats(trades[-1].ts_ms)
    buys = [t.volume_usd for t in trades if t.is_buy]
    sells = [t.volume_usd for t in trades if not t.is_buy]
    for name, st_ in stats.items():
        assert st_.buy_volume.hex() == math.fsum(buys).hex(), name
        assert st_.sell_volume.hex() == math.fsum(sells).hex(), name
        assert st_.native_volume.hex() == math.fsum(t.native_amount for t in trades).hex()
        vwap = (math.fsum(buys) + math.fsum(sells)) / math.fsum(t.token_amount for t in trades)
        assert st_.vwap is not None and st_.vwap.hex() == vwap.hex()
    for win in tw.windows:
        assert windows_mod._window_stats_c is not None
        assert windows_mod._window_stats_c(tw, win, tw.t_ms, windows_mod.WindowStats) is not None


@needs_kernels
def test_a_midpoint_sum_rounds_to_even_and_one_just_past_it_rounds_up() -> None:
    """1 + 2**-53 is a midpoint (rounds to 1.0); 2**-80 more rounds it up: what the
    prefixes cannot tell apart, the kernel's exact sum does."""
    for values, want in (([1.0, 2.0**-53], 1.0), ([1.0, 2.0**-53, 2.0**-80], 1.0 + 2.0**-52)):
        tw = TokenWindows(SPECS)
        trades = _window_trades([(v, True) for v in values])
        for trade in trades:
            tw.add(trade, trade.ts_ms)
        tw.advance(trades[-1].ts_ms)
        assert windows_mod._window_stats_c is not None
        got = windows_mod._window_stats_c(tw, tw.windows[0], tw.t_ms, windows_mod.WindowStats)
        assert got is not None and got.buy_volume == want == math.fsum(values)
