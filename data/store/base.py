"""Shared plumbing of the workspace store: constants, the connection, small helpers."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DB_NAME = "store.sqlite"
SCHEMA_VERSION = 3

# Label-setting actions: keep the label, take the model's suggestion, choose another, or settle
# a conflict between reviewers. "undo" must stay last (apply_actions refuses it).
LABEL_ACTIONS = ("confirm", "accept", "relabel", "resolve")
ACTIONS = (*LABEL_ACTIONS, "exclude", "include", "undo")
JOB_KINDS = ("analyze", "train", "experiment")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
ORDERS = ("quality", "uncertainty", "random", "row")


class StoreError(RuntimeError):
    """A workspace problem the user can act on (missing workspace, unknown sample, ...)."""


def now() -> str:
    """UTC time as ISO 8601 with milliseconds (sortable as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def workspaces_root() -> Path:
    """Where workspaces live: ``$SECOND_LOOK_HOME`` or ``./workspaces``."""
    return Path(os.environ.get("SECOND_LOOK_HOME", "workspaces")).expanduser().resolve()


def slugify(name: str) -> str:
    """A folder-safe workspace name: ``"My reviews!"`` -> ``"my-reviews"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "workspace"


def list_workspaces(root: str | os.PathLike | None = None) -> list[Path]:
    """Workspace folders under ``root``, newest first."""
    root = Path(root) if root is not None else workspaces_root()
    if not root.exists():
        return []
    found = [p for p in root.iterdir() if (p / DB_NAME).exists()]
    return sorted(found, key=lambda p: (p / DB_NAME).stat().st_mtime, reverse=True)


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def check_reviewer(reviewer: str) -> str:
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise ValueError("A reviewer name is required: every label event records who made it.")
    return reviewer


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def job_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in ("params", "progress", "result"):
        out[key] = loads(out[key])
    out["cancel_requested"] = bool(out["cancel_requested"])
    return out


def run_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in ("config", "data", "metrics", "history", "progress"):
        out[key] = loads(out[key])
    return out


class StoreBase:
    """The connection and transaction helpers every part of :class:`Workspace` builds on."""

    """One imported dataset and everything done to it, in a folder.

    Thread-safe within a process (one connection behind a lock, because Streamlit serves
    sessions from several threads) and safe across processes (WAL mode, busy timeout), so the UI
    and background jobs can share a workspace.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser().resolve()
        self.db_path = self.folder / DB_NAME
        if not self.db_path.exists():
            raise StoreError(
                f"No workspace at {self.folder} (no {DB_NAME} inside). Import a dataset first, "
                "or pass the folder of an existing workspace."
            )
        self._lock = threading.RLock()
        self._conn = self._connect(self.db_path)
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = json.loads(row[0]) if row else None
        if version == 2:
            self._migrate_from_2()
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            self._conn.close()
            raise StoreError(
                f"The workspace at {self.folder} has schema version {version}; this Second Look "
                f"reads version {SCHEMA_VERSION}. Export it with the version that made it, then "
                "import the export into a new workspace."
            )

    def _migrate_from_2(self) -> None:
        # Version 3 only adds columns and tables, so a version-2 workspace is upgraded in place,
        # in one transaction; its labels and history are untouched.
        from data.store.schema import V3_RESULT_COLUMNS, V3_SAMPLE_COLUMNS, V3_TABLES

        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table, columns in (
                ("samples", V3_SAMPLE_COLUMNS),
                ("analysis_results", V3_RESULT_COLUMNS),
            ):
                have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns:
                    if name not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            for statement in V3_TABLES.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- opening ---------------------------------------------------------------------------
    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(
            path, timeout=30, check_same_thread=False, isolation_level=None
        )  # autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we acknowledge it (NORMAL can lose the last commits
        # on power loss; the reviewer was already told "saved").
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- small helpers ----------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._lock:
            cur = self._conn.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def _write(self, fn, *args, **kwargs):
        """Run ``fn(conn, ...)`` inside one immediate transaction; commit before returning."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn, *args, **kwargs)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

    # -- metadata -------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Workspace metadata (name, label names, columns, split seed, import warnings...)."""
        return {r["key"]: loads(r["value"]) for r in self._read("SELECT key, value FROM meta")}

    def set_info(self, key: str, value: Any) -> None:
        self._write(
            lambda c: c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, to_json(value)),
            )
        )

    @property
    def label_names(self) -> list[str]:
        return list(self.info()["label_names"])

    @property
    def name(self) -> str:
        return str(self.info().get("name", self.folder.name))

    def counts(self) -> dict[str, int]:
        """Row counts: total, per split, reviewed, changed, excluded, encoding-fixed, in the
        double-review set, conflicting."""
        row = self._read(
            "SELECT COUNT(*) AS n,"
            " SUM(split = 'train') AS train, SUM(split = 'test') AS test,"
            " SUM(split = 'validation') AS validation, SUM(reviewed) AS reviewed,"
            " SUM(label != original_label) AS changed, SUM(excluded) AS excluded,"
            " SUM(encoding_fixed) AS encoding_fixed, SUM(overlap) AS overlap, SUM(conflict) AS conflict"
            " FROM samples"
        )[0]
        return {k: int(row[k] or 0) for k in row.keys()}

    def label_counts(self) -> pd.DataFrame:
        """Rows per current label (index, in label-name order) and split (columns)."""
        df = self._frame("SELECT label, split, COUNT(*) AS n FROM samples GROUP BY label, split")
        table = df.pivot(index="label", columns="split", values="n").fillna(0).astype(int)
        return table.reindex(self.label_names, fill_value=0)

    def label_version(self) -> int:
        """The id of the last label event (0 before any review): names a version of the labels."""
        return int(self._read("SELECT COALESCE(MAX(id), 0) FROM label_events")[0][0])
