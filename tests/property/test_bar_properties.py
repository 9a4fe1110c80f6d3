"""Properties of the bar builder against a brute-force oracle written from ARCHITECTURE §6.

The oracle keeps every accepted trade with its arrival number; a bar is computed by
grouping the trades of its minute, sorting them by ``(ts_ms, arrival)`` and reducing with
plain loops (sums with ``math.fsum``, exactly rounded, so results are compared for
equality). The model of emission is the specification: at ``advance(now)``, ``T`` becomes
``max(T, now)``; every minute with ``open + 60_000 + grace <= T`` whose content was never
emitted, or changed since it was, is emitted once, oldest first, with the next revision. A
trade whose minute starts at or before ``T - horizon`` is refused.

Random streams mix out-of-order arrivals (up to 12 minutes behind, so some fall beyond
the horizon), equal times, prices and amounts over many magnitudes, advances, reads of the
forming bar, and snapshot/restore cycles that swap the builder for a rebuilt one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tradepulse.core.bars import Bar, BarBuilder, BarBuilderSnapshot
from tradepulse.core.trade import Trade
from tradepulse.core.windows import AddResult

MIN = 60_000
NEVER = -(1 << 62)
TOKEN = "X"

magnitudes = st.sampled_from([1e-9, 1e-3, 0.5, 1.0, 3.0, 1e3, 1e9])
price_st = st.one_of(magnitudes, st.floats(1e-6, 1e6, allow_nan=False))


@dataclass(frozen=True)
class Step:
    kind: str  # "trade", "advance", "forming" or "restore"
    dt_ms: int  # how far the stream's clock moves before the step
    back_ms: int  # how far a trade is behind the stream's clock
    price: float
    amount: float
    buy: bool


step_st = st.builds(
    Step,
    kind=st.sampled_from(["trade"] * 6 + ["advance"] * 3 + ["forming", "restore"]),
    dt_ms=st.sampled_from([0, 0, 1, 500, 1_999, 2_000, 7_000, 15_000, 59_999, 60_000, 120_000]),
    back_ms=st.one_of(
        st.just(0),
        st.sampled_from([1, 2_500, 30_000, 61_000, 95_000, 150_000]),
        st.integers(0, 12 * MIN),
    ),
    price=price_st,
    amount=magnitudes,
    buy=st.booleans(),
)


def oracle_bar(trades: list[tuple[int, Trade]], open_ms: int, revision: int) -> Bar:
    """The bar of minute ``open_ms`` from ``(arrival, trade)`` pairs, by brute force."""
    mine = sorted((t.ts_ms, n, t) for n, t in trades if t.ts_ms - t.ts_ms % MIN == open_ms)
    ordered = [t for _, _, t in mine]
    prices = [t.price_usd for t in ordered]
    volume = math.fsum(t.token_amount for t in ordered)
    usd = math.fsum(t.volume_usd for t in ordered)
    return Bar(
        TOKEN, open_ms, prices[0], max(prices), min(prices), prices[-1], volume, usd,
        math.fsum(t.volume_usd for t in ordered if t.is_buy),
        math.fsum(t.volume_usd for t in ordered if not t.is_buy),
        len(ordered), usd / volume, revision,
    )  # fmt: skip


@dataclass
class Model:
    """The specification, executed naively."""

    grace_ms: int
    horizon_ms: int
    clock_ms: int = NEVER
    accepted: list[tuple[int, Trade]] = field(default_factory=list)
    sent: dict[int, int] = field(default_factory=dict)  # minute -> revision last emitted
    dirty: set[int] = field(default_factory=set)  # minutes changed since last emitted

    def add(self, n: int, trade: Trade) -> AddResult:
        minute = trade.ts_ms - trade.ts_ms % MIN
        if minute <= self.clock_ms - self.horizon_ms:
            return AddResult.LATE
        self.accepted.append((n, trade))
        self.dirty.add(minute)
        return AddResult.APPLIED

    def is_final(self, minute: int, t_ms: int) -> bool:
        return minute + MIN + self.grace_ms <= t_ms

    def advance(self, now_ms: int) -> list[Bar]:
        self.clock_ms = max(self.clock_ms, now_ms)
        out = []
        for minute in sorted(m for m in self.dirty if self.is_final(m, self.clock_ms)):
            self.sent[minute] = self.sent.get(minute, -1) + 1
            out.append(oracle_bar(self.accepted, minute, self.sent[minute]))
            self.dirty.discard(minute)
        return out

    def forming(self, now_ms: int) -> Bar | None:
        """The newest minute's bar unless it is final at ``max(now, T)``."""
        minutes = [t.ts_ms - t.ts_ms % MIN for _, t in self.accepted]
        if not minutes or self.is_final(max(minutes), max(now_ms, self.clock_ms)):
            return None
        return oracle_bar(self.accepted, max(minutes), 0)

    def retained(self) -> list[Trade]:
        """What the window engine would hand back: trades of the horizon, in time order
        (ties in arrival order)."""
        cut = self.clock_ms - self.horizon_ms
        keep = sorted((t.ts_ms, n, t) for n, t in self.accepted if t.ts_ms - t.ts_ms % MIN > cut)
        return [t for _, _, t in keep]


