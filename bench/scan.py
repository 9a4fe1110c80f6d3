"""The rule scanner: one scan of T tokens × R rules; writes bench/results/scan.json.

    python bench/scan.py [--scans S] [--repeat K] [--quick]

Rules are generated from a fixed seed: 2–5 parts each, mixing every operator, nested
``any`` / ``not`` groups, crossings (of thresholds and of price over its averages),
metric-vs-metric comparisons, derived metrics (``buy_sell_ratio``, ``net_volume``), edge
triggers, staleness limits, a few ``symbols`` lists, and cooldowns of 1–10 minutes.
Thresholds are quantiles of the generated columns, so each comparison holds for a fair
share of tokens; 3–8 % of the indicator and bar values are null (not warmed up).

Each configuration runs S scans one second apart on one scanner (prices random-walk and
their averages follow, a tenth of the counts are redrawn each scan, so crossings and edges
keep happening); the
first three are a warm-up, the others are timed one by one. Reported per configuration:
the median and best scan, the evaluation alone (columns + compiled program, no state and
no alerts), a quiet scan (the whole scan when nothing fires: the last scan repeated at
the same time), the alerts per scan, the cost of one alert ((median - quiet) / alerts)
and the distinct vectorized steps after sharing. K rounds
(default 2), interleaved, best round kept; other benchmarks may run on this 2-core
machine at the same time, so compare within one run.

The check: for a subset of tokens a naive evaluator (per token, per rule, plain Python,
three-valued, with its own cooldown / edge / crossing state) replays the same scans; the
scanner's alerts for those tokens must be exactly its alerts. A mismatch fails the run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tradepulse.core.rule_model import AllOf, AnyOf, Condition, MetricRef, Not, Rule
from tradepulse.core.rules import parse_rule
from tradepulse.core.scanner import Scanner

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WINDOWS = ("1min", "5min", "15min")
STATS = (
    "buy_count",
    "sell_count",
    "trade_count",
    "buy_volume",
    "sell_volume",
    "total_volume",
    "unique_wallets",
    "price_change_pct",
)
DERIVED = ("buy_sell_ratio", "net_volume")
OTHER = ("price", "bar.close", "bar.volume_usd", "bar.trades", "ind.rsi_14", "ind.ema_20",
         "ind.sma_50", "ind.rel_volume", "ind.price_change_5m", "ind.vwap_5m")  # fmt: skip
PRICE_LIKE = ("price", "bar.close", "ind.ema_20", "ind.sma_50", "ind.vwap_5m")
ORDER_OPS = (">", "<", ">=", "<=")
TOKEN_SWEEP = ((1_000, 100), (10_000, 100), (50_000, 100))
RULE_SWEEP = ((10_000, 10), (10_000, 300))
WARMUP = 3
START_MS = 1_700_000_000_000


def base_columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """A plausible metrics table: counts, USD volumes, sub-cent to dollar prices, nulls."""
    cols: dict[str, np.ndarray] = {}
    price = np.exp(rng.normal(-6, 3, n))
    cols["price"] = price
    for w_i, w in enumerate(WINDOWS):
        scale = 3**w_i
        buys, sells = rng.poisson(4 * scale, n), rng.poisson(3 * scale, n)
        cols[f"window.{w}.buy_count"] = buys.astype(float)
        cols[f"window.{w}.sell_count"] = sells.astype(float)
        cols[f"window.{w}.trade_count"] = (buys + sells).astype(float)
        cols[f"window.{w}.buy_volume"] = buys * rng.lognormal(5, 1.5, n)
        cols[f"window.{w}.sell_volume"] = sells * rng.lognormal(5, 1.5, n)
        cols[f"window.{w}.total_volume"] = (
            cols[f"window.{w}.buy_volume"] + cols[f"window.{w}.sell_volume"]
        )
        cols[f"window.{w}.unique_wallets"] = np.minimum(
            buys + sells, rng.poisson(3 * scale, n)
        ).astype(float)
        cols[f"window.{w}.price_change_pct"] = rng.normal(0, 5 * scale, n)
        cols[f"window.{w}.updated_ms"] = np.full(n, float(START_MS))
    for m in ("bar.close", "ind.ema_20", "ind.sma_50", "ind.vwap_5m"):
        cols[m] = price * np.exp(rng.normal(0, 0.03, n))
    cols["bar.volume_usd"] = rng.lognormal(6, 2, n)
    cols["bar.trades"] = rng.poisson(5, n).astype(float)
    cols["ind.rsi_14"] = rng.uniform(0, 100, n)
    cols["ind.rel_volume"] = rng.lognormal(0, 0.7, n)
    cols["ind.price_change_5m"] = rng.normal(0, 8, n)
    for m in OTHER[1:]:
        cols[m][rng.random(n) < (0.08 if m.startswith("ind.") else 0.03)] = np.nan
    return cols


def next_columns(rng: np.random.Generator, cols: dict[str, np.ndarray], now_ms: int) -> None:
    """One second later: prices walk (0.5 % a second), averages follow, RSI drifts."""
    n = cols["price"].size
    price = cols["price"] * np.exp(rng.normal(0, 0.005, n))
    cols["price"] = price
    cols["bar.close"] = price * np.exp(rng.normal(0, 0.001, n))
    for m, pull in (("ind.ema_20", 0.02), ("ind.sma_50", 0.01), ("ind.vwap_5m", 0.03)):
        cols[m] = cols[m] + (price - cols[m]) * pull
    cols["ind.rsi_14"] = np.clip(cols["ind.rsi_14"] + rng.normal(0, 1, n), 0, 100)
    redraw = rng.random(n) < 0.1
    for w in WINDOWS:
        for stat in ("buy_count", "sell_count"):
            col = cols[f"window.{w}.{stat}"].copy()
            col[redraw] = rng.poisson(np.maximum(col[redraw], 1.0))
            cols[f"window.{w}.{stat}"] = col
        cols[f"window.{w}.updated_ms"] = np.full(n, float(now_ms))


def make_rules(
    rng: random.Random, cols: dict[str, np.ndarray], count: int, tokens: list[str]
) -> list[Rule]:
    metrics = [f"window.{w}.{s}" for w in WINDOWS for s in (*STATS, *DERIVED)] + list(OTHER)
    finite = {m: _finite_sample(cols, m) for m in metrics}

    def threshold(m: str, op: str) -> float:
        """A quantile such that the comparison holds for 2-40 % of the known values."""
        q = rng.uniform(0.6, 0.98)
        q = 1 - q if op in ("<", "<=", "crosses_below") else q
        return float(np.quantile(finite[m], q))

    def comparison() -> dict[str, Any]:
        kind = rng.random()
        if kind < 0.12:  # a price crossing over one of its averages
            return {
                "metric": "price",
                "op": rng.choice(["crosses_above", "crosses_below"]),
                "value": {"metric": rng.choice(["ind.ema_20", "ind.sma_50", "ind.vwap_5m"])},
            }
        if kind < 0.2:  # a threshold crossing
            m = rng.choice(["ind.rsi_14", "window.1min.buy_sell_ratio", "price"])
            op = rng.choice(["crosses_above", "crosses_below"])
            return {"metric": m, "op": op, "value": threshold(m, op)}
        if kind < 0.3:  # metric against metric
            a, b = rng.sample(PRICE_LIKE, 2)
            return {"metric": a, "op": rng.choice(ORDER_OPS), "value": {"metric": b}}
        m = rng.choice(metrics)
        if kind < 0.36 and m.endswith(("_count", "trades", "wallets")):
            return {"metric": m, "op": rng.choice(["==", "!="]), "value": float(rng.randint(0, 6))}
        op = rng.choice(ORDER_OPS)
        return {"metric": m, "op": op, "value": threshold(m, op)}

    def part(depth: int) -> dict[str, Any]:
        kind = rng.random()
        if depth < 2 and kind < 0.2:
            return {"any": [part(depth + 1) for _ in range(rng.randint(2, 3))]}
        if depth < 2 and kind < 0.3:
            return {"not": part(depth + 1)}
        return comparison()

    rules = []
    for i in range(count):
        obj: dict[str, Any] = {
            "name": f"rule {i}",
            "conditions": {"all": [part(0) for _ in range(rng.randint(2, 5))]},
            "cooldown": rng.choice([60, 120, 300, 600]),
            "trigger": "edge" if rng.random() < 0.25 else "level",
        }
        if rng.random() < 0.3:
            obj["max_staleness"] = rng.choice([30, 60, 300])
        if rng.random() < 0.05:
            obj["symbols"] = rng.sample(tokens, 20)
        rules.append(parse_rule(obj, windows=WINDOWS, rule_id=f"r{i}", version=1))
    return rules


def _finite_sample(cols: dict[str, np.ndarray], metric: str) -> np.ndarray:
    head, _, stat = metric.rpartition(".")
    if stat == "buy_sell_ratio":
        s = cols[f"{head}.sell_count"]
        col = np.where(s > 0, cols[f"{head}.buy_count"] / np.where(s > 0, s, 1), np.nan)
    elif stat == "net_volume":
        col = cols[f"{head}.buy_volume"] - cols[f"{head}.sell_volume"]
    else:
        col = cols[metric]
    return col[np.isfinite(col)]


# -- the naive evaluator (the check) -------------------------------------------------------


def naive_value(cols: dict[str, np.ndarray], metric: str, row: int) -> float | None:
    head, _, stat = metric.rpartition(".")
    if stat == "buy_sell_ratio":
        b, s = (
            naive_value(cols, f"{head}.buy_count", row),
            naive_value(cols, f"{head}.sell_count", row),
        )
        return None if b is None or s is None or s == 0 else b / s
    if stat == "net_volume":
        b, s = (
            naive_value(cols, f"{head}.buy_volume", row),
            naive_value(cols, f"{head}.sell_volume", row),
        )
        return None if b is None or s is None else b - s
    v = float(cols[metric][row])
    return None if math.isnan(v) else v


def naive_eval(
    cond: Condition, now: dict[str, float | None], prev: dict[str, float | None] | None
) -> bool | None:
    if isinstance(cond, Not):
        inner = naive_eval(cond.item, now, prev)
        return None if inner is None else not inner
    if isinstance(cond, AllOf | AnyOf):
        parts = [naive_eval(c, now, prev) for c in cond.items]
        decisive = isinstance(cond, AnyOf)
        if decisive in parts:
            return decisive
        return None if None in parts else not decisive

    def side(v: float | MetricRef, values: dict[str, float | None]) -> float | None:
        return values[v.metric] if isinstance(v, MetricRef) else v

    left, right = now[cond.metric], side(cond.value, now)
    if left is None or right is None:
        return None
    if cond.op.startswith("crosses"):
        if prev is None or prev[cond.metric] is None or side(cond.value, prev) is None:
            return None
        pl, pr = prev[cond.metric], side(cond.value, prev)
        assert pl is not None and pr is not None
        return (
            (pl <= pr and left > right)
            if cond.op == "crosses_above"
            else (pl >= pr and left < right)
        )
    return {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right,
            "==": left == right, "!=": left != right}[cond.op]  # fmt: skip


class Naive:
    """Per (rule, token) state in dicts; one token at a time."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.metrics = sorted({m for r in rules for m in r.metrics()})
        self.prev: dict[str, dict[str, float | None]] = {}
        self.last: dict[tuple[str, str], int] = {}
        self.held: dict[tuple[str, str], bool] = {}

    def scan(
        self,
        now_ms: int,
        tokens: list[str],
        cols: dict[str, np.ndarray],
        newest: np.ndarray,
        rows: list[int],
    ) -> set[tuple[str, str, int]]:
        out = set()
        for row in rows:
            token = tokens[row]
            values = {m: naive_value(cols, m, row) for m in self.metrics}
            for rule in self.rules:
                if rule.symbols is not None and token not in rule.symbols:
                    continue
                key = (rule.id, token)
                ok = naive_eval(rule.condition, values, self.prev.get(token)) is True
                was = self.held.get(key)
                self.held[key] = ok
                if rule.trigger == "edge" and was is not False:
                    continue
                if not ok or (
                    rule.max_staleness_ms is not None
                    and now_ms - int(newest[row]) > rule.max_staleness_ms
                ):
                    continue
                if key in self.last and now_ms < self.last[key] + rule.cooldown_ms:
                    continue
                self.last[key] = now_ms
                out.add((rule.id, token, now_ms))
            self.prev[token] = values
        return out


