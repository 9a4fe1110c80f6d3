"""The ``tradepulse`` command line (typer). The only place that configures logging."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Annotated

import typer

from tradepulse import __version__, tracing
from tradepulse.adapters.clock import wall_now_ms
from tradepulse.adapters.files import open_input
from tradepulse.api_cli import api_cmd
from tradepulse.auth_cli import auth_app
from tradepulse.cli_common import (
    duration_opt,
    err,
    open_output,
    progress_bar,
    settings_or_exit,
)
from tradepulse.core.errors import TradepulseError
from tradepulse.demo_cli import demo_cmd
from tradepulse.history_cli import candles_cmd, db_app, persist_cmd
from tradepulse.rebuild_cli import rebuild_cmd
from tradepulse.replay_cli import replay_cmd
from tradepulse.rules_cli import rules_app

app = typer.Typer(
    name="tradepulse",
    help="Real-time trade analytics: exact sliding-window statistics for fast-moving tokens.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("replay")(replay_cmd)  # first in --help (tradepulse.replay_cli)
app.command("demo")(demo_cmd)  # the dashboard demo, or --terminal (tradepulse.demo_cli)


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

    span_ms = duration_opt(span, "--span")
    assert span_ms is not None
    market = SyntheticMarket(seed=seed, tokens=tokens, wallets=wallets, start_ms=start_ms,
                             rate_per_s=count / (span_ms / 1000))  # fmt: skip
    progress = progress_bar(count, in_bytes=False)
    with open_output(out) as sink, progress or nullcontext():
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
    settings = settings_or_exit()
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
            progress = progress_bar(total, in_bytes=stream is not None)
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
    from tradepulse.wiring import configure_logging, run_worker, tune_gc

    settings = settings_or_exit()
    configure_logging(settings)
    tracing.configure(settings, "worker")  # each process of a group has its own exporter
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if processes > 1 and child is None:
            supervisor.run_group(processes, settings, stop, persist=persist)
            return
        tune_gc()  # this process runs the batch loop (not a supervisor)
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
    finally:
        tracing.uninstall()  # exports the spans still buffered
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
app.command("api")(api_cmd)  # REST API and operations endpoints (tradepulse.api_cli)
app.command("rebuild")(rebuild_cmd)  # Redis state from Kafka (tradepulse.rebuild_cli)
app.add_typer(auth_app, name="auth")  # bearer tokens of the API (tradepulse.auth_cli)


def main() -> None:
    """Console-script entry point."""
    app()
