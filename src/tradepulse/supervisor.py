"""``tradepulse worker --processes N``: N worker processes in one consumer group behind one
operations port.

The parent starts N children (``tradepulse worker --child DIR:INDEX``), restarts a child
that dies (after 1 s, doubling up to 30 s while it keeps dying quickly) and, on SIGTERM or
SIGINT, forwards the signal and waits for every child to finish its batch, write and commit
(a child still running after ``SHUTDOWN_S`` is killed; it then repeats nothing, being
idempotent, and loses nothing, having committed nothing).

One port serves the whole worker. Each child listens on a free loopback port that it
writes to ``DIR/child-INDEX.port``; the parent's server answers every endpoint by asking
the children: ``/metrics`` is every child's exposition with a ``process="INDEX"`` label on
each series (sum them in PromQL), plus the parent's restart counter; the JSON endpoints
list the children's answers; the POSTs are applied to every child. With ``--persist`` the
persister runs here, in the parent, and its series are added to ``/metrics`` unlabelled.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tradepulse import metrics
from tradepulse.adapters.ops_http import OpsServer
from tradepulse.config import Settings
from tradepulse.wiring import persist_in_thread

log = logging.getLogger(__name__)

SHUTDOWN_S = 9.0
_RESTART_FIRST_S = 1.0
_RESTART_MAX_S = 30.0
_STABLE_S = 60.0  # a child that lived this long restarts after the first delay again
_ASK_TIMEOUT_S = 3.0


class Child:
    """One worker child process and its restart bookkeeping."""

    def __init__(self, index: int, directory: Path) -> None:
        self.index = index
        self.port_file = directory / f"child-{index}.port"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0
        self.restart_at_s = 0.0
        self.delay_s = _RESTART_FIRST_S
        self.restarts = 0

    def start(self) -> None:
        self.port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tradepulse", "worker", "--child",
             f"{self.port_file.parent}:{self.index}"],
        )  # fmt: skip
        self.started_s = time.monotonic()
        log.info("worker child started", extra={"child": self.index, "pid": self.proc.pid})

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def port(self) -> int | None:
        try:
            return int(self.port_file.read_text())
        except (OSError, ValueError):
            return None

    def ask(self, method: str, path: str) -> tuple[int, bytes] | None:
        """``(status, body)`` of the child's endpoint, ``None`` if it does not answer."""
        port = self.port
        if port is None or not self.alive:
            return None
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=_ASK_TIMEOUT_S) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())
        except (OSError, urllib.error.URLError):
            return None


class Supervisor:
    """Runs, watches and stops the children."""

    def __init__(self, processes: int, directory: Path) -> None:
        self.children = [Child(i, directory) for i in range(processes)]

    def watch(self, stop: threading.Event) -> None:
        """Start every child and restart those that die, until ``stop``; then stop all."""
        for child in self.children:
            child.start()
        while not stop.wait(0.2):
            for child in self.children:
                self._revive(child)
        self._stop_all()

    def _revive(self, child: Child) -> None:
        if child.alive or child.proc is None:
            return
        now = time.monotonic()
        if child.restart_at_s == 0.0:
            code = child.proc.returncode
            if now - child.started_s >= _STABLE_S:
                child.delay_s = _RESTART_FIRST_S
            child.restart_at_s = now + child.delay_s
            log.error("worker child died, restarting in %.0fs", child.delay_s,
                      extra={"child": child.index, "exit_code": code})  # fmt: skip
            child.delay_s = min(child.delay_s * 2, _RESTART_MAX_S)
        elif now >= child.restart_at_s:
            child.restart_at_s = 0.0
            child.restarts += 1
            metrics.WORKER_RESTARTS.inc()
            child.start()

    def _stop_all(self) -> None:
        running = [c.proc for c in self.children if c.proc is not None and c.alive]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_S
        for proc in running:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                log.error("worker child did not stop in time, killed", extra={"pid": proc.pid})
                proc.kill()
                proc.wait()


class _Relabelled:
    """A collector yielding the children's metric families with a ``process`` label."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def merge_expositions(texts: dict[int, str]) -> list[Metric]:
    """The families of every child's exposition, each sample labelled ``process``."""
    merged: dict[str, Metric] = {}
    for index, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text):
            target = merged.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            for s in family.samples:
                labels = {**s.labels, "process": str(index)}
                target.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))
    return list(merged.values())


def _body(answer: dict[str, object]) -> dict[str, object]:
    body = answer.get("answer")
    return body if isinstance(body, dict) else {}


def _ints(value: object) -> list[int]:
    return [v for v in value if isinstance(v, int)] if isinstance(value, list) else []


