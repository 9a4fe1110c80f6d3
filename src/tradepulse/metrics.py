"""Every Prometheus metric of tradepulse, declared once (prefix ``tradepulse_``).

Counters end in ``_total``, durations in ``_seconds``; label values are bounded (rejection
reasons are ``field:rule`` pairs from a fixed list, partitions are the topic's). With
``worker --processes N`` each child keeps its own registry and the parent serves them all
on one port, each series labelled ``process="<index>"`` (see ``service/supervisor.py``).
"""

from __future__ import annotations

import os
import threading
import time

import psutil
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import REGISTRY

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the exposition for nothing

_BATCH_SIZES = (1, 10, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000)
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

TRADES_CONSUMED = Counter("tradepulse_trades_consumed_total", "Messages read from the trade topic.")
TRADES_APPLIED = Counter(
    "tradepulse_trades_applied_total", "Trades accepted into the windows (new, not late)."
)
TRADES_REJECTED = Counter(
    "tradepulse_trades_rejected_total",
    "Messages refused by validation and sent to the dead-letter topic.",
    ["reason"],
)
TRADES_DUPLICATE = Counter(
    "tradepulse_trades_duplicate_total", "Trades seen before (redelivery, replay): ignored."
)
TRADES_LATE = Counter(
    "tradepulse_trades_late_total", "Trades older than the longest window: dropped."
)
BATCH_SIZE = Histogram(
    "tradepulse_batch_size_trades", "Messages per processed batch.", buckets=_BATCH_SIZES
)
BATCH_SECONDS = Histogram(
    "tradepulse_batch_seconds",
    "Time to process one batch: decode, apply, write to Redis, commit.",
    buckets=_SECONDS,
)
REDIS_SECONDS = Histogram(
    "tradepulse_redis_call_seconds",
    "Duration of Redis round trips (pipelines, loads, sweeps).",
    ["operation"],
    buckets=_SECONDS,
)
REDIS_ERRORS = Counter(
    "tradepulse_redis_errors_total", "Redis calls that failed (connection, timeout)."
)
ACTIVE_TOKENS = Gauge("tradepulse_active_tokens", "Tokens held in memory by this process.")
CONSUMER_LAG = Gauge(
    "tradepulse_consumer_lag_messages",
    "Messages not yet consumed, per partition (from the consumer's statistics).",
    ["partition"],
)
WATERMARK = Gauge(
    "tradepulse_watermark_ms",
    "Event clock: the watermark (epoch ms); wall clock: the time of the last batch.",
)
ASSIGNED_PARTITIONS = Gauge(
    "tradepulse_assigned_partitions", "Partitions of the trade topic assigned to this process."
)
CIRCUIT_OPEN = Gauge(
    "tradepulse_redis_circuit_open", "1 while Redis is unavailable and consumption is paused."
)
ALERTS = Counter("tradepulse_alerts_total", "Alerts emitted by the rule scans.")
SCAN_SECONDS = Histogram(
    "tradepulse_scan_seconds", "Time of one rule scan with its writes.", buckets=_SECONDS
)
RULES_LOADED = Gauge("tradepulse_rules_enabled", "Enabled rules the scans evaluate.")
RSS = Gauge("tradepulse_process_rss_bytes", "Resident memory of this process.")
BARS_PERSISTED = Counter(
    "tradepulse_bars_persisted_total",
    "Bar rows the persister wrote to PostgreSQL (older revisions, which change nothing, "
    "are not counted; redeliveries of the same revision are).",
)
BAR_ENTRIES_MALFORMED = Counter(
    "tradepulse_bar_entries_malformed_total",
    "Entries of the finalized-bar stream that are not a valid bar: logged, acknowledged, "
    "not stored.",
)
PERSISTER_RETRIES = Counter(
    "tradepulse_persister_retries_total",
    "Persister calls to Redis or PostgreSQL that failed and were retried after a backoff.",
)
PERSISTER_BATCH_SECONDS = Histogram(
    "tradepulse_persister_batch_seconds",
    "Time to store one batch of bars and acknowledge its entries (retries included).",
    buckets=_SECONDS,
)
PERSISTER_BACKLOG = Gauge(
    "tradepulse_persister_backlog_entries",
    "Entries of a stream the persisters' group has not acknowledged: not yet delivered "
    "(XINFO GROUPS lag) plus delivered and pending. Read every few seconds by the persister.",
    ["stream"],
)
STREAM_TRIMMED = Counter(
    "tradepulse_stream_entries_trimmed_total",
    "Stream entries removed by the persister once every consumer group acknowledged them "
    "(alerts: also older than TRADEPULSE_ALERTS_RETENTION).",
    ["stream"],
)
HTTP_REQUESTS = Counter(
    "tradepulse_http_requests_total",
    "API requests answered, by route template, method and status class (2xx, 4xx, 5xx).",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "tradepulse_http_request_seconds",
    "API request handling time, by route template.",
    ["route"],
    buckets=_SECONDS,
)
AUTH_FAILURES = Counter(
    "tradepulse_auth_failures_total",
    "Bearer tokens refused (REST and WebSocket), by reason.",
    ["reason"],
)
WS_CONNECTIONS = Gauge("tradepulse_ws_connections", "WebSocket clients connected now.")
WS_MESSAGES_SENT = Counter(
    "tradepulse_ws_messages_sent_total",
    "Messages sent to WebSocket clients, by channel.",
    ["channel"],
)
WS_DROPPED = Counter(
    "tradepulse_ws_messages_dropped_total",
    "Stale statistics updates dropped for slow WebSocket clients, by channel.",
    ["channel"],
)
WS_DISCONNECTS = Counter(
    "tradepulse_ws_disconnects_total",
    "WebSocket connections closed by the server or the peer, by reason (normal, slow_client, "
    "dead_peer, rate_limited, auth, too_many, bad_request, error).",
    ["reason"],
)
WS_ALERTS_WITHHELD = Counter(
    "tradepulse_ws_alerts_withheld_total",
    "Alerts a WebSocket connection subscribed to but did not get because of its user's alert "
    "preferences, by reason (muted_channel, muted_rule, min_interval).",
    ["reason"],
)
WS_DELIVERY_SECONDS = Histogram(
    "tradepulse_ws_alert_delivery_seconds",
    "From an alert's appearance in the alerts stream to its send to a WebSocket client.",
    buckets=_SECONDS,
)
#: Metrics of the parent of ``worker --processes N`` only (its children do not export them).
SUPERVISOR = CollectorRegistry()
WORKER_RESTARTS = Counter(
    "tradepulse_worker_restarts_total",
    "Worker child processes restarted after dying.",
    registry=SUPERVISOR,
)
#: The persister's metrics, also in a registry of their own: with ``worker --processes N
#: --persist`` the persister runs in the parent, which serves these beside its children's.
PERSISTER = CollectorRegistry()
for _metric in (BARS_PERSISTED, BAR_ENTRIES_MALFORMED, PERSISTER_RETRIES, PERSISTER_BATCH_SECONDS,
                PERSISTER_BACKLOG, STREAM_TRIMMED):  # fmt: skip
    PERSISTER.register(_metric)
RSS.set_function(lambda: psutil.Process(os.getpid()).memory_info().rss)

_lock = threading.Lock()


def exposition(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    with _lock:
        return generate_latest(registry)


def snapshot(registry: CollectorRegistry = REGISTRY) -> dict[str, object]:
    """Every sample of ``registry`` as JSON-ready data: ``{name: [{labels, value}]}``."""
    out: dict[str, object] = {"time_ms": int(time.time() * 1000)}
    with _lock:
        families = list(registry.collect())
    for family in families:
        for sample in family.samples:
            series = out.setdefault(sample.name, [])
            assert isinstance(series, list)
            series.append({"labels": dict(sample.labels), "value": sample.value})
    return out
