"""``tradepulse replay``: a trade file through the engine on the event clock (windows,
bars, indicators, dry runs of alert rules)."""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.table import Table

from tradepulse.adapters.clock import wall_now_ms
from tradepulse.adapters.files import open_input
from tradepulse.cli_common import (
    WindowsOpt,
    duration_opt,
    err,
    open_output,
    progress_bar,
    settings_or_exit,
    windows_opt,
)
from tradepulse.core.errors import InvalidTradeError, TradepulseError
from tradepulse.core.market import Market
from tradepulse.core.rules import Rule, RuleError
from tradepulse.core.windows import WindowSpec
from tradepulse.service.columnar import replay_columnar
from tradepulse.service.dryrun import DryRun, load_rules, reads_bars
from tradepulse.service.replay import BarWriter, ReplaySummary, replay
from tradepulse.service.sharded import replay_sharded


def tune_gc_for_throughput() -> None:
    """Move start-up objects out of the collector's sight and collect young objects
    less often: batch work allocates many short-lived containers."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def replay_cmd(
    file: Annotated[
        str, typer.Argument(help="JSON Lines file of wire-format trades, or - for stdin.")
    ],
    snapshot_every: Annotated[
        str | None,
        typer.Option(
            "--snapshot-every",
            help="Also write every window of each active token at every multiple of this "
            "duration (e.g. 10s, 1min), epoch-aligned.",
        ),
    ] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Output file (- for stdout).")] = "-",
    windows: WindowsOpt = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Do not report each rejected line.")
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            "-j",
            min=0,
            help="Shard the tokens over this many processes (each reads the whole file); "
            "0 = one per CPU core for files of 16 MiB or more, else 1. Same output. With the "
            "columnar engine: the processes that decode the file (0 = 1).",
        ),
    ] = 0,
    bars_out: Annotated[
        str | None,
        typer.Option(
            "--bars-out",
            metavar="FILE",
            help="Also write each final 1-minute bar as a JSON line (every field: token, "
            "open_ms, open, high, low, close, volume, volume_usd, buy_volume_usd, "
            "sell_volume_usd, trades, vwap, revision); a late trade that corrects a final bar "
            "adds a line with a higher revision. One process only.",
        ),
    ] = None,
    indicators_out: Annotated[
        str | None,
        typer.Option(
            "--indicators-out",
            metavar="FILE",
            help="Also write, for each final bar, a JSON line with token, open_ms and every "
            "indicator (rsi_14, ema_*, sma_*, vwap_*, avg_volume_*, rel_volume, "
            "price_change_*) right after that bar. One process only.",
        ),
    ] = None,
    rules: Annotated[
        str | None,
        typer.Option(
            "--rules",
            metavar="RULES.json",
            help="Dry run of alert rules (one rule object or a JSON array of them, each "
            "identified by its name): scan at every multiple of --scan-interval and write "
            "the alerts the rules would have sent to --alerts-out. One process only.",
        ),
    ] = None,
    alerts_out: Annotated[
        str | None,
        typer.Option(
            "--alerts-out",
            metavar="FILE",
            help="With --rules (required): one JSON line per alert (- for stdout).",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="auto, object or columnar. columnar computes the window statistics from "
            "NumPy columns of the whole file, decoded by one process or by --processes N "
            "(same output; not with bars, indicators or rules); auto uses it for a final "
            "snapshot only (no --snapshot-every) of a file of at most 1 GiB.",
        ),
    ] = "auto",
    scan_interval: Annotated[
        str | None,
        typer.Option(
            "--scan-interval",
            help="With --rules: scan at every multiple of this duration, epoch-aligned, "
            "on the event clock (default 1s).",
        ),
    ] = None,
) -> None:
    """Replay a trade file on the event clock and write window statistics as JSON lines.

    With --bars-out / --indicators-out it also makes the 1-minute bars and indicators as
    the worker does: a bar is final, and written, at the first evaluation (each snapshot,
    each scan, and the end) at least TRADEPULSE_BAR_GRACE after its minute ends. Bars still
    forming at the end of the file are not written. --out /dev/null drops the window
    statistics.

    With --rules the scanner runs at every multiple M of --scan-interval, taken like the
    snapshots when the first trade later than M is read (before it is applied), over every
    token seen so far (as the worker scans every token it holds); a summary of the alerts
    per rule goes to standard error.
    """
    settings = settings_or_exit()
    specs = windows_opt(windows, settings)
    every_ms = duration_opt(snapshot_every, "--snapshot-every")
    _check_rule_options(rules, alerts_out, scan_interval)
    scan_ms = duration_opt(scan_interval or "1s", "--scan-interval") or 1_000
    want_bars = bars_out is not None or indicators_out is not None
    if want_bars or rules is not None:
        _check_bar_outputs(out, bars_out, indicators_out, processes, alerts_out)
    rule_set = _load_rules(rules, specs) if rules is not None else None
    shards = 1 if want_bars or rule_set is not None else _shards(processes, file)
    columnar = _use_columnar(engine, file, every_ms, extras=want_bars or rules is not None)
    tune_gc_for_throughput()
    started = time.perf_counter()
    market = Market(specs)  # lives until the process exits (see _fast_exit)

    def on_reject(line_no: int, exc: InvalidTradeError) -> None:
        if not quiet:
            err.print(f"line {line_no}: rejected ({exc.reason}): {exc.detail}", markup=False)

    try:
        with (
            open_input(file) as (stream, size),
            open_output(out) as sink,
            _bar_writer(bars_out, indicators_out, specs, settings.bar_grace_ms,
                        always=rule_set is not None and reads_bars(rule_set)) as bars,
            _maybe_output(alerts_out) as alerts_sink,
        ):  # fmt: skip
            dry_run = None
            if rule_set is not None and alerts_sink is not None:
                dry_run = DryRun(rule_set, alerts_sink)
            progress = progress_bar(size)
            with progress or nullcontext():
                task = progress.add_task("replay", total=size) if progress else None
                if columnar:
                    summary = replay_columnar(
                        stream,
                        specs,
                        sink,
                        now_ms=wall_now_ms(),
                        snapshot_every_ms=every_ms,
                        max_future_skew_ms=settings.max_future_skew_ms,
                        on_reject=on_reject,
                        on_progress=(lambda _n: progress.update(task, completed=stream.tell()))
                        if progress and task is not None
                        else None,
                        path=None if file == "-" else file,
                        processes=max(processes, 1),  # decoders: one unless -j says more
                    )
                elif shards > 1:
                    summary = replay_sharded(
                        file,
                        specs,
                        sink,
                        processes=shards,
                        now_ms=wall_now_ms(),
                        snapshot_every_ms=every_ms,
                        max_future_skew_ms=settings.max_future_skew_ms,
                        on_reject=on_reject,
                        on_progress=(lambda pos: progress.update(task, completed=pos))
                        if progress and task is not None
                        else None,
                    )
                else:
                    summary = replay(
                        stream,
                        market,
                        sink,
                        now_ms=wall_now_ms(),
                        snapshot_every_ms=every_ms,
                        max_future_skew_ms=settings.max_future_skew_ms,
                        on_reject=on_reject,
                        on_progress=(lambda _n: progress.update(task, completed=stream.tell()))
                        if progress and task is not None
                        else None,
                        bars=bars,
                        dry_run=dry_run,
                        scan_every_ms=scan_ms,
                    )
    except TradepulseError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    _print_summary(summary, time.perf_counter() - started, bars=want_bars)
    if rule_set is not None:
        _print_alerts(summary.alerts)
    _fast_exit()


_ENGINES = ("auto", "object", "columnar")


_COLUMNAR_AUTO_MAX_BYTES = 1 << 30  # the columnar engine holds the whole file as columns


def _use_columnar(engine: str, file: str, every_ms: int | None, *, extras: bool) -> bool:
    """Whether the replay runs on the columnar engine (see ``--engine``)."""
    if engine not in _ENGINES:
        raise typer.BadParameter(f"expected one of {', '.join(_ENGINES)}", param_hint="--engine")
    if engine == "auto":
        return not extras and every_ms is None and _file_size(file) <= _COLUMNAR_AUTO_MAX_BYTES
    if engine == "columnar" and extras:
        raise typer.BadParameter(
            "the columnar engine writes window statistics only: use --engine object with "
            "--bars-out, --indicators-out or --rules",
            param_hint="--engine",
        )
    return engine == "columnar"


def _check_rule_options(rules: str | None, alerts_out: str | None, scan: str | None) -> None:
    """--alerts-out and --scan-interval go with --rules, which needs --alerts-out."""
    if rules is None:
        for option, value in (("--alerts-out", alerts_out), ("--scan-interval", scan)):
            if value is not None:
                raise typer.BadParameter("only with --rules", param_hint=option)
    elif alerts_out is None:
        raise typer.BadParameter(
            "--rules needs --alerts-out FILE (/dev/null for the summary only)",
            param_hint="--alerts-out",
        )


def _load_rules(path: str, specs: tuple[WindowSpec, ...]) -> list[Rule]:
    """The rules of the --rules file; exit 2 listing every error with its path."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        err.print(f"[red]error:[/] cannot read {path}: {exc.strerror or exc}")
        raise typer.Exit(2) from exc
    try:
        return load_rules(data, [spec.name for spec in specs])
    except RuleError as exc:
        err.print(f"[red]error:[/] invalid rules in {path}:")
        for problem in exc.errors:
            err.print(f"  {problem}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def _print_alerts(counts: dict[str, int]) -> None:
    """One line: the alerts in total, then per rule (by id, which is the name), in order."""
    per_rule = ", ".join(f"{json.dumps(name, ensure_ascii=False)}: {n:,}"
                         for name, n in counts.items())  # fmt: skip
    err.print(f"alerts: {sum(counts.values()):,} ({per_rule})", markup=False, soft_wrap=True)


def _check_bar_outputs(
    out: str,
    bars_out: str | None,
    indicators_out: str | None,
    processes: int,
    alerts_out: str | None = None,
) -> None:
    """Bars and rules need one process (the shards' bar lines and scans are not merged),
    and each output its own file (``os.devnull`` excepted)."""
    if processes > 1:
        needs = ("--bars-out and --indicators-out need" if alerts_out is None
                 else "--rules needs")  # fmt: skip
        raise typer.BadParameter(f"{needs} one process: use -j 1", param_hint="--processes")
    seen: dict[str, str] = {}
    for option, path in (("--out", out), ("--bars-out", bars_out),
                         ("--indicators-out", indicators_out),
                         ("--alerts-out", alerts_out)):  # fmt: skip
        if path is None or path == os.devnull:
            continue
        key = path if path == "-" else str(Path(path).resolve())
        if key in seen:
            where = "standard output" if path == "-" else path
            raise typer.BadParameter(f"{where} is also the {seen[key]} file", param_hint=option)
        seen[key] = option


@contextmanager
def _bar_writer(
    bars_out: str | None, indicators_out: str | None, specs: tuple[WindowSpec, ...],
    grace_ms: int, *, always: bool = False,
) -> Iterator[BarWriter | None]:  # fmt: skip
    """The bars and indicators outputs of a replay, opened (None when neither is asked,
    unless ``always``: rules read the bars)."""
    if bars_out is None and indicators_out is None and not always:
        yield None
        return
    with _maybe_output(bars_out) as bars, _maybe_output(indicators_out) as indicators:
        yield BarWriter(bars, indicators, longest_ms=specs[-1].duration_ms, grace_ms=grace_ms)


def _maybe_output(path: str | None) -> AbstractContextManager[BinaryIO | None]:
    return open_output(path) if path is not None else nullcontext()


def _fast_exit() -> None:
    """Exit without tearing down every object one by one (a replay can hold millions;
    freeing them takes longer than the OS reclaiming the memory). Output is flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


_AUTO_SHARD_BYTES = 16 << 20


def _file_size(file: str) -> float:
    """The size of ``file`` in bytes; infinite for standard input (or unknown)."""
    if file == "-":
        return math.inf
    try:
        return Path(file).stat().st_size
    except OSError:
        return math.inf  # reported when the file is opened


def _shards(processes: int, file: str) -> int:
    """How many processes a replay uses (see ``--processes``)."""
    if file == "-":
        if processes > 1:
            raise typer.BadParameter(
                "standard input can be read only once: use a file", param_hint="--processes"
            )
        return 1
    if processes:
        return processes
    try:
        big = Path(file).stat().st_size >= _AUTO_SHARD_BYTES
    except OSError:
        return 1  # reported when the file is opened
    return max(1, os.cpu_count() or 1) if big else 1


def _print_summary(summary: ReplaySummary, elapsed_s: float, *, bars: bool = False) -> None:
    table = Table(title="replay summary", show_header=False, box=None)
    rate = summary.read / elapsed_s if elapsed_s > 0 else 0.0
    table.add_row("lines read", f"{summary.read:,}")
    table.add_row("applied", f"{summary.applied:,}")
    table.add_row("rejected", f"{summary.rejected_total:,}")
    for reason, count in sorted(summary.rejected.items()):
        table.add_row(f"  {reason}", f"{count:,}")
    table.add_row("duplicates", f"{summary.duplicates:,}")
    table.add_row("late", f"{summary.late:,}")
    table.add_row("snapshot lines", f"{summary.snapshot_lines:,}")
    if bars:
        table.add_row("final bars", f"{summary.bar_lines:,}")
    table.add_row("elapsed", f"{elapsed_s:.2f} s ({rate:,.0f} lines/s)")
    err.print(table)
