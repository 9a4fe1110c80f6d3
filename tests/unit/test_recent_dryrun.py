"""``dry_run_retained`` beyond what the API tests compare with a brute force: the time
budget, a disabled rule, scan instants, and trades before ``from_ms`` only warming up."""

from __future__ import annotations

from tradepulse.core.rules import parse_rule
from tradepulse.core.trade import Trade
from tradepulse.core.windows import parse_windows
from tradepulse.service.recent_dryrun import RetainedTrades, dry_run_retained, scan_instants

SPECS = parse_windows("1min,5min")
T_MS = 1_750_000_000_500


def history(token: str = "TOK") -> RetainedTrades:
    """One trade every 2 s over the 5 minutes before ``T_MS``."""
    trades = [Trade(token, "w", True, 0.1, 1.0, 1.0, 1.0, T_MS - 300_000 + i * 2_000, f"t{i}", 0)
              for i in range(151)]  # fmt: skip
    return RetainedTrades(token, T_MS, trades)


def rule(enabled: bool = True, cooldown: int = 0) -> object:
    return {"name": "busy", "cooldown": cooldown, "enabled": enabled,
            "conditions": {"all": [{"metric": "window.5min.trade_count", "op": ">=",
                                    "value": 100}]}}  # fmt: skip


class TickingClock:
    """Each call is one second later."""

    def __init__(self) -> None:
        self.s = 0.0

    def __call__(self) -> float:
        self.s += 1.0
        return self.s


def test_scan_instants_are_the_multiples_inside_the_closed_range() -> None:
    assert list(scan_instants(1_001, 4_000, 1_000)) == [2_000, 3_000, 4_000]
    assert list(scan_instants(1_000, 3_999, 1_000)) == [1_000, 2_000, 3_000]


def test_dry_run_past_its_budget_stops_and_says_where() -> None:
    outcome = dry_run_retained(parse_rule(rule()), [history()], SPECS, from_ms=T_MS - 60_000,
                               to_ms=T_MS, scan_every_ms=10_000, max_alerts=500, budget_s=3.5,
                               clock=TickingClock())  # fmt: skip
    # the clock is read once at the start, then before each scan: 3 scans fit in 3.5 s
    assert (outcome.scans, outcome.timed_out) == (3, True)
    assert outcome.to_ms == T_MS - 30_500  # the third multiple of 10 s
    assert [a.triggered_ms for a in outcome.alerts] == [T_MS - 50_500 + i * 10_000
                                                        for i in range(3)]  # fmt: skip


def test_disabled_rule_is_dry_run_as_if_enabled() -> None:
    outcome = dry_run_retained(parse_rule(rule(enabled=False)), [history()], SPECS,
                               from_ms=T_MS - 60_000, to_ms=T_MS, scan_every_ms=10_000,
                               max_alerts=500, budget_s=10)  # fmt: skip
    assert outcome.counts == {"TOK": 6}  # 101+ trades in 5 min at every instant
    assert outcome.timed_out is False


def test_trades_before_from_ms_warm_up_without_firing() -> None:
    """With a 5 min cooldown an alert at the first instant is the only one: nothing fired
    during the warm-up (else the cooldown would still run at from_ms)."""
    outcome = dry_run_retained(parse_rule(rule(cooldown=300)), [history()], SPECS,
                               from_ms=T_MS - 60_000, to_ms=T_MS, scan_every_ms=1_000,
                               max_alerts=500, budget_s=10)  # fmt: skip
    assert [a.triggered_ms for a in outcome.alerts] == [T_MS - 59_500]
    assert outcome.alerts[0].values == {"window.5min.trade_count": 121}
