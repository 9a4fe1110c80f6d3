"""deploy/docker/healthcheck.py, the image's probe, against real sockets and processes."""

from __future__ import annotations

import http.server
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.deploy.support import DEPLOY
from tests.support.broker import free_port

SCRIPT = DEPLOY / "docker" / "healthcheck.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health/live" else 503)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server_port() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def run(*args: str, env: dict[str, str] | None = None) -> int:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, timeout=30, check=False
    ).returncode


def test_healthcheck_live_endpoint_answering_200_is_healthy(server_port: int) -> None:
    assert run(str(server_port)) == 0
    assert run(env={**os.environ, "TRADEPULSE_HTTP_PORT": str(server_port)}) == 0


def test_healthcheck_503_or_closed_port_is_unhealthy(server_port: int) -> None:
    assert run(str(server_port), "/health/ready") == 1
    assert run(str(free_port())) == 1


def test_healthcheck_process_running_ok_stopped_or_missing_not() -> None:
    module = load()
    assert module.process_ok(os.getpid()) is True
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        child.send_signal(signal.SIGSTOP)
        for _ in range(100):
            if not module.process_ok(child.pid):
                break
            threading.Event().wait(0.02)
        assert module.process_ok(child.pid) is False
    finally:
        child.kill()
        child.wait()
    assert module.process_ok(child.pid) is False  # reaped: gone


def test_healthcheck_default_port_is_the_persist_port_for_the_persist_role() -> None:
    module = load()
    env = {"TRADEPULSE_HTTP_PORT": "9100", "TRADEPULSE_PERSIST_HTTP_PORT": "9201"}
    script = ["/opt/venv/bin/python", "/opt/venv/bin/tradepulse"]  # how the kernel runs it
    assert module.default_port([*script, "persist"], env) == "9201"
    assert module.default_port([*script, "persist"], {}) == "9101"
    assert module.default_port(["python", "-m", "tradepulse", "persist"], {}) == "9101"
    assert module.default_port([*script, "worker"], env) == "9100"
    assert module.default_port([*script, "--help"], {}) == "9100"
    assert module.default_port([], {}) == "9100"
