"""Properties of the window engine against a brute-force oracle (plain loops over a list).

The oracle (``tests.support.bruteforce``) is written from the specification alone. Random
streams mix out-of-order arrivals, duplicates, late trades, equal timestamps, prices and
volumes spanning many orders of magnitude, and evaluations at random times.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from dataclasses import dataclass

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tradepulse.core.windows as windows_mod
from tests.support.bruteforce import T, close, window_stats
from tradepulse.core.market import Market
from tradepulse.core.trade import Trade
from tradepulse.core.windows import AddResult, SyncView, TokenWindows, parse_windows

SPECS = parse_windows("1s,5s,30s")
LONGEST = SPECS[-1].duration_ms
EXACT_SUMS = ("buy_volume", "sell_volume", "native_volume")

magnitudes = st.sampled_from([1e-9, 1e-3, 0.5, 1.0, 3.0, 1e3, 1e9])
price_st = st.one_of(magnitudes, st.floats(1e-6, 1e6, allow_nan=False))


@dataclass(frozen=True)
class Step:
    kind: str  # "trade" or "eval"
    dt_ms: int  # how far the stream's clock advances before the step
    back_ms: int  # how far this trade is behind the stream's clock (out of order / late)
    price: float
    amount: float
    native: float
    buy: bool
    wallet: int
    dup_of: int | None  # index of an earlier trade to resend


step_st = st.builds(
    Step,
    kind=st.sampled_from(["trade"] * 5 + ["eval"]),
    dt_ms=st.sampled_from([0, 0, 1, 7, 250, 999, 1_000, 1_001, 4_000, 29_999, 31_000]),
    back_ms=st.one_of(st.just(0), st.just(0), st.integers(0, 40_000)),
    price=price_st,
    amount=magnitudes,
    native=st.sampled_from([0.0, 1e-6, 1.0, 1e6]),
    buy=st.booleans(),
    wallet=st.integers(0, 6),
    dup_of=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 200)),
)


def run_and_check(steps: list[Step]) -> int:
    """Feed ``steps``; at every eval compare every statistic with the oracle. Returns the
    number of comparisons made."""
    tw = TokenWindows(SPECS)
    sent: list[Trade] = []
    applied: list[T] = []
    keys: set[tuple[str, int]] = set()
    clock = 1_000_000
    t_last_eval = -(1 << 62)
    newest = -(1 << 62)
    checks = 0
    for n, s in enumerate(steps):
        clock += s.dt_ms
        if s.kind == "eval":
            if not applied:
                continue
            got = tw.stats(clock)
            t_eval = max(clock, newest, t_last_eval)
            t_last_eval = t_eval
            for spec in SPECS:
                want = window_stats(applied, t_eval, spec.duration_ms)
                have = msgspec.structs.asdict(got[spec.name])
                for field, value in want.items():
                    assert close(have[field], value), (spec.name, field, have[field], value)
                for field in EXACT_SUMS:  # the exact sum rounded once, as math.fsum
                    assert have[field] == want[field], (spec.name, field, have[field])
                checks += 1
            continue
        if s.dup_of is not None and s.dup_of < len(sent):
            tr = sent[s.dup_of]
        else:
            ts = clock - s.back_ms
            tr = Trade("X", f"w{s.wallet}", s.buy, s.native, s.amount, s.price,
                       s.amount * s.price, ts, f"h{n}", n % 2)  # fmt: skip
        sent.append(tr)
        t_token = max(newest, t_last_eval, clock)
        if tr.ts_ms <= t_token - LONGEST:
            expected = AddResult.LATE
        elif (tr.tx_hash, tr.event_index) in keys:
            expected = AddResult.DUPLICATE
        else:
            expected = AddResult.APPLIED
            keys.add((tr.tx_hash, tr.event_index))
            applied.append(T(tr.ts_ms, tr.price_usd, tr.token_amount, tr.native_amount,
                             tr.is_buy, tr.wallet))  # fmt: skip
            newest = max(newest, tr.ts_ms)
        assert tw.add(tr, clock) is expected
    return checks


def python_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the compiled kernels off: the engine runs its own Python code."""
    monkeypatch.setattr(windows_mod, "_append_rows", None)
    monkeypatch.setattr(windows_mod, "_move_windows", None)
    monkeypatch.setattr(windows_mod, "_add_rows", None)
    monkeypatch.setattr(windows_mod, "_window_stats_c", None)


