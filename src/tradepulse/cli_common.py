"""What the command modules share: the error console, settings and option parsing, output
files and progress bars."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
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

from tradepulse.config import Settings, load_settings
from tradepulse.core.errors import TradepulseError
from tradepulse.core.windows import WindowSpec, parse_duration_ms, parse_windows

err = Console(stderr=True, highlight=False)

WindowsOpt = Annotated[
    str | None,
    typer.Option(
        "--windows",
        help="Comma-separated windows, e.g. 1min,5min,1hour (default: TRADEPULSE_WINDOWS "
        "or 1min,5min,15min,30min,1hour).",
    ),
]


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except TradepulseError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from exc


def windows_opt(text: str | None, settings: Settings) -> tuple[WindowSpec, ...]:
    if text is None:
        return settings.windows
    try:
        return parse_windows(text)
    except TradepulseError as exc:
        raise typer.BadParameter(str(exc), param_hint="--windows") from exc


def duration_opt(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_duration_ms(text)
    except TradepulseError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc


@contextmanager
def open_output(path: str) -> Iterator[BinaryIO]:
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


def progress_bar(size: int | None, *, in_bytes: bool = True) -> Progress | None:
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