def run_and_check(steps: list[Step], grace_ms: int, horizon_ms: int) -> tuple[int, int]:
    """Feed ``steps`` to a builder and to the model; every output must be equal. Returns
    the number of bars compared and how many of them were revisions."""
    b = BarBuilder(TOKEN, grace_ms=grace_ms, horizon_ms=horizon_ms)
    model = Model(grace_ms, horizon_ms)
    clock = 50 * MIN
    compared: list[Bar] = []
    for n, s in enumerate(steps):
        clock += s.dt_ms
        if s.kind == "trade":
            ts = clock - s.back_ms
            tr = Trade(TOKEN, "w", s.buy, 0.0, s.amount, s.price, s.amount * s.price, ts, f"h{n}")
            assert b.add(tr) is model.add(n, tr)
        elif s.kind == "advance":
            got = b.advance(clock)
            assert got == model.advance(clock)
            compared += got
        elif s.kind == "forming":
            assert b.forming(clock) == model.forming(clock)
        else:
            raw = msgspec.json.encode(b.snapshot())
            snap = msgspec.json.decode(raw, type=BarBuilderSnapshot)
            b = BarBuilder.restore(
                TOKEN, snap, model.retained(), grace_ms=grace_ms, horizon_ms=horizon_ms
            )
    final = b.advance(clock + 20 * MIN)
    assert final == model.advance(clock + 20 * MIN)
    compared += final
    return len(compared), sum(bar.revision > 0 for bar in compared)


@settings(max_examples=400, deadline=None)
@given(
    steps=st.lists(step_st, min_size=10, max_size=150),
    grace_ms=st.sampled_from([0, 2_000, 15_000]),
    horizon_extra_ms=st.sampled_from([0, 1, 2 * MIN, 9 * MIN]),
)
def test_bar_builder_outputs_equal_bruteforce_model(
    steps: list[Step], grace_ms: int, horizon_extra_ms: int
) -> None:
    run_and_check(steps, grace_ms, MIN + grace_ms + horizon_extra_ms)


def test_bar_builder_long_random_stream_equals_bruteforce_model() -> None:
    rnd = random.Random(11)
    steps = [
        Step(rnd.choice(["trade"] * 12 + ["advance"] * 3 + ["forming", "restore"]),
             rnd.choice([0, 1, 300, 2_000, 9_000, 45_000]),
             rnd.choice([0] * 5 + [rnd.randrange(0, 15 * MIN)]),
             rnd.choice([1e-7, 0.02, 1.0, 3e4]) * rnd.uniform(0.5, 2.0),
             rnd.choice([1e-3, 1.0, 1e6]), rnd.random() < 0.5)
        for _ in range(4_000)
    ]  # fmt: skip
    bars, revisions = run_and_check(steps, 2_000, 10 * MIN)
    assert bars > 300 and revisions > 30


@settings(max_examples=200, deadline=None)
@given(
    base=st.lists(
        st.tuples(st.integers(0, 6 * MIN), price_st, magnitudes, st.booleans()),
        min_size=1,
        max_size=60,
    ),
    seed=st.integers(0, 2**32 - 1),
    advance_every=st.integers(1, 10),
)
def test_bars_any_arrival_order_within_horizon_latest_revisions_equal_oracle(
    base: list[tuple[int, float, float, bool]], seed: int, advance_every: int
) -> None:
    """Trades of 6 minutes in any order, the clock at the newest trade seen, advanced every
    few trades: the latest revision of each bar is the oracle's bar of all the trades."""
    arrivals = [Trade(TOKEN, "w", b, 0.0, a, p, a * p, 10 * MIN + ts, f"h{i}")
                for i, (ts, p, a, b) in enumerate(base)]  # fmt: skip
    random.Random(seed).shuffle(arrivals)
    builder = BarBuilder(TOKEN)
    latest: dict[int, Bar] = {}
    clock = 0
    for k, tr in enumerate(arrivals):
        assert builder.add(tr) is AddResult.APPLIED
        clock = max(clock, tr.ts_ms)
        if k % advance_every == 0:
            for bar in builder.advance(clock):
                latest[bar.open_ms] = bar
    for bar in builder.advance(clock + 5 * MIN):
        latest[bar.open_ms] = bar
    indexed = list(enumerate(arrivals))
    for open_ms, bar in latest.items():
        assert bar == oracle_bar(indexed, open_ms, bar.revision)
    assert set(latest) == {t.ts_ms - t.ts_ms % MIN for t in arrivals}
