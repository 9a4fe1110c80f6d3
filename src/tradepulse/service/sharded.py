"""``replay`` over several processes: tokens are sharded, the file is read by every shard.

Every shard reads and validates the whole file, so each computes the same watermark,
lateness and snapshot schedule as a single process would; it applies and writes only the
tokens it owns (``shard_of``). Shard 0 alone reports rejected lines (through a queue, so
the parent prints them) and progress. The parent merges the shards' outputs by
``(ts_ms, final, token)``, the order of a single-process run, so the output is identical
byte for byte.

Reading the file N times costs N decodes per trade; the windows (most of the work) are
split N ways. Worth it on a multi-core machine for large files.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import BinaryIO

import msgspec

from tradepulse.core.errors import InputError, InvalidTradeError
from tradepulse.core.market import Market
from tradepulse.core.types import TsMs
from tradepulse.core.windows import WindowSpec
from tradepulse.service.replay import ProgressHandler, RejectHandler, ReplaySummary, replay

_Reject = tuple[int, str, str, str]  # line number, field, rule, detail


class _LineKey(msgspec.Struct):
    token: str
    ts_ms: int
    final: bool


class _Options(msgspec.Struct, frozen=True):
    path: str
    specs: tuple[WindowSpec, ...]
    now_ms: TsMs
    snapshot_every_ms: int | None
    max_future_skew_ms: int


def replay_sharded(
    path: str,
    specs: tuple[WindowSpec, ...],
    out: BinaryIO,
    *,
    processes: int,
    now_ms: TsMs,
    snapshot_every_ms: int | None = None,
    max_future_skew_ms: int = 5_000,
    on_reject: RejectHandler | None = None,
    on_progress: ProgressHandler | None = None,
) -> ReplaySummary:
    """``replay`` of the file at ``path`` with ``processes`` shards (see the module
    docstring). ``on_progress`` receives shard 0's position in the file, in bytes."""
    options = _Options(path, specs, now_ms, snapshot_every_ms, max_future_skew_ms)
    ctx = multiprocessing.get_context("fork")
    rejects: Queue[_Reject] = ctx.Queue()
    results: Queue[tuple[int, bytes]] = ctx.Queue()
    position = ctx.Value("q", 0)
    with tempfile.TemporaryDirectory(prefix="tradepulse-replay-") as tmp:
        parts = [Path(tmp) / f"shard-{k}.jsonl" for k in range(processes)]
        workers = [
            ctx.Process(
                target=_shard_main,
                args=(options, k, processes, parts[k], rejects, results, position),
                name=f"tradepulse-replay-{k}",
            )
            for k in range(processes)
        ]
        for worker in workers:
            worker.start()
        summaries = _supervise(workers, rejects, results, position, on_reject, on_progress)
        _merge(parts, out)
    return _combine(summaries)


def _supervise(
    workers: Sequence[multiprocessing.process.BaseProcess],
    rejects: Queue[_Reject],
    results: Queue[tuple[int, bytes]],
    position: Synchronized[int],
    on_reject: RejectHandler | None,
    on_progress: ProgressHandler | None,
) -> dict[int, ReplaySummary]:
    """Relay rejections and progress until every shard has reported; raise if one fails."""
    summaries: dict[int, ReplaySummary] = {}
    while len(summaries) < len(workers):
        while not rejects.empty():
            line_no, field, rule, detail = rejects.get()
            if on_reject is not None:
                on_reject(line_no, InvalidTradeError(field, rule, detail))
        while not results.empty():
            k, encoded = results.get()
            summaries[k] = msgspec.json.decode(encoded, type=ReplaySummary)
        if on_progress is not None:
            on_progress(position.value)
        failed = [w for w in workers if w.exitcode not in (None, 0)]
        if failed:
            for w in workers:
                w.kill()
            raise InputError(f"replay shard {failed[0].name} exited with {failed[0].exitcode}")
        time.sleep(0.02)
    while not rejects.empty():
        line_no, field, rule, detail = rejects.get()
        if on_reject is not None:
            on_reject(line_no, InvalidTradeError(field, rule, detail))
    for worker in workers:
        worker.join()
    return summaries


def _shard_main(
    options: _Options,
    k: int,
    n: int,
    part: Path,
    rejects: Queue[_Reject],
    results: Queue[tuple[int, bytes]],
    position: Synchronized[int],
) -> None:
    """One shard: replay the whole file into a market that keeps shard ``k``'s tokens."""
    market = Market(options.specs, shard=(k, n))  # kept until os._exit: no teardown
    with Path(options.path).open("rb") as stream, part.open("wb") as sink:

        def reject(line_no: int, exc: InvalidTradeError) -> None:
            rejects.put((line_no, exc.field, exc.rule, exc.detail))

        def progress(_read: int) -> None:
            position.value = stream.tell()

        summary = replay(
            stream,
            market,
            sink,
            now_ms=options.now_ms,
            snapshot_every_ms=options.snapshot_every_ms,
            max_future_skew_ms=options.max_future_skew_ms,
            on_reject=reject if k == 0 else None,
            on_progress=progress if k == 0 else None,
        )
    results.put((k, msgspec.json.encode(summary)))
    for queue in (rejects, results):
        queue.close()
        queue.join_thread()
    os._exit(0)


def _keyed_lines(path: Path) -> Iterator[tuple[tuple[int, bool, str], bytes]]:
    decode = msgspec.json.Decoder(_LineKey).decode
    with path.open("rb") as f:
        for line in f:
            key = decode(line)
            yield (key.ts_ms, key.final, key.token), line


def _merge(parts: list[Path], out: BinaryIO) -> None:
    """Interleave the shards' lines in the order a single process writes them."""
    for _key, line in heapq.merge(*(_keyed_lines(p) for p in parts), key=lambda x: x[0]):
        out.write(line)


def _combine(summaries: dict[int, ReplaySummary]) -> ReplaySummary:
    """Lines read and rejections are shard 0's (every shard reads every line); the rest
    is summed over the shards."""
    first = summaries[0]
    return ReplaySummary(
        read=first.read,
        applied=sum(s.applied for s in summaries.values()),
        rejected=dict(first.rejected),
        duplicates=sum(s.duplicates for s in summaries.values()),
        late=sum(s.late for s in summaries.values()),
        snapshot_lines=sum(s.snapshot_lines for s in summaries.values()),
        last_trade_ms=first.last_trade_ms,
    )
