"""``tradepulse replay --bars-out / --indicators-out`` as a user runs it: final 1-minute bars
and the indicators after each, checked against independent oracles.

Oracles: the reference 1-minute OHLCV of the real Binance XRP/ETH trades (freqtrade's file in
``ohlcv_1m/``, see SOURCES.md); a brute-force grouping by minute of the distinct trades the
windows keep (a trade at or before ``newest time read - longest window`` is late and dropped);
TA-Lib RSI/EMA/SMA over each token's final closes.

Timeline of the messy stream (grace 2 s, snapshots every 10 s, ``●`` a trade)::

    minute k                     k+1        k+1 +2 s   snapshot M
    [── ● ●   ●  ──────────────────)─────────────┼───────┼──>  bar k final at M (revision 0)
                  ● read later, time inside minute k: bar k again at the next M (revision 1)
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import talib

from tests.support.realdata import (
    binance_xrpeth_trades,
    ohlcv_1m_rows,
    require_real_data,
    write_jsonl,
)
from tradepulse.core.indicators import INDICATOR_NAMES

MINUTE_MS = 60_000
GRACE_MS = 2_000  # TRADEPULSE_BAR_GRACE's default
HOUR_MS = 3_600_000  # the default longest window
BASE_MS = 1_699_999_980_000  # a minute start (2023-11-14)
BAR_FIELDS = ("token", "open_ms", "open", "high", "low", "close", "volume", "volume_usd",
              "buy_volume_usd", "sell_volume_usd", "trades", "vwap", "revision")  # fmt: skip
TA_NAMES = ("rsi_14", "ema_20", "ema_50", "ema_200", "sma_20", "sma_50", "sma_200")
TA_REL = 1e-9

Row = dict[str, Any]
BarKey = tuple[str, int]


@dataclass(frozen=True)
class Replayed:
    bars: list[Row]  # --bars-out, in file order
    indicators: list[Row]  # --indicators-out, in file order
    stderr: str


def replay(src: Path, tmp: Path, *options: str, grace: str = "2s") -> Replayed:
    bars, indicators = tmp / "bars.jsonl", tmp / "indicators.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "tradepulse", "replay", str(src), "--out", str(tmp / "w.jsonl"),
         "--bars-out", str(bars), "--indicators-out", str(indicators), *options],
        env={**os.environ, "TRADEPULSE_BAR_GRACE": grace}, capture_output=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    return Replayed(lines(bars), lines(indicators), result.stderr.decode())


def lines(path: Path) -> list[Row]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def latest(bars: Sequence[Row]) -> dict[BarKey, Row]:
    """The highest revision of each ``(token, open_ms)``."""
    out: dict[BarKey, Row] = {}
    for bar in bars:
        key = (bar["token"], bar["open_ms"])
        if key not in out or bar["revision"] > out[key]["revision"]:
            out[key] = bar
    return out


def wire(token: str, ts_ms: int, tx: str, price: float, amount: float, buy: bool) -> Row:
    return {"token": token, "wallet": "w", "sell_buy": "buy" if buy else "sell",
            "native_amount": 1.0, "token_amount": amount, "price_usd": price,
            "trans_time": ts_ms, "tx_hash": tx}  # fmt: skip


def minute_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % MINUTE_MS


# ------------------------------------------------------------------------------- real trades


@pytest.fixture(scope="module")
def xrpeth(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    require_real_data()
    tmp = tmp_path_factory.mktemp("xrpeth")
    src = write_jsonl(binance_xrpeth_trades(), tmp / "xrpeth.jsonl")
    return replay(src, tmp, "--snapshot-every", "1min")


@pytest.mark.realdata
def test_replay_bars_real_xrpeth_trades_equal_reference_ohlcv(xrpeth: Replayed) -> None:
    """Every minute of the reference file is written but the last (still forming when the
    file ends), once, with open/high/low/close exactly and volume to 1e-9 relative."""
    reference = {row["open_ms"]: row for row in ohlcv_1m_rows("binance_xrpeth")}
    got = {bar["open_ms"]: bar for bar in xrpeth.bars}
    assert len(got) == len(xrpeth.bars) and all(b["revision"] == 0 for b in xrpeth.bars)
    assert set(reference) - set(got) == {max(reference)} and set(got) <= set(reference)
    for open_ms, bar in got.items():
        want = reference[open_ms]
        assert [bar[k] for k in ("open", "high", "low", "close")] == [
            want[k] for k in ("open", "high", "low", "close")
        ], open_ms
        assert bar["volume"] == pytest.approx(want["volume"], rel=1e-9, abs=0), open_ms
        assert list(bar) == list(BAR_FIELDS) and bar["token"] == "XRPETH"


@pytest.mark.realdata
def test_replay_indicators_real_xrpeth_trades_equal_talib_over_final_closes(
    xrpeth: Replayed,
) -> None:
    assert_indicators_equal_talib(xrpeth)


# ----------------------------------------------------------- out of order, late, duplicates


def messy_stream(seed: int) -> list[Row]:
    """About an hour of 6 tokens' trades read out of order: most at the newest time, some
    1.5 s behind (inside the grace), 20 s, 90 s and 400 s behind (correcting final bars),
    some 2 h behind (late for the 1-hour window: dropped), and resends of earlier lines."""
    rnd = random.Random(seed)
    rows: list[Row] = []
    t = BASE_MS + 7_000
    for i in range(4_000):
        t += rnd.choice([0, 50, 700, 3_000])
        lag = rnd.choice([0] * 12 + [1_500, 20_000, 90_000, 400_000, 7_300_000])
        price = round(rnd.uniform(0.5, 2.0), rnd.choice([2, 6, 12]))
        amount = rnd.choice([1.0, 0.1, 2.5, rnd.uniform(0.001, 1_000)])
        rows.append(wire(f"T{rnd.randrange(6)}", t - lag, f"h{i}", price, amount,
                         rnd.random() < 0.5))  # fmt: skip
        if rnd.random() < 0.05:
            rows.append(dict(rnd.choice(rows)))  # the same trade sent again
    return rows


def brute_force_bars(rows: Sequence[Row], grace_ms: int = GRACE_MS) -> dict[BarKey, Row]:
    """The bars final at the end: the trades kept (not late, first of their token and tx
    hash) grouped by token and minute; open/close by (time, arrival)."""
    watermark = -(1 << 62)
    seen: set[tuple[str, str]] = set()
    groups: dict[BarKey, list[tuple[int, int, Row]]] = {}
    for arrival, row in enumerate(rows):
        ts = row["trans_time"]
        watermark = max(watermark, ts)
        key = (row["token"], row["tx_hash"])
        if ts <= watermark - HOUR_MS or key in seen:
            continue
        seen.add(key)
        groups.setdefault((row["token"], minute_of(ts)), []).append((ts, arrival, row))
    return {
        key: bar_of(key, sorted(group))
        for key, group in groups.items()
        if key[1] + MINUTE_MS + grace_ms <= watermark
    }


def bar_of(key: BarKey, group: list[tuple[int, int, Row]]) -> Row:
    trades = [row for _, _, row in group]
    prices = [r["price_usd"] for r in trades]
    usd = [r["token_amount"] * r["price_usd"] for r in trades]
    volume = math.fsum(r["token_amount"] for r in trades)
    return {
        "token": key[0], "open_ms": key[1], "open": prices[0], "high": max(prices),
        "low": min(prices), "close": prices[-1], "volume": volume, "volume_usd": math.fsum(usd),
        "buy_volume_usd": math.fsum(u for u, r in zip(usd, trades, strict=True)
                                    if r["sell_buy"] == "buy"),
        "sell_volume_usd": math.fsum(u for u, r in zip(usd, trades, strict=True)
                                     if r["sell_buy"] == "sell"),
        "trades": len(trades), "vwap": math.fsum(usd) / volume,
    }  # fmt: skip


@pytest.mark.parametrize("every", ["10s", "1min", None])
@pytest.mark.parametrize("seed", [1, 2])
def test_replay_bars_out_of_order_late_and_duplicates_latest_revision_equals_brute_force(
    tmp_path: Path, seed: int, every: str | None
) -> None:
    """Whatever the evaluation schedule, the last revision of each bar is the brute-force
    bar (bit for bit: the sums are exact), revisions count up from 0 one line at a time,
    and a bar appears only once final. Without snapshots the only evaluation is the end, so
    nothing is corrected; with them late trades correct final bars."""
    rows = messy_stream(seed)
    src = write_jsonl(rows, tmp_path / "t.jsonl")
    out = replay(src, tmp_path, *(["--snapshot-every", every] if every else []))
    want = brute_force_bars(rows)
    got = latest(out.bars)
    assert set(got) == set(want)
    for key, bar in got.items():
        assert {k: v for k, v in bar.items() if k != "revision"} == want[key], key
    revisions: dict[BarKey, list[int]] = {}
    for bar in out.bars:
        revisions.setdefault((bar["token"], bar["open_ms"]), []).append(bar["revision"])
    assert all(r == list(range(len(r))) for r in revisions.values())
    corrected = sum(len(r) - 1 for r in revisions.values())
    assert (corrected > 10) if every else (corrected == 0)
    assert len(out.indicators) == len(out.bars)
    assert re.findall(r"final bars\s+([\d,]+)", out.stderr) == [f"{len(out.bars):,}"]


def test_replay_bars_grace_from_settings_delays_finality(tmp_path: Path) -> None:
    """TRADEPULSE_BAR_GRACE=30s: a minute is final 30 s after its end. Trades at +10 s and
    +85 s: with the default grace minute 0 is final at the end, with 30 s it is not."""
    rows = [wire("A", BASE_MS + 10_000, "a", 1.0, 1.0, True),
            wire("A", BASE_MS + 85_000, "b", 2.0, 1.0, True)]  # fmt: skip
    src = write_jsonl(rows, tmp_path / "t.jsonl")
    assert [(b["open_ms"], b["close"]) for b in replay(src, tmp_path).bars] == [(BASE_MS, 1.0)]
    assert replay(src, tmp_path, grace="30s").bars == []


def test_replay_bars_token_idle_at_end_still_written(tmp_path: Path) -> None:
    """Windows 1min: token A's last trade (+10 s) is out of every window at the end
    (+5 min), so A has no final snapshot line, yet its bar, final by then, is written."""
    rows = [wire("A", BASE_MS + 10_000, "a", 1.0, 1.0, True),
            wire("B", BASE_MS + 300_000, "b", 2.0, 1.0, True)]  # fmt: skip
    src = write_jsonl(rows, tmp_path / "t.jsonl")
    out = replay(src, tmp_path, "--windows", "1min")
    assert [(b["token"], b["open_ms"]) for b in out.bars] == [("A", BASE_MS)]
    assert [x["token"] for x in lines(tmp_path / "w.jsonl")] == ["B"]


# ------------------------------------------------------------------------------- indicators


def orderly_stream(seed: int, tokens: int = 3, minutes: int = 400) -> list[Row]:
    """Random-walk trades of ``tokens`` tokens over ``minutes`` minutes (about one minute in
    six without a trade), read at most 1.5 s out of order: inside the grace, so no bar is
    corrected and each indicators line is that of its own bar."""
    rnd = random.Random(seed)
    price = dict.fromkeys(range(tokens), 1.0)
    keyed: list[tuple[int, Row]] = []
    for m in range(minutes):
        for k in range(tokens):
            for _ in range(rnd.choice([0, 1, 1, 2, 3, 5])):
                price[k] *= math.exp(rnd.gauss(0, 0.01))
                ts = BASE_MS + m * MINUTE_MS + rnd.randrange(MINUTE_MS)
                row = wire(f"K{k}", ts, f"k{k}-{len(keyed)}", price[k], rnd.uniform(1, 50),
                           rnd.random() < 0.5)  # fmt: skip
                keyed.append((ts + rnd.randrange(1_500), row))
    keyed.sort(key=lambda x: x[0])
    return [row for _, row in keyed]


def test_replay_indicators_orderly_stream_equal_talib_over_final_closes(tmp_path: Path) -> None:
    src = write_jsonl(orderly_stream(7), tmp_path / "t.jsonl")
    out = replay(src, tmp_path, "--snapshot-every", "30s")
    assert all(bar["revision"] == 0 for bar in out.bars)
    assert_indicators_equal_talib(out)


def assert_indicators_equal_talib(out: Replayed) -> None:
    """Line ``i`` of a token is its bar ``i`` (no correction happened); the TA-Lib
    indicators equal TA-Lib over the token's closes up to that bar (1e-9 relative), None
    exactly where TA-Lib has no value yet; every indicator name is on every line."""
    assert len(out.indicators) == len(out.bars)
    tokens = sorted({bar["token"] for bar in out.bars})
    for token in tokens:
        bars = [b for b in out.bars if b["token"] == token]
        lines = [x for x in out.indicators if x["token"] == token]
        assert [x["open_ms"] for x in lines] == [b["open_ms"] for b in bars]
        assert len(bars) > 200  # ema_200 / sma_200 warm up
        closes = np.array([b["close"] for b in bars], dtype=float)
        ref = {"rsi_14": talib.RSI(closes, timeperiod=14)}
        for n in (20, 50, 200):
            ref[f"ema_{n}"] = talib.EMA(closes, timeperiod=n)
            ref[f"sma_{n}"] = talib.SMA(closes, timeperiod=n)
        for i, line in enumerate(lines):
            assert list(line) == ["token", "open_ms", *INDICATOR_NAMES]
            for name in TA_NAMES:
                assert ta_error(line[name], float(ref[name][i])) < TA_REL, (token, i, name)


def ta_error(got: float | None, want: float) -> float:
    """Relative error against a TA-Lib value (inf when warm-up disagrees)."""
    if math.isnan(want) or got is None:
        return 0.0 if (got is None) == math.isnan(want) else math.inf
    return abs(got - want) / abs(want) if want else abs(got)
