""".github/workflows/ci.yml runs lint and the test suite with Redis and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.support import REPO, load_yaml


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load_yaml(REPO / ".github" / "workflows" / "ci.yml")  # type: ignore[no-any-return]


def runs(job: dict[str, Any]) -> list[str]:
    return [line.strip() for s in job["steps"] if "run" in s for line in s["run"].splitlines()]


def test_ci_runs_make_lint_and_make_test(workflow: dict[str, Any]) -> None:
    commands = [c for job in workflow["jobs"].values() for c in runs(job)]
    assert "make lint" in commands
    assert "make test" in commands


def test_ci_tests_get_redis_and_postgres_on_the_default_ports(workflow: dict[str, Any]) -> None:
    job = next(j for j in workflow["jobs"].values() if "make test" in runs(j))
    services = job["services"]
    assert services["redis"]["ports"] == ["6379:6379"]
    assert services["postgres"]["ports"] == ["5432:5432"]
    assert services["postgres"]["env"]["POSTGRES_DB"] == "test"
    assert job["env"]["TRADEPULSE_PG_DSN"].endswith("@127.0.0.1:5432/test")
    assert any("prometheus" in c for c in runs(job)), "promtool is needed by tests/deploy"


def test_ci_triggers_on_pushes_and_pull_requests(workflow: dict[str, Any]) -> None:
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1: on = True
    assert {"push", "pull_request"} <= set(triggers)
    for job in workflow["jobs"].values():
        setup = next(
            s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python")
        )
        assert setup["with"]["python-version"] == "3.11"
