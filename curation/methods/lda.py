"""K-fold linear discriminant analysis from per-fold sufficient statistics.

The maths behind the ``embedding`` and ``text`` components. Each fold's model is fitted on the
other folds, and every fold's statistics are the totals minus that fold's own (Gram matrix,
class sums, class counts), so all folds cost one pass over the rows: on 100,000 rows x 384
this takes about half a second on one CPU core, which is what makes a re-analysis after every
relabel affordable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# LDA shrinkage towards a scaled identity: 0.1 was best or within 0.003 AUPRC of the best of
# 0.03/0.1/0.3 on both feature sets, across 5-20% uniform and class-conditional flips.
SHRINKAGE = 0.1

# Rows per step of the passes over the features (standardising, LDA statistics and posteriors,
# neighbour votes): temporaries stay at ~100 MB at 512 columns however many rows there are, and
# a cancel is noticed between steps (a step takes ~0.1 s).
ROWS_PER_STEP = 32_768


def row_steps(n: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each block of :data:`ROWS_PER_STEP` rows out of ``n``."""
    return [(a, min(n, a + ROWS_PER_STEP)) for a in range(0, n, ROWS_PER_STEP)]


def lda_fold_probs(
    x: Any,
    y: np.ndarray,
    folds: np.ndarray,
    *,
    n_classes: int,
    shrinkage: float = SHRINKAGE,
    standardize: bool = False,
    check: Callable[[], None] | None = None,
) -> np.ndarray:
    """K-fold out-of-sample posteriors of a shared-covariance Gaussian model (LDA).

    Each fold's model is fitted on the other folds: class means, a pooled within-class
    covariance shrunk towards ``trace/d * I`` by ``shrinkage``, and class priors. Every fold's
    statistics are the totals minus that fold's own Gram matrix and class sums, so all folds
    cost one pass over ``x`` (``n * d**2`` multiply-adds) plus ``folds`` small solves, and a
    second pass computes the posteriors. Both passes read :data:`ROWS_PER_STEP` rows at a time,
    so ``x`` may be float16, or rows on disk (:class:`data.store.arrays.NpyRows`).

    Parameters
    ----------
    x
        ``(n, d)`` float features, ideally standardised (the shrinkage target is isotropic):
        an array, or anything with ``shape`` whose ``x[a:b]`` gives rows as an array.
    y
        ``(n,)`` class ids ``0..n_classes-1``.
    folds
        ``(n,)`` fold id per row, ``0..F-1``.
    n_classes
        K. A class without training rows in a fold gets probability 0 there.
    shrinkage
        In ``[0, 1]``: 0 = the sample covariance, 1 = a multiple of the identity. At least
        ``d / (d + n_train)`` is used, so small sets are not fitted to noise.
    standardize
        Centre and scale the columns first (label-free moments of all rows).
    check
        Called between steps; it may raise to stop (a cancel).

    Returns
    -------
    np.ndarray
        ``(n, K)`` float64 probabilities.
    """
    from threadpoolctl import threadpool_limits

    if not 0 <= shrinkage <= 1:
        raise ValueError(f"shrinkage must lie in [0, 1], got {shrinkage!r}.")
    check = check or (lambda: None)
    # One BLAS thread: measured 0.34 s (1 thread) against 3.4 s (2 threads) for 100k x 384 on a
    # busy 2-core machine, where a multi-threaded BLAS spin-waits for a core.
    with threadpool_limits(limits=1, user_api="blas"):
        prepare = (
            _standardizer(x, check)
            if standardize
            else (lambda block: np.asarray(block, dtype=np.float32))
        )
        gram, sums, counts = _fold_totals(x, y, folds, n_classes, prepare, check)
        models = [
            _fold_model(gram, sums, counts, f, x.shape[1], shrinkage) for f in range(len(gram))
        ]
        return _posteriors(x, folds, n_classes, models, prepare, check)


