"""``tradepulse rebuild``: Redis state rebuilt from Kafka (registered by ``cli.py``; the
semantics are in ``service/rebuild.py``)."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import Annotated

import msgspec
import typer

from tradepulse import tracing
from tradepulse.cli_common import duration_opt, err, progress_bar, settings_or_exit
from tradepulse.config import Settings
from tradepulse.core.errors import TradepulseError


def _partitions(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        numbers = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        numbers = [-1]
    if not numbers or min(numbers) < 0:
        raise typer.BadParameter("accepts partition numbers, e.g. 0,2,3", param_hint="--partitions")
    return numbers


def _since_ms(text: str | None, settings: Settings) -> int:
    """``--since`` (default: the longest window); shorter than the longest window would
    leave that window short of trades."""
    longest = settings.windows[-1]
    since_ms = duration_opt(text, "--since")
    if since_ms is None:
        return longest.duration_ms
    if since_ms < longest.duration_ms:
        raise typer.BadParameter(
            f"{text!r} is shorter than the longest window ({longest.name})", param_hint="--since"
        )
    return since_ms


def rebuild_cmd(
    since: Annotated[str | None, typer.Option("--since",
        help="How far back to read, e.g. 1h; at least the longest window (the default).")] = None,
    partitions: Annotated[str | None, typer.Option("--partitions",
        help="Only these partitions of the topic, e.g. 0,2 (default: all).")] = None,
    idle: Annotated[str, typer.Option("--idle",
        help="On a broker without offsets by time: stop after this long without a record.")
    ] = "5s",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:  # fmt: skip
    """Rebuild the Redis state of the topic's tokens (windows, trades lists, bars,
    indicators) by reading Kafka again from now − SINCE through the worker's pipeline, then
    exit with a summary. Commits no offsets and fires no alerts; run it while the workers
    are stopped (they continue from the rebuilt state)."""
    from tradepulse.service.rebuild import rebuild
    from tradepulse.wiring import build_rebuild, configure_logging

    settings = settings_or_exit()
    since_ms, wanted = _since_ms(since, settings), _partitions(partitions)
    idle_ms = duration_opt(idle, "--idle") or 0
    configure_logging(settings)
    tracing.configure(settings, "rebuild")
    try:
        reader, pipeline = build_rebuild(settings, since_ms, wanted, idle_ms=idle_ms)
        progress = progress_bar(None, in_bytes=False)
        with progress or nullcontext():
            task = progress.add_task("rebuild", total=None) if progress else None

            def advance(messages: int) -> None:
                if progress is not None and task is not None:
                    progress.update(task, description=f"rebuild: {messages:,} messages")

            try:
                summary = rebuild(reader, pipeline, batch_size=settings.batch_size,
                                  on_progress=advance)  # fmt: skip
            finally:
                reader.close()
    except TradepulseError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    finally:
        tracing.uninstall()
    how = "offsets by time" if summary.by_timestamp else "scanned from the beginning"
    err.print(f"rebuilt partitions {summary.partitions}: {summary.messages:,} messages "
              f"({summary.skipped:,} older skipped, {how}), {summary.tokens:,} tokens "
              f"in {summary.seconds:.1f} s")  # fmt: skip
    if as_json:
        sys.stdout.buffer.write(msgspec.json.encode(summary) + b"\n")