# -- running ----------------------------------------------------------------------------


def run_config(
    tokens_n: int, rules_n: int, scans: int, check_rows: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    tokens = [f"tok{i:06d}" for i in range(tokens_n)]
    cols = base_columns(rng, tokens_n)
    rules = make_rules(random.Random(seed), cols, rules_n, tokens)
    scanner = Scanner(rules)
    newest_base = START_MS - rng.integers(0, 400_000, tokens_n)
    row_of = {t: i for i, t in enumerate(tokens)}
    sampled = set(range(0, tokens_n, max(1, tokens_n // check_rows)))
    check = sorted(sampled | {row_of[t] for r in rules if r.symbols for t in r.symbols[:2]})
    naive = Naive(rules)
    times, evals, alerts_per_scan = [], [], []
    mismatches = 0
    first_ms = 0.0
    for k in range(scans):
        now = START_MS + 1000 * k
        if k:
            next_columns(rng, cols, now)
        newest = newest_base + 1000 * k * (rng.random(tokens_n) < 0.5)
        listed = list(tokens)  # a new list each scan, as a worker would pass
        t0 = time.perf_counter()
        alerts = scanner.scan(now, listed, cols, newest)
        elapsed = (time.perf_counter() - t0) * 1000
        if k == 0:
            first_ms = elapsed
        if k >= WARMUP:
            times.append(elapsed)
            alerts_per_scan.append(len(alerts))
            t0 = time.perf_counter()
            table = scanner.program.columns(cols, tokens_n)
            scanner.program.held(
                table, {m: table[m] for m in scanner.program.crossing_metrics}, tokens_n
            )
            evals.append((time.perf_counter() - t0) * 1000)
        got = {(a.rule_id, a.token, a.triggered_ms) for a in alerts if row_of[a.token] in check}
        expected = naive.scan(now, tokens, cols, newest, check)
        mismatches += len(got ^ expected)
    quiet_ms = quiet_scans(scanner, now, tokens, cols, newest)
    median_ms = statistics.median(times)
    alerts_median = statistics.median(alerts_per_scan)
    return {
        "tokens": tokens_n,
        "rules": rules_n,
        "scans_timed": len(times),
        "median_ms": median_ms,
        "best_ms": min(times),
        "eval_median_ms": statistics.median(evals),
        "quiet_median_ms": quiet_ms,
        "first_scan_ms": first_ms,
        "alerts_per_scan_median": alerts_median,
        "us_per_alert": (median_ms - quiet_ms) * 1000 / alerts_median if alerts_median else None,
        "steps": scanner.program.steps,
        "comparisons": sum(1 for r in rules for _ in r.comparisons()),
        "checked_tokens": len(check),
        "check_mismatches": mismatches,
    }


def quiet_scans(
    scanner: Scanner, now_ms: int, tokens: list[str], cols: dict[str, np.ndarray],
    newest: np.ndarray, count: int = 5,
) -> float:  # fmt: skip
    """The median scan that emits nothing: the last scan again at the same time (everything
    that held is cooling, no crossing, no edge), after one repeat that settles edges."""
    scanner.scan(now_ms, list(tokens), cols, newest)
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        alerts = scanner.scan(now_ms, list(tokens), cols, newest)
        times.append((time.perf_counter() - t0) * 1000)
        if alerts:
            raise SystemExit(f"a quiet scan emitted {len(alerts)} alerts")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=15, help="scans per configuration")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best is kept")
    parser.add_argument("--check-tokens", type=int, default=150)
    parser.add_argument("--quick", action="store_true", help="10k × 100 only")
    args = parser.parse_args()
    configs = [TOKEN_SWEEP[1]] if args.quick else [*TOKEN_SWEEP, *RULE_SWEEP]
    console = Console()
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {c: [] for c in configs}
    for round_ in range(args.repeat):
        for tokens_n, rules_n in configs:
            with console.status(
                f"round {round_ + 1}/{args.repeat}: {tokens_n:,} tokens × {rules_n} rules"
            ):
                result = run_config(tokens_n, rules_n, args.scans, args.check_tokens, seed=7)
            if result["check_mismatches"]:
                raise SystemExit(f"check failed: {result}")
            runs[(tokens_n, rules_n)].append(result)
    results = []
    for c in configs:
        best = dict(min(runs[c], key=lambda r: r["median_ms"]))
        best["all_median_ms"] = [r["median_ms"] for r in runs[c]]
        results.append(best)
    report = {
        "benchmark": "scan",
        "target_ms": 10.0,
        "scans": args.scans,
        "warmup": WARMUP,
        "repeat": args.repeat,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "numpy": np.__version__,
        },
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scan.json").write_text(json.dumps(report, indent=2) + "\n")
    show(console, results)


def show(console: Console, results: list[dict[str, Any]]) -> None:
    table = Table(title="scanner: one scan (median of timed scans, best round)")
    columns = ("tokens", "rules", "median ms", "best ms", "eval ms", "quiet ms",
               "first scan ms", "alerts/scan", "µs/alert", "steps", "checked")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            f"{r['tokens']:,}",
            f"{r['rules']}",
            f"{r['median_ms']:.2f}",
            f"{r['best_ms']:.2f}",
            f"{r['eval_median_ms']:.2f}",
            f"{r['quiet_median_ms']:.2f}",
            f"{r['first_scan_ms']:.1f}",
            f"{r['alerts_per_scan_median']:.0f}",
            f"{r['us_per_alert']:.1f}" if r["us_per_alert"] else "-",
            f"{r['steps']}",
            f"{r['checked_tokens']} ok",
        )
    console.print(table)
    console.print(f"results: {RESULTS / 'scan.json'}")


if __name__ == "__main__":
    main()
