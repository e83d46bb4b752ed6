"""The workspace store: the only module that speaks SQL.

A workspace is a folder holding ``store.sqlite`` (SQLite in WAL mode) and, under ``runs/``, the
models that training runs saved. The database holds:

- ``samples``: the imported rows (text, original label, split, metadata) plus a materialised
  view of each row's *current* state (label, excluded, reviewed) for fast paging;
- ``label_events``: an append-only log of every review action. The current state of a row is
  derived from it: :meth:`Workspace.rebuild_state` recomputes the materialised columns from the
  log alone, and every write updates both inside one transaction;
- ``embeddings``: a per-text cache of encoder outputs, so a re-analysis only refits the classifier;
- ``analyses`` / ``analysis_results``: predicted probabilities and cleanlab scores, with the
  label version (the last event id) each analysis used;
- ``jobs`` / ``runs``: background work and training runs with their config, progress, metrics.

Every public write commits before it returns: when the UI says "saved", the change is on disk
(``synchronous=FULL``), so killing the process or closing the browser loses nothing acknowledged.

Example
-------
>>> ws = Workspace.create("/tmp/ws", prepared, name="reviews")          # doctest: +SKIP
>>> ws.relabel(3, "positive", reviewer="ana")                            # doctest: +SKIP
>>> ws.undo(reviewer="ana")                                              # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DB_NAME = "store.sqlite"
SCHEMA_VERSION = 1

ACTIONS = ("confirm", "accept", "relabel", "exclude", "include", "undo")
JOB_KINDS = ("analyze", "train", "experiment")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
ORDERS = ("quality", "row")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    ext_id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    original_label TEXT NOT NULL,
    split TEXT NOT NULL,
    meta TEXT,
    encoding_fixed INTEGER NOT NULL DEFAULT 0,
    -- derived from label_events (rebuild_state recomputes these from the log)
    label TEXT NOT NULL,
    excluded INTEGER NOT NULL DEFAULT 0,
    reviewed INTEGER NOT NULL DEFAULT 0,
    reviewer TEXT,
    reviewed_at TEXT
);
CREATE INDEX IF NOT EXISTS samples_label ON samples(label);
CREATE INDEX IF NOT EXISTS samples_split ON samples(split);
CREATE TABLE IF NOT EXISTS label_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    action TEXT NOT NULL,
    old_label TEXT NOT NULL,
    new_label TEXT NOT NULL,
    old_excluded INTEGER NOT NULL,
    new_excluded INTEGER NOT NULL,
    reviewer TEXT NOT NULL,
    created_at TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    undoes_batch TEXT
);
CREATE INDEX IF NOT EXISTS events_sample ON label_events(sample_id, id);
CREATE INDEX IF NOT EXISTS events_reviewer ON label_events(reviewer, id);
CREATE TABLE IF NOT EXISTS embeddings (
    model_key TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_key, text_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS analyses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    method TEXT NOT NULL,
    settings TEXT NOT NULL,
    label_version INTEGER NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS analysis_results (
    analysis_id INTEGER NOT NULL REFERENCES analyses(id),
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    label_used TEXT NOT NULL,
    predicted_label TEXT NOT NULL,
    predicted_prob REAL NOT NULL,
    given_prob REAL NOT NULL,
    label_quality REAL NOT NULL,
    is_label_issue INTEGER NOT NULL,
    PRIMARY KEY (analysis_id, sample_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_quality ON analysis_results(analysis_id, label_quality);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress TEXT,
    result TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER REFERENCES jobs(id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    data TEXT NOT NULL,
    metrics TEXT,
    history TEXT,
    progress TEXT,
    model_dir TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
"""


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


