"""Builds the Grafana dashboards of deploy/grafana/dashboards from this one description.

    python deploy/grafana/generate.py      # rewrites overview.json and drilldown.json

Edit the panels here, not the JSON: tests/deploy/test_dashboards_metrics.py checks that the
committed JSON is what this script makes, and that every metric it uses exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources
Target = tuple[str, str]  # (PromQL, legend)
Panel = dict[str, Any]


def rate(metric: str, selector: str = "") -> str:
    braces = f"{{{selector}}}" if selector else ""
    return f"rate({metric}{braces}[$__rate_interval])"


def quantile(q: float, histogram: str, by: str = "", selector: str = "") -> str:
    """The ``q`` quantile of histogram ``histogram`` (base name), grouped by ``by``."""
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(histogram + '_bucket', selector)}))"


class Grid:
    """Places panels left to right, 24 columns wide, rows of ``h`` units."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self.x = self.y = self.row_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self._add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self._newline()

    def text(self, title: str, markdown: str, h: int = 4) -> None:
        self._add(
            {"type": "text", "title": title, "options": {"mode": "markdown", "content": markdown}},
            24,
            h,
        )
        self._newline()

    def chart(
        self, title: str, unit: str, targets: list[Target], w: int = 12, description: str = ""
    ) -> None:
        panel: Panel = {
            "type": "timeseries",
            "title": title,
            "datasource": DATASOURCE,
            "targets": [
                {
                    "datasource": DATASOURCE,
                    "expr": expr,
                    "legendFormat": legend,
                    "refId": chr(ord("A") + i),
                }
                for i, (expr, legend) in enumerate(targets)
            ],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        }
        if description:
            panel["description"] = description
        self._add(panel, w, 8)

    def _add(self, panel: Panel, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _newline(self) -> None:
        self.y += self.row_h
        self.x = self.row_h = 0


def dashboard(
    uid: str, title: str, description: str, grid: Grid, variables: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tradepulse"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": grid.panels,
    }


def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "sort": 3,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def textbox(name: str, label: str, default: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "textbox",
        "query": default,
        "current": {"text": default, "value": default},
    }


def overview() -> dict[str, Any]:
    g = Grid()
    g.row("Trades")
    g.chart(
        "Trades/s consumed and applied",
        "ops",
        [
            (f"sum({rate('tradepulse_trades_consumed_total')})", "consumed"),
            (f"sum({rate('tradepulse_trades_applied_total')})", "applied"),
            (f"sum({rate('tradepulse_trades_duplicate_total')})", "duplicate"),
            (f"sum({rate('tradepulse_trades_late_total')})", "late"),
        ],
    )
    g.chart(
        "Rejections by reason",
        "ops",
        [(f"sum by (reason) ({rate('tradepulse_trades_rejected_total')})", "{{reason}}")],
        description="Rejected messages go to the dead-letter topic with their reason (field:rule).",
    )
    g.chart(
        "Batch time percentiles",
        "s",
        [(quantile(q, "tradepulse_batch_seconds"), f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99)],
        description="Decode, apply, write to Redis, commit. Alert above 100 ms at p99.",
    )
    g.chart(
        "Consumer lag per partition",
        "short",
        [("max by (partition) (tradepulse_consumer_lag_messages)", "partition {{partition}}")],
    )
    g.row("State")
    g.chart(
        "Active tokens",
        "short",
        [
            ("sum(tradepulse_active_tokens)", "all workers"),
            ("sum by (instance) (tradepulse_active_tokens)", "{{instance}}"),
        ],
        w=8,
    )
    g.chart(
        "Alerts/s",
        "short",
        [
            (f"sum({rate('tradepulse_alerts_total')})", "alerts"),
            ("sum(tradepulse_rules_enabled)", "enabled rules (all workers)"),
        ],
        w=8,
    )
    g.chart(
        "WebSocket connections",
        "short",
        [
            ("sum(tradepulse_ws_connections)", "connections"),
            (
                f"sum by (reason) ({rate('tradepulse_ws_disconnects_total')})",
                "disconnects/s {{reason}}",
            ),
        ],
        w=8,
    )
    g.row("Stores")
    g.chart(
        "Redis call latency (p99 by operation)",
        "s",
        [
            (quantile(0.99, "tradepulse_redis_call_seconds", "operation"), "{{operation}}"),
            (f"sum({rate('tradepulse_redis_errors_total')})", "errors/s"),
        ],
        w=8,
    )
    g.chart(
        "PostgreSQL call latency",
        "s",
        [
            (quantile(0.5, "tradepulse_persister_batch_seconds"), "persister batch p50"),
            (quantile(0.99, "tradepulse_persister_batch_seconds"), "persister batch p99"),
            (
                quantile(0.99, "tradepulse_http_request_seconds", selector='route=~".*/candles"'),
                "API candles p99",
            ),
            (f"sum({rate('tradepulse_persister_retries_total')})", "persister retries/s"),
        ],
        w=8,
        description="Persister batches (store, then acknowledge), from `tradepulse persist` "
        "(port 9101) or workers run with --persist; API candle requests read PostgreSQL.",
    )
    g.chart(
        "Persister backlog (entries not yet in PostgreSQL)",
        "short",
        [
            ("tradepulse:persister_backlog:entries", "{{stream}}"),
            (f"sum by (stream) ({rate('tradepulse_stream_entries_trimmed_total')})",
             "{{stream}} trimmed/s"),
        ],
        w=8,
        description="Reported by the persisters (redis_exporter's stream metrics while none "
        "does; recording rule), and the acknowledged entries trimmed per second.",
    )
    g.row("Processes")
    g.chart(
        "Resident memory",
        "bytes",
        [("tradepulse_process_rss_bytes", "{{job}} {{instance}} {{process}}")],
    )
    g.chart(
        "API requests/s by status",
        "short",
        [
            (f"sum by (status) ({rate('tradepulse_http_requests_total')})", "{{status}}"),
            (quantile(0.99, "tradepulse_http_request_seconds"), "p99 seconds"),
        ],
    )
    return dashboard(
        "tradepulse-overview",
        "tradepulse / overview",
        "Every tradepulse process: trades in and applied, rejections, batch "
        "latency, lag, state, stores, memory.",
        g,
        [],
    )


DRILLDOWN_ABOUT = (
    "tradepulse exports no per-token series (token addresses are unbounded label values), so "
    "this board drills down by **worker process** (`instance`) and **partition**: a token lives "
    "on exactly one partition, owned by one worker at a time. For one token's live statistics "
    "open the API: [/api/v1/tokens/${token}](${api_url}/api/v1/tokens/${token}) (set `api_url` "
    "and `token` above)."
)


def drilldown() -> dict[str, Any]:
    inst, part = 'instance=~"$instance"', 'partition=~"$partition"'
    g = Grid()
    g.text("About this drill-down", DRILLDOWN_ABOUT)
    g.chart(
        "Trades/s consumed and applied",
        "ops",
        [
            (
                f"sum by (instance) ({rate('tradepulse_trades_consumed_total', inst)})",
                "consumed {{instance}}",
            ),
            (
                f"sum by (instance) ({rate('tradepulse_trades_applied_total', inst)})",
                "applied {{instance}}",
            ),
        ],
    )
    g.chart(
        "Lag of the selected partitions",
        "short",
        [
            (
                f"max by (partition, instance) (tradepulse_consumer_lag_messages{{{inst},{part}}})",
                "p{{partition}} on {{instance}}",
            )
        ],
    )
    g.chart(
        "Batch time p50 and p99",
        "s",
        [
            (quantile(0.99, "tradepulse_batch_seconds", "instance", inst), "p99 {{instance}}"),
            (quantile(0.5, "tradepulse_batch_seconds", "instance", inst), "p50 {{instance}}"),
        ],
    )
    g.chart(
        "Rejections by reason",
        "ops",
        [
            (
                f"sum by (reason, instance) ({rate('tradepulse_trades_rejected_total', inst)})",
                "{{reason}} {{instance}}",
            )
        ],
    )
    g.chart(
        "Active tokens and assigned partitions",
        "short",
        [
            (f"sum by (instance) (tradepulse_active_tokens{{{inst}}})", "tokens {{instance}}"),
            (
                f"sum by (instance) (tradepulse_assigned_partitions{{{inst}}})",
                "partitions {{instance}}",
            ),
        ],
        w=8,
    )
    g.chart(
        "Watermark delay",
        "s",
        [
            (
                f"time() - max by (instance) (tradepulse_watermark_ms{{{inst}}}) / 1000",
                "{{instance}}",
            )
        ],
        w=8,
        description="Wall clock: seconds since the last batch; event clock: how far the "
        "watermark is behind now.",
    )
    g.chart(
        "Redis: circuit and p99 call time",
        "short",
        [
            (
                f"max by (instance) (tradepulse_redis_circuit_open{{{inst}}})",
                "circuit open {{instance}}",
            ),
            (quantile(0.99, "tradepulse_redis_call_seconds", "instance", inst), "p99 {{instance}}"),
        ],
        w=8,
    )
    g.chart(
        "Rule scans p99 and alerts/s",
        "short",
        [
            (quantile(0.99, "tradepulse_scan_seconds", "instance", inst), "scan p99 {{instance}}"),
            (
                f"sum by (instance) ({rate('tradepulse_alerts_total', inst)})",
                "alerts/s {{instance}}",
            ),
        ],
    )
    g.chart(
        "Resident memory",
        "bytes",
        [(f"tradepulse_process_rss_bytes{{{inst}}}", "{{instance}} {{process}}")],
    )
    variables = [
        query_variable(
            "instance", "worker process", "label_values(tradepulse_trades_consumed_total, instance)"
        ),
        query_variable(
            "partition", "partition", "label_values(tradepulse_consumer_lag_messages, partition)"
        ),
        textbox("token", "token (for the API link)", ""),
        textbox("api_url", "API base URL", "http://localhost:8000"),
    ]
    return dashboard(
        "tradepulse-drilldown",
        "tradepulse / process and partition drill-down",
        "Per worker process and partition (no per-token series exist), with a "
        "link to one token's live statistics in the API.",
        g,
        variables,
    )


def build() -> dict[str, dict[str, Any]]:
    """File name -> dashboard."""
    return {"overview.json": overview(), "drilldown.json": drilldown()}


def render(dashboard_: dict[str, Any]) -> str:
    return json.dumps(dashboard_, indent=2) + "\n"


def main() -> None:
    for name, built in build().items():
        (OUT / name).write_text(render(built), encoding="utf-8")


if __name__ == "__main__":
    main()
