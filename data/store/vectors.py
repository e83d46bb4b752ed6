"""The embedding cache and the neighbour graphs: checksummed files in the workspace folder.

Both are large (a million 384-float vectors are 1.5 GB; a graph of 30 neighbours 240 MB) and
depend on the texts only, so (schema version 7) they live as ``.npy`` files under
``<workspace>/artifacts/``, which every app replica and worker shares (SECOND_LOOK_HOME), and
the database holds what each file must be: its path, size and SHA-256. A file that is missing
or differs from its record is logged, its record dropped, and never used: its vectors are
embedded again, its graph rebuilt by the next analysis.

- **Embeddings**: immutable append-only *segments*,
  ``artifacts/embeddings/<digest of model_key>/seg-<time>-<random>.npy`` (float32, one row per
  text), each written whole (``.part``, then renamed) before one transaction records it in
  ``embedding_segments`` and maps each of its texts to its row in ``embedding_index``. File
  names are random, not the segment's id, so two processes writing at once never pick the
  same name, and a database restored from a backup never mistakes a newer file for its own.
- **Neighbour graphs**: per encoder a pair of files, ``artifacts/knn/<digest>-<time>-<random>``
  ``.ids.npy`` (int32 sample ids, int64 past 2**31 rows) and ``.dist.npy`` (float32), with fresh
  names on every write: a reader in another process holds the old pair or the new one, never
  half of each. The record in ``knn_graphs`` names the current pair.

A replaced graph's files, and a segment whose every row was replaced, are removed once the
transaction that replaced them commits. Files nothing refers to for other reasons (graphs
dropped inside a text repair's transaction, a write whose transaction failed, a killed
writer's ``.part``) are removed by :meth:`VectorsMixin.prune_artifacts`, which
:meth:`VectorsMixin.put_knn` runs (an analysis stores a graph each time it builds one).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.artifacts import file_sha256
from data.store.arrays import NpyRows, NpyWriter
from data.store.base import chunks, now
from data.store.dialect import Connection

log = logging.getLogger(__name__)

ARTIFACTS_DIR = "artifacts"
# Rows of a neighbour graph converted and written per step (no whole-graph copy in the stored
# types).
_KNN_BLOCK_ROWS = 20_000
# Keys looked up per statement (SQLite allows 999 parameters in older builds).
_LOOKUP = 900
# Unreferenced files younger than this may be another process's write whose transaction has
# not committed yet: prune_artifacts leaves them.
PRUNE_MIN_AGE_S = 600.0
# (size, mtime_ns, sha256) of the files this process verified, by path: a file is hashed once
# per process while its size and modification time stay the same.
_VERIFIED: dict[str, tuple[int, int, str]] = {}


@dataclass(frozen=True)
class ArtifactFile:
    """A written file: its path relative to the workspace folder (``/``-separated), size and
    SHA-256."""

    path: str
    bytes: int
    sha256: str


def artifact_problem(path: Path, *, size: int, sha256: str) -> str | None:
    """What is wrong with ``path`` against its record (missing, another size, another
    checksum), or None when it is the file recorded."""
    try:
        stat = path.stat()
    except OSError:
        return "is missing"
    if stat.st_size != size:
        return f"has {stat.st_size:,} bytes where {size:,} were recorded"
    if _VERIFIED.get(str(path)) == (stat.st_size, stat.st_mtime_ns, sha256):
        return None
    if file_sha256(path) != sha256:
        return "does not match its recorded checksum"
    _VERIFIED[str(path)] = (stat.st_size, stat.st_mtime_ns, sha256)
    return None


def remember_verified(path: Path, sha256: str) -> None:
    """Mark a file this process just wrote (and hashed while writing) as verified."""
    stat = path.stat()
    _VERIFIED[str(path)] = (stat.st_size, stat.st_mtime_ns, sha256)


def _model_dir(model_key: str) -> str:
    # Model keys hold any characters (a model path, settings); a digest is a safe folder name.
    return hashlib.sha1(model_key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _fresh_name() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(6).hex()}"


def write_segment(folder: Path, model_key: str, vectors: np.ndarray) -> ArtifactFile:
    """Write one embedding segment (float32 rows) into ``folder``'s artifacts; not recorded."""
    rel = f"{ARTIFACTS_DIR}/embeddings/{_model_dir(model_key)}/seg-{_fresh_name()}.npy"
    with NpyWriter(folder / rel, rows=len(vectors), dtype=np.float32) as writer:
        writer.write(vectors)
    remember_verified(folder / rel, writer.sha256)
    return ArtifactFile(rel, writer.bytes, writer.sha256)


