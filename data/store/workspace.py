"""The workspace: one imported dataset and everything done to it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.store.analysis import AnalysisMixin
from data.store.backup import BackupMixin
from data.store.base import DB_NAME, SCHEMA_VERSION, StoreBase, StoreError, now, to_json
from data.store.jobs import JobsMixin
from data.store.labels import LabelsMixin
from data.store.review import ReviewMixin
from data.store.schema import SCHEMA
from data.store.texts import TextsMixin


class Workspace(
    LabelsMixin, TextsMixin, ReviewMixin, AnalysisMixin, JobsMixin, BackupMixin, StoreBase
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
        if db_path.exists():
            if not overwrite:
                raise StoreError(
                    f"A workspace already exists at {folder}. Open it (the Workspace list in "
                    "the sidebar) or choose another name."
                )
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp_path = folder / (DB_NAME + ".importing")
        for leftover in folder.glob(DB_NAME + ".importing*"):
            leftover.unlink()
        frame: pd.DataFrame = prepared.frame
        conn = cls._connect(tmp_path)
        try:
            conn.executescript(SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            # A fixed random key per row: the "random" review order and the overlap draw.
            rand = np.random.default_rng(0).integers(0, 2**31, size=len(frame))
            rows = zip(
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
            rows = _counted(rows, len(frame), say)
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
                "annotator_columns": list(getattr(prepared, "annotator_columns", [])),
                "meta_columns": sorted({k for m in frame["meta"].head(1000) for k in m}),
            }
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


# Rows between two import progress events: ~1 s of inserts on 2 CPU cores.
IMPORT_PROGRESS_ROWS = 20_000


def _counted(rows: Iterator[Any], total: int, say: Callable[[dict[str, Any]], None]):
    """``rows`` unchanged, telling ``say`` how many were handed on so far."""
    say({"stage": "writing rows", "done": 0, "total": total, "unit": "rows"})
    for i, row in enumerate(rows, 1):
        yield row
        if i % IMPORT_PROGRESS_ROWS == 0 or i == total:
            say({"stage": "writing rows", "done": i, "total": total, "unit": "rows"})
