"""REST ``POST /api/v1/rules/dry-run``: what a rule would have fired over recent history.

"Recent history" is what workers retain: each token's trades of the last longest window
(``token:{addr}:trades``; ``LiveSource.recent_trades``). They are replayed through the
worker's engine and scanner (``service/recent_dryrun.py``) in a worker thread; nothing is
stored or published. ``now`` is the newest evaluation time among the tokens read (the
workers' clock at their last write: the wall clock live, the event clock in a replay), so
the range scanned is ``[now - since, now]``.

Bounds: ``since`` at most the longest window, at most ``MAX_TOKENS`` tokens (default: the
most active by 5-minute volume, or the rule's ``symbols``), a scan interval of at least
1 s, at most ``MAX_ALERTS`` alerts returned (all counted), ``BUDGET_S`` seconds of work.
An invalid rule is 422 with its errors' paths, as ``POST /rules``.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Request, post
from litestar.params import JSONBody

from tradepulse.api.access import BEARER, Me
from tradepulse.api.bodies import invalid_body, strict_body
from tradepulse.api.context import ApiContext, Ctx
from tradepulse.api.problems import problem_docs
from tradepulse.api.query import SortKey
from tradepulse.core.errors import WindowSpecError
from tradepulse.core.rule_model import Rule
from tradepulse.core.rules import parse_rule
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import parse_duration_ms
from tradepulse.service.recent_dryrun import DryRunOutcome, RetainedTrades, dry_run_retained

MAX_TOKENS = 50
MAX_ALERTS = 500
BUDGET_S = 10.0
MIN_SCAN_MS = 1_000
DEFAULT_SINCE = "15min"
RANK_WINDOW = "5min"
_Token = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Tokens = Annotated[list[_Token], msgspec.Meta(min_length=1, max_length=MAX_TOKENS)]


class DryRunRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A rule definition and what to run it over (durations such as ``"15min"``,
    ``"10s"``)."""

    rule: dict[str, Any]
    tokens: _Tokens | None = None
    since: str = DEFAULT_SINCE
    scan_interval: str | None = None


class DryRunAlert(msgspec.Struct, frozen=True):
    """One alert the rule would have fired: the metric values that made it fire."""

    token: TokenId
    triggered_ms: TsMs
    values: dict[str, float | int | None]


class DryRunResult(msgspec.Struct, frozen=True):
    """The alerts (first ``MAX_ALERTS``, in time order), ``counts`` of all of them per
    token, the scans run over ``[from_ms, to_ms]`` and the tokens with retained trades;
    ``truncated``: alerts were left out or the time budget ran out; ``notes`` say what
    the history could not show."""

    alerts: list[DryRunAlert]
    counts: dict[TokenId, int]
    scans: int
    tokens: int
    from_ms: TsMs
    to_ms: TsMs
    truncated: bool
    notes: list[str]


def _duration(field: str, text: str, low_ms: int, high_ms: int) -> int:
    """``text`` in ms, within ``[low_ms, high_ms]``; else 422 naming ``$.field``."""
    try:
        value_ms = parse_duration_ms(text)
    except WindowSpecError as exc:
        raise invalid_body([(f"$.{field}", str(exc))]) from None
    if not low_ms <= value_ms <= high_ms:
        raise invalid_body([(f"$.{field}", f"must be between {low_ms // 1000} s and "
                                           f"{high_ms // 1000} s, got {text!r}")])  # fmt: skip
    return value_ms


async def _tokens(ctx: ApiContext, body: DryRunRequest, rule: Rule) -> list[TokenId]:
    """The tokens asked for; else the rule's symbols; else the most active ones."""
    if body.tokens is not None:
        return list(dict.fromkeys(body.tokens))
    if rule.symbols is not None:
        return sorted(rule.symbols)[:MAX_TOKENS]
    names = [spec.name for spec in ctx.settings.windows]
    window = RANK_WINDOW if RANK_WINDOW in names else names[0]
    ranked = await ctx.rankings.ranked(SortKey(window, "total_volume", True))
    return [item.token for item in ranked[:MAX_TOKENS]]


def _notes(rule: Rule, since_ms: int, longest_ms: int) -> list[str]:
    notes = ["history: the trades workers retain, at most the longest window before now; "
             "windows and bars are rebuilt from those trades only"]  # fmt: skip
    if any(m.startswith("ind.") for m in rule.metrics()):
        notes.append("ind.* metrics warm up from the retained trades only: those that need "
                     "more 1-minute bars than the history holds stay null")  # fmt: skip
    complete = (longest_ms - since_ms) // 60_000
    notes.append(f"at the first scan, windows longer than {complete} min are not yet full")
    if rule.trigger == "edge":
        notes.append("an edge rule cannot fire at the first scan (no previous evaluation)")
    return notes


def _result(outcome: DryRunOutcome, histories: list[RetainedTrades],
            notes: list[str]) -> DryRunResult:  # fmt: skip
    if outcome.timed_out:
        notes.append(f"stopped after {BUDGET_S:g} s of work: scans end at to_ms")
    if outcome.truncated:
        notes.append(f"only the first {MAX_ALERTS} alerts are listed; counts has them all")
    alerts = [DryRunAlert(a.token, a.triggered_ms, a.values) for a in outcome.alerts]
    return DryRunResult(alerts, outcome.counts, outcome.scans, len(histories), outcome.from_ms,
                        outcome.to_ms, outcome.truncated or outcome.timed_out,
                        notes)  # fmt: skip


@post("/rules/dry-run", opt={"query": ()}, status_code=200, security=BEARER,
      responses=problem_docs(400, 401, 413, 422, 503))  # fmt: skip
async def dry_run_rule(
    ctx: Ctx, me: Me, request: Request[Any, Any, Any], data: JSONBody[DryRunRequest]
) -> DryRunResult:
    """Replay the retained trades and report the alerts the rule would have fired over
    ``[now - since, now]``; nothing is stored."""
    body = await strict_body(request, DryRunRequest)
    specs = ctx.settings.windows
    rule = parse_rule(body.rule, windows=[spec.name for spec in specs])
    longest_ms = specs[-1].duration_ms
    since_ms = _duration("since", body.since, MIN_SCAN_MS, longest_ms)
    every = body.scan_interval or f"{ctx.settings.scan_interval_ms}ms"
    every_ms = _duration("scan_interval", every, MIN_SCAN_MS, since_ms)
    histories = await ctx.live.recent_trades(await _tokens(ctx, body, rule))
    notes = _notes(rule, since_ms, longest_ms)
    if not histories:
        now_ms = int(time.time() * 1000)
        notes.append("no token has retained trades")
        return DryRunResult([], {}, 0, 0, now_ms - since_ms, now_ms, False, notes)
    to_ms = max(h.t_ms for h in histories)
    run = partial(dry_run_retained, rule, histories, specs, from_ms=to_ms - since_ms,
                  to_ms=to_ms, scan_every_ms=every_ms, max_alerts=MAX_ALERTS,
                  budget_s=BUDGET_S, grace_ms=ctx.settings.bar_grace_ms)  # fmt: skip
    outcome = await anyio.to_thread.run_sync(run)
    return _result(outcome, histories, notes)


DRY_RUN_HANDLERS = [dry_run_rule]
