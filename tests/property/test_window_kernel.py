"""The compiled kernels (``core/_kernels.pyx``: the append to the columns and the window
moves) leave every column and count of the window engine exactly as the engine's Python code
does: the same streams (out of order, duplicates, late trades, rollbacks, compactions) are run
once with each, and the whole state is compared after every evaluation, floats bit for bit."""

from __future__ import annotations

import random
from array import array
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tradepulse.core.windows as windows_mod
from tests.property.test_window_properties import SPECS, Step, python_engine, step_st
from tradepulse.core.trade import Trade
from tradepulse.core.windows import TokenWindows

pytestmark = pytest.mark.skipif(
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
            tw.stats(clock)
            states.append(state(tw))
            continue
        if s.dup_of is not None and s.dup_of < len(sent):
            tr = sent[s.dup_of]
        else:
            tr = Trade("X", f"w{s.wallet}", s.buy, s.native, s.amount, s.price,
                       s.amount * s.price, clock - s.back_ms, f"h{n}", n % 2)  # fmt: skip
        sent.append(tr)
        tw.add(tr, clock)
    tw.stats(clock)
    states.append(state(tw))
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


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step_st, min_size=1, max_size=150), vector_min=st.sampled_from([4, 10**9]))
def test_the_kernel_leaves_every_column_as_the_python_code_does(
    thresholds: None, monkeypatch: pytest.MonkeyPatch, steps: list[Step], vector_min: int
) -> None:
    """Against the Python loop and against the NumPy path (``vector_min`` 4)."""
    compare(steps, monkeypatch, vector_min)


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


def test_the_compiled_kernel_is_the_one_in_use() -> None:
    assert windows_mod.APPEND_KERNEL == "compiled"
