"""Tracing through the real pipeline: a worker run in this process (so that the SDK's
in-memory exporter can be read) over a real broker and the real Redis, rules from a file;
then the alert persister into a real PostgreSQL. And: off by default, at no cost."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
import redis
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.integration.test_alert_persister import persister
from tests.integration.test_persister import wait_for
from tests.support.workers import committed_total, produce_synthetic, worker_env
from tradepulse import tracing
from tradepulse.adapters.postgres import migrate
from tradepulse.config import Settings, load_settings
from tradepulse.core.alerts import Alert, alert_ids
from tradepulse.service import runner
from tradepulse.wiring import build_worker, rule_feed

TRADES = 3_000
RULE = {"name": "traded", "cooldown": 3600,
        "conditions": [{"metric": "window.1hour.trade_count", "op": ">", "value": 0}]}  # fmt: skip


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    tracing.install(SimpleSpanProcessor(exporter), "tradepulse-test")
    yield exporter
    tracing.uninstall()


def settings_for(bootstrap: str, topic: str, prefix: str, rules: Path) -> Settings:
    env = worker_env(bootstrap, topic, f"tr-{topic}", prefix, TRADEPULSE_RULES=str(rules))
    return load_settings({k: v for k, v in env.items() if k.startswith(("TRADEPULSE_", "LOG"))},
                         dotenv=None)  # fmt: skip


def run_in_process(settings: Settings, until: int, client: redis.Redis) -> None:
    """A worker in a thread of this process until its group committed ``until`` messages
    and at least one alert is in the stream; then stopped (SIGTERM's path)."""
    worker, stop = build_worker(settings), threading.Event()
    thread = threading.Thread(target=runner.run, args=(worker.consumer, worker.pipeline, stop),
                              kwargs={"rules": rule_feed(settings)})  # fmt: skip
    thread.start()
    try:
        s = settings
        committed = lambda: committed_total(s.kafka_bootstrap, s.kafka_topic, s.kafka_group, 2)  # noqa: E731
        wait_for(lambda: committed() == until, timeout_s=120)
        wait_for(lambda: client.xlen(f"{settings.redis_prefix}alerts") > 0, timeout_s=60)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def children_of(parent: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def stream_alerts(client: redis.Redis, prefix: str) -> list[Alert]:
    return [msgspec.json.decode(f[b"alert"], type=Alert)
            for _, f in client.xrange(f"{prefix}alerts")]  # fmt: skip


def test_worker_batches_and_scans_traced_alert_carries_its_scan_trace_id(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str,
    tmp_path: Path, exported: InMemorySpanExporter,
) -> None:  # fmt: skip
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULE))
    produce_synthetic(kafka_bootstrap, topic, TRADES, 2, event_rate=500)
    run_in_process(settings_for(kafka_bootstrap, topic, redis_prefix, rules), TRADES,
                   redis_client)  # fmt: skip
    spans = exported.get_finished_spans()

    batches = named(spans, "batch")
    assert sum(b.attributes["tradepulse.trades"] for b in batches) == TRADES  # type: ignore[index,misc]
    assert {p for b in batches for p in b.attributes["tradepulse.partitions"]} == {0, 1}  # type: ignore[index,union-attr]
    assert all(0 < b.attributes["tradepulse.tokens"] <= b.attributes["tradepulse.trades"]  # type: ignore[index,operator]
               for b in batches)  # fmt: skip
    for batch in batches:
        assert batch.parent is None and batch.context is not None
        children = children_of(batch, spans)
        assert [c.name for c in children] == [
            "batch.decode", "batch.apply", "redis.write", "kafka.commit"]  # fmt: skip
        assert {hex_trace(c) for c in children} == {hex_trace(batch)}
        assert children[0].attributes == {"tradepulse.rejected": 0}

    scans = {hex_trace(s): s for s in named(spans, "scan")}
    alerts = stream_alerts(redis_client, redis_prefix)
    assert alerts and {a.trace_id for a in alerts} <= set(scans)
    for trace, count in _alerts_per_trace(alerts).items():
        scan = scans[trace]
        assert scan.attributes is not None and scan.attributes["tradepulse.alerts"] == count
        writes = [s for s in children_of(scan, spans) if s.name == "redis.write"]
        assert [w.attributes["tradepulse.alerts"] for w in writes] == [count]  # type: ignore[index]
    key = msgspec.json.encode(["traded", 0, alerts[0].token, alerts[0].triggered_ms])
    derived = alert_ids(key)  # the ids while tracing is off
    assert alerts[0].id == derived[0] and alerts[0].trace_id != derived[1]


