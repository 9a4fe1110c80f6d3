"""REST ``/api/v1/rules``: a user's alert rules in the rule store (``ctx.rules``).

Every route needs a bearer token. A user lists, reads and changes only their own rules; a
rule of someone else answers 404 like a missing one (``access.visible``); an admin sees
and changes every rule and may filter the list by ``owner``. Definitions are the rule
language of ``core/rules.py``, validated against the configured windows: an invalid one is
422 with every error and its path (``conditions[1].op``) in ``invalid_params``.
Every change is published on ``rules.updated`` by the store, so workers reload at once.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import msgspec
from litestar import Request, delete, get, patch, post, put
from litestar.params import Body, FromPath, JSONBody, QueryParameter

from tradepulse.adapters.postgres_rules import RuleVersion, StoredRule
from tradepulse.api.access import BEARER, Me, visible
from tradepulse.api.bodies import invalid_body, strict_body
from tradepulse.api.context import Ctx
from tradepulse.api.problems import ProblemError, bad_param, problem_docs
from tradepulse.core.rules import RuleError, parse_rule

T = TypeVar("T")
MAX_LIMIT = 500
_USER_MAX = 128
_DEFINITION = ("A rule of the rule language: name, conditions, cooldown (seconds) and the "
               "optional trigger, enabled, symbols, max_staleness, description.")  # fmt: skip


class RulePage(msgspec.Struct, frozen=True):
    """Rules in creation order; ``next_cursor`` is null on the last page."""

    items: list[StoredRule]
    limit: int
    total: int
    next_cursor: str | None


class RulePatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Switch a rule on or off (a new version; nothing written when it already is)."""

    enabled: bool


