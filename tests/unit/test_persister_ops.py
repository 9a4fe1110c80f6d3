"""The persister's operations backend and stream upkeep, without services: liveness from
the loops' turns, readiness from the store checks, the upkeep's handling of a failing
stream."""

from __future__ import annotations

import threading
import time

import msgspec

from tradepulse import metrics
from tradepulse.core.errors import StoreUnavailableError
from tradepulse.service.ops import LIVE_STALL_S, Tuning
from tradepulse.service.persister import PersisterStats
from tradepulse.service.persister_ops import PersisterOps
from tradepulse.service.upkeep import UpkeepState, run_upkeep, upkeep_round


class Counted(msgspec.Struct, frozen=True):
    entries: int


class ScriptedStream:
    """A stream whose backlog is ``entries`` and whose trims remove ``removed`` entries;
    raises ``StoreUnavailableError`` while ``failing``."""

    def __init__(self, name: str, entries: int, removed: int) -> None:
        self.name, self.entries, self.removed = name, entries, removed
        self.failing = False
        self.trims: list[int] = []

    def backlog(self) -> Counted:
        if self.failing:
            raise StoreUnavailableError("Redis down")
        return Counted(self.entries)

    def trim(self, now_ms: int) -> int:
        self.trims.append(now_ms)
        return self.removed


def ops(bars: PersisterStats, alerts: PersisterStats, redis_ok: bool, pg_ok: bool) -> PersisterOps:
    checks = {"redis": lambda: redis_ok, "postgres": lambda: pg_ok}
    return PersisterOps({"bars.finalized": bars, "alerts": alerts}, UpkeepState(),
                        Tuning(500, 1_000), checks)  # fmt: skip


def test_persister_ops_one_loop_stalled_is_not_live() -> None:
    stalled = PersisterStats()
    stalled.loop_s = time.monotonic() - LIVE_STALL_S - 1
    live, body = ops(PersisterStats(), stalled, True, True).live()
    assert live is False
    assert body["loop_stalled_s"]["alerts"] > LIVE_STALL_S  # type: ignore[index]
    assert ops(PersisterStats(), PersisterStats(), True, True).live()[0] is True


def test_persister_ops_postgres_unreachable_is_not_ready_and_says_which() -> None:
    ready, body = ops(PersisterStats(), PersisterStats(), True, False).ready()
    assert (ready, body) == (False, {"redis": True, "postgres": False})
    healthy, health = ops(PersisterStats(), PersisterStats(), True, False).health()
    assert (healthy, health["status"]) == (False, "not_ready")


def test_persister_ops_performance_rows_per_second_and_percentiles() -> None:
    bars = PersisterStats()
    end = time.monotonic()
    for i, seconds in enumerate((0.1, 0.2, 0.3, 0.4)):
        bars.recent.append((end - 3 + i, 100, seconds))
    perf = ops(bars, PersisterStats(), True, True).performance()
    stream = perf["streams"]["bars.finalized"]  # type: ignore[index]
    assert stream["recent_rows_per_s"] == round(400 / 3.1, 1)
    assert stream["batch_seconds_p50"] == 0.25
    assert perf["streams"]["alerts"]["recent_rows_per_s"] is None  # type: ignore[index]


def test_persister_ops_optimize_throughput_raises_the_batch_size_it_reports() -> None:
    backend = ops(PersisterStats(), PersisterStats(), True, True)
    try:
        answer = backend.optimize("throughput")
        assert answer["changed"]["batch_size"] == {"from": 500, "to": 5_000}  # type: ignore[index]
        assert backend.tuning.batch_size == 5_000
    finally:
        backend.optimize("latency")  # the default collector again
    assert backend.tuning.batch_size == 100


def test_upkeep_round_failing_stream_is_skipped_and_the_others_updated() -> None:
    good, bad = ScriptedStream("bars.finalized", 7, 3), ScriptedStream("alerts", 5, 0)
    bad.failing = True
    state = UpkeepState()
    upkeep_round([bad, good], state, lambda: 1_000)
    assert state.backlog == {"bars.finalized": Counted(7)} and state.failing is True
    assert state.checked_s is None and bad.trims == [] and good.trims == [1_000]
    gauge = metrics.PERSISTER_BACKLOG.labels(stream="bars.finalized")
    assert gauge._value.get() == 7
    bad.failing = False
    upkeep_round([bad, good], state, lambda: 2_000)
    assert state.trimmed == {"bars.finalized": 6, "alerts": 0} and state.failing is False


def test_run_upkeep_runs_at_once_then_every_interval_until_stop() -> None:
    stream, stop = ScriptedStream("bars.finalized", 0, 0), threading.Event()
    thread = threading.Thread(target=run_upkeep, args=([stream], stop, UpkeepState()),
                              kwargs={"interval_s": 0.05, "now_ms": lambda: 1})  # fmt: skip
    thread.start()
    time.sleep(0.3)
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    assert 3 <= len(stream.trims) <= 8


class AnsweringChild:
    """A worker child whose ``/metrics`` is ``text``."""

    def __init__(self, index: int, text: str) -> None:
        self.index, self.text = index, text
        self.alive, self.restarts = True, 0

    def ask(self, method: str, path: str) -> tuple[int, bytes]:
        return 200, self.text.encode()


CHILD_TEXT = """# HELP tradepulse_bars_persisted_total Bars.
# TYPE tradepulse_bars_persisted_total counter
tradepulse_bars_persisted_total 0.0
# HELP tradepulse_trades_applied_total Trades.
# TYPE tradepulse_trades_applied_total counter
tradepulse_trades_applied_total 5.0
"""


def group_metrics(persister: bool) -> str:
    from tradepulse.supervisor import ClusterOps

    class Children:
        def __init__(self) -> None:
            self.children = [AnsweringChild(0, CHILD_TEXT), AnsweringChild(1, CHILD_TEXT)]

    group = ClusterOps(Children(), persister=persister)  # type: ignore[arg-type]
    return group.metrics_text().decode()


def test_group_metrics_with_persister_in_the_parent_serve_the_parents_series_once() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    metrics.BARS_PERSISTED.inc(3)
    parent_value = metrics.BARS_PERSISTED._value.get()
    text = group_metrics(persister=True)
    assert text.count("# TYPE tradepulse_bars_persisted_total counter") == 1
    parsed = {(s.name, s.labels.get("process")): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    assert parsed[("tradepulse_bars_persisted_total", None)] == parent_value >= 3
    assert ("tradepulse_bars_persisted_total", "0") not in parsed
    assert parsed[("tradepulse_trades_applied_total", "1")] == 5
    without = group_metrics(persister=False)
    assert 'tradepulse_bars_persisted_total{process="0"} 0.0' in without
    assert without.count("# TYPE tradepulse_bars_persisted_total counter") == 1