def _fold_totals(
    x: Any,
    y: np.ndarray,
    folds: np.ndarray,
    n_classes: int,
    prepare: Callable[[np.ndarray], np.ndarray],
    check: Callable[[], None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-fold Gram matrices ``(F, d, d)``, class sums ``(F, K, d)`` and counts ``(F, K)``."""
    n, d = x.shape
    n_folds = int(folds.max()) + 1
    gram = np.zeros((n_folds, d, d))
    sums = np.zeros((n_folds, n_classes, d))
    counts = np.zeros((n_folds, n_classes))
    for a, b in row_steps(n):
        check()
        block, fold_of, labels = prepare(x[a:b]), folds[a:b], y[a:b]
        for f in np.unique(fold_of):
            rows = fold_of == f
            onehot = np.zeros((int(rows.sum()), n_classes), dtype=np.float32)
            onehot[np.arange(len(onehot)), labels[rows]] = 1.0
            g, s, c = _fold_stats(block[rows], onehot)
            gram[f] += g
            sums[f] += s
            counts[f] += c
    return gram, sums, counts


def _fold_model(
    gram: np.ndarray, sums: np.ndarray, counts: np.ndarray, f: int, d: int, shrinkage: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold ``f``'s model from the other folds' statistics: (classes present, weights, bias)."""
    g, s, c = gram.sum(0) - gram[f], sums.sum(0) - sums[f], counts.sum(0) - counts[f]
    present = c > 0
    return (present, *_lda_weights(g, s[present], c[present], d, shrinkage))


def _posteriors(
    x: Any,
    folds: np.ndarray,
    n_classes: int,
    models: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    prepare: Callable[[np.ndarray], np.ndarray],
    check: Callable[[], None],
) -> np.ndarray:
    """Each row's class probabilities under the model of its own fold (which never saw it)."""
    n = x.shape[0]
    probs = np.zeros((n, n_classes))
    for a, b in row_steps(n):
        check()
        block, fold_of = prepare(x[a:b]), folds[a:b]
        for f in np.unique(fold_of):
            rows = np.flatnonzero(fold_of == f)
            present, w, bias = models[f]
            logits = block[rows] @ w + bias
            logits -= logits.max(1, keepdims=True)
            e = np.exp(logits)
            probs[np.ix_(rows + a, present)] = e / e.sum(1, keepdims=True)
    return probs


def _standardizer(x: Any, check: Callable[[], None]) -> Callable[[np.ndarray], np.ndarray]:
    """A function that standardises a block of rows of ``x`` with all rows' column moments.

    Label-free, so computing the moments on all rows leaks nothing; it makes the LDA shrinkage
    target (a multiple of the identity) mean the same for every column. Moments accumulate in
    float64 over blocks, but the arithmetic on the rows stays float32: a float64 copy of
    100k x 384 alone took longer than all the LDA fits, and a float32 copy of 1.36M x 384
    rows (2 GB) is more than the analysis may hold.
    """
    n, d = x.shape
    total = np.zeros(d)
    squares = np.zeros(d)
    for a, b in row_steps(n):
        check()
        block = np.asarray(x[a:b], dtype=np.float32)
        total += block.sum(0, dtype=np.float64)
        squares += np.einsum("ij,ij->j", block, block, dtype=np.float64)
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(squares / max(n, 1) - mean**2, 0))
    scale = np.where(std > 1e-12, 1.0 / np.maximum(std, 1e-12), 1.0).astype(np.float32)
    mean32 = mean.astype(np.float32)

    def standardize(block: np.ndarray) -> np.ndarray:
        return (np.asarray(block, dtype=np.float32) - mean32) * scale

    return standardize


def _fold_stats(x: np.ndarray, onehot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (x.T @ x).astype(np.float64), (onehot.T @ x).astype(np.float64), onehot.sum(0)


def _lda_weights(
    gram: np.ndarray, sums: np.ndarray, counts: np.ndarray, d: int, shrinkage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Linear discriminant weights ``(d, K)`` and biases ``(K,)`` from sufficient statistics."""
    means = sums / counts[:, None]
    scatter = gram - sums.T @ means  # within-class scatter: sum_i x x' - sum_c n_c mu_c mu_c'
    cov = scatter / max(counts.sum() - len(counts), 1.0)
    scale = max(np.trace(cov) / d, 1e-12)
    # With few rows per dimension the sample covariance is mostly noise and the posteriors
    # come out 0 or 1; shrink at least by d / (d + n) (0.04 at 10k rows x 384, 0.95 at 20 rows).
    shrinkage = max(shrinkage, d / (d + counts.sum()))
    cov = (1 - shrinkage) * cov + (shrinkage * scale + 1e-9 * scale) * np.eye(d)
    w = np.linalg.solve(cov, means.T)
    b = -0.5 * np.einsum("kd,dk->k", means, w) + np.log(counts / counts.sum())
    return w.astype(np.float32), b
