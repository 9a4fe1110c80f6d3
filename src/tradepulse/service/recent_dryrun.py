"""A dry run of one rule over the trades workers retain (the API's ``POST /rules/dry-run``).

The trades of each token (what ``token:{addr}:trades`` holds: at most the longest window
before the worker's last evaluation, plus the trade whose price was in force when it
opened) are merged in time order and replayed through the worker's engine (``Market``
windows, and ``TokenBars`` when the rule reads ``bar.`` or ``ind.``), on the event clock.
The scanner (``DryRun``) runs at every epoch-aligned multiple ``M`` of the scan interval
with ``from_ms <= M <= to_ms``, after every trade at or before ``M`` is applied::

    retained:  ●  ●   ●     ●  ●     ●   ●  ●       ●
    time:   ───────────────┼────┼────┼────┼────┼────┼──>
                         from_ms  M    M    M    M  to_ms
               (warm-up: applied, not scanned)

Trades before ``from_ms`` only warm the windows and bars up: the scanner starts fresh at
the first scan (no cooldown, no edge state: an ``edge`` rule cannot fire at the first scan,
as for a rule just enabled). Cooldowns and edges then work as in the worker.

The work is bounded: at most ``max_alerts`` alerts are kept (all are counted), and scanning
stops at the first scan instant after ``budget_s`` seconds of work (``timed_out``; the scans
done are reported).
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from operator import attrgetter

import msgspec

from tradepulse.core.alerts import Alert
from tradepulse.core.bars import DEFAULT_GRACE_MS
from tradepulse.core.clock import NEVER
from tradepulse.core.market import Market
from tradepulse.core.rule_model import Rule
from tradepulse.core.trade import Trade
from tradepulse.core.types import TokenId, TsMs
from tradepulse.core.windows import WindowSpec
from tradepulse.service.dryrun import DryRun
from tradepulse.service.replay import BarWriter

__all__ = ["DryRunOutcome", "RetainedTrades", "dry_run_retained", "scan_instants"]


class RetainedTrades(msgspec.Struct, frozen=True):
    """One token's retained trades (oldest first) and the evaluation time ``t_ms`` of the
    worker's last write (``updated_ms`` of its statistics)."""

    token: TokenId
    t_ms: TsMs
    trades: list[Trade]


class DryRunOutcome(msgspec.Struct):
    """What a dry run found. ``alerts``: the first ``max_alerts``, in scan order;
    ``counts``: every alert per token; ``to_ms``: the last scan instant reached."""

    alerts: list[Alert]
    counts: dict[TokenId, int]
    scans: int
    from_ms: TsMs
    to_ms: TsMs
    truncated: bool = False  # more alerts than were kept
    timed_out: bool = False  # the budget ran out before ``to_ms``


def scan_instants(from_ms: TsMs, to_ms: TsMs, every_ms: int) -> range:
    """The multiples of ``every_ms`` in ``[from_ms, to_ms]``."""
    return range(-(-from_ms // every_ms) * every_ms, to_ms + 1, every_ms)


def dry_run_retained(
    rule: Rule,
    histories: Sequence[RetainedTrades],
    specs: tuple[WindowSpec, ...],
    *,
    from_ms: TsMs,
    to_ms: TsMs,
    scan_every_ms: int,
    max_alerts: int,
    budget_s: float,
    grace_ms: int = DEFAULT_GRACE_MS,
    clock: Callable[[], float] = time.monotonic,
) -> DryRunOutcome:
    """Replay ``histories`` and scan ``rule`` (enabled, whatever it says) over
    ``[from_ms, to_ms]``; see the module docstring."""
    rule = msgspec.structs.replace(rule, enabled=True)
    market = Market(specs)
    dry_run = DryRun([rule], None)
    bars = BarWriter(None, None, longest_ms=specs[-1].duration_ms, grace_ms=grace_ms)
    use_bars = bars if dry_run.needs_bars else None
    trades = sorted((t for h in histories for t in h.trades), key=attrgetter("ts_ms"))
    times = [t.ts_ms for t in trades]
    outcome = DryRunOutcome([], {}, 0, from_ms, to_ms)
    started, applied, watermark = clock(), 0, NEVER
    for m_ms in scan_instants(from_ms, to_ms, scan_every_ms):
        if clock() - started > budget_s:
            outcome.timed_out, outcome.to_ms = True, m_ms - scan_every_ms
            break
        upto = bisect_right(times, m_ms, lo=applied)
        watermark = _apply(market, use_bars, trades[applied:upto], watermark)
        applied = upto
        _keep(outcome, _scan(market, dry_run, use_bars, m_ms), max_alerts)
        outcome.scans += 1
    return outcome


def _apply(market: Market, bars: BarWriter | None, trades: list[Trade], watermark: TsMs) -> TsMs:
    if bars is None:
        return market.add_in_order_read(trades, watermark)
    return bars.apply(market, trades, watermark)


def _scan(market: Market, dry_run: DryRun, bars: BarWriter | None, t_ms: TsMs) -> list[Alert]:
    """As the replay's ``RuleScans``: every token known, by name, bars moved to ``t_ms``."""
    tokens = sorted(market.tokens)
    if bars is not None:
        for name in tokens:
            bars.evaluated(name, t_ms)
    return dry_run.scan(t_ms, tokens, market.tokens, bars.tokens if bars is not None else {})


def _keep(outcome: DryRunOutcome, alerts: list[Alert], max_alerts: int) -> None:
    for alert in alerts:
        outcome.counts[alert.token] = outcome.counts.get(alert.token, 0) + 1
        if len(outcome.alerts) < max_alerts:
            outcome.alerts.append(alert)
        else:
            outcome.truncated = True
