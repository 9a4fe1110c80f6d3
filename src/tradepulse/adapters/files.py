"""Trade files: JSON Lines in the wire format, one trade per line (``-`` is standard input)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tradepulse.core.errors import InputError


@contextmanager
def open_input(path: str) -> Iterator[tuple[BinaryIO, int | None]]:
    """Open ``path`` (or stdin for ``-``) for binary reading; yields the stream and its
    size in bytes when known (for progress bars). Raises ``InputError`` with the reason."""
    if path == "-":
        yield sys.stdin.buffer, None
        return
    p = Path(path)
    try:
        stream = p.open("rb")
        size = p.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with stream:
        yield stream, size


def iter_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """``(line_number, line)`` for every non-blank line (numbers count from 1)."""
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line
