"""deploy/k8s: the kustomizations resolve, every object validates against the Kubernetes
JSON schemas (kubernetes-validate, bundled, offline; ServiceMonitor against a schema written
from its CRD in tests/deploy/schemas), and the objects agree with each other and with the
code (commands, settings, ports, probe paths)."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.support import (
    DEPLOY,
    REPO,
    Doc,
    KustomizeError,
    containers,
    kustomize,
    parse_cli,
    pod_spec,
)
from tradepulse.config import _VARIABLES, load_settings, read_dotenv

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.33.0"
OVERLAYS = [K8S / "base", K8S / "overlays" / "production"]
#: Custom resources of the Prometheus Operator: schemas written from their CRDs.
CRD_SCHEMAS = {
    kind: json.loads((Path(__file__).parent / "schemas" / f"{kind.lower()}-v1.json").read_text())
    for kind in ("ServiceMonitor", "PrometheusRule")
}
ROLES = {"tradepulse-worker": "worker", "tradepulse-persister": "persist", "tradepulse-api": "api"}


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module", params=OVERLAYS, ids=lambda p: p.name)
def rendered(request: pytest.FixtureRequest) -> list[Doc]:
    return kustomize(request.param)


def validate(doc: Doc) -> None:
    if doc["kind"] in CRD_SCHEMAS:
        jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_k8s_every_object_validates_against_its_schema(rendered: list[Doc]) -> None:
    kinds = {d["kind"] for d in rendered}
    assert kinds == {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "Ingress",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PrometheusRule",
    }
    for doc in rendered:
        validate(doc)


@pytest.mark.parametrize(
    ("kind", "path", "bad"),
    [
        ("Deployment", ["spec", "replicas"], "two"),
        ("Deployment", ["spec", "template", "spec", "terminationGracePeriod"], 30),
        ("HorizontalPodAutoscaler", ["spec", "maxReplica"], 6),
        ("ServiceMonitor", ["spec", "endpoints", 0, "intervall"], "15s"),
        ("ServiceMonitor", ["spec", "endpoints", 0, "interval"], "15 seconds"),
        ("PrometheusRule", ["spec", "groups", 1, "rules", 0, "for"], "5 minutes"),
        ("PrometheusRule", ["spec", "groups", 1, "rules", 0, "severity"], "warning"),
    ],
)
def test_k8s_validation_typo_or_bad_value_is_refused(
    kind: str, path: list[Any], bad: object
) -> None:
    doc = copy.deepcopy(next(d for d in kustomize(K8S / "base") if d["kind"] == kind))
    node: Any = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = bad
    with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
        validate(doc)


def test_k8s_every_base_file_is_listed_and_exists() -> None:
    listed = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk


def test_kustomize_missing_resource_or_patch_target_fails(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [nope.yaml]\n")
    with pytest.raises(KustomizeError, match=r"nope\.yaml"):
        kustomize(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{K8S / 'base'}]\npatches: [{{path: p.yaml}}]\n"
    )
    (tmp_path / "p.yaml").write_text("kind: Deployment\nmetadata: {name: tradepulse-nope}\n")
    with pytest.raises(KustomizeError, match="tradepulse-nope"):
        kustomize(tmp_path)


@pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl (with its built-in kustomize) is not installed; the Python "
    "rendering is checked by the other tests",
)
@pytest.mark.parametrize("directory", OVERLAYS, ids=lambda p: p.name)
def test_kustomize_python_rendering_equals_kubectl_kustomize(directory: Path) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(kustomize(directory), key=key) == sorted(
        [d for d in yaml.safe_load_all(out) if d], key=key
    )


def pod_env(rendered: list[Doc], container: Doc) -> dict[str, str]:
    """The environment a container starts with: its envFrom ConfigMap and Secret, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= by_kind(rendered, "ConfigMap")[source["configMapRef"]["name"]]["data"]
        else:
            env |= by_kind(rendered, "Secret")[source["secretRef"]["name"]]["stringData"]
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "pod-name-from-the-downward-api")
    return env


def test_k8s_containers_run_real_commands_with_valid_settings(rendered: list[Doc]) -> None:
    documented = read_dotenv(REPO / ".env.example")
    for name, role in ROLES.items():
        deployment = by_kind(rendered, "Deployment")[name]
        for container in containers(deployment):
            parse_cli(container["args"])
            env = pod_env(rendered, container)
            assert set(env) - set(_VARIABLES) == set(), name
            assert set(env) - set(documented) == set(), name
            load_settings(env, dotenv=None)
        assert main_container(rendered, name)["args"][0] == role
        init = pod_spec(deployment)["initContainers"]  # type: ignore[index]
        assert [c["args"] for c in init] == [["db", "migrate"]]


def main_container(rendered: list[Doc], deployment: str) -> Doc:
    spec = pod_spec(by_kind(rendered, "Deployment")[deployment])
    assert spec is not None
    return spec["containers"][0]  # type: ignore[no-any-return]


