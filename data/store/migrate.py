"""Upgrading an older workspace's database to :data:`data.store.base.SCHEMA_VERSION`, in place,
in one transaction, on both backends.

:func:`upgrade` takes the workspace's write lock (SQLite's ``BEGIN IMMEDIATE``; PostgreSQL's
``BEGIN`` plus the workspace's advisory lock, :meth:`PostgreSQLDialect.begin`), reads the
version *under that lock*, and returns without changing anything when another process upgraded
it meanwhile; otherwise it runs every step from that version on and records the new version.
Any error rolls everything back (DDL is transactional in both databases) and removes the files
the steps wrote. Every step checks what is there first, so a second run changes nothing.

Versions 2 to 6 predate PostgreSQL workspaces (created at version 6): those steps are SQLite's
alone (:func:`_sqlite_to_6`). From version 7 on, a step is one function in :data:`STEPS`, run
on either dialect with a :class:`Migration` (the connection, its dialect, the workspace
folder): a version 8 adds ``STEPS[8]`` and its tables to ``schema.py``, and both backends
upgrade.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.store.dialect import SQLITE, Connection
from data.store.vectors import (
    graph_stem,
    ids_dtype,
    record_graph,
    record_segment,
    remove_files,
    write_graph_file,
    write_segment,
)

log = logging.getLogger(__name__)

# Rows moved per step by the version 7 upgrade: one embedding segment file each (32k 384-float
# vectors are 48 MB: the batch's blobs and its array, never the whole table), and graph rows.
MOVE_ROWS = 32_768


@dataclass
class Migration:
    """What a step gets: the connection inside the upgrade's transaction, its dialect, the
    workspace folder (for steps that write files), and the files written so far (removed if
    the upgrade fails)."""

    conn: Connection
    dialect: Any
    folder: Path
    written: list[str] = field(default_factory=list)

    def tables(self) -> set[str]:
        if self.dialect is SQLITE:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
            return {r[0] for r in self.conn.execute(sql)}
        sql = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {r[0] for r in self.conn.execute(sql)}

    def script(self, statements: str) -> None:
        for statement in statements.split(";"):
            if statement.strip():
                self.conn.execute(statement)


def current_version() -> int:
    from data.store.base import SCHEMA_VERSION

    return SCHEMA_VERSION


def upgradable_versions(dialect: Any) -> tuple[int, ...]:
    """The versions an open upgrades in place on ``dialect``."""
    first = 2 if dialect is SQLITE else 6
    return tuple(range(first, current_version()))


def upgrade(conn: Connection, dialect: Any, folder: Path) -> bool:
    """Bring the database to the current schema version in one transaction; whether it
    changed anything (False: another process upgraded it first, or the version is not one
    this code upgrades). The connection must be in autocommit mode, as the store's are."""
    dialect.begin(conn)
    step = Migration(conn, dialect, Path(folder))
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = json.loads(row[0])
        if version not in upgradable_versions(dialect):
            conn.execute("ROLLBACK")
            return False
        if version < 6:
            _sqlite_to_6(conn)
            version = 6
        for target in range(version + 1, current_version() + 1):
            STEPS[target](step)
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(current_version()),)
        )
    except BaseException:
        conn.execute("ROLLBACK")
        remove_files(step.folder, step.written)
        raise
    conn.execute("COMMIT")
    return True


def sqlite_folder(conn: Any) -> Path:
    """The folder of an SQLite connection's main database file (its workspace folder)."""
    for _, name, path in conn.execute("PRAGMA database_list").fetchall():
        if name == "main" and path:
            return Path(path).parent
    raise ValueError("an in-memory SQLite database has no workspace folder to upgrade into.")


# -- version 7: embeddings and neighbour graphs become files ---------------------------------
def _to_7(step: Migration) -> None:
    """Create the version 7 tables, move the ``embeddings`` rows into segment files and the
    ``knn`` rows into graph files (checksums recorded), and drop both tables. Vectors take
    hours to compute again on a CPU: they are moved, never dropped (a vector of another
    length than its batch's first, which no encoder writes, is the one exception)."""
    from data.store.schema import PG_V7_TABLES, V7_TABLES

    tables = step.tables()
    step.script(V7_TABLES if step.dialect is SQLITE else PG_V7_TABLES)
    if "embeddings" in tables:
        _move_embeddings(step)
        step.conn.execute("DROP TABLE embeddings")
    if "knn" in tables:
        _move_graphs(step)
        step.conn.execute("DROP TABLE knn")


def _move_embeddings(step: Migration) -> None:
    """``embeddings`` rows into segments of up to :data:`MOVE_ROWS`, read in key order by key
    ranges (a bounded batch on both databases: psycopg would fetch a whole result at once)."""
    conn, last = step.conn, None
    moved = 0
    while True:
        after = "" if last is None else " WHERE (model_key, text_hash) > (?, ?)"
        batch = conn.execute(
            f"SELECT model_key, text_hash, vector FROM embeddings{after}"
            " ORDER BY model_key, text_hash LIMIT ?",
            (*(last or ()), MOVE_ROWS),
        ).fetchall()
        if not batch:
            break
        last = (batch[-1][0], batch[-1][1])
        groups: dict[tuple[str, int], list[tuple[str, Any]]] = {}
        for model_key, text_hash, blob in batch:
            groups.setdefault((model_key, len(blob)), []).append((text_hash, blob))
        del batch
        for (model_key, size), rows in groups.items():
            if size == 0 or size % 4:  # not float32 vectors: no encoder wrote these
                log.warning("%d cached embeddings of %d bytes are dropped.", len(rows), size)
                continue
            _move_segment(step, model_key, rows)
            moved += len(rows)
    if moved:
        log.info("Moved %d cached embeddings into files under %s.", moved, step.folder)


