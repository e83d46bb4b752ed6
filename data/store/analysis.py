"""The embedding cache and the analyses (predicted probabilities, cleanlab scores)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.artifacts import file_sha256
from data.records import AnalysisRecord, AnalysisSummary
from data.store.arrays import NpyRows, NpyWriter
from data.store.base import StoreError, chunks, now, to_json
from data.store.dialect import Connection, dialect_of

# Optional per-row results (issue types beyond label errors) and their Python types.
OPTIONAL_RESULT_COLUMNS: dict[str, type] = {
    "is_outlier": int,
    "outlier_score": float,
    "dup_group": int,
    "dup_conflict": int,
    "consensus_label": str,
    "consensus_quality": float,
}


# Rows of the knn table fetched per step by get_knn, and of the samples by analysis_inputs.
log = logging.getLogger(__name__)
# (size, mtime_ns, sha256) of the cached arrays this process verified, by path.
_VERIFIED: dict[str, tuple[int, int, str]] = {}
_KNN_READ_ROWS = 20_000
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

    # -- embeddings cache (implements runtime.encoder.EmbeddingCache) -----------------------
    def get_embeddings(self, model_key: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors for the given text hashes (missing ones are simply absent).

        Looked up by primary key, 900 at a time: :func:`runtime.encoder.embed_texts` asks one
        chunk (~16k texts) at a time, which costs ~0.1 s however many vectors are stored (a
        whole-table scan per chunk would read every stored vector again for each chunk).
        """
        wanted = list(dict.fromkeys(text_hashes))
        out: dict[str, np.ndarray] = {}
        for chunk in chunks(wanted, 900):
            rows = self._read(
                "SELECT text_hash, vector FROM embeddings WHERE model_key = ? AND text_hash IN"
                f" ({','.join('?' * len(chunk))})",
                [model_key, *chunk],
            )
            out.update((r[0], np.frombuffer(r[1], dtype=np.float32)) for r in rows)
        return out

    def put_embeddings(self, model_key: str, items: dict[str, np.ndarray]) -> None:
        rows = [(model_key, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items.items()]
        sql = self.dialect.upsert(
            "embeddings", ("model_key", "text_hash", "vector"), key=("model_key", "text_hash")
        )
        self._write(lambda c: c.executemany(sql, rows))

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
        stat = path.stat()
        record = {"sha256": file_sha256(path), "bytes": stat.st_size}
        self.set_info(f"artifact:{key}", record)
        _VERIFIED[str(path)] = (stat.st_size, stat.st_mtime_ns, record["sha256"])

    def _artifact_intact(self, key: str, path: Path) -> bool:
        expected = self.info().get(f"artifact:{key}")
        try:
            stat = path.stat()
        except OSError:
            return False
        if not expected or stat.st_size != expected.get("bytes"):
            return False  # never recorded (an older cache) or changed: recompute
        seen = _VERIFIED.get(str(path))
        if seen == (stat.st_size, stat.st_mtime_ns, expected["sha256"]):
            return True
        if file_sha256(path) != expected["sha256"]:
            log.warning("The cached array %s does not match its checksum: recomputing it.", path)
            return False
        _VERIFIED[str(path)] = (stat.st_size, stat.st_mtime_ns, expected["sha256"])
        return True

    def _array_path(self, key: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.=+-]{1,200}", key):
            raise ValueError(f"array key {key!r} must be 1-200 letters, digits or _.=+-")
        return self.folder / "cache" / f"{key}.npy"

    # -- the neighbor graph (label-independent; one per encoder) ---------------------------
    def get_knn(self, model_key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The stored ``(indices, distances)`` arrays, each ``(n_samples, k)`` in sample-id
        order (int32 ids, float32 distances), or ``None`` when this encoder's graph is not
        stored (or the rows changed)."""
        n = int(self._read("SELECT COUNT(*) FROM samples")[0][0])
        stored = int(self._read("SELECT COUNT(*) FROM knn WHERE model_key = ?", (model_key,))[0][0])
        if stored != n or n == 0:
            return None
        indices = distances = None
        # One blob per row (100k rows of 10 neighbours read in ~0.1 s; one SQL row per
        # neighbour took 1.5 s), fetched in batches straight into the two arrays: holding all
        # rows' blobs first would cost twice the graph at a million rows.
        with self._lock:
            cursor = self._conn.execute(
                "SELECT neighbor_ids, distances FROM knn WHERE model_key = ? ORDER BY sample_id",
                (model_key,),
            )
            row = 0
            while batch := cursor.fetchmany(_KNN_READ_ROWS):
                if indices is None:
                    k = len(batch[0][0]) // 8
                    # int32 in memory (0.16 GB less at a million rows and k = 30); int64 blobs.
                    indices = np.empty((n, k), dtype=np.int32 if n < 2**31 else np.int64)
                    distances = np.empty((n, k), dtype=np.float32)
                stop = row + len(batch)
                indices[row:stop] = np.frombuffer(
                    b"".join(r[0] for r in batch), dtype=np.int64
                ).reshape(len(batch), -1)
                distances[row:stop] = np.frombuffer(
                    b"".join(r[1] for r in batch), dtype=np.float32
                ).reshape(len(batch), -1)
                row = stop
        if row != n:  # rewritten between the count and the read: let the caller rebuild it
            return None
        return indices, distances

    def put_knn(self, model_key: str, indices: np.ndarray, distances: np.ndarray) -> None:
        """Store the neighbour graph of all samples (row ``i`` = sample id ``i``)."""
        indices, distances = np.asarray(indices), np.asarray(distances)
        if not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"knn indices must be integers, got {indices.dtype}.")
        n = int(self._read("SELECT COUNT(*) FROM samples")[0][0])
        if indices.shape != distances.shape or indices.ndim != 2 or len(indices) != n:
            raise ValueError(
                f"knn arrays must both be (n_samples={n}, k); got {indices.shape} and "
                f"{distances.shape}."
            )

        dialect = self.dialect

        def write(conn: Connection) -> None:
            conn.execute("DELETE FROM knn WHERE model_key = ?", (model_key,))
            # Row by row to int64/float32 blobs: no whole-graph copy in the stored types.
            dialect.insert_many(
                conn,
                "knn",
                ("model_key", "sample_id", "neighbor_ids", "distances"),
                (
                    (
                        model_key,
                        i,
                        indices[i].astype(np.int64).tobytes(),
                        distances[i].astype(np.float32).tobytes(),
                    )
                    for i in range(n)
                ),
            )

        self._write(write)

    def neighbors(
        self, sample_id: int, *, k: int = 5, model_key: str | None = None
    ) -> pd.DataFrame:
        """The ``k`` nearest other samples of one sample with their *current* labels: what the
        review card shows to explain a flag. Empty before the first analysis."""
        columns = ["sample_id", "text", "label", "distance", "reviewed", "excluded"]
        if model_key is None:
            latest = self.latest_analysis()
            model_key = latest.settings.get("model_key") if latest is not None else None
        rows = self._read(
            "SELECT neighbor_ids, distances FROM knn WHERE model_key = ? AND sample_id = ?",
            (model_key or "", int(sample_id)),
        )
        if not rows:
            return pd.DataFrame(columns=columns)
        ids = np.frombuffer(rows[0][0], dtype=np.int64)
        dist = np.frombuffer(rows[0][1], dtype=np.float32)
        keep = ids != int(sample_id)
        ids, dist = ids[keep][:k], dist[keep][:k]
        found = self.samples(ids=ids.tolist())
        found = found.rename(columns={"id": "sample_id"})
        found["distance"] = dist
        return found[columns].reset_index(drop=True)

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