@pytest.fixture(params=["default", "tiny-buffers", "python", "python-tiny-buffers"])
def buffers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also run with tiny queue / compaction / vector thresholds so that every code path
    (vectorized append, compaction, rollback across compaction) is exercised, and with the
    compiled append kernel switched off ("python": the engine's own loop and NumPy path,
    which run where the kernel is not built)."""
    if request.param.startswith("python"):
        python_engine(monkeypatch)
    if request.param.endswith("tiny-buffers"):
        monkeypatch.setattr(windows_mod, "_PENDING_LIMIT", 3)
        monkeypatch.setattr(windows_mod, "_COMPACT_MIN", 2)
        monkeypatch.setattr(windows_mod, "_VECTOR_MIN", 4)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step_st, min_size=1, max_size=150))
def test_every_statistic_equals_bruteforce(buffers: None, steps: list[Step]) -> None:
    run_and_check([*steps, Step("eval", 0, 0, 1.0, 1.0, 0.0, True, 0, None)])


def test_random_long_streams_equal_bruteforce(buffers: None) -> None:
    rnd = random.Random(7)
    steps = [
        Step(rnd.choice(["trade"] * 8 + ["eval"]), rnd.choice([0, 3, 40, 400, 2_000]),
             rnd.choice([0] * 6 + [rnd.randrange(0, 35_000)]), rnd.uniform(0.1, 10),
             rnd.choice([1e-3, 1.0, 1e4]), 1.0, rnd.random() < 0.5, rnd.randrange(30),
             rnd.randrange(3000) if rnd.random() < 0.05 else None)
        for _ in range(3000)
    ]  # fmt: skip
    assert run_and_check(steps) > 500


@settings(max_examples=150, deadline=None)
@given(
    base=st.lists(
        st.tuples(st.integers(0, 29_000), price_st, magnitudes, st.booleans(), st.integers(0, 5)),
        min_size=1,
        max_size=60,
        unique_by=lambda x: x[0],
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_arrival_order_does_not_change_order_independent_statistics(
    base: list[tuple[int, float, float, bool, int]], seed: int
) -> None:
    trades = [Trade("X", f"w{w}", b, 1.0, a, p, a * p, 1_000_000 + ts, f"h{i}", 0)
              for i, (ts, p, a, b, w) in enumerate(base)]  # fmt: skip
    shuffled = trades[:]
    random.Random(seed).shuffle(shuffled)
    t_eval = 1_030_000
    results = []
    for order in (trades, shuffled):
        tw = TokenWindows(SPECS)
        for tr in order:
            assert tw.add(tr, 0) is AddResult.APPLIED
        results.append(tw.stats(t_eval))
    for name in results[0]:
        a, b = (msgspec.structs.asdict(r[name]) for r in results)
        for field in a:
            assert close(a[field], b[field], rel=1e-12), (name, field)


def test_sums_stay_exact_over_millions_of_add_evict_steps() -> None:
    """2,000,000 trades alternating 1e9 and 1e-3 USD through a 1-second window: at every
    checkpoint the window sums equal math.fsum of the window's trades."""
    specs = parse_windows("1s,2s")
    tw = TokenWindows(specs)
    window: deque[tuple[int, float, float]] = deque()
    worst = 0.0
    for i in range(2_000_000):
        ts = i * 7  # ~143 trades per second of event time
        big = i % 1000 < 3  # a few huge trades, then many tiny ones
        amount = 1e9 if big else 1e-3 * (1 + i % 7)
        tr = Trade("X", "w", i % 2 == 0, amount, amount, 1.0, amount, ts, f"h{i}", 0)
        tw.add(tr, ts)
        window.append((ts, amount, amount))
        if i % 50_000 == 49_999 or i % 1000 == 10:
            while window and window[0][0] <= ts - 1_000:
                window.popleft()
            got = tw.stats(ts)["1s"]
            want = math.fsum(v for _, v, _ in window)
            assert got.total_volume == pytest.approx(want, rel=1e-12, abs=0)
            assert got.native_volume == pytest.approx(want, rel=1e-12, abs=0)
            worst = max(worst, abs(got.total_volume - want) / want)
    assert worst < 1e-14


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.lists(
        st.tuples(st.sampled_from("ABC"), st.integers(0, 80_000), st.integers(0, 40),
                  st.booleans(), st.integers(0, 4), magnitudes),
        min_size=1, max_size=120,
    ),
    cuts=st.lists(st.integers(0, 120), max_size=6),
)  # fmt: skip
def test_batch_path_equals_trade_by_trade(
    buffers: None, raw: list[tuple[str, int, int, bool, int, float]], cuts: list[int]
) -> None:
    """``Market.add_in_order_read`` over chunks of a stream (out of order, duplicates, late
    trades) gives the same counters and statistics as ``Market.add`` per trade with the
    watermark."""
    trades = [Trade(tok, f"w{w}", buy, 1.0, amt, 2.0, amt * 2.0, 1_000_000 + dt, f"h{h}", 0)
              for tok, dt, h, buy, w, amt in raw]  # fmt: skip
    one = Market(SPECS)
    watermark = -(1 << 62)
    for tr in trades:
        watermark = max(watermark, tr.ts_ms)
        one.add(tr, watermark)
    many = Market(SPECS)
    mark = -(1 << 62)
    bounds = sorted({0, len(trades), *(c for c in cuts if c < len(trades))})
    for lo, hi in itertools.pairwise(bounds):
        mark = many.add_in_order_read(trades[lo:hi], mark)
    assert (many.applied, many.duplicates, many.late) == (one.applied, one.duplicates, one.late)
    assert mark == watermark
    assert sorted(many.tokens) == sorted(one.tokens)
    for token in one.tokens:
        assert many.stats(token, watermark) == one.stats(token, watermark)


