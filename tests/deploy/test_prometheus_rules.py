"""deploy/prometheus: promtool accepts the rules and the configuration, the rule unit tests
pass, and every alert is tested firing and quiet and has a runbook entry."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.deploy.support import DEPLOY, REPO, load_yaml, require_promtool

RULES = DEPLOY / "prometheus" / "rules" / "tradepulse.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "tradepulse.test.yml"


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_promtool(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def alerts() -> list[dict[str, object]]:
    return [r for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"SUCCESS: {sum(len(g['rules']) for g in load_yaml(RULES)['groups'])} rules"
        in result.stdout
    )


def test_promtool_check_rules_refuses_a_bad_expression(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: rate(foo[5m]) >\n")
    assert promtool("check", "rules", str(bad)).returncode != 0


def test_promtool_check_config_accepts_the_compose_configuration(tmp_path: Path) -> None:
    # rule_files are absolute container paths: check the configuration with them replaced.
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/rules/*.yml", str(RULES)))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules_every_unit_test_passes() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules_fails_when_a_threshold_changes(tmp_path: Path) -> None:
    """The unit tests pin the thresholds: 1 % rejections made 3 % fails them."""
    changed = RULES.read_text(encoding="utf-8").replace(
        "ratio_rate5m > 0.01", "ratio_rate5m > 0.03"
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(changed)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / RULE_TESTS.name).write_text(RULE_TESTS.read_text(encoding="utf-8"))
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path / "tests")
    assert result.returncode != 0
    assert "TradepulseRejectionRateHigh" in result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {str(a["alert"]) for a in alerts()}
    assert names - fired == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"


def test_alerts_cover_the_operational_risks() -> None:
    names = {str(a["alert"]) for a in alerts()}
    assert names >= {
        "TradepulseProcessingLatencyHigh",
        "TradepulseRejectionRateHigh",
        "TradepulseConsumerLagGrowing",
        "TradepulseNoTrades",
        "TradepulseRedisErrors",
        "TradepulsePostgresErrors",
        "TradepulsePersisterBacklog",
        "TradepulseMemoryNearLimit",
        "TradepulseProcessRestarted",
        "TradepulseWebSocketDrops",
    }


def test_every_alert_has_a_severity_and_a_runbook_section() -> None:
    doc = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    headings = {re.sub(r"[^a-z0-9]", "", h.lower()) for h in re.findall(r"^#+ (.+)$", doc, re.M)}
    for alert in alerts():
        name = str(alert["alert"])
        assert alert["labels"]["severity"] in {"warning", "critical"}, name  # type: ignore[index]
        assert alert["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}"  # type: ignore[index]
        assert name.lower() in headings, f"docs/operations.md has no section {name}"
