"""``tradepulse replay --engine columnar`` writes what the object engine writes on every
real trade file (``tests/support/realdata.py``), with and without snapshots."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.realdata import REAL_TRADE_FILES, require_real_data, write_jsonl

pytestmark = pytest.mark.realdata

SUMMARY = re.compile(rb"(lines read|applied|rejected|duplicates|late|snapshot lines)\s+([\d,]+)")


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tradepulse", "replay", *args],
                          capture_output=True, timeout=600, check=False)  # fmt: skip


@pytest.mark.parametrize("name", sorted(REAL_TRADE_FILES))
@pytest.mark.parametrize("options", [[], ["--snapshot-every", "10s"]], ids=["final", "every10s"])
def test_columnar_engine_real_trade_file_equals_object_engine(
    name: str, options: list[str], tmp_path: Path
) -> None:
    require_real_data()
    path = write_jsonl(REAL_TRADE_FILES[name].convert(), tmp_path / f"{name}.jsonl")
    obj = run(str(path), "--engine", "object", "-j", "1", *options)
    col = run(str(path), "--engine", "columnar", *options)
    assert obj.returncode == col.returncode == 0, (obj.stderr, col.stderr)
    assert col.stdout == obj.stdout and col.stdout
    assert SUMMARY.findall(col.stderr) == SUMMARY.findall(obj.stderr)