class Mirror:
    """A plain list applying ``SyncView``s the way the Redis store's script does."""

    def __init__(self) -> None:
        self.items: list[Trade] = []
        self.base = 0

    def apply(self, view: SyncView) -> bool:
        """False on a gap: the mirror must already hold ``[head, replace_from)``."""
        if view.replace_from == view.head:
            self.items, self.base = [], view.head
        elif not (self.base <= view.head and view.replace_from <= self.base + len(self.items)):
            return False
        del self.items[view.replace_from - self.base :]
        self.items.extend(view.trades)
        if view.head > self.base:
            del self.items[: view.head - self.base]
            self.base = view.head
        return True


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step_st, min_size=1, max_size=150), lose_at=st.integers(0, 40))
def test_mirror_fed_sync_views_equals_retained_trades(
    buffers: None, steps: list[Step], lose_at: int
) -> None:
    """After every evaluation, a mirror that applied each ``sync_view`` holds exactly the
    retained trades, through rollbacks, pruning, restarts and compactions; a mirror that
    lost its data recovers with a full view."""
    tw = TokenWindows(SPECS)
    mirror = Mirror()
    clock = 1_000_000
    evaluations = 0
    for n, s in enumerate(steps):
        clock += s.dt_ms
        if s.kind == "trade":
            tr = Trade("X", f"w{s.wallet}", s.buy, s.native, s.amount, s.price,
                       s.amount * s.price, clock - s.back_ms, f"h{n}", 0)  # fmt: skip
            tw.add(tr, clock)
            continue
        tw.stats(clock)
        evaluations += 1
        if evaluations == lose_at:
            mirror = Mirror()  # the mirror lost everything
        if not mirror.apply(tw.sync_view()):
            assert mirror.apply(tw.sync_view(full=True))
        tw.mark_synced()
        assert mirror.items == tw.retained_trades()
        assert mirror.base == tw.sync_view().head
