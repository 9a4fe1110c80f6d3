"""The ``tradepulse`` command line (typer). The only place that configures logging."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TimeElapsedColumn,
)
from rich.table import Table

from tradepulse import __version__
from tradepulse.adapters.clock import wall_now_ms
from tradepulse.adapters.files import open_input
from tradepulse.config import Settings, load_settings
from tradepulse.core.errors import InvalidTradeError, TradepulseError
from tradepulse.core.market import Market
from tradepulse.core.rules import Rule, RuleError
from tradepulse.core.windows import WindowSpec, parse_duration_ms, parse_windows
from tradepulse.history_cli import candles_cmd, db_app, persist_cmd
from tradepulse.rules_cli import rules_app
from tradepulse.service.dryrun import DryRun, load_rules, reads_bars
from tradepulse.service.replay import BarWriter, ReplaySummary, replay
from tradepulse.service.sharded import replay_sharded

app = typer.Typer(
    name="tradepulse",
    help="Real-time trade analytics: exact sliding-window statistics for fast-moving tokens.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)

WindowsOpt = Annotated[
    str | None,
    typer.Option(
        "--windows",
        help="Comma-separated windows, e.g. 1min,5min,1hour (default: TRADEPULSE_WINDOWS "
        "or 1min,5min,15min,30min,1hour).",
    ),
]


def _settings() -> Settings:
    try:
        return load_settings()
    except TradepulseError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc


def _windows(text: str | None, settings: Settings) -> tuple[WindowSpec, ...]:
    if text is None:
        return settings.windows
    try:
        return parse_windows(text)
    except TradepulseError as exc:
        raise typer.BadParameter(str(exc), param_hint="--windows") from exc


def _duration(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_duration_ms(text)
    except TradepulseError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc


def tune_gc_for_throughput() -> None:
    """Move start-up objects out of the collector's sight and collect young objects
    less often: batch work allocates many short-lived containers."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


@contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdout.buffer
        return
    try:
        stream = Path(path).open("wb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        err.print(f"[red]error:[/] cannot write {path}: {exc.strerror or exc}")
        raise typer.Exit(2) from exc
    with stream:
        yield stream


@app.command("replay")
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
            "0 = one per CPU core for files of 16 MiB or more, else 1. Same output.",
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
    settings = _settings()
    specs = _windows(windows, settings)
    every_ms = _duration(snapshot_every, "--snapshot-every")
    _check_rule_options(rules, alerts_out, scan_interval)
    scan_ms = _duration(scan_interval or "1s", "--scan-interval") or 1_000
    want_bars = bars_out is not None or indicators_out is not None
    if want_bars or rules is not None:
        _check_bar_outputs(out, bars_out, indicators_out, processes, alerts_out)
    rule_set = _load_rules(rules, specs) if rules is not None else None
    shards = 1 if want_bars or rule_set is not None else _shards(processes, file)
    tune_gc_for_throughput()
    started = time.perf_counter()
    market = Market(specs)  # lives until the process exits (see _fast_exit)

    def on_reject(line_no: int, exc: InvalidTradeError) -> None:
        if not quiet:
            err.print(f"line {line_no}: rejected ({exc.reason}): {exc.detail}", markup=False)

    try:
        with (
            open_input(file) as (stream, size),
            _output(out) as sink,
            _bar_writer(bars_out, indicators_out, specs, settings.bar_grace_ms,
                        always=rule_set is not None and reads_bars(rule_set)) as bars,
            _maybe_output(alerts_out) as alerts_sink,
        ):  # fmt: skip
            dry_run = None
            if rule_set is not None and alerts_sink is not None:
                dry_run = DryRun(rule_set, alerts_sink)
            progress = _progress(size)
            with progress or nullcontext():
                task = progress.add_task("replay", total=size) if progress else None
                if shards > 1:
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
    return _output(path) if path is not None else nullcontext()


def _fast_exit() -> None:
    """Exit without tearing down every object one by one (a replay can hold millions;
    freeing them takes longer than the OS reclaiming the memory). Output is flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


_AUTO_SHARD_BYTES = 16 << 20


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


def _progress(size: int | None, *, in_bytes: bool = True) -> Progress | None:
    """A progress bar on stderr when it is a terminal (``size`` in bytes, or a count)."""
    if not err.is_terminal:
        return None
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        (DownloadColumn() if in_bytes else MofNCompleteColumn()) if size else "",
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


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


@app.command("demo")
def demo_cmd(
    replay_file: Annotated[
        Path | None,
        typer.Option(
            "--replay",
            help="Replay this JSON Lines trade file instead of the "
            "synthetic market, paced in real time.",
        ),
    ] = None,
    speed: Annotated[
        float, typer.Option("--speed", min=0.001, help="Replay speed-up factor (with --replay).")
    ] = 1.0,
    tokens: Annotated[int, typer.Option("--tokens", min=1, help="Synthetic tokens.")] = 200,
    rate: Annotated[
        float, typer.Option("--rate", min=0.001, help="Synthetic trades per second (mean).")
    ] = 200.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic market.")] = 0,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows in the table.")] = 15,
    duration: Annotated[
        float | None, typer.Option("--duration", min=0.1, help="Stop after this many seconds.")
    ] = None,
    backfill: Annotated[
        float,
        typer.Option("--backfill", min=0, help="Seconds of synthetic history to start with."),
    ] = 600.0,
    windows: WindowsOpt = None,
) -> None:
    """A live market through the engine on the wall clock, shown as a terminal table.

    Ctrl-C exits.
    """
    from tradepulse.terminal import run_terminal_demo

    specs = _windows(windows, _settings())
    try:
        run_terminal_demo(specs=specs, replay=replay_file, speed=speed, seed=seed,
                          tokens=tokens, rate_per_s=rate, top=top, duration_s=duration,
                          backfill_s=backfill)  # fmt: skip
    except TradepulseError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


@app.command("synth")
def synth_cmd(
    count: Annotated[int, typer.Argument(min=1, help="How many trades to write.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output file (- for stdout).")] = "-",
    tokens: Annotated[int, typer.Option("--tokens", min=1, help="Number of tokens.")] = 2_000,
    wallets: Annotated[int, typer.Option("--wallets", min=1, help="Number of wallets.")] = 50_000,
    span: Annotated[
        str, typer.Option("--span", help="Event time the trades cover, e.g. 2hour.")
    ] = "2hour",
    start_ms: Annotated[
        int, typer.Option("--start-ms", help="Epoch ms of the first trade.")
    ] = 1_735_689_600_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed (same seed, same trades).")] = 0,
) -> None:
    """Write synthetic trades in the wire format (JSON Lines): Zipf token popularity, bursts,
    random-walk prices, recurring wallets."""
    from tradepulse.adapters.synthetic import SyntheticMarket
    from tradepulse.adapters.wire import encode_trade

    span_ms = _duration(span, "--span")
    assert span_ms is not None
    market = SyntheticMarket(seed=seed, tokens=tokens, wallets=wallets, start_ms=start_ms,
                             rate_per_s=count / (span_ms / 1000))  # fmt: skip
    progress = _progress(count, in_bytes=False)
    with _output(out) as sink, progress or nullcontext():
        task = progress.add_task("synth", total=count) if progress else None
        for i, trade in enumerate(market.generate(count), start=1):
            sink.write(encode_trade(trade) + b"\n")
            if progress and task is not None and not i % 65_536:
                progress.update(task, completed=i)
    err.print(f"wrote {count:,} trades")


@app.command("produce")
def produce_cmd(
    file: Annotated[
        str | None,
        typer.Argument(help="JSON Lines file of wire-format trades (- for stdin), sent as is."),
    ] = None,
    synthetic: Annotated[
        int | None, typer.Option("--synthetic", min=1, help="Send N synthetic trades instead.")
    ] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", help="Topic (default: TRADEPULSE_KAFKA_TOPIC).")
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option("--bootstrap", help="Brokers (default: TRADEPULSE_KAFKA_BOOTSTRAP)."),
    ] = None,
    partitions: Annotated[
        int, typer.Option("--partitions", min=1, help="Partitions if the topic is created.")
    ] = 4,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.001, help="At most this many per second.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic market.")] = 0,
    event_rate: Annotated[float, typer.Option("--event-rate", min=0.001,
        help="Synthetic trades per second of trade time (the stream ends about now).")] = 10_000,
) -> None:  # fmt: skip
    """Publish trades to the trade topic, keyed by token; creates the topic if missing."""
    from tradepulse.adapters.kafka import TradeProducer, ensure_topic
    from tradepulse.service.produce import keyed_lines, publish

    if (file is None) == (synthetic is None):
        raise typer.BadParameter("give a FILE or --synthetic N (one of them)")
    settings = _settings()
    topic = topic or settings.kafka_topic
    servers = bootstrap or settings.kafka_bootstrap
    try:
        if ensure_topic(servers, topic, partitions):
            err.print(f"created topic {topic} with {partitions} partitions")
        producer = TradeProducer(servers, topic)
        with open_input(file) if file else nullcontext((None, None)) as (stream, size):
            messages = (
                keyed_lines(stream) if stream else _synthetic_messages(synthetic, seed, event_rate)
            )
            total = size if stream else synthetic
            progress = _progress(total, in_bytes=stream is not None)
            with progress or nullcontext():
                task = progress.add_task("produce", total=total) if progress else None

                def advance(n: int) -> None:
                    if progress and task is not None:
                        progress.update(task, completed=stream.tell() if stream else n)

                sent = publish(producer, messages, rate_per_s=rate, on_progress=advance)
        undelivered = producer.flush()
    except TradepulseError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    err.print(f"sent {sent:,} messages to {topic}: {producer.delivered:,} delivered, "
              f"{producer.failed + undelivered:,} failed")  # fmt: skip
    if producer.failed or undelivered:
        raise typer.Exit(1)


def _synthetic_messages(
    count: int | None, seed: int, rate_per_s: float
) -> Iterator[tuple[str | None, bytes]]:
    """``count`` synthetic trades at ``rate_per_s`` of event time, ending about now (none
    in the future, so no consumer rejects them as such)."""
    from tradepulse.adapters.synthetic import SyntheticMarket
    from tradepulse.adapters.wire import encode_trade

    def market_from(start_ms: int) -> SyntheticMarket:
        return SyntheticMarket(seed=seed, tokens=2_000, wallets=50_000, start_ms=start_ms,
                               rate_per_s=rate_per_s)  # fmt: skip

    # The last trade is one second before now (a trade in the future would be refused).
    start_ms = wall_now_ms() - market_from(0).span_ms(count or 0) - 1_000
    for trade in market_from(start_ms).generate(count or 0):
        yield trade.token, encode_trade(trade)


@app.command("worker")
def worker_cmd(
    processes: Annotated[int, typer.Option("--processes", "-p", min=1, max=64,
        help="Worker processes in the consumer group (restarted when they die); one "
             "operations port (TRADEPULSE_HTTP_PORT) serves them all.")] = 1,
    persist: Annotated[bool, typer.Option("--persist",
        help="Also store final bars in PostgreSQL (TRADEPULSE_PG_DSN), as `tradepulse "
             "persist` does, in this process.")] = False,
    child: Annotated[str | None, typer.Option("--child", hidden=True)] = None,
) -> None:  # fmt: skip
    """Consume trades from Kafka into exact windows mirrored in Redis (configured by the
    TRADEPULSE_* environment, see .env.example), with health, metrics and performance
    endpoints on TRADEPULSE_HTTP_PORT. SIGTERM or Ctrl-C: finish the batch, write, commit,
    exit."""
    import signal
    import threading

    from tradepulse import supervisor
    from tradepulse.wiring import configure_logging, run_worker

    settings = _settings()
    configure_logging(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if processes > 1 and child is None:
            supervisor.run_group(processes, settings, stop, persist=persist)
            return
        if child is not None:
            supervisor.watch_parent(stop)
            port_file = supervisor.child_port_file(child)
            worker = run_worker(settings, stop, "127.0.0.1", 0, port_file)
        else:
            worker = run_worker(settings, stop, settings.http_host, settings.http_port,
                                persist=persist)  # fmt: skip
    except TradepulseError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    except OSError as exc:  # the operations port is taken, say
        err.print(f"[red]error:[/] {exc} (TRADEPULSE_HTTP_HOST/TRADEPULSE_HTTP_PORT)")
        raise typer.Exit(2) from exc
    pipeline = worker.pipeline
    err.print(f"worker stopped: {pipeline.market.applied:,} trades applied, "
              f"{sum(pipeline.rejected.values()):,} rejected")  # fmt: skip


@app.command("version")
def version_cmd() -> None:
    """Print the version."""
    typer.echo(__version__)


app.add_typer(db_app, name="db")  # the PostgreSQL history (tradepulse.history_cli)
app.command("candles")(candles_cmd)
app.command("persist")(persist_cmd)
app.add_typer(rules_app, name="rules")  # alert rules in the rule store (tradepulse.rules_cli)


def main() -> None:
    """Console-script entry point."""
    app()
