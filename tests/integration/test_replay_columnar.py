"""``tradepulse replay --engine columnar`` as a user runs it: the same bytes as the object
engine on the synthetic market (the benchmark's file, smaller), and its options."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tradepulse.adapters.synthetic import SyntheticMarket, write_jsonl

START_MS = 1_735_689_600_000
SUMMARY = re.compile(rb"(lines read|applied|rejected|duplicates|late|snapshot lines)\s+([\d,]+)")
REJECTED = re.compile(rb"line \d+: rejected[^\n]*")


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tradepulse", "replay", *args],
                          capture_output=True, timeout=300, check=False)  # fmt: skip


def assert_engines_agree(path: Path, *options: str) -> bytes:
    """Both engines on ``path``: equal stdout, rejections and summary; returns stdout."""
    obj = run(str(path), "--engine", "object", "-j", "1", *options)
    col = run(str(path), "--engine", "columnar", "-j", "1", *options)
    two = run(str(path), "--engine", "columnar", "-j", "2", *options)
    assert two.stdout == col.stdout  # the file decoded in two processes
    assert REJECTED.findall(two.stderr) == REJECTED.findall(col.stderr)
    assert SUMMARY.findall(two.stderr) == SUMMARY.findall(col.stderr)
    assert obj.returncode == col.returncode == 0, (obj.stderr, col.stderr)
    assert col.stdout == obj.stdout
    assert REJECTED.findall(col.stderr) == REJECTED.findall(obj.stderr)
    assert SUMMARY.findall(col.stderr) == SUMMARY.findall(obj.stderr)
    return col.stdout


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40,000 trades of 300 Zipf tokens over 20 minutes, plus bad and blank lines."""
    path = tmp_path_factory.mktemp("synthetic") / "trades.jsonl"
    market = SyntheticMarket(seed=7, tokens=300, wallets=2_000, start_ms=START_MS,
                             rate_per_s=40_000 / 1_200)  # fmt: skip
    write_jsonl(market.generate(40_000), path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[30_000:30_000] = [b"[]\n", b'{"token": "Y", "price_usd": 0}\n']  # second half
    lines[1_000:1_000] = [b"{oops\n", b"\n", b'{"token": "X", "price_usd": -1}\n']
    lines.append(lines[5])  # a resend of an early trade: late by the end
    lines.append(lines[39_000])  # a resend still in the windows: a duplicate
    moved = json.loads(lines[39_500])  # a trade read out of time order
    moved.update(trans_time=moved["trans_time"] - 20_000, tx_hash="moved")
    lines.append(json.dumps(moved).encode() + b"\n")
    path.write_bytes(b"".join(lines))
    return path


def test_columnar_engine_synthetic_file_final_snapshot_equals_object_engine(
    synthetic_file: Path,
) -> None:
    out = assert_engines_agree(synthetic_file, "--windows", "1min,5min")
    summary = dict(SUMMARY.findall(run(str(synthetic_file), "--windows", "1min,5min").stderr))
    assert (summary[b"duplicates"], summary[b"late"], summary[b"rejected"]) == (b"1", b"1", b"4")
    finals = [json.loads(line) for line in out.splitlines()]
    assert len(finals) > 100 and all(line["final"] for line in finals)


def test_columnar_engine_synthetic_file_with_snapshots_equals_object_engine(
    synthetic_file: Path,
) -> None:
    out = assert_engines_agree(synthetic_file, "--snapshot-every", "1min")
    assert len(out.splitlines()) > 1_000


def test_default_engine_final_snapshot_only_is_columnar_and_equal(synthetic_file: Path) -> None:
    auto = run(str(synthetic_file), "--windows", "1min,5min")
    obj = run(str(synthetic_file), "--windows", "1min,5min", "--engine", "object", "-j", "1")
    assert auto.returncode == 0 and auto.stdout == obj.stdout


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--engine", "fast"], b"--engine"),
        (["--engine", "columnar", "--bars-out", "b.jsonl"], b"--engine"),
    ],
)
def test_columnar_engine_bad_combination_exits_2_naming_the_option(
    tmp_path: Path, options: list[str], named: bytes
) -> None:
    path = tmp_path / "t.jsonl"
    trade = {"token": "A", "wallet": "w", "sell_buy": "buy", "native_amount": 1,
             "token_amount": 1, "price_usd": 1, "trans_time": 1_700_000_000_000, "tx_hash": "h"}
    path.write_text(json.dumps(trade) + "\n")
    result = run(str(path), *[o if o != "b.jsonl" else str(tmp_path / o) for o in options])
    assert result.returncode == 2 and named in result.stderr
