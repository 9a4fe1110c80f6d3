"""Commands of the PostgreSQL history: ``db migrate``, ``candles``, ``persist``.

``cli.py`` registers them (``app.add_typer(db_app, name="db")``,
``app.command("candles")(candles_cmd)``, ``app.command("persist")(persist_cmd)``).
Errors print one line on stderr and exit with status 2, never a traceback. psycopg, redis
and the adapters are imported inside the commands: ``tradepulse --help`` imports this module.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from tradepulse import tracing
from tradepulse.adapters.clock import wall_now_ms
from tradepulse.config import Settings, load_settings
from tradepulse.core.errors import TradepulseError
from tradepulse.core.types import MS_PER_DAY, TsMs

if TYPE_CHECKING:
    from tradepulse.adapters.postgres import Candle

T = TypeVar("T")
#: The keys of ``adapters.postgres.TIMEFRAMES_MS``, repeated so that ``--help`` need not
#: import psycopg (a test checks that both agree).
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
err = Console(stderr=True, highlight=False)

db_app = typer.Typer(
    help="PostgreSQL history database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# --- helpers -----------------------------------------------------------------------------


def _or_exit(load: Callable[[], T], what: str = "error") -> T:
    """``load()``, or print its ``TradepulseError`` and exit 2."""
    try:
        return load()
    except TradepulseError as exc:
        err.print(f"[red]{what}:[/] {exc}", markup=True)
        raise typer.Exit(2) from exc


def _settings() -> Settings:
    return _or_exit(load_settings, "configuration error")


def parse_time_ms(text: str, option: str) -> TsMs:
    """Epoch milliseconds of ``text``: digits are epoch ms; otherwise an RFC 3339 time with
    an offset (``2025-07-21T10:00:00Z``), floored to the millisecond."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is neither epoch ms nor an RFC 3339 time", param_hint=option
        ) from exc
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{text!r} needs an offset such as Z", param_hint=option)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _range_ms(from_text: str | None, to_text: str | None) -> tuple[TsMs, TsMs]:
    """``[from, to)`` in epoch ms; defaults: to = now, from = to - 24 h."""
    to_ms = parse_time_ms(to_text, "--to") if to_text else wall_now_ms()
    from_ms = parse_time_ms(from_text, "--from") if from_text else to_ms - MS_PER_DAY
    if from_ms >= to_ms:
        raise typer.BadParameter("--from must be before --to", param_hint="--from")
    return from_ms, to_ms


def _utc(ts_ms: TsMs) -> str:
    return (_EPOCH + timedelta(milliseconds=ts_ms)).strftime("%Y-%m-%d %H:%M")


def _table(token: str, tf: str, candles: list[Candle]) -> Table:
    table = Table(title=f"{token} {tf} candles (UTC)")
    for column in ("open time", "open", "high", "low", "close", "volume", "volume usd",
                   "buy usd", "sell usd", "trades", "vwap", "bars"):  # fmt: skip
        table.add_column(column, justify="left" if column == "open time" else "right")
    for c in candles:
        numbers = (c.open, c.high, c.low, c.close, c.volume, c.volume_usd, c.buy_volume_usd,
                   c.sell_volume_usd)  # fmt: skip
        vwap = "-" if c.vwap is None else f"{c.vwap:.8g}"
        table.add_row(_utc(c.open_ms), *(f"{x:.8g}" for x in numbers), str(c.trades), vwap,
                      str(c.bars))  # fmt: skip
    return table


@contextmanager
def _signals_set(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` while inside; the previous handlers come back after."""
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- commands ----------------------------------------------------------------------------


@db_app.command("migrate")
def migrate_cmd() -> None:
    """Apply the pending schema migrations to TRADEPULSE_PG_DSN (safe to run again and
    from several processes at once)."""
    from tradepulse.adapters.postgres import migrate

    settings = _settings()
    applied = _or_exit(lambda: migrate(settings.pg_dsn))
    for name in applied:
        err.print(f"applied {name}")
    if not applied:
        err.print("schema up to date: nothing to apply")


def candles_cmd(
    token: Annotated[str, typer.Argument(help="Token address.")],
    tf: Annotated[str, typer.Option("--tf", help=f"Timeframe: {', '.join(TIMEFRAMES)}.")] = "1m",
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Start (RFC 3339 with offset, or epoch ms); default to - 24h."),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="End, exclusive (RFC 3339 or epoch ms); default now.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Candles of a token from the stored 1-minute bars, UTC-aligned; every candle that
    overlaps [from, to) is complete."""
    from tradepulse.adapters.postgres import BarRepository

    if tf not in TIMEFRAMES:
        raise typer.BadParameter(f"accepts {', '.join(TIMEFRAMES)}", param_hint="--tf")
    from_ms, to_ms = _range_ms(from_, to)
    settings = _settings()
    with BarRepository(settings.pg_dsn) as repo:
        candles = _or_exit(lambda: repo.candles(token, tf, from_ms, to_ms))
    if as_json:
        typer.echo(msgspec.json.encode(candles).decode())
    elif candles:
        out = Console()
        out = out if out.is_terminal else Console(width=200)  # a pipe: do not truncate
        out.print(_table(token, tf, candles))
    else:
        err.print(f"no bars for {token} between {_utc(from_ms)} and {_utc(to_ms)} UTC")


def persist_cmd() -> None:
    """Store finalized bars (Redis stream bars.finalized) and alerts (stream alerts) in
    PostgreSQL until SIGTERM or Ctrl-C, trimming the entries every consumer group has
    acknowledged. Health, metrics and performance endpoints on TRADEPULSE_HTTP_HOST:
    TRADEPULSE_PERSIST_HTTP_PORT (9101). PostgreSQL or Redis outages are waited out;
    nothing is lost."""
    from tradepulse.persist_wiring import run_persist
    from tradepulse.wiring import configure_logging

    settings = _settings()
    configure_logging(settings)
    tracing.configure(settings, "persist")
    stop = threading.Event()
    try:
        with _signals_set(stop):  # first: a SIGTERM during start-up stops cleanly too
            run = _or_exit(lambda: run_persist(settings, stop))
    except OSError as exc:  # the operations port is taken, say
        err.print(f"[red]error:[/] {exc} (TRADEPULSE_HTTP_HOST/TRADEPULSE_PERSIST_HTTP_PORT)",
                  markup=True)  # fmt: skip
        raise typer.Exit(2) from exc
    finally:
        tracing.uninstall()  # exports the spans still buffered
    bars = run.bars
    err.print(f"persister stopped: {bars.written:,} bars written, {bars.acked:,} entries "
              f"acknowledged, {bars.malformed:,} malformed; {run.alerts.written:,} alerts "
              "written")  # fmt: skip