def _json(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Workspace:
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

    # -- opening and creating -------------------------------------------------------------
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

    @classmethod
    def create(
        cls,
        folder: str | os.PathLike,
        prepared: Any,
        *,
        name: str | None = None,
        source: str = "",
        overwrite: bool = False,
    ) -> Workspace:
        """Create a workspace from a :class:`data.readers.PreparedDataset`.

        All rows go in one transaction: on any error nothing is left half-imported.
        """
        folder = Path(folder).expanduser().resolve()
        db_path = folder / DB_NAME
        if db_path.exists():
            if not overwrite:
                raise StoreError(
                    f"A workspace already exists at {folder}. Open it, choose another name, or "
                    "pass overwrite=True to replace it."
                )
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp_path = folder / (DB_NAME + ".importing")
        for leftover in folder.glob(DB_NAME + ".importing*"):
            leftover.unlink()
        frame: pd.DataFrame = prepared.frame
        conn = cls._connect(tmp_path)
        try:
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            rows = zip(
                range(len(frame)),
                frame["ext_id"].astype(str),
                frame["text"],
                frame["label"],
                frame["split"],
                (_json(m) for m in frame["meta"]),
                frame["encoding_fixed"].astype(int),
                frame["label"],
                strict=True,
            )
            conn.executemany(
                "INSERT INTO samples (id, ext_id, text, original_label, split, meta,"
                " encoding_fixed, label) VALUES (?,?,?,?,?,?,?,?)",
                rows,
            )
            info = {
                "schema_version": SCHEMA_VERSION,
                "name": name or folder.name,
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
                "meta_columns": sorted({k for m in frame["meta"].head(1000) for k in m}),
            }
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [(k, _json(v)) for k, v in info.items()],
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
        return cls(folder)

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
        return {r["key"]: _loads(r["value"]) for r in self._read("SELECT key, value FROM meta")}

    def set_info(self, key: str, value: Any) -> None:
        self._write(
            lambda c: c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, _json(value)),
            )
        )

    @property
    def label_names(self) -> list[str]:
        return list(self.info()["label_names"])

    @property
    def name(self) -> str:
        return str(self.info().get("name", self.folder.name))

    def counts(self) -> dict[str, int]:
        """Row counts: total, per split, reviewed, changed, excluded, encoding-fixed."""
        row = self._read(
            "SELECT COUNT(*) AS n,"
            " SUM(split = 'train') AS train, SUM(split = 'test') AS test,"
            " SUM(split = 'validation') AS validation, SUM(reviewed) AS reviewed,"
            " SUM(label != original_label) AS changed, SUM(excluded) AS excluded,"
            " SUM(encoding_fixed) AS encoding_fixed FROM samples"
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

    # -- samples --------------------------------------------------------------------------
    def samples(self, *, ids: Sequence[int] | None = None, with_meta: bool = False) -> pd.DataFrame:
        """Rows with their current state, in import order.

        Columns: id, ext_id, text, original_label, label, split, excluded, reviewed, reviewer,
        reviewed_at, encoding_fixed (and ``meta`` as dicts when ``with_meta``).
        """
        cols = (
            "id, ext_id, text, original_label, label, split, excluded, reviewed, reviewer,"
            " reviewed_at, encoding_fixed" + (", meta" if with_meta else "")
        )
        if ids is None:
            df = self._frame(f"SELECT {cols} FROM samples ORDER BY id")
        else:
            ids = [int(i) for i in ids]
            parts = [
                self._frame(
                    f"SELECT {cols} FROM samples WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for chunk in _chunks(ids, 900)
            ]
            df = (
                pd.concat(parts, ignore_index=True)
                if parts
                else self._frame(f"SELECT {cols} FROM samples WHERE 0")
            )
            df = df.set_index("id").loc[ids].reset_index()
        for col in ("excluded", "reviewed", "encoding_fixed"):
            df[col] = df[col].astype(bool)
        if with_meta:
            df["meta"] = [json.loads(m) if m else {} for m in df["meta"]]
        return df

    def sample(self, sample_id: int) -> dict[str, Any]:
        rows = self._read("SELECT * FROM samples WHERE id = ?", (int(sample_id),))
        if not rows:
            raise StoreError(f"No sample with id {sample_id} in workspace {self.name}.")
        out = dict(rows[0])
        out["meta"] = json.loads(out["meta"]) if out["meta"] else {}
        for col in ("excluded", "reviewed", "encoding_fixed"):
            out[col] = bool(out[col])
        return out

    # -- label events ---------------------------------------------------------------------
    def relabel(
        self, sample_id: int, new_label: str, *, reviewer: str, action: str = "relabel"
    ) -> int:
        """Set a sample's label and log it; returns the event id once committed.

        ``action`` says why: ``"confirm"`` (keep the label), ``"accept"`` (take the model's
        suggestion) or ``"relabel"`` (the reviewer chose another label).
        """
        if action not in ("confirm", "accept", "relabel"):
            raise ValueError(
                f"Unknown action {action!r}; valid: 'confirm', 'accept', 'relabel' "
                "(use set_excluded to exclude or include)."
            )
        return self.apply_actions([(sample_id, action, new_label)], reviewer=reviewer)[0]

    def set_excluded(self, sample_id: int, excluded: bool = True, *, reviewer: str) -> int:
        """Exclude a sample from training (or include it again); returns the event id."""
        action = "exclude" if excluded else "include"
        return self.apply_actions([(sample_id, action, None)], reviewer=reviewer)[0]

    def apply_actions(
        self, actions: Iterable[tuple[int, str, str | None]], *, reviewer: str
    ) -> list[int]:
        """Apply ``(sample_id, action, label)`` triples as ONE batch in one transaction.

        One :meth:`undo` reverts the whole batch (bulk relabels are one action to the reviewer).
        """
        reviewer = _check_reviewer(reviewer)
        actions = list(actions)
        labels = set(self.label_names)
        for sample_id, action, label in actions:
            if action not in ACTIONS or action == "undo":
                raise ValueError(f"Unknown action {action!r}; valid: {list(ACTIONS[:-1])}.")
            if action in ("confirm", "accept", "relabel") and label not in labels:
                raise ValueError(
                    f"Unknown label {label!r} for sample {sample_id}; valid: {sorted(labels)}."
                )
        batch_id = uuid.uuid4().hex
        return self._write(self._append_events, actions, reviewer, batch_id, None)

    def _append_events(
        self,
        conn: sqlite3.Connection,
        actions: list[tuple[int, str, str | None]],
        reviewer: str,
        batch_id: str,
        undoes_batch: str | None,
        restore: dict[int, tuple[str, int]] | None = None,
    ) -> list[int]:
        ts = now()
        event_ids = []
        for sample_id, action, label in actions:
            row = conn.execute(
                "SELECT label, excluded FROM samples WHERE id = ?", (int(sample_id),)
            ).fetchone()
            if row is None:
                raise StoreError(f"No sample with id {sample_id}; nothing was changed.")
            old_label, old_excl = row["label"], int(row["excluded"])
            if action == "undo":
                new_label, new_excl = restore[int(sample_id)]
            elif action == "exclude":
                new_label, new_excl = old_label, 1
            elif action == "include":
                new_label, new_excl = old_label, 0
            else:
                new_label, new_excl = label, old_excl
            cur = conn.execute(
                "INSERT INTO label_events (sample_id, action, old_label, new_label, old_excluded,"
                " new_excluded, reviewer, created_at, batch_id, undoes_batch)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    int(sample_id),
                    action,
                    old_label,
                    new_label,
                    old_excl,
                    new_excl,
                    reviewer,
                    ts,
                    batch_id,
                    undoes_batch,
                ),
            )
            event_ids.append(int(cur.lastrowid))
            self._refresh_state(conn, int(sample_id))
        return event_ids

    @staticmethod
    def _refresh_state(conn: sqlite3.Connection, sample_id: int) -> None:
        """Recompute one sample's materialised state from its events (the log is the truth)."""
        conn.execute(_STATE_SQL + " WHERE s.id = ?", (sample_id,))

    def rebuild_state(self) -> None:
        """Recompute every sample's current state from the event log alone."""
        self._write(lambda c: c.execute(_STATE_SQL))

    def undo(self, *, reviewer: str) -> list[int]:
        """Revert ``reviewer``'s last action (a whole batch) by appending events.

        The log is never rewritten: each reverted sample gets an ``undo`` event restoring the
        label and exclusion it had before. Repeated calls walk further back. Returns the new
        event ids (empty when there is nothing left to undo).
        """
        reviewer = _check_reviewer(reviewer)
        return self._write(self._undo, reviewer)

    def _undo(self, conn: sqlite3.Connection, reviewer: str) -> list[int]:
        row = conn.execute(
            "SELECT batch_id FROM label_events e WHERE reviewer = ? AND action != 'undo'"
            " AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id)"
            " ORDER BY id DESC LIMIT 1",
            (reviewer,),
        ).fetchone()
        if row is None:
            return []
        batch = row["batch_id"]
        events = conn.execute(
            "SELECT sample_id, old_label, old_excluded FROM label_events WHERE batch_id = ?"
            " ORDER BY id DESC",
            (batch,),
        ).fetchall()
        # A batch touches each sample once; restoring in reverse order handles repeats anyway.
        restore: dict[int, tuple[str, int]] = {}
        for e in events:
            restore[int(e["sample_id"])] = (e["old_label"], int(e["old_excluded"]))
        actions = [(sid, "undo", None) for sid in restore]
        return self._append_events(conn, actions, reviewer, uuid.uuid4().hex, batch, restore)

    def events(
        self,
        *,
        sample_id: int | None = None,
        reviewer: str | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The label event log, newest first."""
        where, params = [], []
        if sample_id is not None:
            where.append("sample_id = ?")
            params.append(int(sample_id))
        if reviewer is not None:
            where.append("reviewer = ?")
            params.append(reviewer)
        sql = "SELECT * FROM label_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._frame(sql, params)

    # -- embeddings cache (implements curation.probs.EmbeddingCache) -----------------------
    def get_embeddings(self, model_key: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors for the given text hashes (missing ones are simply absent)."""
        wanted = list(dict.fromkeys(text_hashes))
        out: dict[str, np.ndarray] = {}
        if len(wanted) > 2000:
            # One scan beats thousands of IN-lookups for whole-dataset re-analyses.
            wanted_set = set(wanted)
            for r in self._read(
                "SELECT text_hash, vector FROM embeddings WHERE model_key = ?", (model_key,)
            ):
                if r[0] in wanted_set:
                    out[r[0]] = np.frombuffer(r[1], dtype=np.float32)
            return out
        for chunk in _chunks(wanted, 900):
            rows = self._read(
                "SELECT text_hash, vector FROM embeddings WHERE model_key = ? AND text_hash IN"
                f" ({','.join('?' * len(chunk))})",
                [model_key, *chunk],
            )
            out.update((r[0], np.frombuffer(r[1], dtype=np.float32)) for r in rows)
        return out

    def put_embeddings(self, model_key: str, items: dict[str, np.ndarray]) -> None:
        rows = [(model_key, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items.items()]
        self._write(
            lambda c: c.executemany(
                "INSERT OR REPLACE INTO embeddings (model_key, text_hash, vector) VALUES (?,?,?)",
                rows,
            )
        )

    # -- analyses -------------------------------------------------------------------------
    def save_analysis(
        self,
        results: pd.DataFrame,
        *,
        method: str,
        settings: dict[str, Any],
        label_version: int,
        summary: dict[str, Any] | None = None,
    ) -> int:
        """Store one analysis: ``results`` has sample_id, label_used (given label),
        predicted_label, predicted_prob, given_prob, label_quality, is_label_issue."""
        required = [
            "sample_id",
            "label_used",
            "predicted_label",
            "predicted_prob",
            "given_prob",
            "label_quality",
            "is_label_issue",
        ]
        missing = [c for c in required if c not in results.columns]
        if missing:
            raise ValueError(f"analysis results lack columns {missing}; required: {required}")

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO analyses (created_at, method, settings, label_version, summary)"
                " VALUES (?,?,?,?,?)",
                (now(), method, _json(settings), int(label_version), _json(summary or {})),
            )
            aid = int(cur.lastrowid)
            conn.executemany(
                "INSERT INTO analysis_results (analysis_id, sample_id, label_used,"
                " predicted_label, predicted_prob, given_prob, label_quality, is_label_issue)"
                " VALUES (?,?,?,?,?,?,?,?)",
                zip(
                    [aid] * len(results),
                    results["sample_id"].astype(int).tolist(),
                    results["label_used"].astype(str).tolist(),
                    results["predicted_label"].astype(str).tolist(),
                    results["predicted_prob"].astype(float).tolist(),
                    results["given_prob"].astype(float).tolist(),
                    results["label_quality"].astype(float).tolist(),
                    results["is_label_issue"].astype(bool).astype(int).tolist(),
                    strict=True,
                ),
            )
            # Keep the two newest analyses' rows: history stays in `analyses`, but the
            # per-row results of old ones only cost space.
            conn.execute(
                "DELETE FROM analysis_results WHERE analysis_id NOT IN"
                " (SELECT id FROM analyses ORDER BY id DESC LIMIT 2)"
            )
            return aid

        return self._write(write)

    def analyses(self) -> pd.DataFrame:
        df = self._frame("SELECT * FROM analyses ORDER BY id DESC")
        df["settings"] = [_loads(s) for s in df["settings"]]
        df["summary"] = [_loads(s) for s in df["summary"]]
        return df

    def latest_analysis(self) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM analyses ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        out = dict(rows[0])
        out["settings"] = _loads(out["settings"])
        out["summary"] = _loads(out["summary"])
        return out

    def analysis_results(self, analysis_id: int | None = None) -> pd.DataFrame:
        """Per-row results of an analysis (default: the latest), joined with current state."""
        aid = self._analysis_id(analysis_id)
        if aid is None:
            return pd.DataFrame()
        df = self._frame(
            "SELECT s.id AS sample_id, s.ext_id, s.text, s.original_label, s.label, s.split,"
            " s.excluded, s.reviewed, s.reviewer, s.reviewed_at, r.label_used, r.predicted_label,"
            " r.predicted_prob, r.given_prob, r.label_quality, r.is_label_issue"
            " FROM samples s LEFT JOIN analysis_results r"
            " ON r.sample_id = s.id AND r.analysis_id = ? ORDER BY s.id",
            (aid,),
        )
        for col in ("excluded", "reviewed"):
            df[col] = df[col].astype(bool)
        df["is_label_issue"] = df["is_label_issue"].fillna(0).astype(bool)
        return df

    def _analysis_id(self, analysis_id: int | None) -> int | None:
        if analysis_id is not None:
            return int(analysis_id)
        rows = self._read("SELECT MAX(id) FROM analyses")
        return None if rows[0][0] is None else int(rows[0][0])

    def review_queue(
        self,
        *,
        analysis_id: int | None = None,
        flagged: bool | None = None,
        disagrees: bool | None = None,
        label: str | None = None,
        reviewed: bool | None = None,
        split: str | None = None,
        search: str | None = None,
        encoding_fixed: bool | None = None,
        order: str = "quality",
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[pd.DataFrame, int]:
        """One page of samples for review, and the total matching the filters.

        ``order="quality"`` puts the lowest label quality (likeliest errors) first;
        ``"row"`` keeps import order. Filters set to ``None`` are off. ``disagrees`` compares
        the model's prediction with the *current* label. ``search`` is a case-insensitive
        substring of the text.
        """
        if order not in ORDERS:
            raise ValueError(f"Unknown order {order!r}; valid: {list(ORDERS)}.")
        aid = self._analysis_id(analysis_id)
        where, params = [], []

        def cond(flag: bool | None, sql_true: str, sql_false: str) -> None:
            if flag is not None:
                where.append(sql_true if flag else sql_false)

        cond(flagged, "r.is_label_issue = 1", "COALESCE(r.is_label_issue, 0) = 0")
        cond(disagrees, "r.predicted_label != s.label", "r.predicted_label = s.label")
        cond(reviewed, "s.reviewed = 1", "s.reviewed = 0")
        cond(encoding_fixed, "s.encoding_fixed = 1", "s.encoding_fixed = 0")
        if label is not None:
            where.append("s.label = ?")
            params.append(label)
        if split is not None:
            where.append("s.split = ?")
            params.append(split)
        if search:
            where.append("s.text LIKE ? ESCAPE '\\'")
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{escaped}%")
        base = (
            " FROM samples s LEFT JOIN analysis_results r"
            " ON r.sample_id = s.id AND r.analysis_id = ?"
        )
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total = int(self._read("SELECT COUNT(*)" + base + clause, [aid, *params])[0][0])
        order_sql = (
            " ORDER BY r.label_quality IS NULL, r.label_quality, s.id"
            if order == "quality"
            else " ORDER BY s.id"
        )
        page = self._frame(
            "SELECT s.id AS sample_id, s.ext_id, s.text, s.original_label, s.label, s.split,"
            " s.excluded, s.reviewed, s.reviewer, s.reviewed_at, s.encoding_fixed,"
            " r.predicted_label, r.predicted_prob, r.given_prob, r.label_quality,"
            " r.is_label_issue" + base + clause + order_sql + " LIMIT ? OFFSET ?",
            [aid, *params, int(limit), int(offset)],
        )
        for col in ("excluded", "reviewed", "encoding_fixed"):
            page[col] = page[col].astype(bool)
        page["is_label_issue"] = page["is_label_issue"].fillna(0).astype(bool)
        return page, total

    # -- jobs -----------------------------------------------------------------------------
    def create_job(self, kind: str, params: dict[str, Any]) -> int:
        if kind not in JOB_KINDS:
            raise ValueError(f"Unknown job kind {kind!r}; valid: {list(JOB_KINDS)}.")
        return self._write(
            lambda c: int(
                c.execute(
                    "INSERT INTO jobs (kind, status, params, created_at) VALUES (?,?,?,?)",
                    (kind, "queued", _json(params), now()),
                ).lastrowid
            )
        )

    def update_job(self, job_id: int, **fields: Any) -> None:
        """Set job columns: status, pid, progress (dict), result (dict), error, started_at..."""
        allowed = {"status", "pid", "progress", "result", "error", "started_at", "finished_at"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"Unknown job fields {sorted(unknown)}; valid: {sorted(allowed)}.")
        if "status" in fields and fields["status"] not in JOB_STATUSES:
            raise ValueError(f"Unknown status {fields['status']!r}; valid: {list(JOB_STATUSES)}.")
        if fields.get("status") in ("done", "failed", "cancelled"):
            fields.setdefault("finished_at", now())
        if fields.get("status") == "running":
            fields.setdefault("started_at", now())
        values = [_json(v) if k in ("progress", "result") else v for k, v in fields.items()]
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(lambda c: c.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*values, job_id]))

    def request_cancel(self, job_id: int) -> None:
        self._write(
            lambda c: c.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        )

    def cancel_requested(self, job_id: int) -> bool:
        rows = self._read("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def job(self, job_id: int) -> dict[str, Any]:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (int(job_id),))
        if not rows:
            raise StoreError(f"No job {job_id} in workspace {self.name}.")
        return _job_dict(rows[0])

    def jobs(self, *, kind: str | None = None, active: bool | None = None) -> list[dict]:
        sql, params = "SELECT * FROM jobs", []
        where = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if active is not None:
            where.append(
                "status IN ('queued', 'running')"
                if active
                else "status NOT IN ('queued', 'running')"
            )
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_job_dict(r) for r in self._read(sql + " ORDER BY id DESC", params)]

    # -- training runs --------------------------------------------------------------------
    def create_run(
        self, *, name: str, config: dict[str, Any], data: dict[str, Any], job_id: int | None
    ) -> int:
        return self._write(
            lambda c: int(
                c.execute(
                    "INSERT INTO runs (job_id, name, status, config, data, created_at)"
                    " VALUES (?,?,?,?,?,?)",
                    (job_id, name, "running", _json(config), _json(data), now()),
                ).lastrowid
            )
        )

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set run columns: status, metrics, history, progress, model_dir, data."""
        allowed = {"status", "metrics", "history", "progress", "model_dir", "data"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"Unknown run fields {sorted(unknown)}; valid: {sorted(allowed)}.")
        if fields.get("status") in ("done", "failed", "cancelled"):
            fields["finished_at"] = now()
        values = [
            _json(v) if k in ("metrics", "history", "progress", "data") else v
            for k, v in fields.items()
        ]
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(lambda c: c.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*values, run_id]))

    def runs(self, *, job_id: int | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM runs", []
        if job_id is not None:
            sql += " WHERE job_id = ?"
            params.append(int(job_id))
        return [_run_dict(r) for r in self._read(sql + " ORDER BY id", params)]

    def run(self, run_id: int) -> dict[str, Any]:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        if not rows:
            raise StoreError(f"No run {run_id} in workspace {self.name}.")
        return _run_dict(rows[0])

    def run_dir(self, run_id: int) -> Path:
        """Folder for a run's files (the saved model lives in ``<run_dir>/model``)."""
        return self.folder / "runs" / f"run-{int(run_id):04d}"


# A sample's state from its events: the last event decides label and exclusion; a sample counts
# as reviewed while it has an action that was not undone.
_STATE_SQL = """
UPDATE samples AS s SET
    label = COALESCE(
        (SELECT new_label FROM label_events e WHERE e.sample_id = s.id ORDER BY e.id DESC LIMIT 1),
        s.original_label),
    excluded = COALESCE(
        (SELECT new_excluded FROM label_events e WHERE e.sample_id = s.id
         ORDER BY e.id DESC LIMIT 1), 0),
    reviewed = EXISTS (
        SELECT 1 FROM label_events e WHERE e.sample_id = s.id AND e.action != 'undo'
        AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id)),
    reviewer = (SELECT reviewer FROM label_events e WHERE e.sample_id = s.id AND e.action != 'undo'
        AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id)
        ORDER BY e.id DESC LIMIT 1),
    reviewed_at = (SELECT created_at FROM label_events e WHERE e.sample_id = s.id
        AND e.action != 'undo'
        AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id)
        ORDER BY e.id DESC LIMIT 1)
"""


def _check_reviewer(reviewer: str) -> str:
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise ValueError("A reviewer name is required: every label event records who made it.")
    return reviewer


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _job_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in ("params", "progress", "result"):
        out[key] = _loads(out[key])
    out["cancel_requested"] = bool(out["cancel_requested"])
    return out


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in ("config", "data", "metrics", "history", "progress"):
        out[key] = _loads(out[key])
    return out
