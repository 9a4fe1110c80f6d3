"""``tradepulse db migrate``, ``candles`` and ``persist`` against the real PostgreSQL and Redis.

Through the real ``tradepulse`` app: in process (``CliRunner``) and, for ``persist``, as a
``python -m tradepulse`` subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
import redis
from typer.testing import CliRunner

from tradepulse.adapters.postgres import TIMEFRAMES_MS, BarRepository, migrate
from tradepulse.adapters.redis_stream import add_bar, stream_key
from tradepulse.cli import app
from tradepulse.core.bars import Bar
from tradepulse.history_cli import TIMEFRAMES

MIN = 60_000
T0 = 1_753_092_000_000  # 2025-07-21T10:00:00Z
T0_TEXT = "2025-07-21T10:00:00Z"

runner = CliRunner()


def invoke(dsn: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"TRADEPULSE_PG_DSN": dsn})
    return result.exit_code, result.stdout, result.stderr


def bar(minute: int, close: float) -> Bar:
    return Bar("TOK", T0 + minute * MIN, close, close + 1, close - 1, close, 1.0, close, close,
               0.0, 2, close)  # fmt: skip


def test_db_migrate_applies_then_reports_up_to_date(pg_dsn: str) -> None:
    code, _, err = invoke(pg_dsn, "db", "migrate")
    assert code == 0 and "applied 0001_bars" in err
    code, _, err = invoke(pg_dsn, "db", "migrate")
    assert code == 0 and "up to date" in err


def test_db_migrate_unreachable_database_exits_2_without_traceback(pg_dsn: str) -> None:
    missing = pg_dsn.replace("dbname=tp_test_", "dbname=tp_missing_")
    code, out, err = invoke(missing, "db", "migrate")
    assert code == 2
    assert "cannot connect to PostgreSQL" in err and "tp_missing_" in err
    assert "Traceback" not in out + err


def test_bad_dsn_setting_exits_2_naming_the_variable(pg_dsn: str) -> None:
    code, _, err = invoke("nonsense", "db", "migrate")
    assert code == 2 and "TRADEPULSE_PG_DSN" in err


def test_candles_json_5m_between_rfc3339_and_epoch_ms(pg_dsn: str) -> None:
    migrate(pg_dsn)
    with BarRepository(pg_dsn) as repo:
        repo.upsert([bar(m, 10.0 + m) for m in range(12)])
    code, out, _ = invoke(pg_dsn, "candles", "TOK", "--tf", "5m", "--from", T0_TEXT, "--to",
                          str(T0 + 7 * MIN), "--json")  # fmt: skip
    assert code == 0
    candles = json.loads(out)
    assert [c["open_ms"] for c in candles] == [T0, T0 + 5 * MIN]  # 10:05 overlaps the range
    first = candles[0]
    assert (first["open"], first["close"], first["high"], first["low"]) == (10.0, 14.0, 15.0, 9.0)
    assert (first["trades"], first["bars"], first["volume"]) == (10, 5, 5.0)
    assert first["vwap"] == pytest.approx(12.0)


def test_candles_table_shows_utc_times(pg_dsn: str) -> None:
    migrate(pg_dsn)
    with BarRepository(pg_dsn) as repo:
        repo.upsert([bar(m, 1.0) for m in range(3)])
    code, out, _ = invoke(pg_dsn, "candles", "TOK", "--tf", "1h", "--from", str(T0), "--to",
                          "2025-07-21T13:00:00+02:00")  # fmt: skip
    assert code == 0
    assert "2025-07-21 10:00" in out and "TOK 1h candles" in out


def test_candles_empty_range_prints_empty_json_array(pg_dsn: str) -> None:
    migrate(pg_dsn)
    code, out, _ = invoke(pg_dsn, "candles", "TOK", "--json")  # default: the last 24 h
    assert code == 0 and json.loads(out) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tf", "2h"], "--tf"),
        (["--from", "2025-07-21T10:00:00"], "offset"),
        (["--from", "yesterday"], "RFC 3339"),
        (["--from", str(T0), "--to", str(T0)], "before"),
    ],
)
def test_candles_bad_option_exits_2_naming_it(pg_dsn: str, args: list[str], message: str) -> None:
    code, out, err = invoke(pg_dsn, "candles", "TOK", *args)
    assert code == 2 and message in err
    assert "Traceback" not in out + err


def test_candles_without_schema_exits_2_with_message(pg_dsn: str) -> None:
    code, _, err = invoke(pg_dsn, "candles", "TOK")
    assert code == 2 and "bars_1m" in err


def test_help_lists_history_commands_without_importing_psycopg_or_redis() -> None:
    script = textwrap.dedent("""
        import sys
        from typer.testing import CliRunner
        from tradepulse.cli import app
        out = CliRunner().invoke(app, ["--help"]).stdout
        print(sorted(m for m in ("psycopg", "redis") if m in sys.modules), out)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.startswith("[] ")  # imported by the commands that use them
    assert all(f" {name} " in done.stdout for name in ("db", "candles", "persist"))


def test_candles_timeframes_are_the_repository_timeframes() -> None:
    assert tuple(TIMEFRAMES_MS) == TIMEFRAMES


def persist_process(dsn: str, prefix: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TRADEPULSE_PG_DSN": dsn, "TRADEPULSE_REDIS_PREFIX": prefix,
           "TRADEPULSE_PERSIST_HTTP_PORT": "0"}  # any free port: tests may run side by side
    return subprocess.Popen([sys.executable, "-m", "tradepulse", "persist"], env=env,
                            stderr=subprocess.PIPE)  # fmt: skip


def test_persist_stores_stream_bars_and_exits_0_on_sigterm(
    pg_dsn: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    migrate(pg_dsn)
    for m in range(20):
        add_bar(redis_client, redis_prefix, bar(m, 1.0 + m))
    proc = persist_process(pg_dsn, redis_prefix)
    deadline = time.monotonic() + 20
    while _count(pg_dsn) < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert b"persister stopped: 20 bars written" in err
    assert _count(pg_dsn) == 20
    assert redis_client.xpending(stream_key(redis_prefix), "tradepulse-persister")["pending"] == 0


def test_persist_without_schema_exits_2(pg_dsn: str, redis_prefix: str) -> None:
    proc = persist_process(pg_dsn, redis_prefix)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert b"tradepulse db migrate" in err and b"Traceback" not in err


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM bars_1m").fetchone()
    return int(row[0]) if row else 0
