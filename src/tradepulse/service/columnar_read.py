"""Reading a trade file into columns for the columnar replay, in one process or several.

With ``parts > 1`` (a regular file, not standard input) the file is cut into ``parts``
byte ranges at line boundaries; forked processes decode every range but the first while
this one decodes the first, then their columns are appended in file order, their token
and wallet codes renumbered into this process's, and their rejected lines reported with
the line numbers of the whole file, in file order. The result is the one reading alone
gives (decoding is per line, so where a range starts changes nothing).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import BinaryIO

from tradepulse.adapters.wire_columns import Codes, PackedStrings, TradeColumns, decode_columns
from tradepulse.core.errors import InvalidTradeError
from tradepulse.core.types import TsMs
from tradepulse.service.replay import ProgressHandler, RejectHandler

_CHUNK_BYTES = 4 << 20
_Reject = tuple[int, str, str, str]  # line number in its range, field, rule, detail


@dataclass
class TradeTable:
    """Every valid trade read, in read order (chunk after chunk), and what was read."""

    codes: Codes = field(default_factory=Codes)
    chunks: list[TradeColumns] = field(default_factory=list)
    read: int = 0  # lines
    rejected: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Part:
    """What a process decoded from one byte range."""

    chunks: list[TradeColumns]
    tokens: list[str]  # by code
    wallets: list[str]
    read: int
    rejects: list[_Reject]


def read_table(
    stream: BinaryIO,
    now_ms: TsMs,
    max_future_skew_ms: int,
    *,
    on_reject: RejectHandler | None = None,
    on_progress: ProgressHandler | None = None,
    path: str | None = None,
    parts: int = 1,
) -> TradeTable:
    """The trades of ``stream`` (the file at ``path`` when decoded in ``parts``)."""
    table = TradeTable()
    bounds = _bounds(path, parts) if path is not None and parts > 1 else []
    if len(bounds) <= 2:
        _read_range(stream, table, now_ms, max_future_skew_ms, on_reject, on_progress, None)
        return table
    assert path is not None
    ctx = multiprocessing.get_context("fork")
    pipes: list[tuple[Connection, multiprocessing.process.BaseProcess]] = []
    for start, end in itertools.pairwise(bounds[1:]):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_part_main, args=(path, start, end, now_ms,
                                                    max_future_skew_ms, send))  # fmt: skip
        proc.start()
        send.close()
        pipes.append((receive, proc))
    _read_range(stream, table, now_ms, max_future_skew_ms, on_reject, on_progress, bounds[1])
    for receive, child in pipes:
        part: _Part = receive.recv()
        child.join()
        _append(table, part, on_reject)
    return table


def _bounds(path: str, parts: int) -> list[int]:
    """``0``, the start of the line at or after each ``k/parts`` of the file, its size."""
    size = os.path.getsize(path)
    bounds = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            f.seek(max(size * k // parts - 1, bounds[-1]))
            f.readline()  # to the end of the line in progress
            bounds.append(max(f.tell(), bounds[-1]))
    bounds.append(size)
    return sorted(set(bounds))


def _read_range(
    stream: BinaryIO,
    table: TradeTable,
    now_ms: TsMs,
    max_future_skew_ms: int,
    on_reject: RejectHandler | None,
    on_progress: ProgressHandler | None,
    end: int | None,
) -> None:
    """Decode chunks of lines from the stream's position up to byte ``end`` (or EOF)."""
    position = stream.tell() if end is not None else 0
    while lines := stream.readlines(_CHUNK_BYTES):
        if end is not None:
            position += sum(map(len, lines))
            lines = _cut(lines, position - end)
        cols, bad = decode_columns(lines, table.read + 1, now_ms, max_future_skew_ms,
                                   table.codes)  # fmt: skip
        table.read += len(lines)
        for line_no, exc in bad:
            table.rejected[exc.reason] += 1
            if on_reject is not None:
                on_reject(line_no, exc)
        table.chunks.append(_packed(cols))
        if on_progress is not None:
            on_progress(table.read)
        if end is not None and position >= end:
            return


def _packed(cols: TradeColumns) -> TradeColumns:
    """``cols`` with its tx hashes as one string: a fraction of the memory of a million
    string objects, and nothing else needs them one by one."""
    if isinstance(cols.tx_hash, PackedStrings):
        return cols
    return replace(cols, tx_hash=PackedStrings.pack(cols.tx_hash))


def _cut(lines: list[bytes], excess: int) -> list[bytes]:
    """``lines`` without the last ones that make up ``excess`` bytes (line boundary)."""
    while excess > 0:
        excess -= len(lines.pop())
    return lines


def _part_main(
    path: str, start: int, end: int, now_ms: TsMs, max_future_skew_ms: int, send: Connection
) -> None:
    """Child process: decode bytes ``[start, end)`` and send the ``_Part`` back."""
    rejects: list[_Reject] = []

    def on_reject(line_no: int, exc: InvalidTradeError) -> None:
        rejects.append((line_no, exc.field, exc.rule, exc.detail))

    table = TradeTable()
    with open(path, "rb") as stream:
        stream.seek(start)
        _read_range(stream, table, now_ms, max_future_skew_ms, on_reject, None, end)
    send.send(_Part(table.chunks, list(table.codes.tokens), list(table.codes.wallets),
                    table.read, rejects))  # fmt: skip
    send.close()
    os._exit(0)  # skip the parent's exit handlers (forked)


def _append(table: TradeTable, part: _Part, on_reject: RejectHandler | None) -> None:
    """Append a range decoded elsewhere: codes renumbered, line numbers shifted."""
    token_map = table.codes.code(part.tokens)
    wallet_map = table.codes.code(part.wallets, wallets=True)
    for cols in part.chunks:
        table.chunks.append(replace(cols, token=token_map[cols.token],
                                    wallet=wallet_map[cols.wallet]))  # fmt: skip
    for line_no, field_, rule, detail in part.rejects:
        exc = InvalidTradeError(field_, rule, detail)
        table.rejected[exc.reason] += 1
        if on_reject is not None:
            on_reject(table.read + line_no, exc)
    table.read += part.read
