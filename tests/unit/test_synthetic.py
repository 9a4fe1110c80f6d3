"""The synthetic market: deterministic, ordered, valid and shaped like a real meme-coin market."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest

from tradepulse.adapters.synthetic import SOL_USD, SyntheticMarket, hex_hashes, write_jsonl
from tradepulse.adapters.wire import decode_trade
from tradepulse.core.trade import Trade, make_trade

START_MS = 1_700_000_000_000
N = 20_000


@pytest.fixture(scope="module")
def trades() -> list[Trade]:
    return list(SyntheticMarket(seed=7, start_ms=START_MS).generate(N))


def test_generate_same_seed_same_trades() -> None:
    a = list(SyntheticMarket(seed=3, start_ms=START_MS).generate(3_000))
    b = list(SyntheticMarket(seed=3, start_ms=START_MS).generate(3_000))
    assert a == b


def test_generate_other_seed_other_trades() -> None:
    a = list(SyntheticMarket(seed=3, start_ms=START_MS).generate(100))
    b = list(SyntheticMarket(seed=4, start_ms=START_MS).generate(100))
    assert {t.token for t in a}.isdisjoint({t.token for t in b})
    assert {t.tx_hash for t in a}.isdisjoint({t.tx_hash for t in b})


def test_generate_shorter_run_is_prefix_of_longer_run() -> None:
    short = list(SyntheticMarket(seed=5, start_ms=START_MS).generate(1_000))
    long = list(SyntheticMarket(seed=5, start_ms=START_MS).generate(70_000))
    assert long[:1_000] == short


@pytest.mark.parametrize("n", [1, 999, 60_000, 250_000])
def test_span_ms_is_the_time_of_the_last_generated_trade(n: int) -> None:
    span = SyntheticMarket(seed=11, start_ms=0, rate_per_s=10_000).span_ms(n)
    *_, last = SyntheticMarket(seed=11, start_ms=START_MS, rate_per_s=10_000).generate(n)
    assert last.ts_ms - START_MS == span


def test_generate_n_trades_in_time_order_from_start(trades: list[Trade]) -> None:
    assert len(trades) == N
    assert trades[0].ts_ms >= START_MS
    assert all(a.ts_ms <= b.ts_ms for a, b in itertools.pairwise(trades))


def test_generate_every_trade_equals_make_trade_rebuild(trades: list[Trade]) -> None:
    for t in trades:
        fields = msgspec.structs.asdict(t)
        del fields["volume_usd"]
        assert make_trade(**fields) == t
        assert type(t.ts_ms) is int
        assert type(t.is_buy) is bool


def test_generate_native_amount_is_volume_in_sol(trades: list[Trade]) -> None:
    assert all(t.native_amount == pytest.approx(t.volume_usd / SOL_USD) for t in trades)


def test_generate_token_names_look_like_pump_mints(trades: list[Trade]) -> None:
    tokens = {t.token for t in trades}
    assert all(len(tok) == 44 and tok.endswith("pump") for tok in tokens)
    assert not set("".join(tokens)) & set("0OIl")  # base58 alphabet


def test_generate_token_popularity_is_zipf_skewed(trades: list[Trade]) -> None:
    counts = sorted(Counter(t.token for t in trades).values(), reverse=True)
    median = counts[len(counts) // 2]
    assert counts[0] > 20 * median
    assert counts[0] / N > 0.05


def test_generate_wallets_recur_and_new_ones_appear(trades: list[Trade]) -> None:
    per_wallet = Counter(t.wallet for t in trades)
    assert max(per_wallet.values()) > 100
    assert sum(1 for c in per_wallet.values() if c > 1) > 500
    assert sum(1 for c in per_wallet.values() if c == 1) > 50


def test_generate_top_token_has_regular_traders(trades: list[Trade]) -> None:
    top = Counter(t.token for t in trades).most_common(1)[0][0]
    wallets = Counter(t.wallet for t in trades if t.token == top)
    assert wallets.most_common(1)[0][1] >= 10


def test_generate_both_sides_present_per_popular_token(trades: list[Trade]) -> None:
    sides: dict[str, Counter[bool]] = {}
    for t in trades:
        sides.setdefault(t.token, Counter())[t.is_buy] += 1
    for token, _ in Counter(t.token for t in trades).most_common(10):
        assert sides[token][True] > 0
        assert sides[token][False] > 0


def test_generate_trade_identity_unique_and_multi_swaps_share_hash(trades: list[Trade]) -> None:
    assert len({(t.tx_hash, t.event_index) for t in trades}) == N
    seconds = [(p, t) for p, t in itertools.pairwise(trades) if t.event_index == 1]
    assert 0.005 * N < len(seconds) < 0.05 * N
    assert all(t.event_index in (0, 1) for t in trades)
    for prev, t in seconds:
        assert (prev.tx_hash, prev.event_index, prev.wallet, prev.ts_ms) == (
            t.tx_hash, 0, t.wallet, t.ts_ms,
        )  # fmt: skip
    assert all(len(t.tx_hash) == 64 and int(t.tx_hash, 16) >= 0 for t in trades[:100])


def test_generate_prices_spread_like_meme_coins(trades: list[Trade]) -> None:
    prices = [t.price_usd for t in trades]
    assert min(prices) < 1e-5
    assert max(prices) > 1e-4


def test_generate_rate_close_to_requested_rate() -> None:
    trades = list(SyntheticMarket(seed=1, rate_per_s=50.0, start_ms=START_MS).generate(100_000))
    rate_per_s = len(trades) / ((trades[-1].ts_ms - trades[0].ts_ms) / 1000)
    assert 35.0 < rate_per_s < 65.0


def test_live_trades_stamped_in_elapsed_interval() -> None:
    market = SyntheticMarket(seed=2, start_ms=START_MS)
    now_ms = START_MS + 10_000_000
    total = 0
    for _ in range(200):
        now_ms += 250
        batch = market.live(now_ms, 250)
        assert all(now_ms - 250 < t.ts_ms <= now_ms for t in batch)
        assert all(a.ts_ms <= b.ts_ms for a, b in itertools.pairwise(batch))
        total += len(batch)
    assert total > 1_000


def test_live_zero_elapsed_returns_nothing() -> None:
    assert SyntheticMarket(seed=2, start_ms=START_MS).live(START_MS, 0) == []


def test_live_after_generate_continues_timeline() -> None:
    market = SyntheticMarket(seed=2, start_ms=START_MS)
    first = list(market.generate(500))
    later = market.live(START_MS + 10**9, 60_000)
    assert later
    assert {t.tx_hash for t in first}.isdisjoint({t.tx_hash for t in later if t.event_index == 0})


def test_constructor_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        SyntheticMarket(start_ms=START_MS, rate_per_s=0.0)
    with pytest.raises(ValueError, match="tokens"):
        SyntheticMarket(start_ms=START_MS, tokens=0)


def test_hex_hashes_distinct_sequence_numbers_distinct_hashes() -> None:
    hashes = hex_hashes(np.arange(10_000, dtype=np.uint64), 12345)
    assert len(set(hashes)) == 10_000
    assert all(len(h) == 64 for h in hashes)


def test_write_jsonl_lines_decode_to_same_trades(tmp_path: Path) -> None:
    trades = list(SyntheticMarket(seed=9, start_ms=START_MS).generate(300))
    path = tmp_path / "trades.jsonl"
    assert write_jsonl(trades, path) == 300
    lines = path.read_bytes().splitlines()
    assert [decode_trade(line, START_MS + 10**9) for line in lines] == trades