def record_segment(
    conn: Connection, dialect: Any, model_key: str, segment: ArtifactFile, n_rows: int
) -> int:
    """Insert a segment's record (inside the caller's transaction); its id."""
    return dialect.insert_id(
        conn,
        "INSERT INTO embedding_segments (model_key, path, n_rows, bytes, sha256, created_at)"
        " VALUES (?,?,?,?,?,?)",
        (model_key, segment.path, int(n_rows), segment.bytes, segment.sha256, now()),
    )


def write_graph_file(
    folder: Path, stem: str, suffix: str, blocks: Iterable[np.ndarray], *, rows: int, dtype: Any
) -> ArtifactFile:
    """Write one file of a neighbour graph block by block; not recorded."""
    rel = f"{ARTIFACTS_DIR}/knn/{stem}.{suffix}.npy"
    with NpyWriter(folder / rel, rows=rows, dtype=dtype) as writer:
        for block in blocks:
            writer.write(block)
    remember_verified(folder / rel, writer.sha256)
    return ArtifactFile(rel, writer.bytes, writer.sha256)


def graph_stem(model_key: str) -> str:
    return f"{_model_dir(model_key)}-{_fresh_name()}"


def ids_dtype(n_rows: int) -> type:
    """Neighbour ids are int32 up to 2**31 rows (half the bytes), int64 beyond."""
    return np.int32 if n_rows < 2**31 else np.int64


def record_graph(
    conn: Connection,
    dialect: Any,
    model_key: str,
    *,
    n_rows: int,
    k: int,
    ids: ArtifactFile,
    distances: ArtifactFile,
) -> None:
    """Insert or replace an encoder's graph record (inside the caller's transaction)."""
    conn.execute(
        dialect.upsert(
            "knn_graphs",
            (
                "model_key",
                "n_rows",
                "k",
                "ids_path",
                "ids_bytes",
                "ids_sha256",
                "distances_path",
                "distances_bytes",
                "distances_sha256",
                "created_at",
            ),
            key=("model_key",),
        ),
        (
            model_key,
            int(n_rows),
            int(k),
            ids.path,
            ids.bytes,
            ids.sha256,
            distances.path,
            distances.bytes,
            distances.sha256,
            now(),
        ),
    )


def remove_files(folder: Path, paths: Iterable[str]) -> None:
    """Delete files of the artifacts folder, best-effort (a file already gone is fine)."""
    for rel in paths:
        try:
            (folder / rel).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("Could not remove %s (%s); prune_artifacts retries later.", rel, exc)


