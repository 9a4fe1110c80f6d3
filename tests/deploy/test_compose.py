"""deploy/compose/compose.yaml against the code: the commands exist, the settings are read
by ``tradepulse.config`` and valid, and Prometheus scrapes every process that serves
metrics on the port it listens on. No Docker engine is needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import DEPLOY, REPO, load_docs, load_yaml, parse_cli
from tradepulse.config import _VARIABLES, load_settings, read_dotenv

COMPOSE = DEPLOY / "compose" / "compose.yaml"
TRADEPULSE_SERVICES = {"migrate", "worker-1", "worker-2", "persister", "api"}
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``; an unknown name
    without a default fails."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in values:
            return values[name]
        assert default is not None and ":?" not in match.group(0), f"${{{name}}} is not set"
        return default

    return _INTERPOLATION.sub(one, text)


@pytest.fixture(scope="module")
def compose_env() -> dict[str, str]:
    return read_dotenv(DEPLOY / "compose" / ".env.example")


@pytest.fixture(scope="module")
def compose(compose_env: dict[str, str]) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(interpolate(COMPOSE.read_text(encoding="utf-8"), compose_env))


def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


def test_compose_interpolations_all_in_env_template_are_defined(
    compose_env: dict[str, str],
) -> None:
    used = {m.group(1) for m in _INTERPOLATION.finditer(COMPOSE.read_text(encoding="utf-8"))}
    assert used, "no ${...} found: the pattern is wrong"
    assert used - set(compose_env) == set()


def test_compose_every_role_runs_the_one_image_with_a_real_command(
    compose: dict[str, Any], compose_env: dict[str, str]
) -> None:
    found = {n for n, s in services(compose).items() if s.get("build")}
    assert found == TRADEPULSE_SERVICES
    for name in TRADEPULSE_SERVICES:
        service = services(compose)[name]
        assert service["image"] == compose_env["TRADEPULSE_IMAGE"], name
        assert service["build"] == {"context": "../..", "dockerfile": "Dockerfile"}, name
        assert (COMPOSE.parent / service["build"]["context"] / "Dockerfile").is_file()
        parse_cli(service["command"])  # an unknown command or option raises


def test_compose_roles_are_the_expected_commands(compose: dict[str, Any]) -> None:
    commands = {n: services(compose)[n]["command"][0] for n in TRADEPULSE_SERVICES}
    assert commands == {
        "migrate": "db",
        "worker-1": "worker",
        "worker-2": "worker",
        "persister": "persist",
        "api": "api",
    }
    assert services(compose)["migrate"]["command"] == ["db", "migrate"]


def test_compose_environment_is_read_by_settings_and_valid(compose: dict[str, Any]) -> None:
    documented = read_dotenv(REPO / ".env.example")
    for name in TRADEPULSE_SERVICES:
        env = {k: str(v) for k, v in services(compose)[name]["environment"].items()}
        assert set(env) - set(_VARIABLES) == set(), f"{name}: variables tradepulse never reads"
        assert set(env) - set(documented) == set(), f"{name}: variables not in .env.example"
        load_settings(env, dotenv=None)  # raises ConfigError naming a bad value


def test_interpolate_unset_variable_without_default_fails() -> None:
    assert interpolate("a ${X:-b} ${Y}", {"Y": "c"}) == "a b c"
    with pytest.raises(AssertionError, match="Z"):
        interpolate("${Z:?set Z}", {})


def test_compose_workers_and_api_depend_on_migration_and_infrastructure(
    compose: dict[str, Any],
) -> None:
    for name in TRADEPULSE_SERVICES - {"migrate"}:
        depends = services(compose)[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
    for name in ("worker-1", "worker-2"):
        assert services(compose)[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services(compose)["migrate"]["restart"] == "no"


def test_compose_infrastructure_is_kraft_kafka_aof_redis_and_timescaledb(
    compose: dict[str, Any],
) -> None:
    kafka = services(compose)["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka["environment"]
    redis_cmd = services(compose)["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert services(compose)["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services(compose)["grafana"]["image"].startswith("grafana/grafana:")


def listen_port(service: dict[str, Any]) -> int:
    """The port a tradepulse service serves its operations endpoints on."""
    params = parse_cli(service["command"])
    if service["command"][0] == "api":
        return int(params["port"])
    settings = load_settings({k: str(v) for k, v in service["environment"].items()}, dotenv=None)
    return settings.persist_http_port if service["command"][0] == "persist" else settings.http_port


def scrape_targets() -> dict[str, set[str]]:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    return {
        job["job_name"]: {t for sc in job["static_configs"] for t in sc["targets"]}
        for job in config["scrape_configs"]
    }


def test_prometheus_scrapes_every_worker_persister_and_api_on_its_listen_port(
    compose: dict[str, Any],
) -> None:
    targets = scrape_targets()
    expected_workers = {
        f"{n}:{listen_port(services(compose)[n])}" for n in ("worker-1", "worker-2")
    }
    assert targets["tradepulse-worker"] == expected_workers == {"worker-1:9100", "worker-2:9100"}
    assert targets["tradepulse-api"] == {f"api:{listen_port(services(compose)['api'])}"}
    persister = f"persister:{listen_port(services(compose)['persister'])}"
    assert targets["tradepulse-persister"] == {persister} == {"persister:9101"}
    for job, ts in targets.items():
        for target in ts:
            host = target.split(":")[0]
            assert host == "localhost" or host in services(compose), f"{job}: {target}"


def test_compose_health_checks_probe_the_served_port(compose: dict[str, Any]) -> None:
    api = services(compose)["api"]
    assert api["healthcheck"]["test"][-1] == str(listen_port(api))
    assert api["ports"] == [f"8000:{listen_port(api)}"]
    persister = services(compose)["persister"]
    assert persister["healthcheck"]["test"][-2:] == [str(listen_port(persister)), "/health/live"]
    workers_port = listen_port(services(compose)["worker-1"])
    assert listen_port(persister) != workers_port  # its own setting, not the worker's


def test_compose_mounts_the_prometheus_and_grafana_files_that_exist(
    compose: dict[str, Any],
) -> None:
    mounts = [v for n in ("prometheus", "grafana") for v in services(compose)[n]["volumes"]]
    local = [m.split(":")[0] for m in mounts if m.startswith("..")]
    assert len(local) == 4
    for path in local:
        assert (COMPOSE.parent / path).exists(), path
    rules = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["rule_files"]
    assert rules == ["/etc/prometheus/rules/*.yml"]
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/tradepulse.yml")
    assert (
        f"{Path('../grafana/dashboards')}:{provider['providers'][0]['options']['path']}:ro"
        in mounts
    )


def test_compose_topic_partitions_match_the_worker_autoscaler_bound() -> None:
    topics = " ".join(load_docs(COMPOSE)[0]["services"]["topics"]["command"])
    partitions = int(re.search(r"--topic trade-info --partitions (\d+)", topics).group(1))  # type: ignore[union-attr]
    hpa = next(
        d
        for d in load_docs(DEPLOY / "k8s/base/hpa.yaml")
        if d["metadata"]["name"] == "tradepulse-worker"
    )
    assert hpa["spec"]["maxReplicas"] == partitions


#: Keys of the Compose specification used or plausible here; a typo (``depend_on``) fails.
SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "depends_on",
    "ports", "expose", "volumes", "healthcheck", "restart", "stop_grace_period",
    "stop_signal", "user", "working_dir", "labels", "networks", "deploy", "logging",
    "ulimits", "mem_limit", "cpus", "profiles", "init", "read_only", "tmpfs",
}  # fmt: skip
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "disable"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def test_compose_uses_only_specification_keys(compose: dict[str, Any]) -> None:
    assert set(compose) - {"name", "services", "volumes", "networks"} == {
        k for k in compose if k.startswith("x-")
    }
    named_volumes = set(compose["volumes"])
    for name, service in services(compose).items():
        assert set(service) <= SERVICE_KEYS, name
        assert set(service.get("healthcheck", {})) <= HEALTHCHECK_KEYS, name
        depends = service.get("depends_on", {})
        for target, condition in depends.items() if isinstance(depends, dict) else []:
            assert target in services(compose), (name, target)
            assert condition["condition"] in DEPENDS_CONDITIONS, (name, target)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in named_volumes, (name, volume)
