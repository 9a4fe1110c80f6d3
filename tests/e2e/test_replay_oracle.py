"""``tradepulse replay`` on every real trade file, checked line by line against a pandas oracle.

Each real CSV is converted to wire-format JSON Lines (``tests/support/realdata.py``, time
ordered, so nothing is late), replayed by the command in a subprocess, and every statistic of
every window of every output line is compared with ``tests/support/pandas_oracle.py``:
integers exactly, floats to 1e-9 relative (1e-12 absolute near zero), nulls exactly. The set
of ``(token, ts_ms, final)`` lines must equal the set the snapshot rules require.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from tests.support.pandas_oracle import INT_FIELDS, STAT_FIELDS, duration_ms, replay_expectation
from tests.support.realdata import REAL_TRADE_FILES, REPO_ROOT, require_real_data, write_jsonl

pytestmark = pytest.mark.realdata

DEFAULT_WINDOWS = "1min,5min,15min,30min,1hour"
REL_TOL = 1e-9
ABS_TOL = 1e-12
MAX_REPORTED = 25

LineKey = tuple[str, int, bool]


@dataclass(frozen=True)
class ReplayCase:
    file: str  # key of REAL_TRADE_FILES
    snapshot_every: str
    windows: str | None = None  # None: the command's default windows

    @property
    def id(self) -> str:
        suffix = f"-{self.windows.replace(',', '_')}" if self.windows else ""
        return f"{self.file}-every{self.snapshot_every}{suffix}"

    @property
    def window_names(self) -> list[str]:
        return (self.windows or DEFAULT_WINDOWS).split(",")


CASES = [
    ReplayCase("pumpfun", "10s"),
    ReplayCase("hyperliquid_btc", "10s"),
    ReplayCase("orderflow_ethusdt", "10s"),
    ReplayCase("binance_btcusdt", "30s"),
    ReplayCase("binance_ethusdt", "30s"),
    ReplayCase("binance_btcusdt", "7s", "1min,5min"),  # boundaries not aligned to minutes
    ReplayCase("binance_xrpeth", "5min"),
    ReplayCase("binance_xrpeth", "5min", "1min,6hour"),
    ReplayCase("uniswap_uni_weth", "5min"),
]
CASE_PARAMS = [pytest.param(c, id=c.id) for c in CASES]


@dataclass(frozen=True)
class ReplayRun:
    got: dict[LineKey, dict[str, Any]]  # windows of every output line
    line_count: int
    expected: dict[LineKey, dict[str, dict[str, Any]]]
    trades: int


def _replay_command() -> list[str]:
    if find_spec("tradepulse.__main__") is not None:
        return [sys.executable, "-m", "tradepulse"]
    script = Path(sys.executable).parent / "tradepulse"
    if script.exists():
        return [str(script)]
    pytest.fail("neither `python -m tradepulse` nor the tradepulse console script is available")


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPULSE_")}
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _run_replay(case: ReplayCase, directory: Path) -> ReplayRun:
    wire = REAL_TRADE_FILES[case.file].convert()
    trades_path = write_jsonl(wire, directory / f"{case.file}.jsonl")
    out_path = directory / "snapshots.jsonl"
    cmd = [
        *_replay_command(),
        "replay",
        str(trades_path),
        "--snapshot-every",
        case.snapshot_every,
        "--out",
        str(out_path),
    ]
    if case.windows:
        cmd += ["--windows", case.windows]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=_child_env(), timeout=300, check=False
    )
    assert proc.returncode == 0, f"replay failed ({proc.returncode}):\n{proc.stderr}"

    got: dict[LineKey, dict[str, Any]] = {}
    count = 0
    for number, text in enumerate(out_path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        count += 1
        line = json.loads(text)
        assert set(line) == {"token", "ts_ms", "final", "windows"}, (number, sorted(line))
        assert isinstance(line["final"], bool), (number, line["final"])
        assert type(line["ts_ms"]) is int, (number, line["ts_ms"])
        key = (line["token"], line["ts_ms"], line["final"])
        assert key not in got, f"line {number}: {key} written twice"
        got[key] = line["windows"]

    windows = {name: duration_ms(name) for name in case.window_names}
    expected, applied = replay_expectation(wire, duration_ms(case.snapshot_every), windows)
    assert applied.late == 0 and applied.duplicates == 0  # converters give ordered, unique ids
    return ReplayRun(got, count, expected, len(wire))


@pytest.fixture(scope="module")
def replay_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[ReplayCase], ReplayRun]:
    """Run (once per case) the conversion, the command and the oracle."""
    require_real_data()
    cache: dict[ReplayCase, ReplayRun] = {}

    def run(case: ReplayCase) -> ReplayRun:
        if case not in cache:
            cache[case] = _run_replay(case, tmp_path_factory.mktemp(case.id))
        return cache[case]

    return run


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mismatch(field: str, expected: Any, got: Any) -> bool:
    if expected is None or got is None:
        return expected is not got
    if field in INT_FIELDS:
        return type(got) is not int or got != expected
    if not _is_number(got) or not math.isfinite(got):
        return True
    return not math.isclose(got, expected, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _describe(problems: list[str], total: int) -> str:
    shown = "\n".join(problems[:MAX_REPORTED])
    more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return f"{len(problems)} of {total} compared values differ:\n{shown}{more}"


def test_converter_real_trade_file_yields_ordered_valid_wire_trades() -> None:
    require_real_data()
    for name, real in REAL_TRADE_FILES.items():
        trades = real.convert()
        assert trades, name
        times = [t["trans_time"] for t in trades]
        assert times == sorted(times), name
        ids = {(t["token"], t["tx_hash"], t["event_index"]) for t in trades}
        assert len(ids) == len(trades), f"{name}: repeated trade identities"
        for t in trades:
            assert type(t["trans_time"]) is int and t["trans_time"] >= 100_000_000_000, (name, t)
            assert t["sell_buy"] in ("buy", "sell"), (name, t)
            assert t["token_amount"] > 0 and t["price_usd"] > 0, (name, t)
            assert t["native_amount"] >= 0, (name, t)
            assert all(math.isfinite(t[k]) for k in ("token_amount", "price_usd")), (name, t)
            assert t["token"] and t["wallet"] and t["tx_hash"], (name, t)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_replay_snapshot_lines_real_trade_file_equal_the_lines_the_rules_require(
    case: ReplayCase, replay_run: Callable[[ReplayCase], ReplayRun]
) -> None:
    run = replay_run(case)
    got, expected = set(run.got), set(run.expected)
    missing = sorted(expected - got, key=lambda k: (k[1], k[0]))
    extra = sorted(got - expected, key=lambda k: (k[1], k[0]))
    assert not missing and not extra, (
        f"{len(missing)} missing lines (first: {missing[:10]}), "
        f"{len(extra)} unexpected lines (first: {extra[:10]})"
    )
    assert run.line_count == len(run.expected)
    assert sum(1 for _, _, final in got if final) >= 1


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_replay_window_statistics_real_trade_file_match_pandas_oracle(
    case: ReplayCase, replay_run: Callable[[ReplayCase], ReplayRun]
) -> None:
    run = replay_run(case)
    problems: list[str] = []
    compared = 0
    for key in sorted(run.got.keys() & run.expected.keys(), key=lambda k: (k[1], k[0])):
        token, ts_ms, final = key
        got_windows, exp_windows = run.got[key], run.expected[key]
        if set(got_windows) != set(exp_windows):
            problems.append(f"{token} ts_ms={ts_ms}: windows {sorted(got_windows)}")
            continue
        for name, exp_stats in exp_windows.items():
            got_stats = got_windows[name]
            if set(got_stats) != set(STAT_FIELDS):
                problems.append(
                    f"{token} ts_ms={ts_ms} {name}: fields missing "
                    f"{sorted(set(STAT_FIELDS) - set(got_stats))}, "
                    f"unexpected {sorted(set(got_stats) - set(STAT_FIELDS))}"
                )
            for field in STAT_FIELDS:
                compared += 1
                got_value = got_stats.get(field, "<absent>")
                if _mismatch(field, exp_stats[field], got_value):
                    problems.append(
                        f"{token} ts_ms={ts_ms} final={final} {name}.{field}: "
                        f"expected {exp_stats[field]!r}, got {got_value!r}"
                    )
    assert compared > 0
    assert not problems, _describe(problems, compared)
