"""One small connection API over the two databases Second Look speaks: SQLite (embedded, the
default) and PostgreSQL (teams, ``SECOND_LOOK_DATABASE_URL``).

Statements are written once, in the SQL both understand, with ``?`` placeholders; on
PostgreSQL they are rewritten to psycopg's ``%s``. Every parameter is passed to the driver,
never formatted into the statement. Rows come back as dicts.

>>> db = Database.open(":memory:")
>>> db.script("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
>>> db.write(lambda tx: tx.execute("INSERT INTO t VALUES (?, ?)", ("a", 1)))
1
>>> db.read("SELECT k, v FROM t")
[{'k': 'a', 'v': 1}]
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (else it is an SQLite file path)."""
    return url.strip().lower().startswith(POSTGRES_SCHEMES)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs).

    >>> redact("postgresql://ana:s3cret@db:5432/look")
    'postgresql://ana:***@db:5432/look'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, colon, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def connect_sqlite(path: str | Path) -> sqlite3.Connection:
    """An SQLite connection as the store uses them: autocommit mode (transactions are explicit,
    ``BEGIN IMMEDIATE ... COMMIT``), WAL, ``synchronous=FULL``, foreign keys, a 30 s busy wait,
    rows readable by name; shareable between threads (callers hold a lock)."""
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    if str(path) != ":memory:":
        conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before it is acknowledged (NORMAL can lose the last commits on
    # power loss; the reviewer was already told "saved").
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class Transaction:
    """What a write function gets: ``execute`` inside the open transaction."""

    def __init__(self, db: Database):
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        return self._db._run(sql, params, fetch=False)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one statement and return its rows (a SELECT inside the transaction)."""
        return self._db._run(sql, params, fetch=True)


class Database:
    """One connection (behind a lock: Streamlit serves sessions from several threads) to an
    SQLite file or a PostgreSQL database. Writes run in one transaction and commit before they
    return."""

    def __init__(self, target: str):
        self.target = str(target)
        self.kind = "postgresql" if is_postgres_url(self.target) else "sqlite"
        self._lock = threading.RLock()
        self._conn = self._connect()

    @classmethod
    def open(cls, target: str | Path) -> Database:
        return cls(str(target))

    def __repr__(self) -> str:
        return f"Database({self.kind}: {redact(self.target)})"

    # -- connecting ----------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.kind == "postgresql":
            try:
                import psycopg
                from psycopg.rows import dict_row
            except ImportError as exc:  # pragma: no cover - psycopg is in requirements.txt
                raise RuntimeError(
                    "PostgreSQL needs the psycopg package: pip install -r requirements.txt"
                ) from exc
            try:
                return psycopg.connect(self.target, autocommit=True, row_factory=dict_row)
            except psycopg.Error as exc:
                raise ConnectionError(
                    f"Cannot connect to the database at {redact(self.target)}: "
                    f"{str(exc).strip()}. Check SECOND_LOOK_DATABASE_URL and that the server runs."
                ) from None
        return connect_sqlite(self.target)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- statements ------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        if self.kind == "postgresql":
            # psycopg's placeholder is %s, so a literal % must be doubled first.
            return sql.replace("%", "%%").replace("?", "%s")
        return sql

    def _run(self, sql: str, params: Sequence[Any], *, fetch: bool) -> Any:
        cur = self._conn.execute(self._sql(sql), tuple(params))
        if not fetch:
            return cur.rowcount
        if self.kind == "postgresql":
            return list(cur.fetchall())
        return [dict(row) for row in cur.fetchall()]

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of one query, as dicts."""
        with self._lock:
            return self._run(sql, params, fetch=True)

    def write(self, fn: Callable[[Transaction], Any]) -> Any:
        """Run ``fn(tx)`` in one transaction (SQLite: BEGIN IMMEDIATE, so writers queue instead
        of failing at commit); commit before returning its result, roll back on any error."""
        with self._lock:
            tx = Transaction(self)
            if self.kind == "postgresql":
                with self._conn.transaction():
                    return fn(tx)
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(tx)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return out

    def script(self, statements: str) -> None:
        """Run several ``;``-separated statements (a schema) in one transaction."""
        parts = [s.strip() for s in statements.split(";") if s.strip()]
        self.write(lambda tx: [tx.execute(s) for s in parts])