def served_port(rendered: list[Doc], container: Doc) -> int:
    """The port the container's command serves its operations endpoints on."""
    if container["args"][0] == "api":
        return int(parse_cli(container["args"])["port"])
    settings = load_settings(pod_env(rendered, container), dotenv=None)
    return settings.persist_http_port if container["args"][0] == "persist" else settings.http_port


def probe_port(container: Doc, probe: Doc) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def test_k8s_probes_use_the_real_paths_on_the_served_port(rendered: list[Doc]) -> None:
    for name in ROLES:
        container = main_container(rendered, name)
        live, ready = container["livenessProbe"], container["readinessProbe"]
        assert live["httpGet"]["path"] == "/health/live", name
        assert ready["httpGet"]["path"] == "/health/ready", name
        for probe in (live, ready):
            assert probe_port(container, probe) == served_port(rendered, container), name
    persister = main_container(rendered, "tradepulse-persister")
    assert served_port(rendered, persister) == 9101  # TRADEPULSE_PERSIST_HTTP_PORT, not 9100


def test_k8s_workloads_have_resources_and_outlast_the_worker_shutdown(
    rendered: list[Doc],
) -> None:
    for name in ROLES:
        spec = pod_spec(by_kind(rendered, "Deployment")[name])
        assert spec is not None
        assert spec["terminationGracePeriodSeconds"] > 10, name
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in containers(by_kind(rendered, "Deployment")[name]):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name


def test_k8s_services_pdbs_and_autoscalers_select_existing_pods(rendered: list[Doc]) -> None:
    pods = {
        n: d["spec"]["template"]["metadata"]["labels"]
        for n, d in by_kind(rendered, "Deployment").items()
    }
    for kind in ("Service", "PodDisruptionBudget"):
        for name, doc in by_kind(rendered, kind).items():
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            matched = [n for n, labels in pods.items() if selector.items() <= labels.items()]
            assert len(matched) == 1, name
            if kind == "Service":
                named = {p["name"] for p in main_container(rendered, matched[0])["ports"]}
                assert {p["targetPort"] for p in doc["spec"]["ports"]} <= named, name
    for name, hpa in by_kind(rendered, "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["scaleTargetRef"]["name"] in pods, name
    assert set(by_kind(rendered, "PodDisruptionBudget")) >= {"tradepulse-worker", "tradepulse-api"}


def test_k8s_worker_autoscaler_never_exceeds_the_partitions(rendered: list[Doc]) -> None:
    hpa = by_kind(rendered, "HorizontalPodAutoscaler")["tradepulse-worker"]
    partitions = int(hpa["metadata"]["annotations"]["tradepulse.io/topic-partitions"])
    assert hpa["spec"]["maxReplicas"] == partitions
    assert by_kind(rendered, "Deployment")["tradepulse-worker"]["spec"]["replicas"] <= partitions
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    assert kinds["External"]["external"]["metric"]["name"] == "tradepulse_consumer_lag_messages"
    api = by_kind(rendered, "HorizontalPodAutoscaler")["tradepulse-api"]
    assert [m["resource"]["name"] for m in api["spec"]["metrics"]] == ["cpu"]


def test_k8s_ingress_serves_rest_and_websocket_with_tls(rendered: list[Doc]) -> None:
    ports = {
        n: {p["name"] for p in s["spec"]["ports"]} for n, s in by_kind(rendered, "Service").items()
    }
    paths = {}
    for ingress in by_kind(rendered, "Ingress").values():
        hosts = {h for rule in ingress["spec"]["rules"] for h in [rule["host"]]}
        assert hosts <= {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["port"]["name"] in ports[backend["name"]]
                paths[path["path"]] = backend["name"]
    assert paths == {"/": "tradepulse-api", "/ws": "tradepulse-api"}


def test_k8s_service_monitor_scrapes_worker_persister_and_api_ports(rendered: list[Doc]) -> None:
    monitor = by_kind(rendered, "ServiceMonitor")["tradepulse"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = {
        n: s
        for n, s in by_kind(rendered, "Service").items()
        if selector.items() <= s["metadata"]["labels"].items()
    }
    assert set(selected) == set(ROLES)
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    for name, service in selected.items():
        port = service["spec"]["ports"][0]
        endpoint = endpoints[port["name"]]
        assert endpoint["path"] == "/metrics"
        assert endpoint["relabelings"][0]["replacement"] == name  # job = the Deployment's name
        container = main_container(rendered, name)
        target = next(p for p in container["ports"] if p["name"] == port["targetPort"])
        assert target["containerPort"] == served_port(rendered, container), name
    jobs = {e["relabelings"][0]["replacement"] for e in endpoints.values()}
    assert jobs == set(ROLES)  # the jobs the alert rules use


def test_prometheus_rule_is_generated_from_the_rules_file() -> None:
    spec = importlib.util.spec_from_file_location(
        "to_prometheusrule", DEPLOY / "prometheus" / "to_prometheusrule.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (K8S / "base" / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert committed == module.render(), "run deploy/prometheus/to_prometheusrule.py"
    rules = yaml.safe_load((DEPLOY / "prometheus/rules/tradepulse.rules.yml").read_text())
    assert yaml.safe_load(committed)["spec"]["groups"] == rules["groups"]
