"""The cost of 1-minute bars and indicators on top of the window engine; writes
bench/results/bars.json.

    python bench/bars.py [--trades N] [--every E] [--repeat K]

The trades: N (default 1,000,000) synthetic trades over 2 hours, 2,000 Zipf tokens (the file of
``bench/run.py``), decoded before the clock starts. Variants, each in a fresh process, on the
same file, interleaved (``engine``, ``engine-bars``, ``engine-bars-values``, then again) K times
(default 2); the best run of each is reported:

* ``engine``: windows only, the ``engine`` case of ``bench/cases.py`` (every touched token's
  statistics every E trades, default 1,000, then a final snapshot);
* ``engine-bars``: the same plus bars and indicators as the worker keeps them
  (``TokenBars.add`` per applied trade; ``advance``, ``forming``, ``confirm`` at each write);
* ``engine-bars-values``: also the indicator values and the bar state the worker reads when
  final bars came out.

Each bar variant checks its bars against a recount from the trades (``bench/barcase.py``), the
``engine`` variant its windows against NumPy; a failed check fails the benchmark. Ratios
between variants of one run are what to compare (machine noise is about ±15 %).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from run import make_file

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
VARIANTS = ("engine", "engine-bars", "engine-bars-values")


def run_case(name: str, path: Path, every: int) -> dict[str, object]:
    """One variant in a fresh process; its check's failure ends the benchmark."""
    proc = subprocess.run([sys.executable, str(HERE / "cases.py"), name, str(path), str(every)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"case {name} failed (exit {proc.returncode}):\n{proc.stderr}")
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def best(runs: list[dict[str, object]]) -> dict[str, object]:
    top = dict(min(runs, key=lambda r: float(r["seconds"])))  # type: ignore[arg-type]
    n, s = int(top["trades"]), float(top["seconds"])  # type: ignore[call-overload, arg-type]
    top["trades_per_s"] = n / s
    top["us_per_trade"] = s / n * 1e6
    top["all_seconds"] = [r["seconds"] for r in runs]
    return top


def compare(results: dict[str, dict[str, object]]) -> dict[str, float]:
    """Rate of each bar variant / rate of ``engine``, and the µs per trade it adds."""
    base_rate, base_us = (float(results["engine"][k]) for k in ("trades_per_s", "us_per_trade"))  # type: ignore[arg-type]
    out = {}
    for name in VARIANTS[1:]:
        if name in results:
            out[f"{name}_vs_engine"] = float(results[name]["trades_per_s"]) / base_rate  # type: ignore[arg-type]
            out[f"{name}_added_us_per_trade"] = float(results[name]["us_per_trade"]) - base_us  # type: ignore[arg-type]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=1_000, help="trades between snapshots")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    variants = args.variants.split(",")
    if "engine" not in variants or not set(variants) <= set(VARIANTS):
        parser.error(f"--variants: a subset of {','.join(VARIANTS)} with engine")
    console = Console()
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trades.jsonl"
        with console.status(f"writing {args.trades:,} synthetic trades"):
            make_file(path, args.trades)
        for round_ in range(1, args.repeat + 1):
            for name in variants:
                with console.status(f"round {round_}/{args.repeat}: {name}"):
                    runs[name].append(run_case(name, path, args.every))
    results = {name: best(r) for name, r in runs.items()}
    report = {
        "benchmark": "bars",
        "trades": args.trades,
        "snapshot_every": args.every,
        "repeat": args.repeat,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "results": results,
        **compare(results),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bars.json").write_text(json.dumps(report, indent=2) + "\n")
    show(console, report, results)


def show(
    console: Console, report: dict[str, object], results: dict[str, dict[str, object]]
) -> None:
    table = Table(title=f"bars and indicators, {report['trades']:,} trades, snapshot every "
                        f"{report['snapshot_every']:,} (best of {report['repeat']})")  # fmt: skip
    for col in ("variant", "trades/s", "µs/trade", "× engine", "final bars", "RSS MiB"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        ratio = report.get(f"{name}_vs_engine", 1.0)
        bars = r.get("final_bars", "")
        table.add_row(name, f"{r['trades_per_s']:,.0f}", f"{r['us_per_trade']:.2f}",
                      f"{ratio:.2f}", f"{bars}", f"{r['peak_rss_mb']:,.0f}")  # fmt: skip
    console.print(table)
    console.print(f"results: {RESULTS / 'bars.json'}")


if __name__ == "__main__":
    main()
