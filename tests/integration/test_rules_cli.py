"""``tradepulse rules ...`` against the real PostgreSQL and Redis, through a typer app that
registers ``rules_app`` as ``cli.py`` does (``app.add_typer(rules_app, name="rules")``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import typer
from typer.testing import CliRunner

from tradepulse.adapters.postgres import migrate
from tradepulse.adapters.postgres_rules import RuleRepository
from tradepulse.rules_cli import rules_app

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.add_typer(rules_app, name="rules")


@app.callback()
def _root() -> None:
    """A root with only a group still needs the group's name on the command line."""


runner = CliRunner()


def rule(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "cooldown": 60,
            "conditions": [{"metric": "window.5min.buy_count", "op": ">", "value": 20}],
            **extra}  # fmt: skip


class Cli:
    """Runs ``rules`` commands with the test database and Redis prefix."""

    def __init__(self, dsn: str, prefix: str, redis_url: str = "redis://127.0.0.1:6379/0"):
        self.env = {"TRADEPULSE_PG_DSN": dsn, "TRADEPULSE_REDIS_PREFIX": prefix,
                    "TRADEPULSE_REDIS_URL": redis_url}  # fmt: skip

    def __call__(self, *args: str, **env: str) -> tuple[int, str, str]:
        result = runner.invoke(app, ["rules", *args], env={**self.env, **env})
        assert "Traceback" not in result.stdout + result.stderr
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli(pg_dsn: str, redis_prefix: str) -> Cli:
    migrate(pg_dsn)
    return Cli(pg_dsn, redis_prefix)


Published = Callable[[int], list[str]]


@pytest.fixture
def published(redis_client: redis.Redis, redis_prefix: str) -> Iterator[Published]:
    """``published(n)``: the rule ids published on ``{prefix}rules.updated`` since the test
    began, waiting up to 5 s for ``n`` of them and 0.2 s more for any extra."""
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(f"{redis_prefix}rules.updated")
    pubsub.get_message(timeout=1)  # the subscription is active from here on

    def take(n: int) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.05)
            if message is not None:
                seen.append(message["data"].decode())
            elif len(seen) >= n:
                deadline = min(deadline, time.monotonic() + 0.2)
        return seen

    yield take
    pubsub.close()


def write(tmp_path: Path, obj: object, name: str = "rules.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def test_add_a_list_prints_ids_stores_them_and_publishes_each(
    cli: Cli, tmp_path: Path, pg_dsn: str, published: Published
) -> None:
    code, out, err = cli("add", write(tmp_path, [rule("a"), rule("b")]), "--owner", "ana")
    assert code == 0 and "added 2 rules for ana" in err
    ids = out.split()
    with RuleRepository(pg_dsn) as repo:
        assert [(r.id, r.name, r.owner) for r in repo.list()] == [(ids[0], "a", "ana"),
                                                                (ids[1], "b", "ana")]  # fmt: skip
    assert published(2) == ids


def test_add_one_rule_default_owner(cli: Cli, tmp_path: Path) -> None:
    code, out, _ = cli("add", write(tmp_path, rule("solo")))
    assert code == 0
    _, listed, _ = cli("list", "--json")
    assert [(r["id"], r["owner"]) for r in json.loads(listed)] == [(out.strip(), "admin")]


def test_add_invalid_prints_every_error_with_its_path_exits_2_stores_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    condition = {"metric": "price", "op": "=>", "value": 1}
    bad = [rule("ok"), {"name": "x", "cooldown": 1, "conditions": [condition]}, "nope"]
    code, out, err = cli("add", write(tmp_path, bad))
    assert code == 2 and out == ""
    assert "[1].conditions[0].op: unknown operator '=>'" in err
    assert "[2]: expected an object, got string" in err
    assert json.loads(cli("list", "--json")[1]) == []


