"""An independent oracle for sliding-window statistics and replay snapshots, built on pandas.

Written from ARCHITECTURE §3/§4 and the ``tradepulse replay`` contract only; it does not use
any ``tradepulse`` code. Input is the list of wire dicts (what is written to the replay file),
so the oracle sees exactly the numbers the command reads.

How the statistics are computed, per token and per window ``W``:

* Trades are put in time order (stable: equal times keep arrival order). One zero-weight
  *probe* row is added at every evaluation time ``T``, after the trades with the same time.
* On that frame (DatetimeIndex) ``rolling(f"{W}ms", closed="right")`` gives, at each probe,
  the window ``(T - W, T]``: trade/buy/sell counts (rolling sums of 0/1 flags), high and low
  (rolling max/min of the price, NaN on probes), and rolling sums of the USD, native and token
  amounts.
* The rolling trade count also locates the window's trades (the last ``count`` trades before
  the probe). Reported sums are recomputed over that slice with ``math.fsum`` (exactly rounded),
  and the pandas rolling sums are used only as a cross-check of the slice. Unique wallets are
  ``nunique`` over the slice.
* ``end_price`` is the price of the last trade at or before ``T``; ``start_price`` the price of
  the last trade at or before ``T - W`` when there is one, else the first trade in the window.
  Empty window: zero counts/volumes, start = end = high = low = last known price, change 0,
  vwap / first / last null.

Replay rules (single file = one partition, event clock): the watermark is the largest time read
so far; a trade with time <= watermark - longest window is late and dropped; a repeated
``(token, tx_hash, event_index)`` is dropped. Snapshots at every multiple ``M`` of the snapshot
duration with first time <= M < last time, one line per token having a trade in
``(M - longest, M]``; then final lines at ``T = last time``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

STAT_FIELDS: tuple[str, ...] = (
    "buy_count",
    "sell_count",
    "trade_count",
    "buy_volume",
    "sell_volume",
    "total_volume",
    "native_volume",
    "unique_wallets",
    "unique_buyers",
    "unique_sellers",
    "start_price",
    "end_price",
    "high_price",
    "low_price",
    "price_change_pct",
    "vwap",
    "first_trade_ms",
    "last_trade_ms",
    "updated_ms",
)
INT_FIELDS = frozenset(
    {
        "buy_count",
        "sell_count",
        "trade_count",
        "unique_wallets",
        "unique_buyers",
        "unique_sellers",
        "first_trade_ms",
        "last_trade_ms",
        "updated_ms",
    }
)
FLOAT_FIELDS = frozenset(STAT_FIELDS) - INT_FIELDS

_UNIT_MS = {
    "ms": 1,
    "s": 1_000,
    "sec": 1_000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")
_SECONDS_LIMIT = 100_000_000_000  # epoch numbers below this are seconds


def duration_ms(text: str) -> int:
    """``"10s"``, ``"5min"``, ``"1hour"``, ``"6hour"``, ``"250ms"`` ... in milliseconds."""
    match = _DURATION_RE.match(text.lower())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    value, unit = int(match.group(1)), match.group(2)
    if unit not in _UNIT_MS and unit.endswith("s"):
        unit = unit[:-1]  # plural: "mins", "hours"
    if unit not in _UNIT_MS:
        raise ValueError(f"unknown duration unit in {text!r}")
    return value * _UNIT_MS[unit]


def wire_time_ms(value: Any) -> int:
    """Epoch ms of a wire ``trans_time``: int ms, int seconds (< 1e11) or RFC 3339 string."""
    if isinstance(value, bool):
        raise TypeError("trans_time cannot be a boolean")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"fractional epoch time not supported by the oracle: {value!r}")
        value = int(value)
    if isinstance(value, int):
        return value * 1000 if value < _SECONDS_LIMIT else value
    if isinstance(value, str):
        ts = pd.Timestamp(datetime.fromisoformat(value.replace("Z", "+00:00")))
        if ts.tzinfo is None:
            raise ValueError(f"RFC 3339 time needs an offset: {value!r}")
        return int(ts.tz_convert("UTC").as_unit("ns").value // 1_000_000)
    raise TypeError(f"unsupported trans_time {value!r}")


@dataclass(frozen=True)
class Applied:
    """The trades a replay applies (time ordered, stable) and what it dropped."""

    trades: pd.DataFrame
    late: int
    duplicates: int


def apply_replay_rules(wire: Iterable[Mapping[str, Any]], longest_ms: int) -> Applied:
    """Drop duplicates and late trades in arrival order, then order by time (stable)."""
    records = []
    seen: set[tuple[str, str, int]] = set()
    watermark: int | None = None
    late = duplicates = 0
    for arrival, w in enumerate(wire):
        ts = wire_time_ms(w["trans_time"])
        key = (w["token"], w["tx_hash"], int(w.get("event_index", 0)))
        if watermark is not None and ts <= watermark - longest_ms:
            late += 1
            continue
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        watermark = ts if watermark is None else max(watermark, ts)
        side = str(w["sell_buy"]).lower()
        if side not in ("buy", "sell"):
            raise ValueError(f"bad side {w['sell_buy']!r}")
        price, amount = float(w["price_usd"]), float(w["token_amount"])
        native = float(w["native_amount"])
        if not (price > 0 and amount > 0 and native >= 0):
            raise ValueError(f"invalid wire trade {dict(w)!r}")
        records.append(
            {
                "arrival": arrival,
                "ts_ms": ts,
                "token": w["token"],
                "wallet": w["wallet"],
                "is_buy": side == "buy",
                "price": price,
                "token_amount": amount,
                "native": native,
                "volume": amount * price,
            }
        )
    frame = pd.DataFrame.from_records(
        records,
        columns=[
            "arrival",
            "ts_ms",
            "token",
            "wallet",
            "is_buy",
            "price",
            "token_amount",
            "native",
            "volume",
        ],
    )
    frame = frame.sort_values("ts_ms", kind="stable").reset_index(drop=True)
    return Applied(frame, late, duplicates)


def expected_lines(
    trades: pd.DataFrame, every_ms: int, longest_ms: int
) -> list[tuple[str, int, bool]]:
    """``(token, T, final)`` of every line a replay must write, in the order of ``T``."""
    if trades.empty:
        return []
    first, last = int(trades["ts_ms"].iloc[0]), int(trades["ts_ms"].iloc[-1])
    multiples = list(range(-(-first // every_ms) * every_ms, last, every_ms))
    out: list[tuple[str, int, bool]] = []
    per_token = {
        token: group["ts_ms"].to_numpy() for token, group in trades.groupby("token", sort=True)
    }
    for t_eval, final in [(m, False) for m in multiples] + [(last, True)]:
        for token, times in per_token.items():
            lo = np.searchsorted(times, t_eval - longest_ms, side="right")
            hi = np.searchsorted(times, t_eval, side="right")
            if hi > lo:
                out.append((token, t_eval, final))
    return out


def _close(a: float, b: float, scale: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-12 * scale + 1e-12)


def _token_window_stats(
    group: pd.DataFrame, evals: Sequence[int], windows: Mapping[str, int]
) -> dict[int, dict[str, dict[str, Any]]]:
    """Statistics of one token at each time of ``evals`` for every window."""
    n = len(group)
    times = group["ts_ms"].to_numpy(dtype=np.int64)
    prices = group["price"].to_numpy(dtype=float)
    volumes = group["volume"].to_numpy(dtype=float)
    natives = group["native"].to_numpy(dtype=float)
    amounts = group["token_amount"].to_numpy(dtype=float)
    is_buy = group["is_buy"].to_numpy(dtype=bool)
    wallets = group["wallet"].to_numpy(dtype=object)

    probes = np.array(sorted(set(evals)), dtype=np.int64)
    trade_rows = pd.DataFrame(
        {
            "ts_ms": times,
            "kind": 0,
            "trade": 1.0,
            "buy": is_buy.astype(float),
            "sell": (~is_buy).astype(float),
            "price": prices,
            "volume": volumes,
            "native": natives,
            "amount": amounts,
        }
    )
    probe_rows = pd.DataFrame(
        {
            "ts_ms": probes,
            "kind": 1,
            "trade": 0.0,
            "buy": 0.0,
            "sell": 0.0,
            "price": np.nan,
            "volume": 0.0,
            "native": 0.0,
            "amount": 0.0,
        }
    )
    frame = pd.concat([trade_rows, probe_rows], ignore_index=True)
    frame = frame.sort_values(["ts_ms", "kind"], kind="stable").reset_index(drop=True)
    # trades before and including each row, so a probe's window is trades[end - count : end]
    frame["trades_upto"] = frame["trade"].cumsum().astype(np.int64)
    frame.index = pd.to_datetime(frame["ts_ms"].to_numpy(), unit="ms")
    is_probe = (frame["kind"] == 1).to_numpy()
    probe_ts = frame["ts_ms"].to_numpy()[is_probe]
    probe_end = frame["trades_upto"].to_numpy()[is_probe]
    scale = {c: math.fsum(np.abs(a)) for c, a in (("volume", volumes), ("native", natives))}
    scale["amount"] = math.fsum(amounts)

    result: dict[int, dict[str, dict[str, Any]]] = {int(t): {} for t in probes}
    for name, w_ms in windows.items():
        roll = frame.rolling(f"{w_ms}ms", closed="right")
        sums = roll[["trade", "buy", "sell", "volume", "native", "amount"]].sum()[is_probe]
        highs = roll["price"].max()[is_probe].to_numpy()
        lows = roll["price"].min()[is_probe].to_numpy()
        counts = sums["trade"].to_numpy()
        buys = sums["buy"].to_numpy()
        sells = sums["sell"].to_numpy()
        for i, probe_t in enumerate(probe_ts):
            t_eval = int(probe_t)
            end = int(probe_end[i])
            count = round(float(counts[i]))
            begin = end - count
            sl = slice(begin, end)
            # the slice must be exactly the trades in (T - W, T]
            assert begin >= 0
            assert end == n or times[end] > t_eval
            assert end == 0 or times[end - 1] <= t_eval
            assert count == 0 or times[begin] > t_eval - w_ms
            assert begin == 0 or times[begin - 1] <= t_eval - w_ms
            buy_mask = is_buy[sl]
            n_buy = int(buy_mask.sum())
            assert n_buy == round(float(buys[i])) and count - n_buy == round(float(sells[i]))
            buy_volume = math.fsum(volumes[sl][buy_mask])
            sell_volume = math.fsum(volumes[sl][~buy_mask])
            total_volume = math.fsum(volumes[sl])
            native_volume = math.fsum(natives[sl])
            amount_sum = math.fsum(amounts[sl])
            for col, exact in (
                ("volume", total_volume),
                ("native", native_volume),
                ("amount", amount_sum),
            ):
                rolled = float(sums[col].iloc[i])
                assert _close(rolled, exact, scale[col]), (name, t_eval, col, rolled, exact)
            if end == 0:
                raise ValueError(f"no price known at {t_eval} for this token")
            end_price = float(prices[end - 1])
            if count == 0:
                start = high = low = end_price
                vwap = first_ms = last_ms = None
            else:
                opened = int(np.searchsorted(times, t_eval - w_ms, side="right"))
                assert opened == begin
                start = float(prices[opened - 1]) if opened > 0 else float(prices[begin])
                high, low = float(highs[i]), float(lows[i])
                assert high == float(prices[sl].max()) and low == float(prices[sl].min())
                vwap = total_volume / amount_sum
                first_ms, last_ms = int(times[begin]), int(times[end - 1])
            window_wallets = pd.Series(wallets[sl], dtype=object)
            result[t_eval][name] = {
                "buy_count": n_buy,
                "sell_count": count - n_buy,
                "trade_count": count,
                "buy_volume": buy_volume,
                "sell_volume": sell_volume,
                "total_volume": total_volume,
                "native_volume": native_volume,
                "unique_wallets": int(window_wallets.nunique()),
                "unique_buyers": int(window_wallets[buy_mask].nunique()),
                "unique_sellers": int(window_wallets[~buy_mask].nunique()),
                "start_price": start,
                "end_price": end_price,
                "high_price": high,
                "low_price": low,
                "price_change_pct": (end_price - start) / start * 100.0,
                "vwap": vwap,
                "first_trade_ms": first_ms,
                "last_trade_ms": last_ms,
                "updated_ms": t_eval,
            }
    return result


def window_stats(
    trades: pd.DataFrame,
    points: Iterable[tuple[str, int]],
    windows: Mapping[str, int],
) -> dict[tuple[str, int], dict[str, dict[str, Any]]]:
    """Statistics of every window at each ``(token, T)`` of ``points``.

    ``trades`` is the frame of :func:`apply_replay_rules` (time ordered); ``windows`` maps
    window names to durations in ms. Returns ``{(token, T): {window name: {stat: value}}}``.
    """
    wanted: dict[str, set[int]] = {}
    for token, t_eval in points:
        wanted.setdefault(token, set()).add(int(t_eval))
    out: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    groups = dict(tuple(trades.groupby("token", sort=False)))
    for token, evals in wanted.items():
        if token not in groups:
            raise ValueError(f"token {token!r} has no trades")
        per_t = _token_window_stats(groups[token], sorted(evals), windows)
        for t_eval, stats in per_t.items():
            out[(token, t_eval)] = stats
    return out


def replay_expectation(
    wire: Sequence[Mapping[str, Any]],
    every_ms: int,
    windows: Mapping[str, int],
) -> tuple[dict[tuple[str, int, bool], dict[str, dict[str, Any]]], Applied]:
    """Every line a replay of ``wire`` must write: ``{(token, T, final): windows}``."""
    longest = max(windows.values())
    applied = apply_replay_rules(wire, longest)
    lines = expected_lines(applied.trades, every_ms, longest)
    stats = window_stats(applied.trades, [(tok, t) for tok, t, _ in lines], windows)
    return {(tok, t, final): stats[(tok, t)] for tok, t, final in lines}, applied
