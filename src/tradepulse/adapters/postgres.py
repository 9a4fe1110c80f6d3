"""PostgreSQL history: the migrations runner, finalized 1-minute bars and candles.

Schema (``migrations/0001_bars.sql``)::

    schema_migrations (version int PK, name text, applied_at timestamptz)
    bars_1m           (token text, open_ms bigint, open .. vwap double precision,
                       trades int, revision int, updated_at timestamptz)
                      PK (token, open_ms); open_ms = UTC minute start in epoch ms

Candles of a higher timeframe are computed from ``bars_1m`` by one query; buckets are
UTC-aligned because epoch 0 is a UTC midnight (``bucket_ms = open_ms - open_ms % tf_ms``)::

    tf = 5m   |00 01 02 03 04|05 06 07 08 09|10 ..      open  = open of the first bar
    1m bars    x  x     x  x   x        x            close = close of the last bar
    candles   [  4 bars     ) [ 2 bars      )         high/low = max/min, volumes summed

psycopg errors are translated here: anything that fails talking to PostgreSQL raises
``HistoryUnavailableError`` (``raise ... from e``); the caller may retry, nothing is half done
because every call is one transaction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import msgspec
import psycopg
from psycopg import pq

from tradepulse.adapters.postgres_base import (
    Connection,
    Repository,
    connect,
    first_line,
)
from tradepulse.core.bars import MINUTE_MS, Bar
from tradepulse.core.errors import HistoryUnavailableError
from tradepulse.core.types import MS_PER_DAY, MS_PER_HOUR, TokenId, TsMs

log = logging.getLogger(__name__)

TIMEFRAMES_MS: dict[str, int] = {
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "1h": MS_PER_HOUR,
    "4h": 4 * MS_PER_HOUR,
    "1d": MS_PER_DAY,
}
"""Candle timeframes accepted by ``BarRepository.candles`` and their length in ms."""

_MIGRATION_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MIGRATION_LOCK = 0x74_72_61_64_65_70_75_6C  # "tradepul": serializes concurrent migrate()

_SCHEMA_MIGRATIONS = b"""
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class Candle(msgspec.Struct, frozen=True, gc=False):
    """One token's bars of one timeframe bucket ``[open_ms, open_ms + tf_ms)``.

    Fields as in ``Bar`` (``volume`` in token units, ``*_usd`` in USD). ``vwap`` is
    ``volume_usd / volume`` over the bucket, ``None`` when the volume is 0. ``bars`` is how
    many 1-minute bars were stored for the bucket (fewer than ``tf_ms / 60_000`` when
    minutes had no trades).
    """

    token: TokenId
    open_ms: TsMs
    open: float
    high: float
    low: float
    close: float
    volume: float
    volume_usd: float
    buy_volume_usd: float
    sell_volume_usd: float
    trades: int
    vwap: float | None
    bars: int


# --- migrations ------------------------------------------------------------------------


def migration_files(directory: Traversable | None = None) -> list[tuple[int, str, Traversable]]:
    """``(version, name, file)`` of every ``NNNN_name.sql`` in ``directory`` (default: the
    packaged ``migrations``), by version. Other files are ignored."""
    folder = directory or resources.files("tradepulse.adapters.migrations")
    found = []
    for item in folder.iterdir():
        match = _MIGRATION_RE.match(item.name)
        if match and item.is_file():
            found.append((int(match.group(1)), match.group(2), item))
    return sorted(found, key=lambda entry: entry[0])


def migrate(conn_or_dsn: Connection | str, *, directory: Traversable | None = None) -> list[str]:
    """Apply the migrations not yet recorded in ``schema_migrations``; return the applied
    ones as ``NNNN_name`` (empty when the schema is up to date).

    Each file runs in its own transaction together with its ``schema_migrations`` row, under
    a transaction-level advisory lock: concurrent runs serialize per file and a file is
    applied once. A failing file is rolled back and raises ``HistoryUnavailableError``; the
    files before it stay applied. A connection passed in must not be inside a transaction.
    """
    if isinstance(conn_or_dsn, str):
        with connect(conn_or_dsn) as conn:
            return _migrate(conn, migration_files(directory))
    if conn_or_dsn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("migrate() needs a connection outside a transaction")
    return _migrate(conn_or_dsn, migration_files(directory))


def _migrate(conn: Connection, files: list[tuple[int, str, Traversable]]) -> list[str]:
    applied = []
    for version, name, path in files:
        label = f"{version:04d}_{name}"
        try:
            if _apply(conn, version, name, path.read_bytes()):
                applied.append(label)
                log.info("migration applied version=%s name=%s", version, name)
        except psycopg.Error as exc:
            raise HistoryUnavailableError(
                f"PostgreSQL migration {label} failed: {first_line(exc)}"
            ) from exc
    return applied