def _move_segment(step: Migration, model_key: str, rows: list[tuple[str, Any]]) -> None:
    vectors = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.float32)
    segment = write_segment(step.folder, model_key, vectors.reshape(len(rows), -1))
    step.written.append(segment.path)
    segment_id = record_segment(step.conn, step.dialect, model_key, segment, len(rows))
    step.dialect.insert_many(
        step.conn,
        "embedding_index",
        ("model_key", "text_hash", "segment_id", "segment_row"),
        ((model_key, h, segment_id, i) for i, (h, _) in enumerate(rows)),
    )


def _move_graphs(step: Migration) -> None:
    """Each encoder's ``knn`` rows into a pair of graph files. A graph without one row per
    sample was never used (get_knn returned None for it): it is dropped, to be rebuilt."""
    conn = step.conn
    n = int(conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
    keys = [r[0] for r in conn.execute("SELECT DISTINCT model_key FROM knn").fetchall()]
    for model_key in keys:
        try:
            _move_graph(step, model_key, n)
        except ValueError as exc:  # rows of another k, a cut blob: never a readable graph
            log.warning(
                "The neighbour graph of %s is not moved (%s): rebuilt later.", model_key, exc
            )


def _move_graph(step: Migration, model_key: str, n: int) -> None:
    conn = step.conn
    stored = conn.execute("SELECT COUNT(*) FROM knn WHERE model_key = ?", (model_key,))
    if n == 0 or int(stored.fetchone()[0]) != n:
        return
    first = conn.execute(
        "SELECT neighbor_ids FROM knn WHERE model_key = ? ORDER BY sample_id LIMIT 1",
        (model_key,),
    ).fetchone()
    k = len(first[0]) // 8
    stem = graph_stem(model_key)
    ids = write_graph_file(
        step.folder,
        stem,
        "ids",
        _graph_blocks(conn, model_key, 0, np.int64),
        rows=n,
        dtype=ids_dtype(n),
    )
    step.written.append(ids.path)
    dist = write_graph_file(
        step.folder,
        stem,
        "dist",
        _graph_blocks(conn, model_key, 1, np.float32),
        rows=n,
        dtype=np.float32,
    )
    step.written.append(dist.path)
    record_graph(step.conn, step.dialect, model_key, n_rows=n, k=k, ids=ids, distances=dist)


def _graph_blocks(conn: Connection, model_key: str, column: int, dtype: Any):
    """One column of an encoder's ``knn`` rows as ``(rows, k)`` blocks, in sample-id order."""
    name = ("neighbor_ids", "distances")[column]
    last = -1
    while True:
        batch = conn.execute(
            f"SELECT sample_id, {name} FROM knn WHERE model_key = ? AND sample_id > ?"
            " ORDER BY sample_id LIMIT ?",
            (model_key, last, MOVE_ROWS),
        ).fetchall()
        if not batch:
            return
        last = int(batch[-1][0])
        yield np.frombuffer(b"".join(bytes(r[1]) for r in batch), dtype=dtype).reshape(
            len(batch), -1
        )


STEPS: dict[int, Callable[[Migration], None]] = {7: _to_7}


# -- versions 2 to 6 (SQLite only: PostgreSQL workspaces began at version 6) -----------------
def _sqlite_to_6(conn: Connection) -> None:
    """Version 3 added columns and tables (issue types beyond label errors, the neighbor
    graph). Version 4 renamed columns to the one vocabulary (``samples.original_label`` ->
    ``given_label``, ``analysis_results.label_used`` -> ``analyzed_label``, ``given_prob`` ->
    ``analyzed_prob``) and the stored progress stage ``"neighbours"`` to ``"neighbors"``.
    Version 5 added ``samples.given_text`` (filled from ``text``: nothing was repaired before)
    and ``label_events.old_text``, ``new_text`` (NULL: the old events leave the text alone).
    Version 6 added ``jobs.worker``, ``heartbeat_at`` (NULL) and ``attempts`` (0)."""
    from data.store.schema import (
        V3_RESULT_COLUMNS,
        V3_SAMPLE_COLUMNS,
        V3_TABLES,
        V4_RENAMED_COLUMNS,
        V5_EVENT_COLUMNS,
        V5_SAMPLE_COLUMNS,
        V6_JOB_COLUMNS,
    )

    def columns(table: str) -> set[str]:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}

    new_given_text = "given_text" not in columns("samples")
    for table, added in (
        ("samples", V3_SAMPLE_COLUMNS),
        ("analysis_results", V3_RESULT_COLUMNS),
        ("samples", V5_SAMPLE_COLUMNS),
        ("label_events", V5_EVENT_COLUMNS),
        ("jobs", V6_JOB_COLUMNS),
    ):
        have = columns(table)
        for name, kind in added:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    for statement in V3_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)
    for table, old, new in V4_RENAMED_COLUMNS:
        have = columns(table)
        if old in have and new not in have:
            conn.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
    conn.execute(
        "UPDATE jobs SET progress = json_set(progress, '$.stage', 'neighbors')"
        " WHERE json_valid(progress) AND json_extract(progress, '$.stage') = 'neighbours'"
    )
    if new_given_text:
        conn.execute("UPDATE samples SET given_text = text")
