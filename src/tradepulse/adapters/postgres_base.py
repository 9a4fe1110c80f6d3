"""The connection handling shared by the PostgreSQL repositories (bars, rules, alerts).

One lazily opened autocommit connection per repository (sync psycopg 3); every public call
is one ``conn.transaction()``, serialized by a lock, so one repository may be shared by
threads (the API calls its stores from worker threads). When a call fails, the connection
is dropped (the next call opens a new one) and the psycopg error becomes
``HistoryUnavailableError`` naming what failed, so a caller can retry the same call after an
outage. A missing table is reported
with ``tradepulse db migrate`` as the fix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict

from tradepulse.core.errors import HistoryUnavailableError

Connection = psycopg.Connection[Any]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (psycopg adds context lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_dsn(dsn: str) -> str:
    """``user@host:port/dbname`` of a DSN (URI or ``key=value``), never its password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable DSN>"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or parts.get("hostaddr") or "<local socket>"
    return f"{user}{host}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"


def connect(dsn: str, *, connect_timeout_s: int = 5) -> Connection:
    """An autocommit connection (each ``conn.transaction()`` block is one transaction)."""
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout_s)
    except psycopg.Error as exc:
        raise HistoryUnavailableError(
            f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {_first_line(exc)}"
        ) from exc


def reachable(dsn: str, *, connect_timeout_s: int = 2) -> bool:
    """PostgreSQL accepts a new connection to ``dsn`` and answers ``SELECT 1``."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout_s) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Repository:
    """Base of a repository over the tables ``TABLES``."""

    TABLES: tuple[str, ...] = ()

    def __init__(
        self, dsn: str, *, connect_timeout_s: int = 5, statement_timeout_ms: int = 30_000
    ) -> None:
        self._dsn = dsn
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_ms = statement_timeout_ms
        self._conn: Connection | None = None
        self._lock = threading.RLock()  # one transaction at a time on the connection

    def check_schema(self) -> None:
        """Raise ``HistoryUnavailableError`` unless PostgreSQL answers and every table of
        ``TABLES`` exists (naming ``tradepulse db migrate`` as the fix)."""
        with self._transaction("check schema") as conn:
            found = [conn.execute("SELECT to_regclass(%s)", (t,)).fetchone() for t in self.TABLES]
        missing = [t for t, row in zip(self.TABLES, found, strict=True) if not row or not row[0]]
        if missing:
            raise HistoryUnavailableError(
                f"table {', '.join(missing)} missing in {describe_dsn(self._dsn)}: "
                "run `tradepulse db migrate`"
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            conn = connect(self._dsn, connect_timeout_s=self._connect_timeout_s)
            try:
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, false)",
                    (str(self._statement_timeout_ms),),
                )
            except psycopg.Error as exc:
                conn.close()
                raise HistoryUnavailableError(f"PostgreSQL: {first_line(exc)}") from exc
            self._conn = conn
        return self._conn

    @contextmanager
    def _transaction(self, what: str) -> Iterator[Connection]:
        """One transaction on the connection; a psycopg error drops the connection and
        becomes ``HistoryUnavailableError`` naming ``what`` failed. Other exceptions roll
        the transaction back and pass through."""
        try:
            with self._lock:
                conn = self._connection()
                with conn.transaction():
                    yield conn
        except errors.UndefinedTable as exc:
            self.close()
            raise HistoryUnavailableError(
                f"PostgreSQL cannot {what} at {describe_dsn(self._dsn)}: {first_line(exc)} "
                "(run `tradepulse db migrate`)"
            ) from exc
        except psycopg.Error as exc:
            self.close()
            raise HistoryUnavailableError(
                f"PostgreSQL cannot {what} at {describe_dsn(self._dsn)}: {first_line(exc)}"
            ) from exc
