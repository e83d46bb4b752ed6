"""The workspace: one imported dataset and everything done to it."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.home import database_url
from data.store.analysis import AnalysisMixin
from data.store.backup import BackupMixin
from data.store.base import (
    DB_NAME,
    SCHEMA_VERSION,
    StoreBase,
    StoreError,
    connect_postgres,
    is_workspace,
    new_schema_name,
    now,
    quote_ident,
    read_marker,
    to_json,
    write_marker,
)
from data.store.dialect import POSTGRESQL
from data.store.jobs import JobsMixin
from data.store.labels import LabelsMixin
from data.store.review import ReviewMixin
from data.store.schema import PG_SCHEMA, PG_SEARCH_INDEX, SCHEMA
from data.store.texts import TextsMixin
from data.store.vectors import VectorsMixin

log = logging.getLogger(__name__)


class Workspace(
    LabelsMixin,
    TextsMixin,
    ReviewMixin,
    AnalysisMixin,
    VectorsMixin,
    JobsMixin,
    BackupMixin,
    StoreBase,
):
    """One imported dataset and everything done to it, in a folder.

    Thread-safe within a process (one connection behind a lock, because Streamlit serves
    sessions from several threads) and safe across processes (WAL mode, busy timeout), so the UI
    and background jobs can share a workspace.
    """

    @classmethod
    def create(
        cls,
        folder: str | os.PathLike,
        prepared: Any,
        *,
        name: str | None = None,
        source: str = "",
        overwrite: bool = False,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> Workspace:
        """Create a workspace from a :class:`data.readers.PreparedDataset`.

        All rows go in one transaction: on any error nothing is left half-imported.
        ``progress`` gets ``{"stage", "done", "total", "unit"}`` every
        :data:`IMPORT_PROGRESS_ROWS` rows written, then one ``{"stage"}`` per later step (a
        1.36M-row import spends minutes here; the page and the CLI show the rate and time left).
        """
        say = progress or (lambda info: None)
        folder = Path(folder).expanduser().resolve()
        db_path = folder / DB_NAME
        replaced = None  # the PostgreSQL schema of a workspace this one overwrites
        if is_workspace(folder):
            if not overwrite:
                raise StoreError(
                    f"A workspace already exists at {folder}. Open it (the Workspace list in "
                    "the sidebar) or choose another name."
                )
            marker = read_marker(folder)
            replaced = marker["schema"] if marker else None
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if database_url():
            return cls._create_postgres(
                folder, prepared, name=name, source=source, say=say, replaced=replaced
            )
        tmp_path = folder / (DB_NAME + ".importing")
        for leftover in folder.glob(DB_NAME + ".importing*"):
            leftover.unlink()
        frame: pd.DataFrame = prepared.frame
        conn = cls._connect(tmp_path)
        try:
            conn.executescript(SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            rows = _counted(_sample_rows(frame), len(frame), say)
            conn.executemany(
                "INSERT INTO samples (id, ext_id, text, given_label, split, meta,"
                " encoding_fixed, label, rand, given_text) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            say({"stage": "building the text search index"})
            conn.execute("INSERT INTO samples_fts(samples_fts) VALUES ('rebuild')")
            # Statistics let the planner choose, per filter and order, between walking the
            # order's index and sorting the filter's matches.
            conn.execute("ANALYZE")
            info = _info(prepared, name or folder.name, source)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [(k, to_json(v)) for k, v in info.items()],
            )
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except BaseException:
            conn.close()
            for leftover in folder.glob(DB_NAME + ".importing*"):
                leftover.unlink()
            raise
        conn.close()
        os.replace(tmp_path, db_path)  # the workspace appears whole or not at all
        ws = cls(folder)
        say({"stage": "taking the first backup"})
        ws.backup()  # from the first moment, a damaged file can be restored
        return ws

    @classmethod
    def _create_postgres(
        cls,
        folder: Path,
        prepared: Any,
        *,
        name: str | None,
        source: str,
        say: Callable[[dict[str, Any]], None],
        replaced: str | None,
    ) -> Workspace:
        """:meth:`create` into a new schema of the team database: the schema, its tables and
        every row in one transaction (DDL is transactional in PostgreSQL), rows by COPY; then
        the folder's marker names the schema. A crash before the marker leaves at most an
        unnamed schema, never a half workspace. No backup is taken: the database's own
        (pg_dump, base backups) cover it."""
        frame: pd.DataFrame = prepared.frame
        for column in ("ext_id", "text", "label", "split"):
            nul = frame[column].astype(str).str.contains("\x00", regex=False)
            if nul.any():
                raise StoreError(
                    f"The {column} of row {int(nul.to_numpy().argmax()) + 1} holds a NUL "
                    "character (\\x00), which PostgreSQL does not store in text. Remove it from "
                    "the file (it is no printable character) and import again."
                )
        schema = new_schema_name(folder.name)
        conn = connect_postgres(None, what=f"the new workspace at {folder}")
        try:
            ops = _trigram_ops(conn)
            conn.execute("BEGIN")
            conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
            conn.execute("SELECT set_config('search_path', ?, true)", (quote_ident(schema),))
            for statement in PG_SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            rows = _counted(_sample_rows(frame), len(frame), say)
            POSTGRESQL.insert_many(conn, "samples", SAMPLE_COLUMNS, rows)
            if ops is not None:
                say({"stage": "building the text search index"})
                conn.execute(PG_SEARCH_INDEX.format(ops=ops))
            conn.execute("ANALYZE samples")
            info = _info(prepared, name or folder.name, source)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [(k, to_json(v)) for k, v in info.items()],
            )
            conn.execute("COMMIT")
            write_marker(folder, schema)
        except BaseException:
            if conn.raw.info.transaction_status != 0:  # not idle: roll the schema back
                conn.execute("ROLLBACK")
            conn.close()
            raise
        if replaced is not None:  # the workspace this one overwrote
            conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(replaced)} CASCADE")
        conn.close()
        return cls(folder)


SAMPLE_COLUMNS = (
    "id",
    "ext_id",
    "text",
    "given_label",
    "split",
    "meta",
    "encoding_fixed",
    "label",
    "rand",
    "given_text",
)


def _sample_rows(frame: pd.DataFrame) -> Iterator[tuple]:
    """The imported rows as :data:`SAMPLE_COLUMNS` tuples."""
    # A fixed random key per row: the "random" review order and the overlap draw.
    rand = np.random.default_rng(0).integers(0, 2**31, size=len(frame))
    return zip(
        range(len(frame)),
        frame["ext_id"].astype(str),
        frame["text"],
        frame["label"],
        frame["split"],
        (to_json(m) for m in frame["meta"]),
        frame["encoding_fixed"].astype(int),
        frame["label"],
        rand.tolist(),
        frame["text"],
        strict=True,
    )


def _info(prepared: Any, name: str, source: str) -> dict[str, Any]:
    """The workspace's metadata (the ``meta`` table) at import."""
    frame = prepared.frame
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "source": source,
        "created_at": now(),
        "label_names": list(prepared.label_names),
        "text_column": prepared.text_column,
        "label_column": prepared.label_column,
        "id_column": prepared.id_column,
        "split_column": prepared.split_column,
        "split_seed": prepared.split_seed,
        "test_size": prepared.test_size,
        "encoding": prepared.encoding,
        "import_warnings": list(prepared.warnings),
        "dropped_rows": int(getattr(prepared, "dropped_rows", 0)),
        "annotator_columns": list(getattr(prepared, "annotator_columns", [])),
        "meta_columns": sorted({k for m in frame["meta"].head(1000) for k in m}),
    }


def _trigram_ops(conn: Any) -> str | None:
    """pg_trgm's GIN operator class, schema-qualified, installing the extension when it is
    missing (a trusted extension: the database's owner may); None when it cannot be had (the
    search then scans the texts)."""
    import psycopg

    sql = (
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_trgm'"
    )
    row = conn.execute(sql).fetchone()
    if row is None:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except psycopg.Error as exc:
            log.warning("No pg_trgm (%s): the text search will scan the texts.", exc)
            return None
        row = conn.execute(sql).fetchone()
    return f"{quote_ident(row[0])}.gin_trgm_ops"


# Rows between two import progress events: ~1 s of inserts on 2 CPU cores.
IMPORT_PROGRESS_ROWS = 20_000


def _counted(rows: Iterator[Any], total: int, say: Callable[[dict[str, Any]], None]):
    """``rows`` unchanged, telling ``say`` how many were handed on so far."""
    say({"stage": "writing rows", "done": 0, "total": total, "unit": "rows"})
    for i, row in enumerate(rows, 1):
        yield row
        if i % IMPORT_PROGRESS_ROWS == 0 or i == total:
            say({"stage": "writing rows", "done": i, "total": total, "unit": "rows"})
