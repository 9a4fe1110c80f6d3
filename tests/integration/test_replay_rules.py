"""``tradepulse replay --rules`` as a user runs it: a dry run of alert rules on history.

The scanner runs at every multiple ``M`` of the scan interval with
``first trade time <= M < last trade time``, taken when the first trade later than ``M`` is
read (before it is applied). Its rows are every token seen by then. Expectations are
computed here without the engine: brute-force counts over the trades, prices read off a
hand-made path, TA-Lib over the reference 1-minute closes::

    trades:  ●  ●    ●●●●●     ●             ●
    time:  ──┼────────┼────────┼────────┼────────┼──>
             M1       M2       M3       M4   (no scan at or after the last trade)
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import talib

from tests.support.factories import trade
from tests.support.realdata import (
    binance_xrpeth_trades,
    ohlcv_1m_rows,
    require_real_data,
    write_jsonl,
)
from tradepulse.core.tokenbars import TokenBars
from tradepulse.core.windows import TokenWindows, parse_windows
from tradepulse.service.dryrun import metric_columns

BASE_MS = 1_699_999_980_000  # a minute start (2023-11-14)
MINUTE_MS = 60_000
GRACE_MS = 2_000  # TRADEPULSE_BAR_GRACE, set for every run

Row = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    returncode: int
    alerts: list[Row]
    stderr: str


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tradepulse", "replay", *args],
        env={**os.environ, "TRADEPULSE_BAR_GRACE": "2s"}, capture_output=True, timeout=300,
        check=False,
    )  # fmt: skip


def dry_run(tmp: Path, trades: Sequence[Row], rules: object, *options: str) -> Outcome:
    src = write_jsonl(trades, tmp / "trades.jsonl")
    (tmp / "rules.json").write_text(json.dumps(rules))
    alerts = tmp / "alerts.jsonl"
    result = run(str(src), "--out", os.devnull, "--rules", str(tmp / "rules.json"),
                 "--alerts-out", str(alerts), *options)  # fmt: skip
    rows = [json.loads(x) for x in alerts.read_bytes().splitlines()] if alerts.exists() else []
    return Outcome(result.returncode, rows, result.stderr.decode())


def wire(token: str, ts_ms: int, tx: str, price: float = 1.0, buy: bool = True) -> Row:
    return {"token": token, "wallet": f"w{len(tx) % 7}", "sell_buy": "buy" if buy else "sell",
            "native_amount": 1.0, "token_amount": 2.0, "price_usd": price,
            "trans_time": ts_ms, "tx_hash": tx}  # fmt: skip


def rule(name: str, conditions: object, cooldown: float = 0, **extra: object) -> Row:
    return {"name": name, "conditions": conditions, "cooldown": cooldown, **extra}


def cmp(metric: str, op: str, value: object) -> Row:
    return {"metric": metric, "op": op, "value": value}


def scan_times(trades: Sequence[Row], every_ms: int) -> list[int]:
    """The multiples of ``every_ms`` from the first trade time to before the last."""
    times = [t["trans_time"] for t in trades]
    first = -(-min(times) // every_ms) * every_ms
    return list(range(first, max(times), every_ms))


def summary_counts(stderr: str) -> dict[str, int]:
    """The per-rule counts of the ``alerts: N ("name": n, ...)`` line on stderr."""
    (line,) = re.findall(r"^alerts: .*$", stderr, re.MULTILINE)
    pairs = re.findall(r'("[^"]*"): ([\d,]+)', line)
    return {json.loads(name): int(count.replace(",", "")) for name, count in pairs}


# ------------------------------------------------------------ a count rule and its cooldown


def bursty_stream(seed: int, tokens: int = 3, minutes: int = 12) -> list[Row]:
    """Tokens alternating between quiet spells (a trade every 3-20 s) and bursts (every
    0-1.5 s), times often whole seconds (so many land on a scan time, or exactly one minute
    before one) and sometimes equal; in time order."""
    rnd = random.Random(seed)
    rows: list[tuple[int, int, Row]] = []
    for k in range(tokens):
        t = BASE_MS + rnd.randrange(5_000)
        end = BASE_MS + minutes * MINUTE_MS
        while t < end:
            burst = rnd.random() < 0.3
            t = -(-t // 1_000) * 1_000  # each spell starts on a whole second
            for _ in range(rnd.randrange(4, 30)):
                steps = [0, 500, 1_000, 1_000, rnd.randrange(1_500)] if burst else [
                    3_000, 5_000, 10_000, rnd.randrange(3_000, 20_000)]  # fmt: skip
                t += rnd.choice(steps)
                rows.append((t, len(rows), wire(f"T{k}", t, f"t{len(rows)}")))
    rows.sort(key=lambda x: (x[0], x[1]))
    return [row for _, _, row in rows]


def brute_force_count_alerts(
    trades: Sequence[Row], every_ms: int, k: int, cooldown_ms: int
) -> list[tuple[int, str, int, int]]:
    """``(M, token, trades in (M - 60 s, M], M - newest trade)`` for each firing: the
    token has more than ``k`` trades in the last minute and did not fire in
    ``(M - cooldown, M)``."""
    by_token: dict[str, list[int]] = {}
    for t in trades:
        by_token.setdefault(t["token"], []).append(t["trans_time"])
    last_fired: dict[str, int] = {}
    out = []
    for m in scan_times(trades, every_ms):
        for token in sorted(by_token):
            seen = [ts for ts in by_token[token] if ts <= m]
            if not seen:
                continue
            count = sum(1 for ts in seen if ts > m - MINUTE_MS)
            if count > k and m - last_fired.get(token, -(1 << 62)) >= cooldown_ms:
                last_fired[token] = m
                out.append((m, token, count, m - max(seen)))
    return out


@pytest.mark.parametrize(("seed", "every", "k", "cooldown"),
                         [(1, "5s", 8, 20), (2, "1s", 12, 0), (3, "10s", 5, 45)])  # fmt: skip
def test_replay_rules_trade_count_fires_where_brute_force_count_exceeds_k_outside_cooldown(
    tmp_path: Path, seed: int, every: str, k: int, cooldown: int
) -> None:
    trades = bursty_stream(seed)
    every_ms = {"1s": 1_000, "5s": 5_000, "10s": 10_000}[every]
    busy = rule("busy", [cmp("window.1min.trade_count", ">", k)], cooldown=cooldown)
    out = dry_run(tmp_path, trades, busy, "--windows", "1min,5min", "--scan-interval", every)
    assert out.returncode == 0, out.stderr
    want = brute_force_count_alerts(trades, every_ms, k, cooldown * 1_000)
    uncooled = brute_force_count_alerts(trades, every_ms, k, 0)
    assert len(want) > 10 and (cooldown == 0) == (want == uncooled)  # the cooldown mattered
    got = [(a["triggered_ms"], a["token"], a["values"]["window.1min.trade_count"], a["lag_ms"])
           for a in out.alerts]  # fmt: skip
    assert got == want
    for a in out.alerts:
        m = a["triggered_ms"]
        assert (a["rule_id"], a["rule_name"], a["rule_version"]) == ("busy", "busy", 0)
        assert a["window_bounds"] == {"1min": [m - MINUTE_MS, m]}
        assert uuid.UUID(a["id"]).version == 5 and re.fullmatch("[0-9a-f]{32}", a["trace_id"])
    assert len({a["id"] for a in out.alerts}) == len(want)
    assert summary_counts(out.stderr) == {"busy": len(want)}


def test_replay_rules_rows_are_every_token_seen_so_far_at_every_multiple(tmp_path: Path) -> None:
    """Windows 1min, scans every 10 s at 10..220 s: A trades at +1 s and +25 s, B at +200 s
    and +230 s. ``price > 0`` holds for every token in the rows: A, idle from 25 s on, is
    scanned at every multiple (as the worker scans every token it holds), through the
    quiet 90..190 s too; B from 200 s. With ``max_staleness`` 60 s a rule drops A once its
    newest trade is more than a minute old (after 85 s)."""
    trades = [wire("A", BASE_MS + 1_000, "a1"), wire("A", BASE_MS + 25_000, "a2"),
              wire("B", BASE_MS + 200_000, "b1"), wire("B", BASE_MS + 230_000, "b2")]  # fmt: skip
    rules = [rule("any", [cmp("price", ">", 0)]),
             rule("fresh", [cmp("price", ">", 0)], max_staleness=60)]  # fmt: skip
    out = dry_run(tmp_path, trades, rules, "--windows", "1min", "--scan-interval", "10s")
    assert out.returncode == 0, out.stderr
    got = [((a["triggered_ms"] - BASE_MS) // 1_000, a["rule_id"], a["token"])
           for a in out.alerts]  # fmt: skip
    want = []
    for m in range(10, 230, 10):
        tokens = ["A", "B"] if m >= 200 else ["A"]
        want += [(m, "any", t) for t in tokens]
        want += [(m, "fresh", t) for t in tokens if t == "B" or m <= 80]
    assert got == want


# ------------------------------------------------------------- edges and crossings by hand


PRICE_PATH = [  # (seconds after BASE_MS, price) of token P
    (1, 1.00), (12, 1.20), (15, 1.60), (25, 1.70), (33, 1.30), (45, 1.55), (52, 1.45),
    (58, 1.20), (60, 1.50), (75, 1.50), (85, 1.39), (95, 1.41), (101, 1.41),
]  # fmt: skip


def test_replay_rules_edge_and_crossings_on_a_price_path_fire_where_worked_out_by_hand(
    tmp_path: Path,
) -> None:
    """Scans every 10 s at 10..100 s (the last trade is at 101 s). P's price at each scan
    is its latest trade at or before it (the trade at exactly 60 s counts at 60 s)::

        scan (s)   10    20    30    40    50    60    70    80    90    100
        P price   1.00  1.60  1.70  1.30  1.55  1.50  1.50  1.50  1.39  1.41
        > 1.4      F     T     T     F     T     T     T     T     F     T

    * ``price > 1.4``, edge trigger, cooldown 40 s: edges at 20, 50 and 100 s; the one at
      50 s is inside the cooldown of 20 s and is dropped for good (not fired at 60 s).
    * ``price crosses_above 1.4`` (cooldown 0): previous <= 1.4 < now at 20, 50, 100 s.
    * ``price crosses_below 1.4``: previous >= 1.4 > now at 40 and 90 s.
    * Q trades at 2.0 from 5 s: above 1.4 from its first scan, which has no previous
      evaluation, so neither the edge nor a crossing ever fires for it.
    """
    trades = [wire("P", BASE_MS + s * 1_000, f"p{s}", price) for s, price in PRICE_PATH]
    trades += [wire("Q", BASE_MS + s * 1_000, f"q{s}", 2.0) for s in (5, 30, 70, 95)]
    trades.sort(key=lambda t: t["trans_time"])
    rules = [
        rule("edge", [cmp("price", ">", 1.4)], cooldown=40, trigger="edge"),
        rule("up", [cmp("price", "crosses_above", 1.4)]),
        rule("down", {"all": [cmp("price", "crosses_below", 1.4)]}),
    ]
    out = dry_run(tmp_path, trades, rules, "--scan-interval", "10s")
    assert out.returncode == 0, out.stderr
    got = [(a["rule_id"], (a["triggered_ms"] - BASE_MS) // 1_000, a["token"], a["values"])
           for a in out.alerts]  # fmt: skip
    assert got == [
        ("edge", 20, "P", {"price": 1.6}), ("up", 20, "P", {"price": 1.6}),
        ("down", 40, "P", {"price": 1.3}),
        ("up", 50, "P", {"price": 1.55}),
        ("down", 90, "P", {"price": 1.39}),
        ("edge", 100, "P", {"price": 1.41}), ("up", 100, "P", {"price": 1.41}),
    ]  # fmt: skip
    assert all(a["window_bounds"] == {} for a in out.alerts)  # price reads no window
    assert summary_counts(out.stderr) == {"edge": 2, "up": 3, "down": 2}


def test_replay_rules_with_snapshots_leave_both_outputs_unchanged(tmp_path: Path) -> None:
    """Scans every 5 s and snapshots every 7 s run interleaved in time order: the snapshot
    lines are those of a run without rules, the alerts those of a run without snapshots."""
    trades = bursty_stream(4, minutes=6)
    src = write_jsonl(trades, tmp_path / "t.jsonl")
    (tmp_path / "r.json").write_text(json.dumps([
        rule("busy", [cmp("window.1min.trade_count", ">", 6)], cooldown=10),
        rule("cross", [cmp("window.1min.trade_count", "crosses_below", 4)]),
    ]))  # fmt: skip
    rules = ("--rules", str(tmp_path / "r.json"), "--scan-interval", "5s")
    snaps = ("--snapshot-every", "7s")
    both = run(str(src), "-o", str(tmp_path / "s1"), *rules, "--alerts-out", str(tmp_path / "a1"),
               *snaps)  # fmt: skip
    only_snaps = run(str(src), "-o", str(tmp_path / "s2"), *snaps)
    only_rules = run(str(src), "-o", os.devnull, *rules, "--alerts-out", str(tmp_path / "a2"))
    assert [r.returncode for r in (both, only_snaps, only_rules)] == [0, 0, 0], both.stderr
    assert (tmp_path / "s1").read_bytes() == (tmp_path / "s2").read_bytes()
    assert (tmp_path / "a1").read_bytes() == (tmp_path / "a2").read_bytes()
    assert len((tmp_path / "a1").read_bytes().splitlines()) > 5


# ------------------------------------------------------------ bars and indicators, real data


def forming_close(times: Sequence[int], prices: Sequence[float], m: int) -> float:
    """The forming bar's close at ``m``: the latest trade at or before ``m`` (the last of
    equal times) when its minute is not yet final (``>= minute of m - grace``), else NaN."""
    i = int(np.searchsorted(times, m, side="right")) - 1
    if i < 0 or times[i] - times[i] % MINUTE_MS < (m - GRACE_MS) - (m - GRACE_MS) % MINUTE_MS:
        return math.nan
    return prices[i]


@pytest.mark.realdata
def test_replay_rules_real_xrpeth_rsi_and_close_over_ema_equal_talib_over_final_closes(
    tmp_path: Path,
) -> None:
    """Real Binance XRP/ETH trades (30 hours), scans every 10 s. At a scan ``M`` the final
    bars are the reference 1-minute bars with ``open + 1 min + grace <= M``; ``ind.*`` is
    TA-Lib over their closes (the value at the last one), ``bar.close`` the forming bar's.

    * "rsi extreme": ``rsi_14 > 65 or < 35``, cooldown 10 min;
    * "close over ema": ``bar.close crosses_above ind.ema_20`` (against the previous scan).

    Every firing is expected and every expected firing happens, values to 1e-9."""
    require_real_data()
    trades = binance_xrpeth_trades()
    rules = [
        rule("rsi extreme", {"any": [cmp("ind.rsi_14", ">", 65), cmp("ind.rsi_14", "<", 35)]},
             cooldown=600),
        rule("close over ema", [cmp("bar.close", "crosses_above", {"metric": "ind.ema_20"})]),
    ]  # fmt: skip
    out = dry_run(tmp_path, trades, rules, "--scan-interval", "10s")
    assert out.returncode == 0, out.stderr

    bars = ohlcv_1m_rows("binance_xrpeth")
    opens = np.array([b["open_ms"] for b in bars])
    closes = np.array([b["close"] for b in bars], dtype=float)
    rsi, ema = talib.RSI(closes, timeperiod=14), talib.EMA(closes, timeperiod=20)
    times = [t["trans_time"] for t in trades]
    prices = [t["price_usd"] for t in trades]
    want: list[tuple[str, int, dict[str, float]]] = []
    last_rsi_fire = -(1 << 62)
    previous = (math.nan, math.nan)
    for m in scan_times(trades, 10_000):
        final = int(np.searchsorted(opens, m - MINUTE_MS - GRACE_MS, side="right"))
        r = float(rsi[final - 1]) if final else math.nan
        e = float(ema[final - 1]) if final else math.nan
        c = forming_close(times, prices, m)
        if (r > 65 or r < 35) and m - last_rsi_fire >= 600_000:
            last_rsi_fire = m
            want.append(("rsi extreme", m, {"ind.rsi_14": r}))
        if previous[0] <= previous[1] and c > e:
            want.append(("close over ema", m, {"bar.close": c, "ind.ema_20": e}))
        previous = (c, e)
    got = [(a["rule_id"], a["triggered_ms"], a["values"]) for a in out.alerts]
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert sum(1 for w in want if w[0] == "rsi extreme") > 10
    assert sum(1 for w in want if w[0] == "close over ema") > 20
    for (_, m, values), (_, _, expected) in zip(got, want, strict=True):
        assert values.keys() == expected.keys()
        for name, value in values.items():
            assert value == pytest.approx(expected[name], rel=1e-9), (m, name)
    assert summary_counts(out.stderr) == {
        "rsi extreme": sum(1 for w in want if w[0] == "rsi extreme"),
        "close over ema": sum(1 for w in want if w[0] == "close over ema"),
    }


# ------------------------------------------------------------- the table a scan reads


def test_metric_columns_read_windows_price_forming_bar_and_indicators_nan_for_null() -> None:
    """Token A trades at +10 s (price 2) and +70 s (price 3); B is not held at all.

    * at +90 s the 1-minute window holds the +70 s trade, the 5-minute one both; the bar of
      minute 0 is final (grace 2 s), minute 1 is forming; no indicator is warm yet.
    * at +200 s the 1-minute window is empty (vwap and first trade null, price still 3)
      and, once the bars are moved there, no bar is forming.
    """
    specs = parse_windows("1min,5min")
    a, bars = TokenWindows(specs), TokenBars.new("A", horizon_ms=5 * MINUTE_MS)
    for t in (trade(BASE_MS + 10_000, 2.0, token="A"), trade(BASE_MS + 70_000, 3.0, token="A")):
        a.add(t, t.ts_ms)
        bars.add(t)
    metrics = ["window.1min.trade_count", "window.5min.trade_count", "window.1min.vwap",
               "window.1min.first_trade_ms", "window.1min.updated_ms", "price", "bar.close",
               "bar.trades", "ind.rsi_14"]  # fmt: skip
    nan = math.nan
    for dt_s, want in (
        (90, [1, 2, 3.0, BASE_MS + 70_000, BASE_MS + 90_000, 3.0, 3.0, 1, nan]),
        (200, [0, 2, nan, nan, BASE_MS + 200_000, 3.0, nan, nan, nan]),
    ):
        t_ms = BASE_MS + dt_s * 1_000
        bars.advance(t_ms)
        cols = metric_columns(["A", "B"], {"A": a}, {"A": bars}, t_ms, metrics)
        assert list(cols) == metrics
        for m, value in zip(metrics, want, strict=True):
            np.testing.assert_array_equal(cols[m], [value, nan], err_msg=f"{dt_s} s {m}")
    assert bars.indicators.last_open_ms == BASE_MS + MINUTE_MS  # both bars final by now
    with pytest.raises(ValueError, match="buy_sell_ratio"):
        metric_columns(["A"], {"A": a}, {}, BASE_MS, ["window.1min.buy_sell_ratio"])


# ------------------------------------------------------------------------- refused rules


def test_replay_rules_invalid_rules_exit_2_listing_every_error_with_its_path(
    tmp_path: Path,
) -> None:
    good = rule("ok", [cmp("price", ">", 1)])
    bad = {"id": "r1", "name": "bad", "cooldown": -1,
           "conditions": [cmp("window.7min.trade_count", "=>", "many")]}  # fmt: skip
    out = dry_run(tmp_path, [wire("A", BASE_MS, "a")], [good, bad, "oops"],
                  "--windows", "1min,5min")  # fmt: skip
    assert out.returncode == 2
    for line in ("[1].id: unknown field",
                 "[1].conditions[0].metric: unknown window '7min' (configured: 1min, 5min)",
                 "[1].conditions[0].op: unknown operator '=>'",
                 "[1].conditions[0].value: expected a number or {\"metric\": ...}, got string",
                 "[1].cooldown: must be between 0 and",
                 "[2]: expected an object, got string"):  # fmt: skip
        assert line in out.stderr, line
    assert not (tmp_path / "alerts.jsonl").exists()


def test_replay_rules_one_invalid_rule_object_keeps_its_own_paths(tmp_path: Path) -> None:
    out = dry_run(tmp_path, [wire("A", BASE_MS, "a")], {"name": "x", "cooldown": 5})
    assert out.returncode == 2 and "  conditions: required" in out.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "$: invalid JSON"),
    ("[]", "$: expected a rule or a non-empty array of rules"),
])  # fmt: skip
def test_replay_rules_unreadable_document_exits_2(tmp_path: Path, text: str, message: str) -> None:
    src = write_jsonl([wire("A", BASE_MS, "a")], tmp_path / "t.jsonl")
    (tmp_path / "r.json").write_text(text)
    result = run(str(src), "--rules", str(tmp_path / "r.json"), "--alerts-out", os.devnull)
    assert result.returncode == 2 and message in result.stderr.decode()


def test_replay_rules_duplicate_names_exit_2_naming_both(tmp_path: Path) -> None:
    rules = [rule("a", [cmp("price", ">", 1)]), rule("b", [cmp("price", ">", 2)]),
             rule("a", [cmp("price", "<", 1)])]  # fmt: skip
    out = dry_run(tmp_path, [wire("A", BASE_MS, "a")], rules)
    assert out.returncode == 2
    assert "[2].name: duplicate rule name 'a' (also [0])" in out.stderr


def test_replay_rules_with_several_processes_exit_2_naming_the_options(tmp_path: Path) -> None:
    src = write_jsonl([wire("A", BASE_MS, "a")], tmp_path / "t.jsonl")
    (tmp_path / "r.json").write_text(json.dumps(rule("a", [cmp("price", ">", 1)])))
    result = run(str(src), "-j", "2", "--rules", str(tmp_path / "r.json"),
                 "--alerts-out", str(tmp_path / "a.jsonl"))  # fmt: skip
    assert result.returncode == 2
    assert b"--processes" in result.stderr and b"--rules" in result.stderr
    assert not (tmp_path / "a.jsonl").exists()


def test_replay_rules_alerts_to_the_output_file_exit_2(tmp_path: Path) -> None:
    src = write_jsonl([wire("A", BASE_MS, "a")], tmp_path / "t.jsonl")
    (tmp_path / "r.json").write_text(json.dumps(rule("a", [cmp("price", ">", 1)])))
    result = run(str(src), "--rules", str(tmp_path / "r.json"), "--alerts-out", "-")
    assert result.returncode == 2 and b"--alerts-out" in result.stderr  # stdout: --out


@pytest.mark.parametrize("options", [("--alerts-out", "a.jsonl"), ("--scan-interval", "5s"),
                                     ("--rules", "RULES")])  # fmt: skip
def test_replay_rules_options_without_their_partner_exit_2(
    tmp_path: Path, options: tuple[str, str]
) -> None:
    src = write_jsonl([wire("A", BASE_MS, "a")], tmp_path / "t.jsonl")
    (tmp_path / "r.json").write_text(json.dumps(rule("a", [cmp("price", ">", 1)])))
    option, value = options
    result = run(str(src), option, str(tmp_path / "r.json") if value == "RULES" else value)
    assert result.returncode == 2
    assert ("--alerts-out" if option == "--rules" else option) in result.stderr.decode()
