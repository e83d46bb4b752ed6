"""What differs between the two databases a workspace can live in, in one place.

A workspace is either an SQLite file (``store.sqlite``, the default) or a schema of the team's
PostgreSQL database (``SECOND_LOOK_DATABASE_URL``). The store's mixins write their SQL once,
with ``?`` placeholders, and ask the connection's dialect (:func:`dialect_of`) for the few
things the two databases spell differently:

===================== ================================= ======================================
                      SQLite                            PostgreSQL
===================== ================================= ======================================
write transaction     ``BEGIN IMMEDIATE``               ``BEGIN`` + an advisory lock on the
                                                        workspace (writers queue, as in SQLite)
new row's id          ``cursor.lastrowid``              ``RETURNING id``
a condition as 0/1    ``(cond)``                        ``CASE WHEN cond THEN 1 ELSE 0 END``
count of a condition  ``SUM(cond)``                     ``COUNT(*) FILTER (WHERE cond)``
upsert                ``INSERT OR REPLACE``             ``INSERT .. ON CONFLICT .. DO UPDATE``
substring search      FTS5 trigram index, else LIKE     ``ILIKE`` (pg_trgm GIN index)
planner hints         ``+s.col`` keeps an index out     none (the planner has real statistics)
claiming a job        (BEGIN IMMEDIATE serialises)      ``FOR UPDATE SKIP LOCKED``
bulk insert           ``executemany``                   ``COPY .. FROM STDIN``
bulk update by key    ``executemany`` of ``UPDATE``     ``COPY`` into a temporary table, then
                                                        one ``UPDATE .. FROM``
null-safe "differs"   ``a IS NOT b``                    ``a IS DISTINCT FROM b``
===================== ================================= ======================================

On SQLite the statements are exactly those the store always ran; PostgreSQL connections are
wrapped in :class:`PgConnection`, which speaks the subset of the ``sqlite3`` connection API the
store uses (``execute`` returning a cursor, ``executemany``, rows readable by index and name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

# A store connection: an ``sqlite3.Connection`` or a :class:`PgConnection`.
Connection = Any


class SQLiteDialect:
    name = "sqlite"
    # Unary plus on a column keeps SQLite's planner from using an index for that condition.
    hint = "+"
    # Row locks for a queue's claim: none needed, BEGIN IMMEDIATE already serialises writers.
    skip_locked = ""

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def insert_id(self, conn: Any, sql: str, params: Sequence[Any]) -> int:
        """Run an INSERT of one row; its new ``id``."""
        return int(conn.execute(sql, params).lastrowid)

    def as_int(self, cond: str) -> str:
        """``cond`` as 0/1 (for an INTEGER column)."""
        return f"({cond})"

    def count_if(self, cond: str) -> str:
        """An aggregate counting the rows where ``cond`` holds (NULL over no rows in SQLite)."""
        return f"SUM({cond})"

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        marks = ",".join("?" * len(columns))
        return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({marks})"

    def insert_many(
        self, conn: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        marks = ",".join("?" * len(columns))
        conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def update_many(
        self,
        conn: Any,
        table: str,
        key: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """Set ``columns`` of the rows whose ``key`` is each row's last value (``rows``:
        ``(*values, key)``); SQLite runs an indexed UPDATE per row at native speed."""
        sets = ", ".join(f"{c} = ?" for c in columns)
        conn.executemany(f"UPDATE {table} SET {sets} WHERE {key} = ?", rows)

    def differs(self, a: str, b: str) -> str:
        """``a`` and ``b`` differ, a NULL differing from any value and equal to NULL."""
        return f"{a} IS NOT {b}"

    # -- the text search index (FTS5, external content: kept in step by hand) ---------------
    def search_index_replace(self, conn: Any, rowid: int, old: str, new: str) -> None:
        conn.execute(
            "INSERT INTO samples_fts (samples_fts, rowid, text) VALUES ('delete', ?, ?)",
            (rowid, old),
        )
        conn.execute("INSERT INTO samples_fts (rowid, text) VALUES (?, ?)", (rowid, new))

    def search_index_rebuild(self, conn: Any) -> None:
        conn.execute("INSERT INTO samples_fts (samples_fts) VALUES ('rebuild')")


class PostgreSQLDialect:
    name = "postgresql"
    hint = ""
    # A worker claiming a job passes over rows another transaction holds, instead of waiting.
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN")
        # One writer per workspace at a time, as SQLite's BEGIN IMMEDIATE: a label event reads
        # the row's state and the log before it writes, and READ COMMITTED alone would let two
        # writers each miss the other's event. Readers are never blocked.
        conn.execute("SELECT pg_advisory_xact_lock(?)", (conn.lock_key,))

    def insert_id(self, conn: Any, sql: str, params: Sequence[Any]) -> int:
        return int(conn.execute(sql + " RETURNING id", params).fetchone()[0])

    def as_int(self, cond: str) -> str:
        return f"CASE WHEN {cond} THEN 1 ELSE 0 END"

    def count_if(self, cond: str) -> str:
        return f"COUNT(*) FILTER (WHERE {cond})"

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        marks = ",".join("?" * len(columns))
        rest = [c for c in columns if c not in key]
        sets = ", ".join(f"{c} = excluded.{c}" for c in rest)
        return (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
        )

    def insert_many(
        self, conn: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        with conn.raw.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def update_many(
        self,
        conn: Any,
        table: str,
        key: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """The rows by COPY into a temporary table of the same column types, then one
        ``UPDATE .. FROM`` (one statement each way instead of one round trip per row)."""
        names = ", ".join([*columns, key])
        conn.execute(
            f"CREATE TEMPORARY TABLE update_rows ON COMMIT DROP AS SELECT {names} FROM {table}"
            " WITH NO DATA"
        )
        self.insert_many(conn, "update_rows", [*columns, key], rows)
        sets = ", ".join(f"{c} = u.{c}" for c in columns)
        conn.execute(f"UPDATE {table} SET {sets} FROM update_rows u WHERE {table}.{key} = u.{key}")
        conn.execute("DROP TABLE update_rows")  # (a second call in the same transaction)

    def differs(self, a: str, b: str) -> str:
        return f"{a} IS DISTINCT FROM {b}"

    # -- the text search index: a GIN index PostgreSQL keeps in step itself ---------------
    def search_index_replace(self, conn: Any, rowid: int, old: str, new: str) -> None:
        pass

    def search_index_rebuild(self, conn: Any) -> None:
        pass


SQLITE = SQLiteDialect()
POSTGRESQL = PostgreSQLDialect()


def dialect_of(conn: Any) -> SQLiteDialect | PostgreSQLDialect:
    """The dialect of a store connection (a plain ``sqlite3`` connection is SQLite)."""
    return getattr(conn, "dialect", SQLITE)


def database_errors() -> tuple[type[BaseException], ...]:
    """The driver errors a store call can raise: ``sqlite3.Error``, and ``psycopg.Error`` where
    psycopg is installed (a PostgreSQL workspace: the server went away, a statement failed)."""
    import sqlite3

    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is in requirements.txt
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


# -- PostgreSQL connections with the sqlite3 API the store uses ------------------------------
class Row(tuple):
    """A row readable as a tuple (``row[0]``, unpacking) and by column name (``row["id"]``,
    ``dict(row)``, ``row.keys()``), as ``sqlite3.Row``."""

    __slots__ = ()
    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return tuple
    names = tuple(c.name for c in description)
    index = {n: i for i, n in enumerate(names)}
    return type("Row", (Row,), {"__slots__": (), "_names": names, "_index": index})


def pg_statement(sql: str) -> str:
    """A statement with ``?`` placeholders in psycopg's spelling (``%s``; a literal ``%``
    doubled). The store's statements hold no ``?`` inside string literals."""
    return sql.replace("%", "%%").replace("?", "%s")


