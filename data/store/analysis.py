"""The analyses (predicted probabilities, cleanlab scores) and the cached arrays derived from
the texts (the embedding cache and neighbour graphs are in :mod:`data.store.vectors`)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.artifacts import file_sha256
from data.records import AnalysisRecord, AnalysisSummary
from data.store.arrays import NpyRows, NpyWriter
from data.store.base import StoreError, now, to_json
from data.store.dialect import Connection, dialect_of
from data.store.vectors import artifact_problem, remember_verified

# Optional per-row results (issue types beyond label errors) and their Python types.
OPTIONAL_RESULT_COLUMNS: dict[str, type] = {
    "is_outlier": int,
    "outlier_score": float,
    "dup_group": int,
    "dup_conflict": int,
    "consensus_label": str,
    "consensus_quality": float,
}


log = logging.getLogger(__name__)
# Rows of the samples fetched per step by analysis_inputs.
_INPUT_READ_ROWS = 50_000


class AnalysisMixin:
    # -- what an analysis reads ---------------------------------------------------------------
    def analysis_inputs(
        self,
        *,
        with_meta: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Every sample's id, text and current label (and meta dicts), in id order.

        What :func:`curation.pipeline.analyze_workspace` needs and nothing else, fetched in
        batches: :meth:`samples` builds all 13 columns from one fetch of every row, which at
        1.36M rows peaked at 1.8 GB and took 26 s. Labels share one string object per class.

        Returns
        -------
        dict
            ``id`` (int64 array), ``text`` and ``label`` (lists of str) and, with
            ``with_meta``, ``meta`` (list of dicts). ``progress(done, total)`` is called after
            each batch.
        """
        import json

        total = int(self._read("SELECT COUNT(*) FROM samples")[0][0])
        ids = np.empty(total, dtype=np.int64)
        texts: list[str] = []
        labels: list[str] = []
        metas: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        columns = "id, text, label" + (", meta" if with_meta else "")
        with self._lock:
            cursor = self._conn.execute(f"SELECT {columns} FROM samples ORDER BY id")
            while batch := cursor.fetchmany(_INPUT_READ_ROWS):
                start = len(texts)
                if start + len(batch) > total:
                    raise StoreError("rows were added while the analysis read them; retry.")
                ids[start : start + len(batch)] = [r[0] for r in batch]
                texts.extend(r[1] for r in batch)
                labels.extend(names.setdefault(r[2], r[2]) for r in batch)
                if with_meta:
                    metas.extend(json.loads(r[3]) if r[3] else {} for r in batch)
                if progress is not None:
                    progress(len(texts), total)
        out: dict[str, Any] = {"id": ids[: len(texts)], "text": texts, "label": labels}
        if with_meta:
            out["meta"] = metas
        return out

    # -- analyses -------------------------------------------------------------------------
    def save_analysis(
        self,
        results: pd.DataFrame,
        *,
        method: str,
        settings: dict[str, Any],
        label_version: int,
        summary: AnalysisSummary | None = None,
    ) -> int:
        """Store one analysis: ``results`` has sample_id, analyzed_label (the label scored),
        predicted_label, predicted_prob, analyzed_prob, label_quality, is_label_issue, and
        optionally the other issue types' columns (:data:`OPTIONAL_RESULT_COLUMNS`: outliers,
        near-duplicate groups, multi-annotator consensus). The latest analysis is copied into
        ``samples`` for the review queue. ``summary`` is stored as
        :meth:`data.records.AnalysisSummary.to_dict` (an empty summary when not given)."""
        required = [
            "sample_id",
            "analyzed_label",
            "predicted_label",
            "predicted_prob",
            "analyzed_prob",
            "label_quality",
            "is_label_issue",
        ]
        missing = [c for c in required if c not in results.columns]
        if missing:
            raise ValueError(f"analysis results lack columns {missing}; required: {required}")

        extra = [c for c in OPTIONAL_RESULT_COLUMNS if c in results.columns]

        def column(name: str, kind: type) -> list:
            values = results[name]
            if kind is str:
                return [None if pd.isna(v) else str(v) for v in values]
            if kind is int:
                return [None if pd.isna(v) else int(v) for v in values]
            return [None if pd.isna(v) else float(v) for v in values]

        summary_json = to_json((summary or AnalysisSummary()).to_dict())

        dialect = self.dialect

        def write(conn: Connection) -> int:
            aid = dialect.insert_id(
                conn,
                "INSERT INTO analyses (created_at, method, settings, label_version, summary)"
                " VALUES (?,?,?,?,?)",
                (now(), method, to_json(settings), int(label_version), summary_json),
            )
            names = [*required[1:], *extra]
            dialect.insert_many(
                conn,
                "analysis_results",
                ["analysis_id", "sample_id", *names],
                zip(
                    [aid] * len(results),
                    results["sample_id"].astype(int).tolist(),
                    results["analyzed_label"].astype(str).tolist(),
                    results["predicted_label"].astype(str).tolist(),
                    results["predicted_prob"].astype(float).tolist(),
                    results["analyzed_prob"].astype(float).tolist(),
                    results["label_quality"].astype(float).tolist(),
                    results["is_label_issue"].astype(bool).astype(int).tolist(),
                    *(column(c, OPTIONAL_RESULT_COLUMNS[c]) for c in extra),
                    strict=True,
                ),
            )
            if _copy_to_samples(conn, aid):
                conn.execute("ANALYZE samples")  # the analysis columns' statistics changed
            # Keep the two newest analyses' rows: history stays in `analyses`, but the
            # per-row results of old ones only cost space.
            conn.execute(
                "DELETE FROM analysis_results WHERE analysis_id NOT IN"
                " (SELECT id FROM analyses ORDER BY id DESC LIMIT 2)"
            )
            return aid

        analysis_id = self._write(write)
        self.backup(quiet=True)  # an analysis takes minutes to redo: keep a copy with it
        return analysis_id

    def analyses(self) -> list[AnalysisRecord]:
        """Every analysis stored, newest first."""
        rows = self._read("SELECT * FROM analyses ORDER BY id DESC")
        return [AnalysisRecord.from_dict(dict(r)) for r in rows]

    def latest_analysis(self) -> AnalysisRecord | None:
        rows = self._read("SELECT * FROM analyses ORDER BY id DESC LIMIT 1")
        return AnalysisRecord.from_dict(dict(rows[0])) if rows else None

    def analysis_results(self, analysis_id: int | None = None) -> pd.DataFrame:
        """Per-row results of an analysis (default: the latest), joined with current state."""
        aid = self._analysis_id(analysis_id)
        if aid is None:
            return pd.DataFrame()
        df = self._frame(
            "SELECT s.id AS sample_id, s.ext_id, s.text, s.given_label, s.label, s.split,"
            " s.excluded, s.reviewed, s.reviewer, s.reviewed_at, r.analyzed_label, r.predicted_label,"
            " r.predicted_prob, r.analyzed_prob, r.label_quality, r.is_label_issue,"
            " r.is_outlier, r.outlier_score, r.dup_group, r.dup_conflict, r.consensus_label,"
            " r.consensus_quality FROM samples s LEFT JOIN analysis_results r"
            " ON r.sample_id = s.id AND r.analysis_id = ? ORDER BY s.id",
            (aid,),
        )
        for col in ("excluded", "reviewed"):
            df[col] = df[col].astype(bool)
        for col in ("is_label_issue", "is_outlier", "dup_conflict"):
            df[col] = df[col].fillna(0).astype(bool)
        return df

    # -- derived arrays that depend on the texts only (e.g. text features) ------------------
    def get_array(self, key: str) -> np.ndarray | None:
        """A cached array stored with :meth:`put_array`, or ``None`` (also when its file is not
        the one the store recorded: the caller recomputes it)."""
        path = self._array_path(key)
        if not self._artifact_intact(key, path):
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # missing or half-written: the caller recomputes it

    def put_array(self, key: str, array: np.ndarray) -> None:
        """Cache an array under ``key`` in the workspace folder (``cache/<key>.npy``).

        Only for values derived from the (never-changing) texts, so no transaction is needed:
        the file is written whole and renamed into place.
        """
        path = self._array_path(key)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, np.asarray(array), allow_pickle=False)
        os.replace(tmp, path)
        self._record_artifact(key, path)

    def open_array(self, key: str) -> NpyRows | None:
        """A cached 2-D array as :class:`data.store.arrays.NpyRows` (rows read on demand, for
        arrays too big to load whole), or ``None`` when missing, unreadable or not the file the
        store recorded."""
        path = self._array_path(key)
        if not self._artifact_intact(key, path):
            return None
        try:
            return NpyRows(path)
        except (OSError, ValueError):
            return None

    def array_writer(self, key: str, *, rows: int, dtype: Any = np.float32) -> NpyWriter:
        """Write a cached 2-D array block by block (``with ws.array_writer(...) as w:
        w.write(block)``); it replaces ``cache/<key>.npy`` only once complete."""
        return NpyWriter(
            self._array_path(key),
            rows=rows,
            dtype=dtype,
            on_close=lambda path: self._record_artifact(key, path),
        )

    # Files under SECOND_LOOK_HOME are shared by replicas and workers (and may sit on a network
    # folder): the database keeps each one's size and SHA-256, and a file that is missing or
    # differs is recomputed by its caller, never used. A file verified once in this process is
    # not hashed again while its size and modification time stay the same.
    def _record_artifact(self, key: str, path: Path) -> None:
        sha256 = file_sha256(path)
        self.set_info(f"artifact:{key}", {"sha256": sha256, "bytes": path.stat().st_size})
        remember_verified(path, sha256)

    def _artifact_intact(self, key: str, path: Path) -> bool:
        expected = self.info().get(f"artifact:{key}")
        if not expected or not path.exists():
            return False  # never recorded (an older cache) or not there: recompute
        problem = artifact_problem(path, size=expected.get("bytes", -1), sha256=expected["sha256"])
        if problem is not None:
            log.warning("The cached array %s %s: recomputing it.", path, problem)
        return problem is None

    def _array_path(self, key: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.=+-]{1,200}", key):
            raise ValueError(f"array key {key!r} must be 1-200 letters, digits or _.=+-")
        return self.folder / "cache" / f"{key}.npy"

    def duplicate_groups(
        self, *, conflicting_only: bool = False, limit: int = 50, offset: int = 0
    ) -> tuple[pd.DataFrame, int]:
        """Near-duplicate groups of the latest analysis, members side by side with their
        current labels; groups whose members carry different labels come first.

        Returns the members of up to ``limit`` groups (columns dup_group, sample_id, text,
        label, given_label, reviewed, excluded, conflicting) and the number of groups.
        """
        cond = "dup_group IS NOT NULL" + (" AND dup_conflict = 1" if conflicting_only else "")
        total = int(self._read(f"SELECT COUNT(DISTINCT dup_group) FROM samples WHERE {cond}")[0][0])
        df = self._frame(
            "WITH g AS (SELECT dup_group, COUNT(DISTINCT label) > 1 AS conflicting,"
            f" COUNT(*) AS size FROM samples WHERE {cond} GROUP BY dup_group"
            " ORDER BY conflicting DESC, size DESC, dup_group LIMIT ? OFFSET ?)"
            " SELECT s.dup_group, s.id AS sample_id, s.ext_id, s.text, s.label, s.given_label,"
            " s.reviewed, s.excluded, g.conflicting, g.size FROM g JOIN samples s"
            " ON s.dup_group = g.dup_group"
            " ORDER BY g.conflicting DESC, g.size DESC, g.dup_group, s.id",
            (int(limit), int(offset)),
        )
        for col in ("reviewed", "excluded", "conflicting"):
            df[col] = df[col].astype(bool)
        return df, total

    def result_for(self, sample_id: int, analysis_id: int | None = None) -> dict[str, Any]:
        """One row's results in an analysis (default: the latest); ``{}`` when not scored."""
        aid = self._analysis_id(analysis_id)
        if aid is None:
            return {}
        rows = self._read(
            "SELECT * FROM analysis_results WHERE analysis_id = ? AND sample_id = ?",
            (aid, int(sample_id)),
        )
        return dict(rows[0]) if rows else {}

    def _analysis_id(self, analysis_id: int | None) -> int | None:
        if analysis_id is not None:
            return int(analysis_id)
        rows = self._read("SELECT MAX(id) FROM analyses")
        return None if rows[0][0] is None else int(rows[0][0])


