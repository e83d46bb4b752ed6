"""Older schema versions for upgrade tests: turn a current workspace (SQLite or PostgreSQL)
back into what version 6 left, with its embedding cache and neighbour graphs as table rows."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np

from data.store.base import DB_NAME, connect_postgres, read_marker

# Version 6's tables, as its schema.py wrote them (git history).
V6_SQLITE = """
CREATE TABLE knn (
    model_key TEXT NOT NULL,
    sample_id INTEGER NOT NULL,
    neighbor_ids BLOB NOT NULL,
    distances BLOB NOT NULL,
    PRIMARY KEY (model_key, sample_id)
) WITHOUT ROWID;
CREATE TABLE embeddings (
    model_key TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_key, text_hash)
) WITHOUT ROWID
"""
V6_PG = """
CREATE TABLE knn (
    model_key TEXT COLLATE "C" NOT NULL,
    sample_id BIGINT NOT NULL,
    neighbor_ids BYTEA NOT NULL,
    distances BYTEA NOT NULL,
    PRIMARY KEY (model_key, sample_id)
);
CREATE TABLE embeddings (
    model_key TEXT COLLATE "C" NOT NULL,
    text_hash TEXT COLLATE "C" NOT NULL,
    vector BYTEA NOT NULL,
    PRIMARY KEY (model_key, text_hash)
)
"""
V7_TABLES = ("embedding_index", "embedding_segments", "knn_graphs")


def connect(folder: Path):
    """A raw connection (``?`` placeholders, autocommit) to a closed workspace's database."""
    marker = read_marker(folder)
    if marker is not None:
        return connect_postgres(marker["schema"]), V6_PG
    return sqlite3.connect(Path(folder) / DB_NAME, isolation_level=None), V6_SQLITE


def downgrade_to_6(folder: Path) -> None:
    """The closed workspace at ``folder`` as version 6 left it: vectors and graphs moved from
    the files back into the ``embeddings`` and ``knn`` tables, the files deleted."""
    folder = Path(folder)
    conn, ddl = connect(folder)
    try:
        vectors = []
        segments = conn.execute("SELECT id, model_key, path FROM embedding_segments").fetchall()
        for segment_id, model_key, path in segments:
            array = np.load(folder / path)
            index = conn.execute(
                "SELECT text_hash, segment_row FROM embedding_index WHERE segment_id = ?",
                (segment_id,),
            ).fetchall()
            vectors += [(model_key, h, array[row].tobytes()) for h, row in index]
        graphs = []
        for model_key, ids_path, dist_path in conn.execute(
            "SELECT model_key, ids_path, distances_path FROM knn_graphs"
        ).fetchall():
            ids, dist = np.load(folder / ids_path), np.load(folder / dist_path)
            graphs += [
                (model_key, i, ids[i].astype(np.int64).tobytes(), dist[i].tobytes())
                for i in range(len(ids))
            ]
        conn.execute("BEGIN")
        for statement in ddl.split(";"):
            conn.execute(statement)
        conn.executemany("INSERT INTO embeddings VALUES (?, ?, ?)", vectors)
        conn.executemany("INSERT INTO knn VALUES (?, ?, ?, ?)", graphs)
        for table in V7_TABLES:
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
        conn.execute("COMMIT")
    finally:
        conn.close()
    shutil.rmtree(folder / "artifacts", ignore_errors=True)