def lock_key(schema: str) -> int:
    """The advisory lock key of a workspace schema (a stable signed 64-bit number)."""
    return int.from_bytes(hashlib.sha1(schema.encode()).digest()[:8], "big", signed=True)


class PgConnection:
    """A psycopg connection in autocommit mode (transactions are explicit ``BEGIN`` ..
    ``COMMIT``, as the store runs them on SQLite) with ``search_path`` set to one workspace's
    schema."""

    dialect = POSTGRESQL

    def __init__(self, raw: Any, schema: str, *, reconnect: Any = None):
        self.raw = raw
        self.schema = schema
        self.lock_key = lock_key(schema)
        raw.row_factory = _row_factory
        # A new raw connection, for when the server dropped this one (a restart, a failover, an
        # idle timeout): a long-running app replica then carries on at its next statement.
        self._reconnect = reconnect
        self._in_transaction = False

    def _lost(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)

    def execute(self, sql: str, params: Sequence[Any] | None = ()) -> Any:
        word = sql.lstrip()[:8].upper()
        if word.startswith("ROLLBACK"):
            self._in_transaction = False
            if self._lost():  # the server ended the transaction with the connection
                return None
        elif self._lost() and self._reconnect is not None:
            # Never inside a transaction: its first statements died with the old connection,
            # and running the rest in a new one would commit half of it. The statement fails
            # (the caller rolls back); the next transaction or read reconnects.
            if not self._in_transaction:
                self.raw = self._reconnect()
                self.raw.row_factory = _row_factory
        outside = not self._in_transaction  # a read, or the BEGIN of a new transaction
        try:
            cursor = self.raw.execute(pg_statement(sql), tuple(params or ()))
        except Exception:
            # A dropped connection shows only when it is used: outside a transaction the
            # statement is retried once on a new one (nothing of it happened on the old one).
            if not (outside and self._lost() and self._reconnect is not None):
                raise
            self.raw = self._reconnect()
            self.raw.row_factory = _row_factory
            cursor = self.raw.execute(pg_statement(sql), tuple(params or ()))
        if word.startswith("BEGIN"):
            self._in_transaction = True
        elif word.startswith("COMMIT"):
            self._in_transaction = False
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cur = self.raw.cursor()
        cur.executemany(pg_statement(sql), [tuple(r) for r in rows])
        return cur

    def close(self) -> None:
        self.raw.close()