def _copy_to_samples(conn: Connection, analysis_id: int) -> int:
    """Copy an analysis's results into ``samples`` (the review queue reads the latest analysis
    from that one indexed table), writing only the rows where a value changes; returns how many.

    A row rewritten with its own values costs as much as a changed one (SQLite moves its index
    entries, PostgreSQL adds a new version of the row to every index, the text's trigram index
    included), and a re-analysis leaves the flags, groups and labels of most rows as they were.
    """
    dialect = dialect_of(conn)
    values = {
        "predicted_label": "r.predicted_label",
        "predicted_prob": "r.predicted_prob",
        "label_quality": "r.label_quality",
        "is_label_issue": "r.is_label_issue",
        "disagrees": dialect.as_int("r.predicted_label != samples.label"),
        "is_outlier": "COALESCE(r.is_outlier, 0)",
        "outlier_score": "r.outlier_score",
        "dup_group": "r.dup_group",
        "dup_conflict": "COALESCE(r.dup_conflict, 0)",
    }
    sets = ", ".join(f"{c} = {v}" for c, v in values.items())
    changed = " OR ".join(dialect.differs(f"samples.{c}", v) for c, v in values.items())
    cursor = conn.execute(
        f"UPDATE samples SET {sets} FROM analysis_results r"
        f" WHERE r.analysis_id = ? AND r.sample_id = samples.id AND ({changed})",
        (analysis_id,),
    )
    return int(cursor.rowcount)
