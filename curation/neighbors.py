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
the first blocks is rare. Memory is the features plus a few ``block x block`` buffers per thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy import sparse

METRICS = ("cosine", "euclidean")
DEFAULT_K = 10  # cleanlab's internal.neighbor.knn_graph.DEFAULT_K: what Datalab would build
# Distances this small are float32 rounding noise around 0; rows of equal vectors among them get
# an exact 0, as cleanlab requires for exact duplicates.
_EXACT_TOL = 1e-5


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
        :func:`curation.probs.embed_texts`. For ``metric="cosine"`` rows are normalised here
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
        Called as ``progress(done, total)`` (blocks done) every 16 blocks and at the end.

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
    x = _check_features(features, k=k, metric=metric, batch_size=batch_size)
    threads = _check_threads(threads)
    sims, idx = _top_k(
        x, k=k, metric=metric, batch_size=batch_size, threads=threads, progress=progress
    )
    dist = _to_distances(sims, metric=metric)
    dist, idx = _fix_exact_duplicates(x, dist, idx)
    n = len(x)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    # The (data, indices, indptr) constructor keeps explicit zeros and the row order as given.
    return sparse.csr_matrix((dist.ravel(), idx.ravel(), indptr), shape=(n, n))


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
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values; re-embed those rows.")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1)
        if (norms == 0).any():
            raise ValueError(
                f"{int((norms == 0).sum())} feature rows are all zeros; cosine distance is "
                "undefined for them (use metric='euclidean' or drop them)."
            )
        if np.abs(norms - 1).max() > 1e-3:
            x = x / norms[:, None]
    return x


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
    blocks = list(zip(bounds[:-1], bounds[1:], strict=True))
    # Euclidean ranks by -|a-b|^2 = 2ab - |a|^2 - |b|^2; cosine by ab (unit vectors).
    sq = np.einsum("ij,ij->i", x, x) if metric == "euclidean" else None
    best = np.empty((n, k), dtype=np.float32)
    best_idx = np.empty((n, k), dtype=np.int64)
    lock = threading.Lock()

    def diagonal(block: tuple[int, int]) -> None:
        # Every row's top k within its own block gives it a k-th best to beat.
        i0, i1 = block
        s = _scores(x, sq, i0, i1, i0, i1)
        np.fill_diagonal(s, -np.inf)  # a row is not its own neighbour
        cols = np.argpartition(-s, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(s, cols, 1)
        order = np.argsort(-vals, axis=1, kind="stable")
        best[i0:i1] = np.take_along_axis(vals, order, 1)
        best_idx[i0:i1] = np.take_along_axis(cols, order, 1) + i0

    def off_diagonal(pair: tuple[tuple[int, int], tuple[int, int]]) -> None:
        (i0, i1), (j0, j1) = pair
        s = _scores(x, sq, i0, i1, j0, j1)  # the product runs outside the lock, in parallel
        with lock:  # blocks of different pairs share rows
            _fold(best, best_idx, s, i0, j0, k)
            # Similarity is symmetric: the same block, read by column, serves the rows of j.
            _fold(best, best_idx, s, i0, j0, k, transposed=True)

    pairs = [(a, b) for i, a in enumerate(blocks) for b in blocks[i + 1 :]]
    total = len(blocks) + len(pairs)
    # One BLAS thread per worker and independent blocks per worker: a multi-threaded BLAS
    # spin-waits at every product when another process busies a core (measured 2.3x slower
    # at 20k rows on a shared 2-core machine).
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        done = 0
        for stage, items in ((diagonal, blocks), (off_diagonal, pairs)):
            for _ in pool.map(stage, items):
                done += 1
                if progress is not None and (done % 16 == 0 or done == total):
                    progress(done, total)
    return best, best_idx


def _scores(x: np.ndarray, sq: np.ndarray | None, i0: int, i1: int, j0: int, j1: int):
    s = x[i0:i1] @ x[j0:j1].T
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
    pad_i = np.zeros(pad_v.shape, dtype=np.int64)
    slot = np.repeat(np.arange(len(rows)), counts)
    pad_v[slot, pos] = vals
    pad_i[slot, pos] = c + col0
    rows = rows + row0
    cand = np.concatenate([best[rows], pad_v], 1)
    cand_idx = np.concatenate([best_idx[rows], pad_i], 1)
    order = np.argsort(-cand, axis=1, kind="stable")[:, :k]  # stays sorted: best first
    best[rows] = np.take_along_axis(cand, order, 1)
    best_idx[rows] = np.take_along_axis(cand_idx, order, 1)


def _to_distances(sims: np.ndarray, *, metric: str) -> np.ndarray:
    s = sims.astype(np.float64)
    if metric == "cosine":
        return np.clip(1.0 - s, 0.0, 2.0)
    # sims = 2ab - |a|^2 - |b|^2 = -|a - b|^2
    return np.sqrt(np.maximum(-s, 0.0))


def _fix_exact_duplicates(
    x: np.ndarray, dist: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact duplicates get explicit zeros and each other as neighbours, the way cleanlab does.

    cleanlab's ``correct_knn_distances_and_indices`` does it given the sets of equal rows; its
    own way of finding them scans all rows once per distinct row (hours at 100k), so the sets
    come from here: equal vectors are at distance ~0 (float32 rounding), so only rows whose
    nearest neighbour is under ``_EXACT_TOL`` are compared, byte for byte.
    """
    sets = exact_duplicate_sets(x, candidates=np.flatnonzero(dist[:, 0] < _EXACT_TOL))
    if sets:
        from cleanlab.internal.neighbor.knn_graph import correct_knn_distances_and_indices

        dist, idx = correct_knn_distances_and_indices(x, dist, idx, exact_duplicate_sets=sets)
    # Sorted by distance, ties by column id: deterministic, and cleanlab reads column 0 as the
    # nearest neighbour.
    order = np.lexsort((idx, dist), axis=1)
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


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
            f"graph must be square with the same number of neighbours in every row; got shape "
            f"{graph.shape} with {graph.nnz} entries. Rebuild it with knn_graph()."
        )
    if not np.array_equal(np.diff(graph.indptr), np.full(n, graph.nnz // n)):
        raise ValueError("graph rows hold different numbers of neighbours; rebuild it.")
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