class VectorsMixin:
    # -- embeddings cache (implements runtime.encoder.EmbeddingCache) -----------------------
    def get_embeddings(self, model_key: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors for the given text hashes (missing ones are simply absent).

        Looked up by primary key, 900 at a time (:func:`runtime.encoder.embed_texts` asks one
        chunk of ~16k texts at a time), then read from each segment file they are in, after
        checking that file once per process against its recorded size and SHA-256. A segment
        that is missing or changed is logged and forgotten: its vectors are not returned, so
        the caller embeds those texts again.
        """
        wanted = list(dict.fromkeys(text_hashes))
        by_segment: dict[int, list[tuple[str, int]]] = {}
        for chunk in chunks(wanted, _LOOKUP):
            rows = self._read(
                "SELECT text_hash, segment_id, segment_row FROM embedding_index"
                f" WHERE model_key = ? AND text_hash IN ({','.join('?' * len(chunk))})",
                [model_key, *chunk],
            )
            for text_hash, segment_id, row in rows:
                by_segment.setdefault(int(segment_id), []).append((text_hash, int(row)))
        out: dict[str, np.ndarray] = {}
        if not by_segment:
            return out
        bad: list[int] = []
        for segment_id, (path, size, sha256) in self._segments(list(by_segment)).items():
            members = by_segment[segment_id]
            vectors = self._read_segment(path, size, sha256, [row for _, row in members])
            if vectors is None:
                bad.append(segment_id)
                continue
            out.update(zip((h for h, _ in members), vectors, strict=True))
        if bad:
            self._forget_segments(bad)
        return out

    def put_embeddings(self, model_key: str, items: dict[str, np.ndarray]) -> None:
        """Store vectors by text hash: one new segment file, then its records in one
        transaction (a vector stored before under the same hash is replaced)."""
        if not items:
            return
        hashes = list(items)
        try:
            vectors = np.stack([np.asarray(v, dtype=np.float32).ravel() for v in items.values()])
        except ValueError:
            raise ValueError(
                "put_embeddings needs vectors of one length (one encoder's output); got "
                f"lengths {sorted({np.size(v) for v in items.values()})}."
            ) from None
        segment = write_segment(self.folder, model_key, vectors)
        dialect = self.dialect

        def write(conn: Connection) -> list[str]:
            segment_id = record_segment(conn, dialect, model_key, segment, len(hashes))
            replaced: set[int] = set()
            for chunk in chunks(hashes, _LOOKUP):
                found = conn.execute(
                    "SELECT DISTINCT segment_id FROM embedding_index WHERE model_key = ?"
                    f" AND text_hash IN ({','.join('?' * len(chunk))})",
                    [model_key, *chunk],
                ).fetchall()
                replaced.update(int(r[0]) for r in found)
            conn.executemany(
                dialect.upsert(
                    "embedding_index",
                    ("model_key", "text_hash", "segment_id", "segment_row"),
                    key=("model_key", "text_hash"),
                ),
                [(model_key, h, segment_id, i) for i, h in enumerate(hashes)],
            )
            return _drop_unused_segments(conn, sorted(replaced))

        try:
            unused = self._write(write)
        except BaseException:
            remove_files(self.folder, [segment.path])
            raise
        remove_files(self.folder, unused)

    def forget_embeddings(self, model_key: str) -> None:
        """Drop every cached vector of one encoder (records and files)."""

        def write(conn: Connection) -> list[str]:
            paths = [
                r[0]
                for r in conn.execute(
                    "SELECT path FROM embedding_segments WHERE model_key = ?", (model_key,)
                )
            ]
            conn.execute("DELETE FROM embedding_index WHERE model_key = ?", (model_key,))
            conn.execute("DELETE FROM embedding_segments WHERE model_key = ?", (model_key,))
            return paths

        remove_files(self.folder, self._write(write))

    def _segments(self, ids: list[int]) -> dict[int, tuple[Path, int, str]]:
        """``{id: (file, bytes, sha256)}`` of the recorded segments among ``ids``."""
        out = {}
        for chunk in chunks(ids, _LOOKUP):
            rows = self._read(
                "SELECT id, path, bytes, sha256 FROM embedding_segments"
                f" WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            out.update((int(r[0]), (self.folder / r[1], int(r[2]), r[3])) for r in rows)
        return out

    def _read_segment(
        self, path: Path, size: int, sha256: str, rows: list[int]
    ) -> np.ndarray | None:
        problem = artifact_problem(path, size=size, sha256=sha256)
        if problem is None:
            try:
                return NpyRows(path).take(rows)
            except (OSError, ValueError, IndexError) as exc:
                problem = f"cannot be read ({exc})"
        log.warning(
            "The embedding cache file %s %s: not used; its texts will be embedded again.",
            path,
            problem,
        )
        return None

    def _forget_segments(self, ids: list[int]) -> None:
        """Drop damaged segments' records (their texts count as not cached) and files."""

        def write(conn: Connection) -> list[str]:
            marks = ",".join("?" * len(ids))
            paths = [
                r[0]
                for r in conn.execute(
                    f"SELECT path FROM embedding_segments WHERE id IN ({marks})", ids
                )
            ]
            conn.execute(f"DELETE FROM embedding_index WHERE segment_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM embedding_segments WHERE id IN ({marks})", ids)
            return paths

        remove_files(self.folder, self._write(write))

    # -- the neighbor graph (label-independent; one per encoder) ---------------------------
    def get_knn(self, model_key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The stored ``(indices, distances)`` arrays, each ``(n_samples, k)`` in sample-id
        order (int32 ids, float32 distances), or ``None`` when this encoder's graph is not
        stored, was built for another number of rows, or its files are missing or differ
        from their record (logged; the analysis rebuilds it)."""
        graph = self._graph(model_key)
        if graph is None:
            return None
        try:
            indices = np.load(graph["ids"], allow_pickle=False)
            distances = np.load(graph["distances"], allow_pickle=False)
        except (OSError, ValueError) as exc:  # removed by a newer put_knn since the check
            log.warning(
                "The neighbour graph of %s cannot be read (%s): rebuilding it.", model_key, exc
            )
            return None
        if indices.dtype != np.int32 and len(indices) < 2**31:
            indices = indices.astype(np.int32)
        return indices, distances.astype(np.float32, copy=False)

    def put_knn(self, model_key: str, indices: np.ndarray, distances: np.ndarray) -> None:
        """Store the neighbour graph of all samples (row ``i`` = sample id ``i``): two new
        files, then the record naming them replaces the encoder's previous one."""
        indices, distances = np.asarray(indices), np.asarray(distances)
        if not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"knn indices must be integers, got {indices.dtype}.")
        n = int(self._read("SELECT COUNT(*) FROM samples")[0][0])
        if indices.shape != distances.shape or indices.ndim != 2 or len(indices) != n:
            raise ValueError(
                f"knn arrays must both be (n_samples={n}, k); got {indices.shape} and "
                f"{distances.shape}."
            )
        stem = graph_stem(model_key)

        def blocks(array: np.ndarray) -> Iterable[np.ndarray]:
            return (array[i : i + _KNN_BLOCK_ROWS] for i in range(0, n, _KNN_BLOCK_ROWS))

        written: list[str] = []
        try:
            ids = write_graph_file(
                self.folder, stem, "ids", blocks(indices), rows=n, dtype=ids_dtype(n)
            )
            written.append(ids.path)
            dist = write_graph_file(
                self.folder, stem, "dist", blocks(distances), rows=n, dtype=np.float32
            )
            written.append(dist.path)
            dialect = self.dialect

            def write(conn: Connection) -> list[str]:
                old = conn.execute(
                    "SELECT ids_path, distances_path FROM knn_graphs WHERE model_key = ?",
                    (model_key,),
                ).fetchall()
                record_graph(
                    conn, dialect, model_key, n_rows=n, k=indices.shape[1], ids=ids, distances=dist
                )
                return [p for row in old for p in row]

            replaced = self._write(write)
        except BaseException:
            remove_files(self.folder, written)
            raise
        # The previous pair is no longer referenced: a reader that checked it a moment ago and
        # then finds it gone rebuilds (get_knn) or shows no neighbours this once.
        remove_files(self.folder, replaced)
        self.prune_artifacts()

    def neighbors(
        self, sample_id: int, *, k: int = 5, model_key: str | None = None
    ) -> pd.DataFrame:
        """The ``k`` nearest other samples of one sample with their *current* labels: what the
        review card shows to explain a flag. Empty before the first analysis (and when the
        graph's files are missing or changed)."""
        columns = ["sample_id", "text", "label", "distance", "reviewed", "excluded"]
        if model_key is None:
            latest = self.latest_analysis()
            model_key = latest.settings.get("model_key") if latest is not None else None
        graph = self._graph(model_key or "", count_samples=False)
        sample_id = int(sample_id)
        if graph is None or not 0 <= sample_id < graph["n_rows"]:
            return pd.DataFrame(columns=columns)
        try:  # only this row of each file
            ids = NpyRows(graph["ids"])[sample_id : sample_id + 1][0].astype(np.int64)
            dist = NpyRows(graph["distances"])[sample_id : sample_id + 1][0]
        except (OSError, ValueError):
            return pd.DataFrame(columns=columns)
        keep = ids != sample_id
        ids, dist = ids[keep][:k], dist[keep][:k]
        found = self.samples(ids=ids.tolist())
        found = found.rename(columns={"id": "sample_id"})
        found["distance"] = dist
        return found[columns].reset_index(drop=True)

    def _graph(self, model_key: str, *, count_samples: bool = True) -> dict[str, Any] | None:
        """The verified files of an encoder's graph (``ids``, ``distances``, ``n_rows``), or
        None. A graph whose files are missing or changed is logged and its record dropped
        (so a review card does not hash a damaged file on every rerun)."""
        rows = self._read("SELECT * FROM knn_graphs WHERE model_key = ?", (model_key,))
        if not rows:
            return None
        record = dict(rows[0])
        if count_samples:
            n = int(self._read("SELECT COUNT(*) FROM samples")[0][0])
            if record["n_rows"] != n or n == 0:
                return None
        files = {}
        for name, column in (("ids", "ids"), ("distances", "distances")):
            path = self.folder / record[f"{column}_path"]
            problem = artifact_problem(
                path, size=int(record[f"{column}_bytes"]), sha256=record[f"{column}_sha256"]
            )
            if problem is not None:
                log.warning(
                    "The neighbour graph file %s %s: not used; the next analysis rebuilds it.",
                    path,
                    problem,
                )
                self._drop_graph(model_key, record["ids_path"])
                return None
            files[name] = path
        return {**files, "n_rows": int(record["n_rows"])}

    def _drop_graph(self, model_key: str, ids_path: str) -> None:
        # Only the record that was checked: a put_knn since then recorded a sound pair.
        self._write(
            lambda c: c.execute(
                "DELETE FROM knn_graphs WHERE model_key = ? AND ids_path = ?", (model_key, ids_path)
            )
        )

    # -- files nothing refers to ---------------------------------------------------------------
    def prune_artifacts(self, *, min_age_s: float = PRUNE_MIN_AGE_S) -> int:
        """Remove files under ``artifacts/`` that no record refers to (graphs dropped after a
        text repair, writes whose transaction failed, ``.part`` files of killed writers);
        returns how many. Files younger than ``min_age_s`` are left alone: another process
        may be writing them or about to record them."""
        referenced = {r[0] for r in self._read("SELECT path FROM embedding_segments")}
        for r in self._read("SELECT ids_path, distances_path FROM knn_graphs"):
            referenced.update(r)
        cutoff = time.time() - min_age_s
        removed = 0
        root = self.folder / ARTIFACTS_DIR
        for path in root.rglob("*") if root.is_dir() else ():
            try:
                if (
                    path.is_file()
                    and path.relative_to(self.folder).as_posix() not in referenced
                    and path.stat().st_mtime < cutoff
                ):
                    path.unlink()
                    removed += 1
            except OSError:
                continue  # removed meanwhile by another process
        return removed


def _drop_unused_segments(conn: Connection, ids: list[int]) -> list[str]:
    """Delete the records of segments among ``ids`` that no index row refers to any more;
    their files' paths (to remove once the transaction commits)."""
    paths: list[str] = []
    for chunk in chunks(ids, _LOOKUP):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT id, path FROM embedding_segments s WHERE id IN ({marks}) AND NOT EXISTS"
            " (SELECT 1 FROM embedding_index i WHERE i.segment_id = s.id)",
            list(chunk),
        ).fetchall()
        if rows:
            gone = [int(r[0]) for r in rows]
            conn.execute(
                f"DELETE FROM embedding_segments WHERE id IN ({','.join('?' * len(gone))})", gone
            )
            paths.extend(r[1] for r in rows)
    return paths