def _apply(conn: Connection, version: int, name: str, script: bytes) -> bool:
    """Run one migration file unless recorded; whether it ran."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(_SCHEMA_MIGRATIONS)
        done = conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,))
        if done.fetchone() is not None:
            return False
        conn.execute(script)  # no parameters: several statements may run in one call
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
        )
    return True


def applied_migrations(conn: Connection) -> list[tuple[int, str]]:
    """``(version, name)`` recorded in ``schema_migrations``, by version."""
    rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
    return [(int(v), str(n)) for v, n in rows.fetchall()]


# --- bars and candles ------------------------------------------------------------------

_UPSERT = """
INSERT INTO bars_1m AS stored (token, open_ms, open, high, low, close, volume, volume_usd,
                               buy_volume_usd, sell_volume_usd, trades, vwap, revision)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::float8[], %s::float8[], %s::float8[],
                     %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[],
                     %s::int[], %s::float8[], %s::int[])
ON CONFLICT (token, open_ms) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, volume_usd = excluded.volume_usd,
    buy_volume_usd = excluded.buy_volume_usd, sell_volume_usd = excluded.sell_volume_usd,
    trades = excluded.trades, vwap = excluded.vwap, revision = excluded.revision,
    updated_at = now()
WHERE stored.revision <= excluded.revision
"""

_CANDLES = """
SELECT bucket_ms,
       (array_agg(open ORDER BY open_ms))[1],
       max(high),
       min(low),
       (array_agg(close ORDER BY open_ms DESC))[1],
       sum(volume), sum(volume_usd), sum(buy_volume_usd), sum(sell_volume_usd),
       sum(trades),
       sum(volume_usd) / NULLIF(sum(volume), 0),
       count(*)
FROM (SELECT *, open_ms - open_ms %% %(tf_ms)s AS bucket_ms
      FROM bars_1m
      WHERE token = %(token)s AND open_ms >= %(lo_ms)s AND open_ms < %(hi_ms)s) AS minute
GROUP BY bucket_ms
ORDER BY bucket_ms
"""


def latest_revisions(bars: Sequence[Bar]) -> list[Bar]:
    """One bar per ``(token, open_ms)``: the highest revision; on equal revisions the later
    one in ``bars``. (One INSERT cannot update the same row twice.)"""
    best: dict[tuple[TokenId, TsMs], Bar] = {}
    for bar in bars:
        key = (bar.token, bar.open_ms)
        kept = best.get(key)
        if kept is None or kept.revision <= bar.revision:
            best[key] = bar
    return list(best.values())


def _columns(bars: Sequence[Bar]) -> list[list[Any]]:
    """The bars as 13 parallel column lists, in ``bars_1m`` column order."""
    rows = (msgspec.structs.astuple(bar) for bar in bars)
    return [list(column) for column in zip(*rows, strict=True)]


def bucket_range(tf_ms: int, from_ms: TsMs, to_ms: TsMs) -> tuple[TsMs, TsMs]:
    """``[lo, hi)`` of the 1-minute bars making up every ``tf_ms`` bucket that overlaps
    ``[from_ms, to_ms)``: ``from_ms`` floored and ``to_ms`` ceiled to the timeframe, so a
    candle is never cut by the range."""
    return from_ms - from_ms % tf_ms, -(-to_ms // tf_ms) * tf_ms


class BarRepository(Repository):
    """``bars_1m`` (connection handling and errors of ``Repository``)."""

    TABLES = ("bars_1m",)

    def upsert(self, bars: Sequence[Bar]) -> int:
        """Insert or update ``bars`` in one statement and commit; return how many rows were
        written. A stored row is replaced only by a revision at least as high, so an older
        or redelivered revision never overwrites a newer one (and counts 0)."""
        unique = latest_revisions(bars)
        if not unique:
            return 0
        with self._transaction("upsert bars") as conn:
            return conn.execute(_UPSERT, _columns(unique)).rowcount

    def candles(self, token: TokenId, tf: str, from_ms: TsMs, to_ms: TsMs) -> list[Candle]:
        """Candles of ``tf`` (a key of ``TIMEFRAMES_MS``) for ``token`` whose bucket
        overlaps ``[from_ms, to_ms)``, oldest first; buckets without any stored bar are
        absent. Raises ``ValueError`` for an unknown ``tf``."""
        if tf not in TIMEFRAMES_MS:
            raise ValueError(f"unknown timeframe {tf!r}: accepts {', '.join(TIMEFRAMES_MS)}")
        if to_ms <= from_ms:
            return []
        tf_ms = TIMEFRAMES_MS[tf]
        lo_ms, hi_ms = bucket_range(tf_ms, from_ms, to_ms)
        params = {"token": token, "tf_ms": tf_ms, "lo_ms": lo_ms, "hi_ms": hi_ms}
        with self._transaction("query candles") as conn:
            rows = conn.execute(_CANDLES, params).fetchall()
        return [Candle(token, *row) for row in rows]
