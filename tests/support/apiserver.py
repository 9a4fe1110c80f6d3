"""A real api process for tests and benchmarks: ``create_app`` served by uvicorn in a thread
on a free loopback port (the port is bound before uvicorn starts)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from litestar import Litestar

from tradepulse.api.app import ApiDeps, create_app
from tradepulse.config import Settings


@dataclass(frozen=True)
class RunningApi:
    app: Litestar
    host: str
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def serve_api(settings: Settings, *, timeout_s: float = 10.0) -> Iterator[RunningApi]:
    """The app served until the block ends; ready when the WebSocket gateway follows the
    alerts stream (alerts added from then on are delivered)."""
    app = create_app(ApiDeps.from_settings(settings))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    config = uvicorn.Config(app, log_config=None, lifespan="on", ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not (server.started and _gateway_ready(app)):
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the api did not start")
            time.sleep(0.02)
        yield RunningApi(app, "127.0.0.1", sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()


def _gateway_ready(app: Litestar) -> bool:
    gateway = getattr(app.state, "gateway", None)
    return gateway is not None and gateway.ready.is_set()
