"""Every metric name used by the Grafana dashboards and the Prometheus rules exists: declared
in ``tradepulse.metrics`` (walking its registries), recorded by the rules, or one of the few
named series of the exporters the deployment runs beside tradepulse."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from tests.deploy.support import (
    DEPLOY,
    declared_metric_names,
    load_yaml,
    promql_metric_names,
)

RULES = DEPLOY / "prometheus" / "rules" / "tradepulse.rules.yml"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
#: Series from outside tradepulse, each with the component that exports it.
EXTERNAL = {
    "up": "Prometheus itself",
    "redis_stream_group_lag": "redis_exporter (REDIS_EXPORTER_CHECK_STREAMS)",
    "redis_stream_group_messages_pending": "redis_exporter (REDIS_EXPORTER_CHECK_STREAMS)",
    "pg_up": "postgres_exporter",
    "container_memory_working_set_bytes": "cAdvisor (kubelet)",
    "container_spec_memory_limit_bytes": "cAdvisor (kubelet)",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
}


def rule_exprs() -> list[str]:
    return [r["expr"] for g in load_yaml(RULES)["groups"] for r in g["rules"]]


def recorded() -> set[str]:
    return {r["record"] for g in load_yaml(RULES)["groups"] for r in g["rules"] if "record" in r}


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs + [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{x=~"$i"}[$__ri])))',
            {"a_bucket"},
        ),
        ("deriv(x:y:z[5m]) > 0 and on (pod) b > 1e4 or c offset 5m", {"x:y:z", "b", "c"}),
        ("time() - max without (instance) (w_ms) / 1000", {"w_ms"}),
        ("label_values(m_total, instance)", {"m_total"}),
    ],
)
def test_promql_metric_names_finds_selectors_only(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_declared_metric_names_include_histogram_and_counter_suffixes() -> None:
    names = declared_metric_names()
    assert {
        "tradepulse_batch_seconds_bucket",
        "tradepulse_batch_seconds_count",
        "tradepulse_trades_consumed_total",
        "tradepulse_worker_restarts_total",
        "tradepulse_consumer_lag_messages",
        "process_start_time_seconds",
    } <= names
    assert "tradepulse_batch_seconds" not in names
    assert "tradepulse_trades_consumed" not in names


def test_rules_use_only_existing_metrics() -> None:
    known = declared_metric_names() | recorded() | set(EXTERNAL)
    used = {n for e in rule_exprs() for n in promql_metric_names(e)}
    assert used - known == set()
    assert {n for n in used if n.startswith("tradepulse_")}, "no tradepulse metric found"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_use_only_existing_metrics(path: Any) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    known = declared_metric_names() | recorded() | set(EXTERNAL)
    used = {n for e in dashboard_exprs(dashboard) for n in promql_metric_names(e)}
    assert used, "no metric found in the dashboard"
    assert used - known == set()


def test_dashboards_are_provisioned_with_unique_uids_and_the_provisioned_datasource() -> None:
    assert [p.name for p in DASHBOARDS] == ["drilldown.json", "overview.json"]
    datasource = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
    uid = datasource["datasources"][0]["uid"]
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        uids.add(dashboard["uid"])
        for panel in dashboard["panels"]:
            if panel["type"] not in ("row", "text"):
                assert panel["datasource"]["uid"] == uid, (path.name, panel["title"])
    assert len(uids) == len(DASHBOARDS)


def test_overview_shows_the_operational_figures() -> None:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/overview.json").read_text())
    used = {n for e in dashboard_exprs(dashboard) for n in promql_metric_names(e)}
    assert used >= {
        "tradepulse_trades_consumed_total",
        "tradepulse_trades_applied_total",
        "tradepulse_trades_rejected_total",
        "tradepulse_batch_seconds_bucket",
        "tradepulse_consumer_lag_messages",
        "tradepulse_active_tokens",
        "tradepulse_redis_call_seconds_bucket",
        "tradepulse_persister_batch_seconds_bucket",
        "tradepulse_alerts_total",
        "tradepulse_ws_connections",
        "tradepulse_process_rss_bytes",
    }


def test_drilldown_has_process_and_partition_variables() -> None:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/drilldown.json").read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"instance", "partition", "token"} <= variables
    exprs = " ".join(dashboard_exprs(dashboard))
    assert "$instance" in exprs and "$partition" in exprs


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_have_unique_ids_and_fit_the_grid(path: Any) -> None:
    panels = json.loads(path.read_text(encoding="utf-8"))["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_committed_dashboards_are_what_generate_py_makes() -> None:
    spec = importlib.util.spec_from_file_location("generate", DEPLOY / "grafana" / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for name, dashboard in generate.build().items():
        committed = (DEPLOY / "grafana" / "dashboards" / name).read_text(encoding="utf-8")
        assert committed == generate.render(dashboard), f"run deploy/grafana/generate.py ({name})"
