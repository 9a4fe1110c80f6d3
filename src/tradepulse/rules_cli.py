"""``tradepulse rules``: manage the alert rules stored in PostgreSQL.

``cli.py`` registers ``rules_app`` (``app.add_typer(rules_app, name="rules")``). Rules are
validated against the configured windows (``TRADEPULSE_WINDOWS``); ``validate`` needs no
database. Every change is published on the Redis channel ``{prefix}rules.updated`` so that
workers reload at once; when Redis cannot be reached that is a warning, not an error
(workers also reload periodically). Errors print on stderr and exit with status 2, never a
traceback; ``validate`` exits 1 when a rule is invalid. psycopg and redis are imported
inside the commands: ``tradepulse --help`` imports this module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from tradepulse.config import Settings, load_settings
from tradepulse.core.errors import TradepulseError
from tradepulse.core.rules import RuleError, parse_rule

if TYPE_CHECKING:
    from tradepulse.adapters.postgres_rules import RuleRepository, RuleVersion, StoredRule

T = TypeVar("T")
RULES_UPDATED = "rules.updated"
DEFAULT_OWNER = "admin"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # never cut a message

rules_app = typer.Typer(
    help="Alert rules stored in PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

FileArg = Annotated[Path, typer.Argument(help="A JSON rule or a JSON array of rules ('-': stdin).")]
IdArg = Annotated[str, typer.Argument(help="Rule id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


# --- helpers -----------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/] {message}", markup=True)
    raise typer.Exit(2)


def _or_exit(call: Callable[[], T]) -> T:
    """``call()``; an invalid rule prints each of its errors, any other ``TradepulseError``
    its message, and both exit 2."""
    try:
        return call()
    except RuleError as exc:
        err.print(f"[red]invalid rule[/] ({len(exc.errors)} errors):", markup=True)
        for line in exc.errors:
            err.print(f"  {line}", markup=False)
        raise typer.Exit(2) from exc
    except TradepulseError as exc:
        _fail(str(exc))


def _settings() -> Settings:
    try:
        return load_settings()
    except TradepulseError as exc:
        err.print(f"[red]configuration error:[/] {exc}", markup=True)
        raise typer.Exit(2) from exc


def _windows(settings: Settings) -> tuple[str, ...]:
    return tuple(w.name for w in settings.windows)


def _read(path: Path) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")


def _documents(data: bytes) -> tuple[list[Any], bool]:
    """The rule documents of a file and whether it held an array; ``RuleError`` at ``$``
    when it is not JSON or an empty array."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise RuleError([f"$: invalid JSON: {exc}"]) from exc
    if obj == []:
        raise RuleError(["$: an empty array holds no rule"])
    return (obj, True) if isinstance(obj, list) else ([obj], False)


class _Notifier:
    """Publishes rule ids on ``{prefix}rules.updated``; after the first failure it warns
    once and stops trying (each try could wait for a connect timeout)."""

    def __init__(self, settings: Settings) -> None:
        import redis

        self._channel = f"{settings.redis_prefix}{RULES_UPDATED}"
        self._client: redis.Redis | None = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )

    def __call__(self, rule_id: str) -> None:
        import redis

        if self._client is None:
            return
        try:
            self._client.publish(self._channel, rule_id)
        except redis.RedisError as exc:
            err.print(f"[yellow]warning:[/] cannot publish on {self._channel} ({exc}); "
                      "workers pick the change up at their next reload", markup=True)  # fmt: skip
            self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@contextmanager
def _repository(settings: Settings) -> Iterator[RuleRepository]:
    from tradepulse.adapters.postgres_rules import RuleRepository

    notify = _Notifier(settings)
    try:
        with RuleRepository(settings.pg_dsn, windows=_windows(settings), on_change=notify) as repo:
            yield repo
    finally:
        notify.close()


