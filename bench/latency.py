"""Produce-to-visible latency of the worker at a steady rate (imported by bench/worker.py).

A producer sends trades at ``rate`` per second (2,000 Zipf tokens, keyed by token,
``linger.ms=5``, librdkafka's default). Every 10 ms one of them is a probe: a trade of one
of 8 probe tokens, stamped with the wall time of its ``produce`` call as ``trans_time``.
A poller reads the probes' scores in the token index ``tokens:active`` (score = newest
trade time) every 0.5 ms; a probe is visible at the first poll whose score for its token
reaches its time.
Latency = that poll's time − the probe's produce time. The probes travel with the load
(same topic, partitions, batches), so they sample the latency of every trade; the poll
interval and the millisecond timestamps bound the resolution (about 1.5 ms, reported).

The broker's own share is measured in a phase of its own just before (``measure_floor``):
the same load to another topic, no worker, and a bare consumer in another process
(confluent-kafka, every partition assigned, the worker's fetch settings, nothing done with
the messages) records when each probe reaches it. Its percentiles are the floor under the
worker's: what producing, the broker and fetching take before the worker sees a trade. (A
second consumer during the worker's phase was tried: the broker then fell seconds behind
both of them, so the two are measured apart.)
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time
from typing import Any

import numpy as np
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from tradepulse.adapters.kafka import CONSUMER_FETCH

PROBES = [f"PROBE{i}" for i in range(8)]


def _wire(token: str, ts_ms: int, seq: int, rnd: random.Random) -> bytes:
    side = "buy" if rnd.random() < 0.5 else "sell"
    return (
        f'{{"token":"{token}","wallet":"w{rnd.randrange(5000)}","sell_buy":"{side}",'
        f'"native_amount":1.5,"token_amount":{rnd.uniform(1, 1e6):.6f},'
        f'"price_usd":{rnd.uniform(1e-6, 1):.9f},"trans_time":{ts_ms},'
        f'"tx_hash":"lat{seq}","event_index":0}}'
    ).encode()


class _Poller(threading.Thread):
    """Records, per probe, each new score with the wall time (ms) it was first seen."""

    def __init__(self, client: redis.Redis, active_key: str) -> None:
        super().__init__(daemon=True)
        self.client, self.key = client, active_key
        self.seen: dict[str, list[tuple[int, float]]] = {p: [] for p in PROBES}
        self.done = threading.Event()
        self.polls = 0

    def run(self) -> None:
        while not self.done.is_set():
            now = time.time() * 1000
            scores = self.client.zmscore(self.key, PROBES)
            self.polls += 1
            for probe, score in zip(PROBES, scores, strict=True):
                seen = self.seen[probe]
                if score is not None and (not seen or score > seen[-1][0]):
                    seen.append((int(score), now))
            time.sleep(0.0005)


def _bare_consumer(bootstrap: str, topic: str, partitions: int, ready: Any, done: Any,
                   out: Any) -> None:  # fmt: skip
    """Receive time minus produce time of every probe, as a consumer doing nothing else."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-floor",
                         "enable.auto.commit": False, **CONSUMER_FETCH})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    consumer.consume(num_messages=1, timeout=1.0)  # connected and fetching
    ready.set()
    latencies: list[float] = []
    while not done.is_set():
        # what is fetched already, else the first message to come (as the worker's loop:
        # consume(n, timeout) would wait for n messages until the timeout)
        batch = consumer.consume(num_messages=10_000, timeout=0) or consumer.consume(1, 0.05)
        for msg in batch:
            if msg.error() is None and (msg.key() or b"").startswith(b"PROBE"):
                value = msg.value() or b""
                start = value.index(b'"trans_time":') + 13
                ts_ms = int(value[start : value.index(b",", start)])
                latencies.append(time.time() * 1000 - ts_ms)
    consumer.close()
    out.put(latencies)


def _produce_steady(
    bootstrap: str, topic: str, rate: int, seconds: float, tokens: int
) -> tuple[list[tuple[str, int]], int, float]:
    """Send ``rate`` trades per second for ``seconds``: ``(probes sent, total, seconds)``."""
    names = [f"LOAD{i:05d}" for i in range(tokens)]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})  # the default
    rnd = random.Random(7)
    sent: list[tuple[str, int]] = []
    total, probe_every = int(rate * seconds), max(rate // 100, 1)
    started = time.perf_counter()
    for seq in range(total):
        due = started + seq / rate
        while (ahead := due - time.perf_counter()) > 0:
            time.sleep(min(ahead, 0.001))
        ts_ms = int(time.time() * 1000)
        if seq % probe_every == 0:
            token = PROBES[(seq // probe_every) % len(PROBES)]
            sent.append((token, ts_ms))
        else:
            token = names[min(int(rnd.paretovariate(1.1)) - 1, tokens - 1)]
        producer.produce(topic, key=token, value=_wire(token, ts_ms, seq, rnd))
        producer.poll(0)
    send_s = time.perf_counter() - started
    producer.flush(30)
    return sent, total, send_s


def _percentiles(prefix: str, values: list[float]) -> dict[str, float]:
    arr = np.array(values)
    return {f"{prefix}_p50": float(np.percentile(arr, 50)),
            f"{prefix}_p90": float(np.percentile(arr, 90)),
            f"{prefix}_p99": float(np.percentile(arr, 99)),
            f"{prefix}_max": float(arr.max())}  # fmt: skip


def measure(
    bootstrap: str, topic: str, client: redis.Redis, active_key: str,
    rate: int, seconds: float, tokens: int = 2_000,
) -> dict[str, float | int]:  # fmt: skip
    """Run the steady phase against a worker and return the probes' produce-to-visible
    latency percentiles in milliseconds."""
    poller = _Poller(client, active_key)
    poller.start()
    sent, total, send_s = _produce_steady(bootstrap, topic, rate, seconds, tokens)
    time.sleep(2.0)
    poller.done.set()
    poller.join(5)
    latencies = []
    for token, ts in sent:
        visible = next((at for score, at in poller.seen[token] if score >= ts), None)
        if visible is not None:
            latencies.append(visible - ts)
    return {
        "rate_per_s": rate,
        "trades_sent": total,
        "send_seconds": send_s,
        "probes_sent": len(sent),
        "probes_visible": len(latencies),
        **_percentiles("latency_ms", latencies),
        "polls_per_s": poller.polls / (send_s + 2.0),
    }


def measure_floor(
    bootstrap: str, topic: str, rate: int, seconds: float, tokens: int = 2_000,
    partitions: int = 4,
) -> dict[str, float | int]:  # fmt: skip
    """The same steady phase with no worker: produce-to-received percentiles of the probes
    at a bare consumer in another process (the broker floor)."""
    ctx = mp.get_context("spawn")
    ready, done, out = ctx.Event(), ctx.Event(), ctx.Queue()
    floor = ctx.Process(target=_bare_consumer, daemon=True,
                        args=(bootstrap, topic, partitions, ready, done, out))  # fmt: skip
    floor.start()
    ready.wait(60)
    sent, _, _ = _produce_steady(bootstrap, topic, rate, seconds, tokens)
    time.sleep(2.0)
    done.set()
    received: list[float] = out.get(timeout=30)
    floor.join(10)
    return {"broker_floor_probes_sent": len(sent), "broker_floor_probes": len(received),
            **_percentiles("broker_floor_ms", received)}  # fmt: skip
