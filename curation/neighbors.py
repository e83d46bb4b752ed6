"""Exact k-nearest-neighbour graph of the embeddings, in the form cleanlab's Datalab accepts.

The graph depends only on the texts (through their embeddings), never on the labels, so the
pipeline builds it once per encoder and caches it with :func:`save_graph`; near-duplicate and
outlier checks after a relabel then only read it (:mod:`curation.datalab`).

Format (what ``cleanlab.Datalab.find_issues(knn_graph=...)`` documents and its issue managers
assume when they call ``knn_graph.data.reshape(N, -1)``): a square ``scipy.sparse.csr_matrix``
with exactly ``k`` stored entries per row, no self-edges, each row's entries sorted by
ascending distance (``indices`` in the same order, so column indices are *not* sorted), and an
explicit stored 0 for every exact duplicate (the same convention as cleanlab's
``internal.neighbor.knn_graph.correct_knn_graph``).

The search is exact and brute force (float32 matrix products of unit vectors, in blocks), so
it costs ``n**2 * d`` multiply-adds: about 2 minutes for 100k x 384 on 2 busy CPU cores. Two
things keep it near the cost of the products alone: only the upper triangle of the block grid is
multiplied (similarity is symmetric, so one block serves the rows on both sides), and a block
only touches a row's running top-``k`` where it beats that row's current k-th best, which after
the first blocks is rare. Memory is the features plus a few ``block x block`` buffers per thread
and the ``(n, k)`` result: float16 features are read a block at a time as float32, so a
1.36M x 384 graph needs ~1 GB of features and ~0.5 GB of results (k = 30). Time grows with
``n**2``: bench/big_import.py measures and extrapolates it for 1.36M rows.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

METRICS = ("cosine", "euclidean")
DEFAULT_K = 10  # cleanlab's internal.neighbor.knn_graph.DEFAULT_K: what Datalab would build
# Distances this small are float32 rounding noise around 0; rows of equal vectors among them get
# an exact 0, as cleanlab requires for exact duplicates.
_EXACT_TOL = 1e-5
# Rows per step of the whole-array passes (norms, distances, sorting): bounded temporaries.
_ROWS_PER_STEP = 65_536


def knn_graph(
    features: np.ndarray,
    *,
    k: int = DEFAULT_K,
    metric: str = "cosine",
    batch_size: int = 2048,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> sparse.csr_matrix:
    """Exact ``k``-nearest-neighbour graph of ``features`` (each row's neighbours, self excluded).

    Parameters
    ----------
    features
        ``(n, d)`` float array, e.g. L2-normalised embeddings from
        :func:`runtime.encoder.embed_texts`. For ``metric="cosine"`` rows are normalised here
        (a copy) if they are not unit vectors already; all-zero rows are rejected.
    k
        Neighbours per row, ``1 <= k < n``. Datalab's near-duplicate and outlier checks use all
        of them (its default is 10).
    metric
        ``"cosine"`` (distance ``1 - cos``, in ``[0, 2]``) or ``"euclidean"``.
    batch_size
        Rows per block; memory grows with ``batch_size**2`` (2048: ~50 MB of buffers).
    threads
        Worker threads, each multiplying its own blocks with a single-threaded BLAS (BLAS is
        limited to one thread process-wide for the duration of the call); default: the CPU
        cores this process may use. The result does not depend on it, except which of several
        exactly tied neighbours fills the last place.
    progress
        Called as ``progress(done, total)`` (blocks done) after every block; an exception it
        raises (a cancel) stops the search within the blocks already running.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(n, n)`` float64 distances, ``k`` entries per row sorted by ascending distance (ties
        by column index), exact duplicates stored as explicit zeros. Pass it to
        :func:`curation.datalab.find_data_issues` or ``Datalab.find_issues(knn_graph=...)``.

    Examples
    --------
    >>> x = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    >>> g = knn_graph(x, k=1)
    >>> neighbors_of(g, 0)[0].tolist(), round(float(neighbors_of(g, 0)[1][0]), 3)
    ([1], 0.2)
    """
    idx, dist = knn_arrays(
        features,
        k=k,
        metric=metric,
        batch_size=batch_size,
        threads=threads,
        progress=progress,
        dtype=np.float64,
    )
    n = len(idx)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    # The (data, indices, indptr) constructor keeps explicit zeros and the row order as given.
    return sparse.csr_matrix((dist.ravel(), idx.ravel(), indptr), shape=(n, n))


def knn_arrays(
    features: np.ndarray,
    *,
    k: int = DEFAULT_K,
    metric: str = "cosine",
    batch_size: int = 2048,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    dtype: Any = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """The graph of :func:`knn_graph` as two ``(n, k)`` arrays, in bounded memory.

    Same search, same neighbours and order; only the form differs: ``(indices, distances)``
    with int32 indices (int64 beyond 2**31 rows) and ``dtype`` distances (float32 by default,
    what the store keeps), so a million-row graph costs 8 bytes per neighbour and no float64
    or CSR copy of it is made.
    float16 ``features`` are read block by block as float32 (re-normalised for ``"cosine"``),
    never converted as a whole.

    Parameters
    ----------
    features, k, metric, batch_size, threads
        As for :func:`knn_graph`.
    progress
        Called as ``progress(done, total)`` (blocks done) after every block. An exception it
        raises (e.g. a cancel) stops the search within the blocks already running.
    dtype
        Of the distances.

    Returns
    -------
    indices, distances
        ``(n, k)`` each, every row nearest first (ties by index), exact duplicates at 0.
    """
    x = _check_features(features, k=k, metric=metric, batch_size=batch_size)
    threads = _check_threads(threads)
    sims, idx = _top_k(
        x, k=k, metric=metric, batch_size=batch_size, threads=threads, progress=progress
    )
    dist = _to_distances(sims, metric=metric, dtype=dtype)
    del sims
    _fix_exact_duplicates(x, dist, idx)
    return idx, dist


def _check_features(features: np.ndarray, *, k: int, metric: str, batch_size: int) -> np.ndarray:
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; valid: {', '.join(METRICS)}.")
    x = np.asarray(features)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"features must be a numeric (n, d) array, got shape {x.shape}.")
    n = len(x)
    if not isinstance(k, int | np.integer) or not 1 <= k < n:
        raise ValueError(f"k must be an integer from 1 to n - 1 = {n - 1}, got {k!r}.")
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    # float16 stays float16 (half the memory of a million rows); blocks are read as float32.
    x = np.ascontiguousarray(x, dtype=np.float16 if x.dtype == np.float16 else np.float32)
    norms = _norms(x)
    if not np.isfinite(norms).all():
        raise ValueError("features contain NaN or infinite values; re-embed those rows.")
    if metric == "cosine":
        if (norms == 0).any():
            raise ValueError(
                f"{int((norms == 0).sum())} feature rows are all zeros; cosine distance is "
                "undefined for them (use metric='euclidean' or drop them)."
            )
        if x.dtype == np.float32 and np.abs(norms - 1).max() > 1e-3:
            x = x / norms[:, None]
    return x


def _norms(x: np.ndarray) -> np.ndarray:
    """Row norms in float32, a block at a time (NaN/inf rows come out non-finite)."""
    out = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), _ROWS_PER_STEP):
        part = x[start : start + _ROWS_PER_STEP].astype(np.float32, copy=False)
        with np.errstate(over="ignore", invalid="ignore"):
            out[start : start + len(part)] = np.sqrt(np.einsum("ij,ij->i", part, part))
    return out


def _rows(x: np.ndarray, start: int, stop: int, metric: str) -> np.ndarray:
    """Rows ``start:stop`` as float32; float16 cosine rows re-normalised (half-precision
    rounding leaves norms ~1e-3 off 1, which would hide exact duplicates' zero distance)."""
    if x.dtype == np.float32:
        return x[start:stop]
    part = x[start:stop].astype(np.float32)
    if metric == "cosine":
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    return part


def _index_dtype(n: int) -> type:
    """int32 row ids when they fit: a million rows' 30 neighbours then cost 0.16 GB less."""
    return np.int32 if n < 2**31 else np.int64


def _check_threads(threads: int | None) -> int:
    if threads is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    if not isinstance(threads, int | np.integer) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}.")
    return int(threads)


def _top_k(
    x: np.ndarray,
    *,
    k: int,
    metric: str,
    batch_size: int,
    threads: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` scores (higher = closer) and column ids for every row, best first."""
    from threadpoolctl import threadpool_limits

    n = len(x)
    # Balanced blocks of at least k + 1 rows, so each diagonal block fills its rows' lists.
    n_blocks = max(1, n // max(batch_size, k + 1))
    bounds = np.linspace(0, n, n_blocks + 1).astype(int)
    blocks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    # Euclidean ranks by -|a-b|^2 = 2ab - |a|^2 - |b|^2; cosine by ab (unit vectors).
    sq = _norms(x) ** 2 if metric == "euclidean" else None
    best = np.empty((n, k), dtype=np.float32)
    best_idx = np.empty((n, k), dtype=_index_dtype(n))
    lock = threading.Lock()

    def diagonal(block: tuple[int, int]) -> None:
        # Every row's top k within its own block gives it a k-th best to beat.
        i0, i1 = block
        s = _scores(x, sq, i0, i1, i0, i1, metric)
        np.fill_diagonal(s, -np.inf)  # a row is not its own neighbour
        cols = np.argpartition(-s, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(s, cols, 1)
        order = np.argsort(-vals, axis=1, kind="stable")
        best[i0:i1] = np.take_along_axis(vals, order, 1)
        best_idx[i0:i1] = np.take_along_axis(cols, order, 1) + i0

    def off_diagonal(pair: tuple[tuple[int, int], tuple[int, int]]) -> None:
        (i0, i1), (j0, j1) = pair
        s = _scores(x, sq, i0, i1, j0, j1, metric)  # the product runs outside the lock
        with lock:  # blocks of different pairs share rows
            _fold(best, best_idx, s, i0, j0, k)
            # Similarity is symmetric: the same block, read by column, serves the rows of j.
            _fold(best, best_idx, s, i0, j0, k, transposed=True)

    # Pairs are generated as they are needed: a million rows make ~220k of them.
    pairs = ((a, b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    total = len(blocks) + len(blocks) * (len(blocks) - 1) // 2
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    # One BLAS thread per worker and independent blocks per worker: a multi-threaded BLAS
    # spin-waits at every product when another process busies a core (measured 2.3x slower
    # at 20k rows on a shared 2-core machine).
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        _run_all(pool, diagonal, blocks, tick, window=2 * threads)
        _run_all(pool, off_diagonal, pairs, tick, window=2 * threads)
    return best, best_idx


def _run_all(
    pool: ThreadPoolExecutor,
    fn: Callable[[Any], None],
    items: Iterable[Any],
    tick: Callable[[], None],
    *,
    window: int,
) -> None:
    """``fn`` over ``items`` on ``pool``, at most ``window`` at a time; ``tick()`` after each.

    The window keeps memory flat (no future per pair held up front) and makes a stop quick:
    when ``tick`` (or ``fn``) raises, the items not started are dropped, the few running ones
    finish (a block takes well under a second) and the exception propagates.
    """
    running: set[Future] = set()
    try:
        for item in items:
            running.add(pool.submit(fn, item))
            if len(running) >= window:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
                    tick()
        for future in as_completed(running):
            future.result()
            tick()
        running = set()
    finally:
        for future in running:
            future.cancel()
        wait(running)


def _scores(
    x: np.ndarray, sq: np.ndarray | None, i0: int, i1: int, j0: int, j1: int, metric: str
) -> np.ndarray:
    s = _rows(x, i0, i1, metric) @ _rows(x, j0, j1, metric).T
    if sq is not None:
        s *= 2
        s -= sq[i0:i1, None]
        s -= sq[None, j0:j1]
    return s


def _fold(
    best: np.ndarray,
    best_idx: np.ndarray,
    s: np.ndarray,
    row0: int,
    col0: int,
    k: int,
    *,
    transposed: bool = False,
) -> None:
    """Fold block ``s`` into the running top-k lists of its rows (``row0..``, columns
    ``col0..``), or with ``transposed`` of its columns (``col0..``, neighbours ``row0..``).

    Only entries above a row's current k-th best can change it, and there are few of them
    (about ``k * ln(n / k)`` per row over the whole search), so one comparison and a small
    merge replace a full partition of every block. The transposed case compares in ``s``'s own
    memory order: scanning a transposed view costs ~3x more.
    """
    if transposed:
        kth = best[col0 : col0 + s.shape[1], k - 1]
        hits = np.flatnonzero(s > kth[None, :])
        c, r = np.divmod(hits, s.shape[1])
        order = np.argsort(r, kind="stable")
        r, c = r[order], c[order]
        vals = s[c, r]
        row0, col0 = col0, row0
    else:
        kth = best[row0 : row0 + s.shape[0], k - 1]
        hits = np.flatnonzero(s > kth[:, None])
        r, c = np.divmod(hits, s.shape[1])  # row-major positions: r comes out sorted
        vals = s[r, c]
    if not len(r):
        return
    rows, first, counts = np.unique(r, return_index=True, return_counts=True)
    pos = np.arange(len(r)) - np.repeat(first, counts)
    pad_v = np.full((len(rows), int(counts.max())), -np.inf, dtype=np.float32)
    pad_i = np.zeros(pad_v.shape, dtype=best_idx.dtype)
    slot = np.repeat(np.arange(len(rows)), counts)
    pad_v[slot, pos] = vals
    pad_i[slot, pos] = c + col0
    rows = rows + row0
    cand = np.concatenate([best[rows], pad_v], 1)
    cand_idx = np.concatenate([best_idx[rows], pad_i], 1)
    order = np.argsort(-cand, axis=1, kind="stable")[:, :k]  # stays sorted: best first
    best[rows] = np.take_along_axis(cand, order, 1)
    best_idx[rows] = np.take_along_axis(cand_idx, order, 1)


def _to_distances(sims: np.ndarray, *, metric: str, dtype: Any = np.float64) -> np.ndarray:
    """Distances from the top-k scores, computed in float64 a block of rows at a time."""
    out = np.empty(sims.shape, dtype=dtype)
    for start in range(0, len(sims), _ROWS_PER_STEP):
        s = sims[start : start + _ROWS_PER_STEP].astype(np.float64)
        if metric == "cosine":
            d = np.clip(1.0 - s, 0.0, 2.0)
        else:  # sims = 2ab - |a|^2 - |b|^2 = -|a - b|^2
            d = np.sqrt(np.maximum(-s, 0.0))
        out[start : start + len(d)] = d
    return out


def _fix_exact_duplicates(x: np.ndarray, dist: np.ndarray, idx: np.ndarray) -> None:
    """Exact duplicates get explicit zeros and each other as neighbours, the way cleanlab does;
    then every row is sorted by distance, ties by column id. In place.

    cleanlab's ``correct_knn_distances_and_indices`` does it given the sets of equal rows; its
    own way of finding them scans all rows once per distinct row (hours at 100k), so the sets
    come from here: equal vectors are at distance ~0 (float32 rounding), so only rows whose
    nearest neighbour is under ``_EXACT_TOL`` are compared, byte for byte.
    """
    sets = exact_duplicate_sets(x, candidates=np.flatnonzero(dist[:, 0] < _EXACT_TOL))
    if sets:
        from cleanlab.internal.neighbor.knn_graph import (
            correct_knn_distances_and_indices_with_exact_duplicate_sets_inplace as correct,
        )

        correct(dist, idx, sets)
    # Sorted by distance, ties by column id: deterministic, and cleanlab reads column 0 as the
    # nearest neighbour. A block of rows at a time: the sort's index arrays stay small.
    for start in range(0, len(dist), _ROWS_PER_STEP):
        d, i = dist[start : start + _ROWS_PER_STEP], idx[start : start + _ROWS_PER_STEP]
        order = np.lexsort((i, d), axis=1)
        d[:] = np.take_along_axis(d, order, 1)
        i[:] = np.take_along_axis(i, order, 1)


def exact_duplicate_sets(
    features: np.ndarray, *, candidates: np.ndarray | None = None
) -> list[np.ndarray]:
    """Sets of rows (sorted row ids, two or more each) whose feature vectors are identical.

    ``candidates`` restricts the search to those rows (e.g. rows with a ~0 nearest-neighbour
    distance); by default all rows are compared.
    """
    x = np.ascontiguousarray(features)
    rows = np.arange(len(x)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if len(rows) < 2:
        return []
    # Each row as one opaque value of its bytes: np.unique then groups equal rows in one sort.
    keys = x[rows].view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(rows[order], np.cumsum(counts)[:-1])
    return [np.sort(g) for g in groups if len(g) > 1]


def neighbors_of(graph: sparse.csr_matrix, row: int) -> tuple[np.ndarray, np.ndarray]:
    """The neighbours of ``row`` in a :func:`knn_graph`: ``(indices, distances)``, nearest first."""
    graph = _check_graph(graph)
    n = graph.shape[0]
    if not isinstance(row, int | np.integer) or not 0 <= row < n:
        raise ValueError(f"row must be an integer from 0 to {n - 1}, got {row!r}.")
    lo, hi = graph.indptr[row], graph.indptr[row + 1]
    return graph.indices[lo:hi].astype(np.int64), graph.data[lo:hi].astype(np.float64)


def graph_arrays(graph: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """All neighbours at once: ``(indices, distances)``, both ``(n, k)``, nearest first."""
    graph = _check_graph(graph)
    n = graph.shape[0]
    return graph.indices.reshape(n, -1), graph.data.reshape(n, -1)


def _check_graph(graph: sparse.csr_matrix) -> sparse.csr_matrix:
    if not sparse.issparse(graph) or graph.format != "csr":
        raise ValueError(
            f"graph must be a scipy CSR matrix from knn_graph(), got {type(graph).__name__}."
        )
    n, m = graph.shape
    if n != m or n == 0 or graph.nnz % n or graph.nnz == 0:
        raise ValueError(
            f"graph must be square with the same number of neighbors in every row; got shape "
            f"{graph.shape} with {graph.nnz} entries. Rebuild it with knn_graph()."
        )
    if not np.array_equal(np.diff(graph.indptr), np.full(n, graph.nnz // n)):
        raise ValueError("graph rows hold different numbers of neighbors; rebuild it.")
    return graph


def save_graph(graph: sparse.csr_matrix, path: str | Path) -> Path:
    """Write a :func:`knn_graph` to ``path`` (``.npz``, scipy's own format; order preserved)."""
    graph = _check_graph(graph)
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path must end in .npz, got {path.name!r}.")
    # save_npz writes data/indices/indptr as they are: explicit zeros and row order survive.
    sparse.save_npz(path, graph, compressed=False)
    return path


def load_graph(path: str | Path, *, n_rows: int | None = None) -> sparse.csr_matrix:
    """Read a graph written by :func:`save_graph`; ``n_rows`` checks it fits the dataset."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No kNN graph at {path}; build one with knn_graph() and save_graph().")
    graph = _check_graph(sparse.load_npz(path).tocsr())
    if n_rows is not None and graph.shape[0] != n_rows:
        raise ValueError(
            f"The graph at {path} has {graph.shape[0]} rows but the dataset has {n_rows}; "
            "the texts changed, so rebuild it with knn_graph()."
        )
    return graph
