"""The operations HTTP server of a worker: health, metrics, performance (stdlib HTTP in a
daemon thread, so it answers even while the batch loop is busy or waiting for Redis).

Routes (JSON unless noted; a failed check answers 503 with the same body)::

    GET  /health                          live and ready
    GET  /health/live                     the batch loop turns
    GET  /health/ready                    partitions assigned and Redis reachable
    GET  /metrics                         Prometheus text exposition
    GET  /metrics/json                    the same samples as JSON
    GET  /performance                     throughput, batch latency, memory, CPU, GC
    POST /performance/gc                  full garbage collection now
    POST /performance/optimize/throughput big batches, rare GC
    POST /performance/optimize/latency    small batches, default GC
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

import msgspec

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class OpsBackend(Protocol):
    def live(self) -> tuple[bool, dict[str, object]]: ...

    def ready(self) -> tuple[bool, dict[str, object]]: ...

    def health(self) -> tuple[bool, dict[str, object]]: ...

    def metrics_text(self) -> bytes: ...

    def metrics_json(self) -> dict[str, object]: ...

    def performance(self) -> dict[str, object]: ...

    def collect_garbage(self) -> dict[str, object]: ...

    def optimize(self, goal: str) -> dict[str, object]: ...


Reply = tuple[int, str, bytes]


def _json(body: object, ok: bool = True) -> Reply:
    return (200 if ok else 503), "application/json", msgspec.json.encode(body)


def _check(answer: tuple[bool, dict[str, object]]) -> Reply:
    return _json(answer[1], answer[0])


def routes(backend: OpsBackend) -> dict[tuple[str, str], Callable[[], Reply]]:
    """``(method, path) -> handler`` for ``backend``."""
    return {
        ("GET", "/health"): lambda: _check(backend.health()),
        ("GET", "/health/live"): lambda: _check(backend.live()),
        ("GET", "/health/ready"): lambda: _check(backend.ready()),
        ("GET", "/metrics"): lambda: (200, PROMETHEUS_CONTENT_TYPE, backend.metrics_text()),
        ("GET", "/metrics/json"): lambda: _json(backend.metrics_json()),
        ("GET", "/performance"): lambda: _json(backend.performance()),
        ("POST", "/performance/gc"): lambda: _json(backend.collect_garbage()),
        ("POST", "/performance/optimize/throughput"): lambda: _json(backend.optimize("throughput")),
        ("POST", "/performance/optimize/latency"): lambda: _json(backend.optimize("latency")),
    }


def _problem(status: int, title: str, detail: str) -> Reply:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return status, "application/problem+json", msgspec.json.encode(body)


class _Handler(BaseHTTPRequestHandler):
    server: OpsServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        table = self.server.table
        handler = table.get((method, path))
        if handler is not None:
            try:
                status, ctype, body = handler()
            except Exception as exc:  # an ops endpoint must never take the process down
                log.exception("ops endpoint failed path=%s", path)
                status, ctype, body = _problem(500, "Internal Server Error", str(exc))
        elif any(p == path for _, p in table):
            allowed = ", ".join(m for m, p in table if p == path)
            status, ctype, body = _problem(405, "Method Not Allowed", f"{path} accepts {allowed}")
        else:
            known = ", ".join(sorted({p for _, p in table}))
            status, ctype, body = _problem(404, "Not Found", f"{path} is not one of: {known}")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("ops request " + format, *args)


class OpsServer(ThreadingHTTPServer):
    """Serves ``backend`` on ``host:port`` (port 0: any free port, see ``port``)."""

    daemon_threads = True

    def __init__(self, backend: OpsBackend, host: str, port: int) -> None:
        self.table = routes(backend)
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="ops-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> OpsServer:
        self._thread.start()
        log.info("ops endpoints listening host=%s port=%s", self.server_address[0], self.port)
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
