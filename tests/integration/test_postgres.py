"""The PostgreSQL history against the real server: migrations, bar upserts, candles.

Candles are checked against an independent oracle: a pandas ``resample`` (epoch origin, left
closed, left labelled) of real 1-minute bars from ``shared/data/real/ohlcv_1m``.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest

from tests.support.realdata import OHLCV_1M_FILES, ohlcv_1m_rows, require_real_data
from tradepulse.adapters.postgres import (
    TIMEFRAMES_MS,
    BarRepository,
    Candle,
    applied_migrations,
    bucket_range,
    connect,
    migrate,
)
from tradepulse.core.bars import Bar
from tradepulse.core.errors import StoreUnavailableError

MIN = 60_000
T0 = 1_750_000_000_000 - 1_750_000_000_000 % 86_400_000  # a UTC midnight


def bar(token: str, minute: int, *, revision: int = 0, close: float = 1.0, volume: float = 2.0,
        trades: int = 3) -> Bar:  # fmt: skip
    return Bar(token, T0 + minute * MIN, 1.0, max(close, 1.0) + 0.5, min(close, 1.0) / 2,
               close, volume, volume * close, volume * close / 2, volume * close / 2, trades,
               close, revision)  # fmt: skip


def stored(dsn: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT token, open_ms, open, high, low, close, volume, volume_usd, buy_volume_usd,"
            " sell_volume_usd, trades, vwap, revision FROM bars_1m"
        ).fetchall()
    return {(r[0], r[1]): tuple(r) for r in rows}


def as_row(b: Bar) -> tuple[Any, ...]:
    return (b.token, b.open_ms, b.open, b.high, b.low, b.close, b.volume, b.volume_usd,
            b.buy_volume_usd, b.sell_volume_usd, b.trades, b.vwap, b.revision)  # fmt: skip


# --- migrations ----------------------------------------------------------------------------

ALL = ["0001_bars", "0002_rules_alerts", "0003_profiles"]
APPLIED = [(1, "bars"), (2, "rules_alerts"), (3, "profiles")]


def test_migrate_twice_second_run_applies_nothing(pg_dsn: str) -> None:
    assert migrate(pg_dsn) == ALL
    assert migrate(pg_dsn) == []
    with connect(pg_dsn) as conn:
        assert applied_migrations(conn) == APPLIED
        applied_at = conn.execute("SELECT applied_at FROM schema_migrations").fetchone()
        assert applied_at is not None and applied_at[0].tzinfo is not None
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'bars_1m'").fetchone()
        assert kind == ("r",)  # plain table: no TimescaleDB on this server


def test_migrate_accepts_an_open_connection(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:  # not autocommit: each file still commits
        assert migrate(conn) == ALL
    with connect(pg_dsn) as conn:
        assert applied_migrations(conn) == APPLIED


def test_migrate_concurrent_runs_apply_each_file_once(pg_dsn: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(pg_dsn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    applied = [name for run in results for name in run]
    assert sorted(applied) == ALL  # each file applied by exactly one run


def test_migrate_failing_file_rolls_back_and_keeps_earlier_files(
    pg_dsn: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first (x int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE second (x int); SELECT nope;")
    (tmp_path / "README.txt").write_text("not a migration")
    with pytest.raises(StoreUnavailableError, match="0002_broken"):
        migrate(pg_dsn, directory=tmp_path)
    with connect(pg_dsn) as conn:
        assert applied_migrations(conn) == [(1, "first")]
        assert conn.execute("SELECT to_regclass('second')").fetchone() == (None,)
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE second (x int);")
    assert migrate(pg_dsn, directory=tmp_path) == ["0002_broken"]


def test_migrate_unreachable_database_raises_store_unavailable(pg_dsn: str) -> None:
    with pytest.raises(StoreUnavailableError, match="cannot connect"):
        migrate(pg_dsn.replace("dbname=tp_test_", "dbname=tp_missing_"))


# --- upsert --------------------------------------------------------------------------------


def test_upsert_same_bars_twice_is_idempotent(pg_dsn: str) -> None:
    migrate(pg_dsn)
    bars = [bar(tok, m) for tok in ("A", "B") for m in range(30)]
    with BarRepository(pg_dsn) as repo:
        assert repo.upsert(bars) == 60
        first = stored(pg_dsn)
        repo.upsert(bars)
    assert stored(pg_dsn) == first == {(b.token, b.open_ms): as_row(b) for b in bars}


def test_upsert_higher_revision_wins_lower_revision_ignored(pg_dsn: str) -> None:
    migrate(pg_dsn)
    with BarRepository(pg_dsn) as repo:
        repo.upsert([bar("A", 0, revision=0, close=1.0)])
        assert repo.upsert([bar("A", 0, revision=2, close=3.0)]) == 1
        assert repo.upsert([bar("A", 0, revision=1, close=2.0)]) == 0
        assert repo.upsert([bar("A", 0, revision=0, close=1.0)]) == 0
    assert stored(pg_dsn)[("A", T0)] == as_row(bar("A", 0, revision=2, close=3.0))


def test_upsert_one_batch_with_several_revisions_of_a_bar_keeps_the_highest(pg_dsn: str) -> None:
    migrate(pg_dsn)
    batch = [bar("A", 0, revision=1, close=2.0), bar("A", 0, revision=3, close=4.0),
             bar("A", 0, revision=2, close=3.0), bar("A", 1), bar("A", 1)]  # fmt: skip
    with BarRepository(pg_dsn) as repo:
        assert repo.upsert(batch) == 2
        assert repo.upsert([]) == 0
    assert stored(pg_dsn)[("A", T0)][5] == 4.0


def test_upsert_without_schema_raises_store_unavailable_then_recovers(pg_dsn: str) -> None:
    with BarRepository(pg_dsn) as repo:
        with pytest.raises(StoreUnavailableError, match="bars_1m"):
            repo.upsert([bar("A", 0)])
        migrate(pg_dsn)
        assert repo.upsert([bar("A", 0)]) == 1  # a new connection after the failure


def test_bars_table_rejects_a_misaligned_minute(pg_dsn: str) -> None:
    migrate(pg_dsn)
    misaligned = Bar("A", T0 + 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1)
    with BarRepository(pg_dsn) as repo, pytest.raises(StoreUnavailableError, match="aligned"):
        repo.upsert([misaligned])


# --- candles -------------------------------------------------------------------------------


def test_candles_5m_from_handmade_bars(pg_dsn: str) -> None:
    """Minutes 0,1,3 (bucket 0) and 5,9 (bucket 5): first open, last close, max, min, sums."""
    migrate(pg_dsn)
    bars = [bar("A", 0, close=2.0), bar("A", 1, close=0.25), bar("A", 3, close=5.0),
            bar("A", 5, close=1.5, volume=0.0), bar("A", 9, close=3.0), bar("B", 2)]  # fmt: skip
    with BarRepository(pg_dsn) as repo:
        repo.upsert(bars)
        got = repo.candles("A", "5m", T0, T0 + 10 * MIN)
        assert repo.candles("A", "5m", T0, T0) == []
        assert repo.candles("nobody", "1h", T0, T0 + 10 * MIN) == []
    assert got == [
        Candle("A", T0, 1.0, 5.5, 0.125, 5.0, 6.0, 14.5, 7.25, 7.25, 9,
               14.5 / 6.0, 3),
        Candle("A", T0 + 5 * MIN, 1.0, 3.5, 0.5, 3.0, 2.0, 6.0, 3.0, 3.0, 6, 3.0, 2),
    ]  # fmt: skip


def test_candles_zero_volume_bucket_has_null_vwap(pg_dsn: str) -> None:
    migrate(pg_dsn)
    with BarRepository(pg_dsn) as repo:
        repo.upsert([bar("A", 0, volume=0.0), bar("A", 1, volume=0.0)])
        (candle,) = repo.candles("A", "15m", T0, T0 + MIN)
    assert candle.vwap is None and candle.volume == 0.0 and candle.bars == 2


def test_candles_unknown_timeframe_raises_value_error(pg_dsn: str) -> None:
    with BarRepository(pg_dsn) as repo, pytest.raises(ValueError, match="2h"):
        repo.candles("A", "2h", T0, T0 + MIN)


@pytest.mark.parametrize(
    ("tf_ms", "from_ms", "to_ms", "expected"),
    [
        (300_000, 0, 300_000, (0, 300_000)),
        (300_000, 1, 300_001, (0, 600_000)),
        (300_000, 299_999, 300_000, (0, 300_000)),
        (86_400_000, 90_000_000, 90_000_001, (86_400_000, 172_800_000)),
    ],
)
def test_bucket_range_floors_from_and_ceils_to(
    tf_ms: int, from_ms: int, to_ms: int, expected: tuple[int, int]
) -> None:
    assert bucket_range(tf_ms, from_ms, to_ms) == expected


# --- candles vs. a pandas oracle on real bars ----------------------------------------------


def real_bars(name: str) -> list[Bar]:
    """Bars of a real OHLCV file. The files have no quote volume, buy/sell split or trade
    count, so those are DERIVED: volume_usd = volume × typical price (h+l+c)/3; buy share =
    (close − low)/(high − low), ½ when high = low; trades = 1 + minute number mod 17;
    vwap = typical price."""
    out = []
    for row in ohlcv_1m_rows(name):
        o, h, lo, c, v = row["open"], row["high"], row["low"], row["close"], row["volume"]
        typical = (h + lo + c) / 3
        usd = v * typical
        buy = usd * ((c - lo) / (h - lo) if h > lo else 0.5)
        trades = 1 + (row["open_ms"] // MIN) % 17
        out.append(Bar(name, row["open_ms"], o, h, lo, c, v, usd, buy, usd - buy, trades,
                       typical))  # fmt: skip
    return out


def oracle(bars: list[Bar], tf_ms: int) -> list[dict[str, Any]]:
    frame = pd.DataFrame(
        {
            "open": [b.open for b in bars], "high": [b.high for b in bars],
            "low": [b.low for b in bars], "close": [b.close for b in bars],
            "volume": [b.volume for b in bars], "volume_usd": [b.volume_usd for b in bars],
            "buy": [b.buy_volume_usd for b in bars], "sell": [b.sell_volume_usd for b in bars],
            "trades": [b.trades for b in bars], "bars": [1] * len(bars),
        },
        index=pd.to_datetime([b.open_ms for b in bars], unit="ms", utc=True),
    )  # fmt: skip
    how = {"open": "first", "high": "max", "low": "min", "close": "last"}
    how |= dict.fromkeys(("volume", "volume_usd", "buy", "sell", "trades", "bars"), "sum")
    resampler = frame.resample(
        pd.Timedelta(milliseconds=tf_ms), origin="epoch", closed="left", label="left"
    )
    sampled = resampler.agg(how)
    sampled = sampled[sampled["bars"] > 0]
    out = []
    for ts, row in sampled.iterrows():
        record = dict(row)
        record["open_ms"] = int(pd.Timestamp(ts).value // 1_000_000)
        record["vwap"] = record["volume_usd"] / record["volume"] if record["volume"] else None
        out.append(record)
    return out


def assert_matches(got: list[Candle], want: list[dict[str, Any]]) -> None:
    assert [c.open_ms for c in got] == [w["open_ms"] for w in want]
    for c, w in zip(got, want, strict=True):
        assert (c.open, c.high, c.low, c.close) == (w["open"], w["high"], w["low"], w["close"])
        assert (c.trades, c.bars) == (w["trades"], w["bars"])
        pairs = [(c.volume, w["volume"]), (c.volume_usd, w["volume_usd"]),
                 (c.buy_volume_usd, w["buy"]), (c.sell_volume_usd, w["sell"])]  # fmt: skip
        for a, b in pairs:
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), (c, w)
        if w["vwap"] is None:
            assert c.vwap is None
        else:
            assert c.vwap is not None and math.isclose(c.vwap, w["vwap"], rel_tol=1e-12)


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(OHLCV_1M_FILES))
def test_candles_every_timeframe_match_pandas_resample_on_real_bars(pg_dsn: str, name: str) -> None:
    require_real_data()
    bars = real_bars(name)
    migrate(pg_dsn)
    first, last = bars[0].open_ms, bars[-1].open_ms + MIN
    with BarRepository(pg_dsn) as repo:
        assert repo.upsert(bars) == len(bars)
        for tf, tf_ms in TIMEFRAMES_MS.items():
            got = repo.candles(name, tf, first, last)
            assert_matches(got, oracle(bars, tf_ms))
            assert all(c.open_ms % tf_ms == 0 for c in got), tf


@pytest.mark.realdata
def test_candles_of_a_sub_range_are_whole_buckets(pg_dsn: str) -> None:
    """An unaligned [from, to) returns every bucket it overlaps, each computed from all of
    its stored minutes (the same candles as the oracle over the whole file)."""
    require_real_data()
    name = "hyperliquid_wif"
    bars = real_bars(name)
    migrate(pg_dsn)
    from_ms = bars[0].open_ms + 1_234 * MIN + 17
    to_ms = from_ms + 2 * 86_400_000 + 7 * MIN
    with BarRepository(pg_dsn) as repo:
        repo.upsert(bars)
        for tf in ("5m", "1h", "4h", "1d"):
            tf_ms = TIMEFRAMES_MS[tf]
            want = [w for w in oracle(bars, tf_ms) if from_ms - tf_ms < w["open_ms"] < to_ms]
            assert_matches(repo.candles(name, tf, from_ms, to_ms), want)
