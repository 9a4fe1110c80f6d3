"""What the operations endpoints of ``tradepulse persist`` report and change.

The same routes as a worker's (``adapters/ops_http.py``), about the persister:

* live: both persister loops (bars, alerts) went round within ``LIVE_STALL_S`` (a loop
  waiting out an outage turns at every retry; one stuck in a call does not);
* ready: Redis and PostgreSQL both answer;
* ``/performance``: per stream, rows written per second and round time p50/p99 over the
  recent rounds, the counts, and the backlog of the last upkeep round; memory, CPU, GC;
* ``/performance/optimize/*``: the persisters' batch size (read at every round) and GC.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Mapping

import msgspec
import psutil

from tradepulse import metrics
from tradepulse.service.ops import LIVE_STALL_S, Tuning, collect_garbage, optimize_for, percentile
from tradepulse.service.persister import PersisterStats
from tradepulse.service.upkeep import UpkeepState

#: ``goal -> (batch_size, block_ms)``: entries per PostgreSQL write, and how long a read
#: waits for new entries (a new entry ends the wait at once, so it barely affects latency).
PERSISTER_GOALS = {"throughput": (5_000, 1_000), "latency": (100, 1_000)}


class PersisterOps:
    """The operations surface of a persist process: ``loops`` are the counts of its
    persister loops by stream name, ``state`` the upkeep's findings."""

    def __init__(
        self,
        loops: Mapping[str, PersisterStats],
        state: UpkeepState,
        tuning: Tuning,
        checks: Mapping[str, Callable[[], bool]],
    ) -> None:
        self.loops = loops
        self.state = state
        self.tuning = tuning
        self._checks = checks  # name -> reachable? ("redis", "postgres")
        self._started_s = time.time()
        self._lock = threading.Lock()

    def live(self) -> tuple[bool, dict[str, object]]:
        now = time.monotonic()
        stalled = {name: round(now - s.loop_s, 3) for name, s in self.loops.items()}
        ok = all(v < LIVE_STALL_S for v in stalled.values())
        return ok, {"pid": os.getpid(), "loop_stalled_s": stalled}

    def ready(self) -> tuple[bool, dict[str, object]]:
        """Ready: every store answers (Redis PING, a PostgreSQL connection and SELECT 1)."""
        answers: dict[str, object] = {name: check() for name, check in self._checks.items()}
        return all(v is True for v in answers.values()), answers

    def health(self) -> tuple[bool, dict[str, object]]:
        live, live_info = self.live()
        ready, ready_info = self.ready()
        status = "ok" if live and ready else ("not_ready" if live else "stalled")
        uptime_s = round(time.time() - self._started_s, 3)
        body = {"status": status, "live": live, "ready": ready, "uptime_s": uptime_s}
        return live and ready, {**body, **live_info, **ready_info}

    def metrics_text(self) -> bytes:
        return metrics.exposition()

    def metrics_json(self) -> dict[str, object]:
        return metrics.snapshot()

    def performance(self) -> dict[str, object]:
        proc = psutil.Process()
        cpu = proc.cpu_times()
        checked = self.state.checked_s
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self._started_s, 3),
            "streams": {name: self._stream(name, s) for name, s in self.loops.items()},
            "backlog_checked_s_ago": None if checked is None else round(time.time() - checked, 3),
            "rss_bytes": proc.memory_info().rss,
            "cpu_user_s": cpu.user,
            "cpu_system_s": cpu.system,
            "gc_counts": list(gc.get_count()),
            "tuning": self.tuning.as_dict(),
        }

    def _stream(self, name: str, stats: PersisterStats) -> dict[str, object]:
        recent = list(stats.recent)
        durations = sorted(s for _, _, s in recent)
        span = recent[-1][0] - recent[0][0] + recent[0][2] if recent else 0.0
        backlog = self.state.backlog.get(name)
        return {
            "entries": stats.entries,
            "written": stats.written,
            "acked": stats.acked,
            "malformed": stats.malformed,
            "retries": stats.retries,
            "recent_batches": len(recent),
            "recent_rows_per_s": round(sum(n for _, n, _ in recent) / span, 1) if span else None,
            "batch_seconds_p50": percentile(durations, 0.50),
            "batch_seconds_p99": percentile(durations, 0.99),
            "backlog": None if backlog is None else msgspec.to_builtins(backlog),
            "trimmed": self.state.trimmed.get(name, 0),
        }

    def collect_garbage(self) -> dict[str, object]:
        return collect_garbage()

    def optimize(self, goal: str) -> dict[str, object]:
        """``throughput``: 5,000 entries per write, rare GC of a frozen heap. ``latency``:
        100 entries per write, default GC. Answers what changed."""
        with self._lock:
            return optimize_for(self.tuning, goal, PERSISTER_GOALS)