class Rollback(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The version whose definition becomes the rule's next version."""

    version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class RuleProblem(msgspec.Struct, frozen=True):
    path: str
    message: str


class Validation(msgspec.Struct, frozen=True):
    """What ``POST /rules`` would answer for this definition, without storing it."""

    valid: bool
    errors: list[RuleProblem]


async def _run(call: Callable[[], T]) -> T:
    """A store call, in a worker thread (the stores block)."""
    return await anyio.to_thread.run_sync(call)


async def _owned(ctx: Ctx, me: Me, rule_id: str) -> StoredRule:
    """The rule ``me`` may see, else 404 (missing, deleted, or someone else's)."""
    rule = await _run(partial(ctx.rules.get, rule_id))
    if rule is None:
        raise ProblemError(404, f"rule {rule_id} not found")
    visible(me, rule.owner, f"rule {rule_id}")
    return rule


def _nul_paths(value: object, path: str) -> list[tuple[str, str]]:
    """Where a decoded JSON document holds a NUL character (PostgreSQL cannot store one)."""
    if isinstance(value, str):
        return [(path, "must not contain NUL characters")] if "\x00" in value else []
    if isinstance(value, list):
        return [e for i, item in enumerate(value) for e in _nul_paths(item, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [e for key, item in value.items()
                for e in _nul_paths(key, path) + _nul_paths(item, f"{path}.{key}")]  # fmt: skip
    return []


def _storable(definition: dict[str, Any]) -> dict[str, Any]:
    errors = _nul_paths(definition, "$")
    if errors:
        raise invalid_body(errors)
    return definition


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise bad_param("cursor", "not a cursor returned by this API") from None
    if offset < 0:
        raise bad_param("cursor", "not a cursor returned by this API")
    return offset


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _owner_filter(me: Me, owner: str | None) -> str | None:
    """Whose rules a list shows: a user's own; an admin's choice (None: everyone's)."""
    if me.admin:
        return owner
    if owner is not None and owner != me.user:
        raise ProblemError(403, "only an admin may list the rules of another user", "owner")
    return me.user


_LIST_DOCS = problem_docs(400, 401, 403, 503)
_ONE_DOCS = problem_docs(401, 404, 503)
_WRITE_DOCS = problem_docs(400, 401, 404, 413, 422, 503)


@get("/rules", opt={"query": ("owner", "limit", "cursor")}, security=BEARER,
     responses=_LIST_DOCS)  # fmt: skip
async def list_rules(
    ctx: Ctx,
    me: Me,
    owner: Annotated[str | None, QueryParameter(min_length=1, max_length=_USER_MAX,
                                                description="admin only: one user's")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 100,
    cursor: Annotated[str | None, QueryParameter(max_length=64,
                                                 description="next_cursor of a page")] = None,
) -> RulePage:  # fmt: skip
    """The caller's rules (an admin: everyone's, or ``owner``'s), oldest first."""
    offset = _offset(cursor)
    rules = await _run(partial(ctx.rules.list, _owner_filter(me, owner)))
    end = offset + limit
    following = _cursor(end) if end < len(rules) else None
    return RulePage(rules[offset:end], limit, len(rules), following)


@post("/rules", opt={"query": ()}, security=BEARER, responses=_WRITE_DOCS)
async def create_rule(
    ctx: Ctx, me: Me,
    data: Annotated[dict[str, Any], Body(description=_DEFINITION)],
) -> StoredRule:  # fmt: skip
    """Store a new rule owned by the caller (version 1); 201 with the stored rule."""
    return await _run(partial(ctx.rules.create, me.user, _storable(data)))


@post("/rules/validate", opt={"query": ()}, status_code=200, security=BEARER,
      responses=problem_docs(400, 401, 413, 422))  # fmt: skip
async def validate_rule(
    ctx: Ctx, me: Me, data: Annotated[dict[str, Any], Body(description=_DEFINITION)]
) -> Validation:
    """Check a definition against the configured windows; nothing is stored."""
    try:
        parse_rule(data, windows=[spec.name for spec in ctx.settings.windows])
    except RuleError as exc:
        pairs = (error.partition(": ") for error in exc.errors)
        return Validation(False, [RuleProblem(path, message) for path, _, message in pairs])
    return Validation(True, [])


@get("/rules/{rule_id:str}", opt={"query": ()}, security=BEARER, responses=_ONE_DOCS)
async def get_rule(ctx: Ctx, me: Me, rule_id: FromPath[str]) -> StoredRule:
    """The current version of a rule."""
    return await _owned(ctx, me, rule_id)


@put("/rules/{rule_id:str}", opt={"query": ()}, security=BEARER, responses=_WRITE_DOCS)
async def replace_rule(
    ctx: Ctx, me: Me, rule_id: FromPath[str],
    data: Annotated[dict[str, Any], Body(description=_DEFINITION)],
) -> StoredRule:  # fmt: skip
    """Replace the definition: the rule's next version (``enabled`` true when absent)."""
    await _owned(ctx, me, rule_id)
    return await _run(partial(ctx.rules.update, rule_id, _storable(data)))


@patch("/rules/{rule_id:str}", opt={"query": ()}, security=BEARER, responses=_WRITE_DOCS)
async def patch_rule(
    ctx: Ctx,
    me: Me,
    rule_id: FromPath[str],
    request: Request[Any, Any, Any],
    data: JSONBody[RulePatch],
) -> StoredRule:
    """Enable or disable a rule (enabling validates it again)."""
    body = await strict_body(request, RulePatch)
    await _owned(ctx, me, rule_id)
    return await _run(partial(ctx.rules.patch, rule_id, enabled=body.enabled))


@delete("/rules/{rule_id:str}", opt={"query": ()}, security=BEARER, responses=_ONE_DOCS)
async def delete_rule(ctx: Ctx, me: Me, rule_id: FromPath[str]) -> None:
    """Delete a rule (its versions and alerts stay stored); 204."""
    await _owned(ctx, me, rule_id)
    await _run(partial(ctx.rules.delete, rule_id))


@get("/rules/{rule_id:str}/versions", opt={"query": ()}, security=BEARER, responses=_ONE_DOCS)
async def rule_versions(ctx: Ctx, me: Me, rule_id: FromPath[str]) -> list[RuleVersion]:
    """Every version of a rule, oldest first."""
    await _owned(ctx, me, rule_id)
    return await _run(partial(ctx.rules.versions, rule_id))


@post("/rules/{rule_id:str}/rollback", opt={"query": ()}, status_code=200, security=BEARER,
      responses=_WRITE_DOCS)  # fmt: skip
async def rollback_rule(
    ctx: Ctx,
    me: Me,
    rule_id: FromPath[str],
    request: Request[Any, Any, Any],
    data: JSONBody[Rollback],
) -> StoredRule:
    """A new version whose definition is that of ``version`` (validated again)."""
    body = await strict_body(request, Rollback)
    await _owned(ctx, me, rule_id)
    return await _run(partial(ctx.rules.rollback, rule_id, body.version))


RULE_HANDLERS = [list_rules, create_rule, validate_rule, get_rule, replace_rule, patch_rule,
                 delete_rule, rule_versions, rollback_rule]  # fmt: skip
