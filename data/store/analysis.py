"""The embedding cache and the analyses (predicted probabilities, cleanlab scores)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from data.store.base import chunks, loads, now, to_json


class AnalysisMixin:
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
                (now(), method, to_json(settings), int(label_version), to_json(summary or {})),
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
            # The review queue reads the latest analysis from `samples` (one indexed table).
            conn.execute(
                "UPDATE samples SET predicted_label = r.predicted_label,"
                " predicted_prob = r.predicted_prob, label_quality = r.label_quality,"
                " is_label_issue = r.is_label_issue,"
                " disagrees = (r.predicted_label != samples.label)"
                " FROM analysis_results r WHERE r.analysis_id = ? AND r.sample_id = samples.id",
                (aid,),
            )
            conn.execute("ANALYZE samples")  # the analysis columns' statistics changed
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
        df["settings"] = [loads(s) for s in df["settings"]]
        df["summary"] = [loads(s) for s in df["summary"]]
        return df

    def latest_analysis(self) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM analyses ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        out = dict(rows[0])
        out["settings"] = loads(out["settings"])
        out["summary"] = loads(out["summary"])
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
