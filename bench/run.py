"""Benchmarks of the window engine and ``tradepulse replay``; writes bench/results/*.json.

    python bench/run.py [--trades N] [--repeat K]

The trades: N (default 1,000,000) synthetic trades over 2 hours of event time, 2,000
tokens with Zipf popularity, written once as JSON Lines. Cases, each in a fresh process:

* ``engine``: the engine alone, 5 windows, every touched token evaluated every 1,000 trades
* ``engine-final``: the engine alone, final snapshot only
* ``replay``: ``tradepulse replay FILE --out /dev/null -j 1 --engine object`` (final
  snapshot only, one ``Trade`` object per line)
* ``replay-columnar``: ``tradepulse replay FILE --out /dev/null --engine columnar -j 1``
* ``replay-columnar-2``: the same with ``-j 2`` (the file decoded by two processes)
* ``replay-auto``: ``tradepulse replay FILE --out /dev/null``, the default options (for a
  final snapshot only: the columnar engine, one process)
* ``naive``: a naive prototype of the replay on the same file (the yardstick)

Every case is repeated K times (default 3) and the best run is reported; the ratios
between cases measured in one run are what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tradepulse.adapters.synthetic import SyntheticMarket, write_jsonl

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
TWO_HOURS_S = 7_200


def make_file(path: Path, n: int) -> None:
    market = SyntheticMarket(seed=42, tokens=2_000, wallets=50_000, start_ms=START_MS,
                             rate_per_s=n / TWO_HOURS_S)  # fmt: skip
    write_jsonl(market.generate(n), path)


def case(name: str, path: Path) -> dict[str, object]:
    if name in _REPLAY_OPTIONS:
        exe = Path(sys.executable).with_name("tradepulse")
        jobs = _REPLAY_OPTIONS[name]
        started = time.perf_counter()
        proc = subprocess.Popen([str(exe), "replay", str(path), "--out", os.devnull, *jobs],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        err = proc.stderr.read().decode() if proc.stderr else ""
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"replay failed:\n{err}")
        applied, lines = _count(err, "applied"), _count(err, "lines read")
        assert applied == lines, f"replay applied {applied} of {lines} trades"
        return {"trades": lines, "seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024,
                "note": "wall time of the whole command, start-up included; peak RSS of "
                        "the largest process"}  # fmt: skip
    out = subprocess.run([sys.executable, str(HERE / "cases.py"), name, str(path)],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return dict(json.loads(out))


_REPLAY_OPTIONS = {
    "replay": ["-j", "1", "--engine", "object"],
    "replay-columnar": ["--engine", "columnar", "-j", "1"],
    "replay-columnar-2": ["--engine", "columnar", "-j", "2"],
    "replay-auto": [],
}


def _count(summary: str, label: str) -> int:
    """A number from the replay summary printed on stderr."""
    match = re.search(label + r"\s+([\d,]+)", summary)
    if match is None:
        raise SystemExit(f"no {label!r} in the replay summary:\n{summary}")
    return int(match.group(1).replace(",", ""))


def best_of(name: str, path: Path, repeat: int) -> dict[str, object]:
    runs = [case(name, path) for _ in range(repeat)]
    best = min(runs, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]
    n, s = int(best["trades"]), float(best["seconds"])  # type: ignore[call-overload, arg-type]
    best["trades_per_s"] = n / s
    best["us_per_trade"] = s / n * 1e6
    best["all_seconds"] = [r["seconds"] for r in runs]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--cases",
        default="engine,engine-final,replay,replay-columnar,replay-columnar-2,replay-auto,naive",
    )
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trades.jsonl"
        with console.status(f"writing {args.trades:,} synthetic trades"):
            make_file(path, args.trades)
        results = {}
        for name in args.cases.split(","):
            with console.status(f"running {name} ({args.repeat}x)"):
                results[name] = best_of(name, path, args.repeat)
    report = {
        "benchmark": "window_engine",
        "trades": args.trades,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    for name in _REPLAY_OPTIONS:
        if name in results and "naive" in results:
            rate = float(results[name]["trades_per_s"])  # type: ignore[arg-type]
            naive = float(results["naive"]["trades_per_s"])  # type: ignore[arg-type]
            report[f"{name}_vs_naive"] = rate / naive
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "window_engine.json").write_text(json.dumps(report, indent=2) + "\n")
    table = Table(title=f"window engine, {args.trades:,} trades (best of {args.repeat})")
    for col in ("case", "trades/s", "µs/trade", "peak RSS MiB"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        table.add_row(name, f"{r['trades_per_s']:,.0f}", f"{r['us_per_trade']:.2f}",
                      f"{r['peak_rss_mb']:,.0f}")  # fmt: skip
    console.print(table)
    for name in _REPLAY_OPTIONS:
        if f"{name}_vs_naive" in report:
            console.print(f"{name} / naive prototype: {report[f'{name}_vs_naive']:.2f}x")
    console.print(f"results: {RESULTS / 'window_engine.json'}")


if __name__ == "__main__":
    main()
