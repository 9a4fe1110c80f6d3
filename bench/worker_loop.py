"""The worker's batch loop in one process, without a broker: CPU per trade of the worker's
own work, with less noise than ``bench/worker.py``.

N synthetic trades (2,000 tokens, Zipf, as ``tradepulse produce --synthetic``) are encoded
and wrapped in confluent-kafka ``Message`` objects of 4 partitions (keyed by token, taken
2,000 per partition in turn, as fetches interleave) before the clock starts. Then the
runner's own steps, batch after batch: ``TradeConsumer.poll_batch`` (over those messages),
apply, write to the local Redis (its own key prefix, deleted afterwards), report; event
clock, bars on, collector tuned as in the worker.

    python bench/worker_loop.py [--trades N] [--batch B] [--no-loop] [--digest]

Prints CPU and wall µs per trade. ``--no-loop`` does everything but the loop (subtract its
instruction count from a full run's under ``valgrind --tool=callgrind`` to count the loop's
instructions, a measure the load of a shared machine does not move); ``--digest`` prints a
hash of every key written (except the wall-clock ``last_update``), to compare two builds'
results.
"""

from __future__ import annotations

import argparse
import hashlib
import threading
import time
import uuid
import zlib
from typing import Any

import redis
from confluent_kafka import Message

from tradepulse import wiring
from tradepulse.adapters.clock import wall_now_ms
from tradepulse.adapters.kafka import ConsumedMessage, TradeConsumer
from tradepulse.adapters.redis_store import RedisStore
from tradepulse.adapters.synthetic import SyntheticMarket
from tradepulse.adapters.wire import encode_trade
from tradepulse.core.clock import EventClock
from tradepulse.core.market import Market
from tradepulse.core.windows import DEFAULT_WINDOWS, parse_windows
from tradepulse.service import runner
from tradepulse.service.ops import WorkerState
from tradepulse.service.pipeline import Pipeline

PARTITIONS = 4
FETCH = 2_000  # messages of one partition taken at a time
START_MS = 1_760_000_000_000  # the trades' first time: every run reads the same messages


def messages(trades: int) -> list[Message]:
    market = SyntheticMarket(seed=0, tokens=2_000, wallets=50_000, start_ms=START_MS,
                             rate_per_s=10_000)  # fmt: skip
    queues: list[list[tuple[bytes, bytes]]] = [[] for _ in range(PARTITIONS)]
    for t in market.generate(trades):
        key = t.token.encode()
        queues[zlib.crc32(key) % PARTITIONS].append((key, encode_trade(t)))
    out: list[Message] = []
    for lo in range(0, max(map(len, queues)), FETCH):
        for p, queue in enumerate(queues):
            out += [Message(topic="t", partition=p, offset=lo + i, key=k, value=v)
                    for i, (k, v) in enumerate(queue[lo : lo + FETCH])]  # fmt: skip
    return out


class Fetched:
    """The confluent-kafka consumer's ``consume`` over messages already in memory."""

    def __init__(self, msgs: list[Message]) -> None:
        self.msgs = msgs
        self.at = 0

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        out = self.msgs[self.at : self.at + num_messages]
        self.at += len(out)
        return out


class Source(TradeConsumer):
    """``TradeConsumer.poll_batch`` over ``Fetched`` messages; commits go nowhere."""

    def __init__(self, msgs: list[Message]) -> None:  # no broker: TradeConsumer's is skipped
        self.topic = "t"
        self._pending = {}
        self._consumer = Fetched(msgs)  # type: ignore[assignment]

    def commit(self, next_offsets: dict[int, int], *, wait: bool = False) -> None:
        """Nothing to commit to."""


class NoDeadLetters:
    def send(self, msg: ConsumedMessage, reason: str, detail: str, at_ms: int) -> None:
        raise AssertionError(f"synthetic trade rejected: {reason} {detail}")

    def flush(self, timeout_s: float = 0.0) -> int:
        return 0


def digest(client: redis.Redis, prefix: str) -> str:
    h = hashlib.sha256()
    for key in sorted(client.scan_iter(match=prefix + "*", count=1000)):
        if key.endswith(b":last_update"):
            continue
        kind = client.type(key)
        value: Any
        if kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"hash":
            value = sorted(client.hgetall(key).items())
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            value = sorted(client.smembers(key))
        elif kind == b"stream":
            value = [sorted(fields.items()) for _, fields in client.xrange(key)]
        else:
            value = client.get(key)
        h.update(repr((key[len(prefix) :], value)).encode())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--no-loop", action="store_true", help="everything but the loop")
    parser.add_argument("--digest", action="store_true", help="hash of the keys written")
    args = parser.parse_args()
    source = Source(messages(args.trades))
    prefix = f"tradepulse-bench-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis()
    pipeline = Pipeline(Market(parse_windows(DEFAULT_WINDOWS)), EventClock(),
                        RedisStore(client, prefix=prefix), NoDeadLetters(),
                        wall_ms=wall_now_ms)  # fmt: skip
    pipeline.assign(list(range(PARTITIONS)))
    state, stop = WorkerState(), threading.Event()
    wiring.tune_gc()
    cpu0, wall0, done = time.process_time(), time.perf_counter(), 0
    try:
        while not args.no_loop and (batch := source.poll_batch(args.batch, 0.0)):
            started = time.perf_counter()
            runner._batch(source, pipeline, stop, batch, state)
            runner._report(batch, time.perf_counter() - started, pipeline, state)
            done += len(batch)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        hashed = digest(client, prefix) if args.digest else None
    finally:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    per = 1e6 / max(done, 1)
    print(f"trades={done} batch={args.batch} cpu_us_per_trade={cpu * per:.2f} "
          f"wall_us_per_trade={wall * per:.2f} applied={pipeline.market.applied}"
          + (f" digest={hashed}" if hashed else ""))  # fmt: skip


if __name__ == "__main__":
    main()