def test_add_one_invalid_rule_its_errors_carry_no_index(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("add", write(tmp_path, {"name": "x"}))
    assert code == 2 and "\n  conditions: required\n  cooldown: required" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{oops", "$: invalid JSON"), (b"[]", "empty array")],
)
def test_add_unreadable_content_exits_2(
    cli: Cli, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    code, _, err = cli("add", str(path))
    assert code == 2 and message in err


def test_add_missing_file_exits_2(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("add", str(tmp_path / "absent.json"))
    assert code == 2 and "cannot read" in err


def test_list_table_and_owner_filter(cli: Cli, tmp_path: Path) -> None:
    cli("add", write(tmp_path, rule("ana's")), "--owner", "ana")
    cli("add", write(tmp_path, rule("bob's", enabled=False)), "--owner", "bob")
    code, out, _ = cli("list")
    assert code == 0 and "ana's" in out and "bob's" in out
    _, out, _ = cli("list", "--owner", "bob", "--json")
    assert [(r["name"], r["enabled"]) for r in json.loads(out)] == [("bob's", False)]
    code, out, err = cli("list", "--owner", "carl")
    assert code == 0 and out == "" and "no rules of carl" in err


def test_enable_disable_rollback_show_and_delete(
    cli: Cli, tmp_path: Path, published: Published
) -> None:
    rule_id = cli("add", write(tmp_path, rule("r")))[1].strip()
    assert cli("disable", rule_id)[:2] == (0, "")
    code, _, err = cli("disable", rule_id)  # already off: no new version
    assert code == 0 and "version 2" in err
    assert cli("enable", rule_id)[0] == 0
    code, _, err = cli("rollback", rule_id, "2")
    assert code == 0 and "now version 4" in err
    code, out, _ = cli("show", rule_id, "--json")
    shown = json.loads(out)
    assert (shown["rule"]["version"], shown["rule"]["enabled"]) == (4, False)
    assert [(v["version"], v["enabled"]) for v in shown["versions"]] == [
        (1, True), (2, False), (3, True), (4, False)]  # fmt: skip
    code, out, _ = cli("show", rule_id)
    assert code == 0 and rule_id in out and "versions" in out and '"cooldown": 60' in out
    assert cli("delete", rule_id)[0] == 0
    assert published(5) == [rule_id] * 5  # add, disable, enable, rollback, delete
    for args in (["show", rule_id], ["delete", rule_id], ["enable", rule_id]):
        code, _, err = cli(*args)
        assert code == 2 and f"rule {rule_id} not found" in err


def test_rollback_to_a_missing_version_exits_2(cli: Cli, tmp_path: Path) -> None:
    rule_id = cli("add", write(tmp_path, rule("r")))[1].strip()
    code, _, err = cli("rollback", rule_id, "9")
    assert code == 2 and "has no version 9" in err


def test_redis_unreachable_is_a_warning_and_the_change_is_made(
    pg_dsn: str, redis_prefix: str, tmp_path: Path
) -> None:
    migrate(pg_dsn)
    cli = Cli(pg_dsn, redis_prefix, redis_url="redis://127.0.0.1:1/0")
    code, out, err = cli("add", write(tmp_path, [rule("a"), rule("b")]))
    assert code == 0 and len(out.split()) == 2
    assert err.count("warning") == 1 and "rules.updated" in err


def test_database_without_schema_exits_2_naming_db_migrate(pg_dsn: str, redis_prefix: str) -> None:
    code, _, err = Cli(pg_dsn, redis_prefix)("list")
    assert code == 2 and "db migrate" in err


def test_validate_needs_no_database_and_reports_every_error(tmp_path: Path) -> None:
    offline = Cli("postgresql://nobody@127.0.0.1:1/none", "x:")
    code, out, _ = offline("validate", write(tmp_path, [rule("a"), rule("b")]))
    assert (code, out.splitlines()) == (0, ["ok [0] a", "ok [1] b"])
    bad = {"name": "", "cooldown": 1, "conditions": {"any": []}}
    code, out, _ = offline("validate", write(tmp_path, bad))
    assert code == 1
    assert out.splitlines() == ["name: must be 1..200 characters, got 0",
                                "conditions.any: must not be empty"]  # fmt: skip
    code, out, _ = offline("validate", write(tmp_path, [rule("a"), {"name": "b"}]))
    assert code == 1
    assert out.splitlines() == ["ok [0] a", "[1].conditions: required", "[1].cooldown: required"]


def test_validate_uses_the_configured_windows(tmp_path: Path) -> None:
    offline = Cli("postgresql://nobody@127.0.0.1:1/none", "x:")
    path = write(tmp_path, rule("five"))
    assert offline("validate", path)[0] == 0
    code, out, _ = offline("validate", path, TRADEPULSE_WINDOWS="1min,1hour")
    assert code == 1 and "unknown window '5min' (configured: 1min, 1hour)" in out


def test_validate_bad_json_exits_1_missing_file_exits_2(tmp_path: Path) -> None:
    offline = Cli("postgresql://nobody@127.0.0.1:1/none", "x:")
    path = tmp_path / "bad.json"
    path.write_text("{")
    code, out, _ = offline("validate", str(path))
    assert code == 1 and out.startswith("$: invalid JSON")
    code, _, err = offline("validate", str(tmp_path / "absent.json"))
    assert code == 2 and "cannot read" in err
