"""What the operations endpoints report and change for one worker process.

``WorkerState`` is written by the runner (one thread) and read by the HTTP thread; every
field is replaced whole, so a reader sees each value either before or after an update.
``Tuning`` holds the knobs the runner reads at every batch, so ``/performance/optimize/*``
takes effect at the next batch. ``LocalOps`` answers the endpoints; the HTTP layer only
routes (``adapters/ops_http.py``), and the parent of ``worker --processes N`` combines the
answers of its children (``supervisor.py``).
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psutil

from tradepulse import metrics
from tradepulse.core.windows import WINDOW_KERNEL

#: A process whose loop has not turned for this long is not live (a stuck call).
LIVE_STALL_S = 60.0
_RECENT_BATCHES = 512


@dataclass
class Tuning:
    """Runtime knobs of the batch loop."""

    batch_size: int
    batch_wait_ms: int

    def as_dict(self) -> dict[str, object]:
        return {
            "batch_size": self.batch_size,
            "batch_wait_ms": self.batch_wait_ms,
            "gc_thresholds": list(gc.get_threshold()),
            "gc_frozen_objects": gc.get_freeze_count(),
        }


@dataclass
class WorkerState:
    """Facts about the process for health checks and ``/performance``."""

    started_s: float = field(default_factory=time.time)
    loop_s: float = field(default_factory=time.monotonic)
    assigned: tuple[int, ...] | None = None  # None: never assigned yet
    circuit_open: bool = False
    batches: int = 0
    trades: int = 0
    last_batch_s: float | None = None
    recent: deque[tuple[float, int, float]] = field(  # (end monotonic, trades, seconds)
        default_factory=lambda: deque(maxlen=_RECENT_BATCHES)
    )

    def batch_done(self, trades: int, seconds: float) -> None:
        now = time.monotonic()
        self.batches += 1
        self.trades += trades
        self.last_batch_s = time.time()
        self.recent.append((now, trades, seconds))

    def turned(self) -> None:
        """The loop went round once (liveness)."""
        self.loop_s = time.monotonic()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


class LocalOps:
    """The operations surface of this process."""

    def __init__(self, state: WorkerState, tuning: Tuning, redis_ping: Callable[[], bool]) -> None:
        self.state = state
        self.tuning = tuning
        self._ping = redis_ping
        self._lock = threading.Lock()

    def live(self) -> tuple[bool, dict[str, object]]:
        stalled_s = time.monotonic() - self.state.loop_s
        return stalled_s < LIVE_STALL_S, {"pid": os.getpid(), "loop_stalled_s": round(stalled_s, 3)}

    def ready(self) -> tuple[bool, dict[str, object]]:
        """Ready: partitions assigned and Redis answering a PING."""
        assigned = self.state.assigned
        redis_ok = self._ping()
        ok = bool(assigned) and redis_ok and not self.state.circuit_open
        return ok, {"partitions": list(assigned or ()), "redis": redis_ok,
                    "circuit_open": self.state.circuit_open}  # fmt: skip

    def health(self) -> tuple[bool, dict[str, object]]:
        live, live_info = self.live()
        ready, ready_info = self.ready()
        status = "ok" if live and ready else ("not_ready" if live else "stalled")
        uptime_s = round(time.time() - self.state.started_s, 3)
        body = {"status": status, "live": live, "ready": ready, "uptime_s": uptime_s}
        return live and ready, {**body, **live_info, **ready_info}

    def metrics_text(self) -> bytes:
        return metrics.exposition()

    def metrics_json(self) -> dict[str, object]:
        return metrics.snapshot()

    def performance(self) -> dict[str, object]:
        """Throughput and batch latency over the recent batches, memory, CPU, GC."""
        recent = list(self.state.recent)
        durations = sorted(s for _, _, s in recent)
        span = recent[-1][0] - recent[0][0] + recent[0][2] if recent else 0.0
        proc = psutil.Process()
        cpu = proc.cpu_times()
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.state.started_s, 3),
            "batches": self.state.batches,
            "trades": self.state.trades,
            "recent_batches": len(recent),
            "recent_trades_per_s": round(sum(n for _, n, _ in recent) / span, 1) if span else None,
            "batch_seconds_p50": percentile(durations, 0.50),
            "batch_seconds_p99": percentile(durations, 0.99),
            "rss_bytes": proc.memory_info().rss,
            "cpu_user_s": cpu.user,
            "cpu_system_s": cpu.system,
            "gc_counts": list(gc.get_count()),
            "tuning": self.tuning.as_dict(),
            "window_kernel": WINDOW_KERNEL,  # "python": installed without a C compiler
        }

    def collect_garbage(self) -> dict[str, object]:
        return collect_garbage()

    def optimize(self, goal: str) -> dict[str, object]:
        """``throughput``: big batches, rare GC of a frozen heap. ``latency``: small batches
        sent at once, and the collector the worker starts with (short young collections;
        CPython's default makes full collections of the tokens' state, up to ~70 ms).
        Answers what changed."""
        with self._lock:
            return optimize_for(self.tuning, goal, WORKER_GOALS, latency_gc=WORKER_GC)


#: ``goal -> (batch_size, batch_wait_ms)`` of the worker's batch loop.
WORKER_GOALS = {"throughput": (50_000, 200), "latency": (1_000, 5)}

#: The worker's collector (set at start-up by ``wiring.tune_gc``, and by the latency goal):
#: objects allocated between young collections (CPython's default: 700). The batch loop
#: allocates and frees many short-lived containers per trade; a larger young generation
#: means far fewer collections, and fewer of the older ones they trigger (with the default,
#: full collections of the tokens' state took up to 70 ms; at 20,000 a young collection
#: takes about 5 ms).
WORKER_GC = (20_000, 10, 10)
_DEFAULT_GC = (700, 10, 10)
_THROUGHPUT_GC = (100_000, 50, 100)


def collect_garbage() -> dict[str, object]:
    """A full collection now: objects freed and memory before and after."""
    proc = psutil.Process()
    before = proc.memory_info().rss
    started = time.perf_counter()
    freed = gc.collect()
    return {"collected_objects": freed, "rss_before_bytes": before,
            "rss_after_bytes": proc.memory_info().rss,
            "seconds": round(time.perf_counter() - started, 6)}  # fmt: skip


def optimize_for(
    tuning: Tuning,
    goal: str,
    goals: Mapping[str, tuple[int, int]],
    *,
    latency_gc: tuple[int, int, int] | None = None,
) -> dict[str, object]:
    """Set ``tuning`` to ``goals[goal]``; ``throughput`` also freezes the heap and makes GC
    rare; ``latency`` sets ``latency_gc`` thresholds on a frozen heap when given, else
    restores CPython's default collector. Answers what changed (``from``/``to``)."""
    if goal not in goals:
        raise ValueError(f"unknown goal {goal!r}: accepts {' or '.join(goals)}")
    before = tuning.as_dict()
    tuning.batch_size, tuning.batch_wait_ms = goals[goal]
    if goal == "throughput":
        gc.freeze()
        gc.set_threshold(*_THROUGHPUT_GC)
    elif latency_gc is not None:
        gc.freeze()
        gc.set_threshold(*latency_gc)
    else:
        gc.unfreeze()
        gc.set_threshold(*_DEFAULT_GC)
    after = tuning.as_dict()
    changed = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    return {"goal": goal, "changed": changed, "now": after}
