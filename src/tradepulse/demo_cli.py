"""``tradepulse demo``: the dashboard demo (``demo.py``) served by uvicorn, or the terminal
table (``--terminal``, ``terminal.py``). Registered by ``cli.py``."""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tradepulse.cli_common import WindowsOpt, err, settings_or_exit, windows_opt
from tradepulse.config import Settings
from tradepulse.core.errors import TradepulseError
from tradepulse.core.windows import WindowSpec

if TYPE_CHECKING:
    from tradepulse.demo import DemoOptions

log = logging.getLogger(__name__)


def serve_demo(settings: Settings, options: DemoOptions, host: str, port: int,
               duration_s: float | None = None) -> None:  # fmt: skip
    """Build the demo, print its address and sign-in token, serve until SIGINT/SIGTERM
    (or ``duration_s``), then stop the engine thread."""
    import uvicorn

    from tradepulse.api_cli import _bind
    from tradepulse.demo import build_demo

    started = time.monotonic()
    with ExitStack() as stack:
        demo = build_demo(settings, options, stack)
        sock = stack.enter_context(_bind(host, port))
        bound_port = sock.getsockname()[1]
        stop = threading.Event()
        engine = threading.Thread(target=demo.engine.run, args=(stop,), name="demo-engine")
        engine.start()
        server = uvicorn.Server(uvicorn.Config(demo.app, log_config=None, lifespan="on"))
        _on_signals(server, stop)
        if duration_s is not None:
            threading.Timer(duration_s, lambda: setattr(server, "should_exit", True)).start()
        url = f"http://{_url_host(host)}:{bound_port}/"
        _announce(url, demo.token, demo.engine.feed.label, time.monotonic() - started)
        try:
            server.run(sockets=[sock])
        finally:
            stop.set()
            engine.join()
    err.print("tradepulse demo stopped")


def _on_signals(server: Any, stop: threading.Event) -> None:
    """SIGINT/SIGTERM stop the server and the engine. uvicorn replaces these handlers while
    it serves and, after its graceful shutdown, raises the signal again: it then reaches
    this handler (a clean exit) instead of the default one (death by signal)."""

    def handle(_sig: int, _frame: object) -> None:
        server.should_exit = True
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _announce(url: str, token: str, label: str, setup_s: float) -> None:
    """The lines a person (and the browser test) reads: address and token, flushed."""
    print(f"tradepulse demo: {label} (ready in {setup_s:.1f} s)", flush=True)
    print(f"dashboard: {url}", flush=True)
    if token:
        print(f"sign-in token: {token}", flush=True)
        print(f"signed-in link: {url}#token={token}", flush=True)
    print("Ctrl-C stops the demo.", flush=True)


def demo_cmd(
    terminal: Annotated[bool, typer.Option("--terminal",
        help="Show the live table in this terminal instead of serving the dashboard.")] = False,
    replay_file: Annotated[Path | None, typer.Option("--replay",
        help="Replay this JSON Lines trade file instead of the synthetic market, paced in "
             "real time.")] = None,
    speed: Annotated[float, typer.Option("--speed", min=0.001,
        help="Replay speed-up factor (with --replay).")] = 1.0,
    tokens: Annotated[int, typer.Option("--tokens", min=1, help="Synthetic tokens.")] = 200,
    rate: Annotated[float, typer.Option("--rate", min=0.001,
        help="Synthetic trades per second (mean).")] = 200.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic market.")] = 0,
    backfill: Annotated[float, typer.Option("--backfill", min=0,
        help="Seconds of synthetic history to start with.")] = 600.0,
    host: Annotated[str, typer.Option("--host", help="Interface of the dashboard.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
        help="Port of the dashboard (0: any free port).")] = 8000,
    redis_url: Annotated[str | None, typer.Option("--redis-url",
        help="Mirror the live state in this Redis (the API reads it there) instead of "
             "memory.")] = None,
    pg_dsn: Annotated[str | None, typer.Option("--pg-dsn",
        help="Also store bars and alerts in this PostgreSQL (migrated) and read candles "
             "from it.")] = None,
    kafka_bootstrap: Annotated[str | None, typer.Option("--kafka-bootstrap",
        help="Read trades from TRADEPULSE_KAFKA_TOPIC on these brokers instead of the "
             "synthetic market.")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows of the terminal table.")] = 15,
    duration: Annotated[float | None, typer.Option("--duration", min=0.1,
        help="Stop after this many seconds.")] = None,
    windows: WindowsOpt = None,
) -> None:  # fmt: skip
    """The whole system in one process: a synthetic market (or a replayed file) through the
    engine, bars, indicators and example alert rules, kept in memory, with the REST API,
    the WebSocket and the dashboard on http://127.0.0.1:8000 (no Redis, PostgreSQL or
    Kafka needed). Prints the address and a sign-in token. Ctrl-C exits."""
    import msgspec

    from tradepulse.demo import DemoOptions

    settings = settings_or_exit()
    specs = windows_opt(windows, settings)
    settings = msgspec.structs.replace(settings, windows=specs)
    try:
        if terminal:
            _terminal(specs, replay_file, speed, seed, tokens, rate, top, duration, backfill)
            return
        from tradepulse.wiring import configure_logging

        configure_logging(msgspec.structs.replace(settings, log_format="text"))
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # a line per request
        options = DemoOptions(replay_file, speed, seed, tokens, rate, backfill, redis_url,
                              pg_dsn, kafka_bootstrap)  # fmt: skip
        serve_demo(settings, options, host, port, duration)
    except TradepulseError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


def _terminal(specs: tuple[WindowSpec, ...], replay: Path | None, speed: float, seed: int,
              tokens: int, rate: float, top: int, duration: float | None,
              backfill: float) -> None:  # fmt: skip
    from tradepulse.terminal import run_terminal_demo

    run_terminal_demo(specs=specs, replay=replay, speed=speed, seed=seed, tokens=tokens,
                      rate_per_s=rate, top=top, duration_s=duration,
                      backfill_s=backfill)  # fmt: skip