def _utc(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d %H:%M:%SZ")


def _out() -> Console:
    out = Console(highlight=False)
    return out if out.is_terminal else Console(width=200, highlight=False)  # a pipe: no cut


def _rules_table(rules: list[StoredRule]) -> Table:
    table = Table()
    for column in ("id", "owner", "name", "enabled", "version", "updated (UTC)"):
        table.add_column(column, justify="right" if column == "version" else "left")
    for r in rules:
        table.add_row(r.id, r.owner, r.name, "yes" if r.enabled else "no", str(r.version),
                      _utc(r.updated_ms))  # fmt: skip
    return table


def _versions_table(versions: list[RuleVersion]) -> Table:
    table = Table(title="versions")
    for column in ("version", "enabled", "written (UTC)", "name"):
        table.add_column(column)
    for v in versions:
        table.add_row(str(v.version), "yes" if v.enabled else "no", _utc(v.created_ms),
                      str(v.definition.get("name", "")))  # fmt: skip
    return table


def _json(obj: object) -> str:
    return msgspec.json.format(msgspec.json.encode(obj)).decode()


# --- commands ----------------------------------------------------------------------------


@rules_app.command("add")
def add_cmd(
    file: FileArg,
    owner: Annotated[str, typer.Option("--owner", help="Owner of the new rules.")] = DEFAULT_OWNER,
) -> None:
    """Add the rules of FILE (all or none) and print their ids, one a line."""
    if not owner.strip():
        raise typer.BadParameter("must not be blank", param_hint="--owner")
    settings = _settings()
    data = _read(file)
    documents, is_list = _or_exit(lambda: _documents(data))
    with _repository(settings) as repo:
        if is_list:
            stored = _or_exit(lambda: repo.create_many(owner, documents))
        else:
            stored = [_or_exit(lambda: repo.create(owner, documents[0]))]
    for rule in stored:
        typer.echo(rule.id)
    err.print(f"added {len(stored)} rule{'s' if len(stored) != 1 else ''} for {owner}")


@rules_app.command("list")
def list_cmd(
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rules not deleted, oldest first."""
    settings = _settings()
    with _repository(settings) as repo:
        rules = _or_exit(lambda: repo.list(owner))
    if as_json:
        typer.echo(_json(rules))
    elif rules:
        _out().print(_rules_table(rules))
    else:
        err.print("no rules" + (f" of {owner}" if owner is not None else ""))


@rules_app.command("show")
def show_cmd(rule_id: IdArg, as_json: JsonOpt = False) -> None:
    """A rule, its definition and every version of it."""
    settings = _settings()
    with _repository(settings) as repo:
        rule = _or_exit(lambda: repo.get(rule_id))
        if rule is None:
            _fail(f"rule {rule_id} not found")
        versions = _or_exit(lambda: repo.versions(rule_id))
    if as_json:
        typer.echo(_json({"rule": rule, "versions": versions}))
        return
    out = _out()
    for label, value in (("id", rule.id), ("owner", rule.owner), ("name", rule.name),
                         ("enabled", "yes" if rule.enabled else "no"),
                         ("version", rule.version), ("created", _utc(rule.created_ms)),
                         ("updated", _utc(rule.updated_ms))):  # fmt: skip
        out.print(f"{label:<9}{value}", markup=False)
    out.print("definition:")
    out.print(_json(rule.definition), markup=False)
    out.print(_versions_table(versions))


def _set_enabled(rule_id: str, enabled: bool) -> None:
    settings = _settings()
    with _repository(settings) as repo:
        rule = _or_exit(lambda: repo.patch(rule_id, enabled=enabled))
    state = "enabled" if enabled else "disabled"
    err.print(f"rule {rule.id} {state} (version {rule.version})")


@rules_app.command("enable")
def enable_cmd(rule_id: IdArg) -> None:
    """Switch a rule on (a new version; nothing when it is on already)."""
    _set_enabled(rule_id, True)


@rules_app.command("disable")
def disable_cmd(rule_id: IdArg) -> None:
    """Switch a rule off (a new version; nothing when it is off already)."""
    _set_enabled(rule_id, False)


@rules_app.command("delete")
def delete_cmd(rule_id: IdArg) -> None:
    """Delete a rule (its history and its alerts stay in the database)."""
    settings = _settings()
    with _repository(settings) as repo:
        _or_exit(lambda: repo.delete(rule_id))
    err.print(f"rule {rule_id} deleted")


@rules_app.command("rollback")
def rollback_cmd(
    rule_id: IdArg,
    version: Annotated[int, typer.Argument(help="The version to restore.", min=1)],
) -> None:
    """Make an old version current again, as a new version."""
    settings = _settings()
    with _repository(settings) as repo:
        rule = _or_exit(lambda: repo.rollback(rule_id, version))
    err.print(f"rule {rule.id} rolled back to version {version}: now version {rule.version}")


@rules_app.command("validate")
def validate_cmd(file: FileArg) -> None:
    """Check the rules of FILE without storing them (no database needed): prints every
    error with its JSON path; exit status 1 when a rule is invalid."""
    from tradepulse.adapters.postgres_rules import index_errors

    windows = _windows(_settings())
    try:
        documents, is_list = _documents(_read(file))
    except RuleError as exc:
        documents, is_list, errors = [], False, exc.errors
    else:
        errors = []
    for i, document in enumerate(documents):
        try:
            rule = parse_rule(document, windows=windows)
        except RuleError as exc:
            errors += index_errors(i, exc.errors) if is_list else exc.errors
        else:
            typer.echo(f"ok {f'[{i}] ' if is_list else ''}{rule.name}")
    for line in errors:
        typer.echo(line)
    if errors:
        raise typer.Exit(1)
