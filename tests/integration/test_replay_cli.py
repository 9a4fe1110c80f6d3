"""``tradepulse replay`` as a user runs it: a subprocess, files, stdin, exit codes."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BASE_MS = 1_700_000_000_000  # a multiple of 10 s


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tradepulse", "replay", *args], input=stdin,
                          capture_output=True, timeout=120, check=False)  # fmt: skip


def wire(token: str, ts_ms: int, tx: str, price: float = 1.0, side: str = "buy") -> str:
    return json.dumps({"token": token, "wallet": "w", "sell_buy": side, "native_amount": 1,
                       "token_amount": 2.0, "price_usd": price, "trans_time": ts_ms,
                       "tx_hash": tx})  # fmt: skip


def lines_of(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_unreadable_file_exits_2_with_message(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert b"cannot read" in result.stderr and b"nope.jsonl" in result.stderr


def test_bad_windows_option_exits_2_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(wire("A", BASE_MS, "h") + "\n")
    result = run(str(tmp_path / "t.jsonl"), "--windows", "1min,fortnight")
    assert result.returncode == 2
    assert b"--windows" in result.stderr


def test_rejected_lines_reported_with_line_numbers_and_run_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    rows = [wire("A", BASE_MS, "h1"), "{oops", "", wire("A", BASE_MS, "h2", price=-1),
            wire("A", BASE_MS, "h1")]  # fmt: skip
    path.write_text("\n".join(rows))
    result = run(str(path))
    err = result.stderr.decode()
    assert result.returncode == 0
    assert "line 2: rejected ($:malformed_json)" in err
    assert "line 4: rejected (price_usd:range)" in err
    assert "line 3" not in err  # blank lines are skipped
    assert "duplicates" in err and "rejected" in err
    (final,) = lines_of(result.stdout)
    assert final["final"] is True and final["windows"]["1min"]["trade_count"] == 1


def test_snapshot_schedule_follows_the_rules(tmp_path: Path) -> None:
    """Trades at +1 s, +12 s, +35 s and (token B) +36 s, period 10 s: boundaries 10 s, 20 s,
    30 s are written when the +12 s and +35 s trades are read; the final at +36 s."""
    trades = [("A", 1_000, "a"), ("A", 12_000, "b"), ("A", 35_000, "c"), ("B", 36_000, "d")]
    text = "\n".join(wire(tok, BASE_MS + dt, tx) for tok, dt, tx in trades)
    result = run("-", "--snapshot-every", "10s", "--windows", "1min,5min", stdin=text.encode())
    assert result.returncode == 0, result.stderr
    got = [(x["token"], x["ts_ms"] - BASE_MS, x["final"]) for x in lines_of(result.stdout)]
    assert got == [("A", 10_000, False), ("A", 20_000, False), ("A", 30_000, False),
                   ("A", 36_000, True), ("B", 36_000, True)]  # fmt: skip
    by_time = {(x["token"], x["ts_ms"] - BASE_MS): x["windows"] for x in lines_of(result.stdout)}
    assert by_time[("A", 20_000)]["1min"]["trade_count"] == 2  # the +35 s trade not yet applied
    assert by_time[("A", 30_000)]["1min"]["updated_ms"] == BASE_MS + 30_000
    assert set(by_time[("B", 36_000)]) == {"1min", "5min"}


def test_output_file_option_writes_there(tmp_path: Path) -> None:
    src, out = tmp_path / "t.jsonl", tmp_path / "out.jsonl"
    src.write_text(wire("A", BASE_MS, "h") + "\n")
    assert run(str(src), "--out", str(out)).returncode == 0
    assert lines_of(out.read_bytes())[0]["token"] == "A"


@pytest.mark.parametrize("every", ["0s", "ten"])
def test_bad_snapshot_period_exits_2(tmp_path: Path, every: str) -> None:
    (tmp_path / "t.jsonl").write_text(wire("A", BASE_MS, "h") + "\n")
    result = run(str(tmp_path / "t.jsonl"), "--snapshot-every", every)
    assert result.returncode == 2 and b"--snapshot-every" in result.stderr


def test_trade_exactly_on_a_boundary_belongs_to_that_snapshot() -> None:
    """Trades at +0 s, +10 s, +15 s with a 10 s period: M = 0 is written when the +10 s trade
    is read (first trade time <= M), and M = 10 s — which holds the +10 s trade, since a window
    ends at T inclusive — when the +15 s trade is read."""
    text = "\n".join(wire("A", BASE_MS + dt, f"t{dt}") for dt in (0, 10_000, 15_000))
    result = run("-", "--snapshot-every", "10s", stdin=text.encode())
    got = [(x["ts_ms"] - BASE_MS, x["final"], x["windows"]["1min"]["trade_count"])
           for x in lines_of(result.stdout)]  # fmt: skip
    assert got == [(0, False, 1), (10_000, False, 2), (15_000, True, 3)]


def test_sharded_replay_output_is_identical_to_one_process(tmp_path: Path) -> None:
    """Three shards and one process give the same bytes, counters and rejections on a
    stream with bad lines, duplicates, late and out-of-order trades, and snapshots."""
    rnd = random.Random(5)
    rows = []
    t = BASE_MS
    for i in range(3_000):
        t += rnd.choice([0, 40, 900, 5_000])
        ts = t - rnd.choice([0] * 8 + [30_000, 4_000_000])  # out of order, and late
        tx = f"h{rnd.randrange(2_900)}"  # some duplicates
        rows.append(wire(f"T{rnd.randrange(40)}", ts, tx, price=rnd.uniform(0.5, 2)))
        if i % 500 == 7:
            rows.append('{"token": "T1", "price_usd": -1}')
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(rows))
    one = run(str(path), "--snapshot-every", "1min", "-j", "1")
    three = run(str(path), "--snapshot-every", "1min", "-j", "3")
    assert one.returncode == three.returncode == 0
    assert one.stdout == three.stdout and len(one.stdout.splitlines()) > 100
    summary = re.compile(
        rb"(?:lines read|applied|rejected|duplicates|late|snapshot lines)\s+[\d,]+"
    )
    assert summary.findall(one.stderr) == summary.findall(three.stderr)
    numbers = dict(re.findall(rb"(applied|duplicates|late)\s+([\d,]+)", one.stderr))
    assert sorted(numbers) == [b"applied", b"duplicates", b"late"]
    assert all(int(v.replace(b",", b"")) > 0 for v in numbers.values())
    rejected = sorted(re.findall(rb"line \d+: rejected[^\n]*", one.stderr))
    assert rejected == sorted(re.findall(rb"line \d+: rejected[^\n]*", three.stderr))
    assert len(rejected) == 6


def test_sharding_standard_input_is_refused() -> None:
    result = run("-", "-j", "2", stdin=b"")
    assert result.returncode == 2 and b"--processes" in result.stderr


@pytest.mark.parametrize("option", ["--bars-out", "--indicators-out"])
def test_bar_output_unwritable_path_exits_2_with_message(tmp_path: Path, option: str) -> None:
    (tmp_path / "t.jsonl").write_text(wire("A", BASE_MS, "h") + "\n")
    target = tmp_path / "missing-dir" / "bars.jsonl"
    result = run(str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "o.jsonl"), option,
                 str(target))  # fmt: skip
    assert result.returncode == 2
    assert b"cannot write" in result.stderr and b"missing-dir" in result.stderr


def test_bar_outputs_with_several_processes_exit_2_naming_the_options(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(wire("A", BASE_MS, "h") + "\n")
    result = run(str(tmp_path / "t.jsonl"), "-j", "2", "--bars-out", str(tmp_path / "b.jsonl"))
    assert result.returncode == 2
    assert b"--processes" in result.stderr and b"--bars-out" in result.stderr
    assert not (tmp_path / "b.jsonl").exists()


def test_bar_outputs_to_one_file_exit_2_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(wire("A", BASE_MS, "h") + "\n")
    same = str(tmp_path / "b.jsonl")
    result = run(str(tmp_path / "t.jsonl"), "--bars-out", same, "--indicators-out", same)
    assert result.returncode == 2 and b"--indicators-out" in result.stderr
    assert run(str(tmp_path / "t.jsonl"), "--bars-out", "-").returncode == 2  # stdout: --out


def test_bars_to_stdout_beside_an_output_file_written_there(tmp_path: Path) -> None:
    text = "\n".join(wire("A", BASE_MS + dt, f"t{dt}") for dt in (0, 70_000))
    result = run("-", "--out", str(tmp_path / "o.jsonl"), "--bars-out", "-", stdin=text.encode())
    assert result.returncode == 0, result.stderr
    (bar,) = lines_of(result.stdout)
    minute = BASE_MS - BASE_MS % 60_000
    assert (bar["token"], bar["open_ms"], bar["trades"], bar["revision"]) == ("A", minute, 1, 0)