def _alerts_per_trace(alerts: list[Alert]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in alerts:
        out[a.trace_id] = out.get(a.trace_id, 0) + 1
    return out


def test_alert_persister_span_names_the_alerts_trace_ids_and_postgres_keeps_them(
    kafka_bootstrap: str, topic: str, redis_client: redis.Redis, redis_prefix: str,
    tmp_path: Path, pg_dsn: str, exported: InMemorySpanExporter,
) -> None:  # fmt: skip
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULE))
    produce_synthetic(kafka_bootstrap, topic, 1_000, 2, event_rate=250)
    run_in_process(settings_for(kafka_bootstrap, topic, redis_prefix, rules), 1_000,
                   redis_client)  # fmt: skip
    alerts = stream_alerts(redis_client, redis_prefix)
    migrate(pg_dsn)
    with persister(redis_client, redis_prefix, pg_dsn) as stats:
        wait_for(lambda: stats.acked == len(alerts))
    with psycopg.connect(pg_dsn) as conn:
        rows = dict(conn.execute("SELECT id, trace_id FROM alerts").fetchall())
    assert rows == {a.id: a.trace_id for a in alerts}

    spans = exported.get_finished_spans()
    rounds = named(spans, "alerts.persist")
    traced = {t for r in rounds for t in r.attributes["tradepulse.alert_trace_ids"]}  # type: ignore[index,union-attr]
    assert traced == {a.trace_id for a in alerts} <= {hex_trace(s) for s in named(spans, "scan")}
    writes = [s for s in named(spans, "postgres.write") if s.parent is not None]
    assert sum(w.attributes["tradepulse.alerts"] for w in writes) == len(alerts)  # type: ignore[index,misc]
    assert {w.parent.span_id for w in writes} <= {r.context.span_id for r in rounds}  # type: ignore[union-attr]


def test_tracing_unset_endpoint_exports_nothing_and_imports_no_opentelemetry() -> None:
    """With TRADEPULSE_OTEL_ENDPOINT unset, ``configure`` turns nothing on and a worker's
    code path runs without importing the tracing SDK or an exporter (in a fresh process)."""
    script = """
import sys
from tradepulse import tracing
from tradepulse.config import load_settings
from tradepulse.service import pipeline, runner, persister, alert_persister
assert tracing.configure(load_settings({}, dotenv=None), "worker") is False
assert not tracing.enabled()
with tracing.span("batch") as span:
    assert span is tracing.NULL_SPAN and not span.is_recording()
    assert tracing.trace_id(span) is None
loaded = sorted(m for m in sys.modules  # (redis-py imports the metrics SDK for itself)
                if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter")))
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.strip() == b"ok"


def test_tracing_configured_endpoint_exports_spans_over_otlp_http() -> None:
    """``configure`` with an endpoint: spans reach a collector (a loopback HTTP server
    here) as OTLP/HTTP protobuf at ``/v1/traces``, under the role's service name."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        settings = load_settings({"TRADEPULSE_OTEL_ENDPOINT": url}, dotenv=None)
        assert tracing.configure(settings, "worker") is True
        with tracing.span("batch", {"tradepulse.trades": 3}), tracing.span("redis.write"):
            pass
        tracing.uninstall()  # flushes the batching processor
    finally:
        server.shutdown()
        server.server_close()
    assert [path for path, _ in received] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(received[0][1])
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "tradepulse-worker"
    names = sorted(s.name for scope in resource_spans.scope_spans for s in scope.spans)
    assert names == ["batch", "redis.write"]


@pytest.mark.parametrize(("endpoint", "url"), [
    ("http://c:4318", "http://c:4318/v1/traces"), ("http://c:4318/", "http://c:4318/v1/traces"),
    ("https://c/otlp/v1/traces", "https://c/otlp/v1/traces"),
])  # fmt: skip
def test_otlp_traces_url_appends_the_traces_path_once(endpoint: str, url: str) -> None:
    assert tracing.otlp_traces_url(endpoint) == url