class ClusterOps:
    """The operations surface of the whole worker, answered by asking every child. With
    ``persister`` (the persister runs in this process) ``/metrics`` has this process's
    persister series instead of the children's (which never persist: always zero)."""

    def __init__(self, supervisor: Supervisor, *, persister: bool = False) -> None:
        self.supervisor = supervisor
        self.persister = persister

    def _answers(self, method: str, path: str) -> list[dict[str, object]]:
        out = []
        for child in self.supervisor.children:
            reply = child.ask(method, path)
            entry: dict[str, object] = {"process": child.index, "alive": child.alive,
                                        "restarts": child.restarts}  # fmt: skip
            if reply is None:
                entry["answered"] = False
            else:
                entry["status"] = reply[0]
                entry["answer"] = msgspec.json.decode(reply[1])
            out.append(entry)
        return out

    def _check(self, path: str) -> tuple[list[dict[str, object]], bool]:
        answers = self._answers("GET", path)
        return answers, all(a.get("status") == 200 for a in answers)

    def live(self) -> tuple[bool, dict[str, object]]:
        answers, ok = self._check("/health/live")
        return ok, {"pid": os.getpid(), "processes": answers}

    def ready(self) -> tuple[bool, dict[str, object]]:
        """Ready: every child answers, Redis is reachable from each, and the group's
        partitions are assigned (a child may hold none when N exceeds the partitions)."""
        answers = self._answers("GET", "/health/ready")
        bodies = [_body(a) for a in answers]
        partitions = sorted(p for b in bodies for p in _ints(b.get("partitions")))
        redis_ok = all(b.get("redis") is True and not b.get("circuit_open") for b in bodies)
        ok = bool(partitions) and redis_ok
        return ok, {"partitions": partitions, "redis": redis_ok, "processes": answers}

    def health(self) -> tuple[bool, dict[str, object]]:
        live, live_body = self.live()
        ready, ready_body = self.ready()
        status = "ok" if live and ready else ("not_ready" if live else "failing")
        return live and ready, {"status": status, "live": live, "ready": ready,
                                "partitions": ready_body["partitions"],
                                "processes": live_body["processes"]}  # fmt: skip

    def metrics_text(self) -> bytes:
        texts = {}
        for child in self.supervisor.children:
            reply = child.ask("GET", "/metrics")
            if reply is not None and reply[0] == 200:
                texts[child.index] = reply[1].decode()
        own = {f.name for f in metrics.PERSISTER.collect()} if self.persister else set()
        registry = CollectorRegistry()
        registry.register(_Relabelled([f for f in merge_expositions(texts) if f.name not in own]))
        parent = metrics.exposition(metrics.SUPERVISOR)
        if self.persister:
            parent += metrics.exposition(metrics.PERSISTER)
        return generate_latest(registry) + parent

    def metrics_json(self) -> dict[str, object]:
        return {"processes": self._answers("GET", "/metrics/json")}

    def performance(self) -> dict[str, object]:
        answers = self._answers("GET", "/performance")
        rates = [_body(a).get("recent_trades_per_s") for a in answers]
        total = sum(r for r in rates if isinstance(r, int | float))
        return {"recent_trades_per_s": total, "processes": answers}

    def collect_garbage(self) -> dict[str, object]:
        return {"processes": self._answers("POST", "/performance/gc")}

    def optimize(self, goal: str) -> dict[str, object]:
        return {"goal": goal, "processes": self._answers("POST", f"/performance/optimize/{goal}")}


def run_group(
    processes: int, settings: Settings, stop: threading.Event, *, persist: bool = False
) -> None:
    """Supervise ``processes`` children serving one operations port until ``stop``; with
    ``persist`` the bar persister runs in this (the parent) process, once for the group."""
    persister = persist_in_thread(settings, stop) if persist else None
    with tempfile.TemporaryDirectory(prefix="tradepulse-worker-") as directory:
        supervisor = Supervisor(processes, Path(directory))
        backend = ClusterOps(supervisor, persister=persist)
        server = OpsServer(backend, settings.http_host, settings.http_port)
        server.start()
        try:
            supervisor.watch(stop)
        finally:
            server.stop()
            if persister is not None:
                persister.join(timeout=5)


def child_port_file(spec: str) -> Path:
    """``DIR:INDEX`` (the hidden ``--child`` option) to the file the child's port goes to."""
    directory, _, index = spec.rpartition(":")
    return Path(directory) / f"child-{int(index)}.port"


def watch_parent(stop: threading.Event) -> None:
    """Set ``stop`` when the parent process is gone (a child must not outlive it)."""
    parent = os.getppid()

    def check() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                log.error("parent process gone, stopping")
                stop.set()

    threading.Thread(target=check, name="parent-watch", daemon=True).start()
