"""Sources of out-of-sample predicted probabilities for label-error detection.

cleanlab ranks labels by how little an out-of-sample model believes them, so better
probabilities find more errors. :func:`method_probs` produces them by one of :data:`METHODS`:

``ensemble`` (the default)
    Three fast models pooled (:func:`combine`): ``embedding`` + ``text`` + ``neighbors``.
``embedding``
    Frozen-encoder embeddings and a shrinkage linear discriminant (LDA), K-fold.
``text``
    TF-IDF word uni+bigrams reduced to 512 dimensions (LSA), then the same K-fold LDA. It sees
    words and phrases the sentence encoder blurs, so its errors differ from ``embedding``'s.
``neighbors``
    The label shares among each row's nearest neighbours by embedding (the row itself left
    out): a local, non-linear vote.
``logreg``
    The plain recipe: frozen embeddings and a K-fold logistic regression
    (:func:`curation.probs.out_of_sample_probs`).
``finetune``
    K-fold cross-validated fine-tuning of the transformer itself
    (:func:`training.finetune.fine_tune`): slow on a CPU, so the training rows per fold are
    capped there; every row is still predicted by the fold model that never saw it.
``finetune+ensemble``
    ``finetune`` pooled with the three fast models.

Why these (``bench/detection.py``, demo tweets, 10% injected flips): the ensemble reaches
AUPRC ~0.91 where the plain recipe reaches ~0.88, in less time. Each component alone is at
best level with the plain recipe; their errors differ, so pooling them pays. Pooling is a
weighted geometric mean with weights fitted out-of-fold; it matched the plain average on
12k rows and beat it by 0.03-0.04 AUPRC on 300-1,000 rows, where ``text`` is weak. Averaging
and cleanlab's ensemble label-quality scores ranked the same.

Speed: everything that does not depend on the labels is computed once and can be cached by
the caller, so a re-analysis after a relabel only refits the folds:

* :func:`curation.text_features.text_features` (the LSA matrix; cache it under
  :func:`curation.text_features.text_features_key`),
* the neighbour graph (``neighbors=``; :mod:`curation.neighbors` builds it and the pipeline
  caches it already).

With both cached, fitting all folds of ``ensemble`` on 100,000 rows takes a few seconds on one
CPU core: the LDA fits are closed-form from per-fold sufficient statistics (Gram matrices and
class sums), so the folds share one pass over the data.

Folds are a seeded shuffle of the row positions (:func:`curation.probs._fold_ids`) and never
depend on the labels: a relabel moves no row to another fold, so a row's own probabilities
never depend on its own label.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curation.probs import _check_oos_inputs, _fold_ids, out_of_sample_probs
from curation.text_features import text_features
from runtime.progress import Cancelled, Progress
from runtime.validation import check_texts

if TYPE_CHECKING:
    from training.config import TrainingConfig

METHODS = ("ensemble", "embedding", "text", "neighbors", "logreg", "finetune", "finetune+ensemble")
DEFAULT_METHOD = "ensemble"
METHOD_HELP = {
    "ensemble": "Embedding + text + neighbours, pooled: finds the most errors on a CPU, "
    "in seconds (recommended).",
    "embedding": "Frozen-encoder embeddings and a linear discriminant, cross-validated. Fast.",
    "text": "TF-IDF of words and word pairs (reduced to 512 dimensions) and a linear "
    "discriminant, cross-validated. Catches wording the encoder blurs. Fast.",
    "neighbors": "Label shares among each row's nearest neighbours by embedding. Fast.",
    "logreg": "Frozen-encoder embeddings and logistic regression, cross-validated: the plain "
    "recipe, kept for comparison.",
    "finetune": "Fine-tunes the transformer once per fold and predicts the held-out rows. "
    "Best with a GPU; on a CPU the training rows per fold are capped and it takes minutes.",
    "finetune+ensemble": "The fine-tuned folds pooled with the ensemble's three models.",
}
# Which fast components each method averages (finetune is added on top where named).
_COMPONENTS = {
    "ensemble": ("embedding", "text", "neighbors"),
    "embedding": ("embedding",),
    "text": ("text",),
    "neighbors": ("neighbors",),
    "logreg": ("logreg",),
    "finetune": ("finetune",),
    "finetune+ensemble": ("embedding", "text", "neighbors", "finetune"),
}

# LDA shrinkage towards a scaled identity: 0.1 was best or within 0.003 AUPRC of the best of
# 0.03/0.1/0.3 on both feature sets, across 5-20% uniform and class-conditional flips.
SHRINKAGE = 0.1
# Neighbours voting per row: 30 scored within 0.001 of 50, 10 was 0.004 lower.
NEIGHBORS_K = 30

# "auto" row cap per fold for fine-tuning on a CPU (the TrainingConfig default).
FINETUNE_CPU_ROWS = 2000


# --------------------------------------------------------------------------------------------
# Public entry point


def method_probs(
    texts: Sequence[str],
    labels: np.ndarray,
    *,
    method: str = DEFAULT_METHOD,
    features: np.ndarray,
    n_classes: int | None = None,
    n_folds: int = 5,
    seed: int = 0,
    text_matrix: np.ndarray | None = None,
    neighbors: np.ndarray | None = None,
    finetune_rows: int | str | None = "auto",
    training_config: TrainingConfig | None = None,
    label_names: Sequence[str] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Out-of-sample class probabilities for every row, by ``method``.

    Parameters
    ----------
    texts
        The texts, in row order (used by ``text`` and ``finetune``).
    labels
        ``(n,)`` integer class ids ``0..K-1``, as currently given.
    method
        One of :data:`METHODS`; see the module docstring.
    features
        ``(n, d)`` sentence embeddings of ``texts`` (:func:`runtime.encoder.embed_texts`).
    n_classes
        K; defaults to ``labels.max() + 1``. A class with no training rows in a fold gets
        probability 0 there.
    n_folds, seed
        Number of folds and the seed of the label-independent fold shuffle.
    text_matrix
        The result of :func:`text_features` for these texts (cache it; it depends only on the
        texts). Computed here when needed and not given (seconds per 10k rows).
    neighbors
        ``(n, k)`` row indices of each row's nearest other rows by embedding, nearest first
        (e.g. the pipeline's cached graph). The first :func:`vote_k` columns are used (30 from
        900 rows up); ``k >= 10`` is enough (10 scored 0.004 AUPRC below 30). Built here when
        not given.
    finetune_rows
        Training rows per fold for ``finetune``: ``"auto"`` (:data:`FINETUNE_CPU_ROWS` on a
        CPU, all on a GPU), an integer cap, or ``None`` for all. Every row is predicted
        whatever the cap.
    training_config
        A :class:`training.config.TrainingConfig` for ``finetune`` (default: its defaults).
        Its ``max_train_samples`` is replaced by ``finetune_rows``; its validation split is
        turned off unless early stopping is on.
    label_names
        Class names for the fine-tuned models' configs (default ``class_0`` ...).
    progress
        Called with ``{"stage", "done", "total"}`` dicts: components done of the method's
        components, then text-feature steps, and for fine-tuning folds done of ``n_folds``
        with the fold and the trainer's ``step``/``total_steps``/``loss``. An exception it
        raises propagates, so a caller may cancel from there as well.
    should_stop
        Polled between steps (and after every optimiser step of a fine-tune); when it returns
        True, :class:`Cancelled` is raised.

    Returns
    -------
    probs : np.ndarray
        ``(n, K)`` float64; rows sum to 1.
    info : dict
        JSON-friendly: ``method``, ``components`` (each with its ``seconds`` and settings),
        ``n_folds``, ``seed``, ``seconds``; ``finetune`` adds rows trained per fold, device,
        precision and the config used.

    Raises
    ------
    ValueError
        Unknown method (the message lists :data:`METHODS`) or inconsistent inputs.
    Cancelled
        ``should_stop()`` returned True.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; valid: {', '.join(METHODS)}.")
    texts = check_texts(texts)
    x, y, k = _check_oos_inputs(features, labels, n_folds, n_classes)
    if len(texts) != len(y):
        raise ValueError(f"texts has {len(texts)} rows but labels has {len(y)}; pass one of each.")
    report = _reporter(progress, should_stop)
    check = _checker(should_stop)
    folds = _fold_ids(len(y), n_folds, seed)
    start = time.perf_counter()
    info: dict[str, Any] = {"method": method, "n_folds": n_folds, "seed": seed, "components": {}}
    parts: dict[str, np.ndarray] = {}
    components = _COMPONENTS[method]
    for i, name in enumerate(components):
        report({"stage": name, "done": i, "total": len(components)})
        t = time.perf_counter()
        if name == "embedding":
            parts[name], settings = _embedding_probs(x, y, folds, k, check)
        elif name == "text":
            parts[name], settings = _text_probs(
                texts, y, folds, k, text_matrix, seed, report, check
            )
        elif name == "neighbors":
            parts[name], settings = _neighbor_probs(x, y, k, neighbors, check)
        elif name == "logreg":
            parts[name] = out_of_sample_probs(x, y, n_folds=n_folds, seed=seed, n_classes=k)
            settings = {"model": "logistic regression", "C": 0.003}
        else:
            parts[name], settings = _finetune_probs(
                texts,
                y,
                folds,
                k,
                cap=finetune_rows,
                config=training_config,
                label_names=label_names,
                report=report,
                should_stop=should_stop,
            )
        info["components"][name] = {**settings, "seconds": round(time.perf_counter() - t, 3)}
    probs, info["weights"] = combine(parts, y, folds)
    info["seconds"] = round(time.perf_counter() - start, 3)
    if progress is not None:  # the work is done: report it without polling should_stop
        progress({"stage": "done", "done": len(components), "total": len(components)})
    return probs, info


def combine(
    parts: dict[str, np.ndarray], labels: np.ndarray, folds: np.ndarray
) -> tuple[np.ndarray, dict[str, float]]:
    """Pool component probabilities: a weighted geometric mean, weights fitted per fold.

    ``p(k) ~ prod_j p_j(k) ** w_j`` with ``w_j >= 0`` chosen to maximise the likelihood of the
    given labels. A component that is weak on this data (e.g. ``text`` on a few hundred rows)
    gets a small weight, and an over-confident one is tempered. The weights of fold ``f`` are
    fitted on the other folds' rows only (at most 20,000 of them), so a row's pooled
    probabilities still never depend on its own label. Measured against the plain average:
    equal or better in every setting, +0.035 AUPRC at 1,000 rows.

    Parameters
    ----------
    parts
        Component name -> ``(n, K)`` out-of-sample probabilities.
    labels
        ``(n,)`` given class ids.
    folds
        ``(n,)`` fold ids (the same as the components used).

    Returns
    -------
    probs : np.ndarray
        ``(n, K)`` float64, rows summing to 1.
    weights : dict
        Component name -> its weight, averaged over folds.
    """
    names = list(parts)
    if len(names) == 1:
        return _normalise(parts[names[0]]), {names[0]: 1.0}
    logs = np.stack([np.log(np.clip(parts[name], 1e-6, 1.0)) for name in names])  # (J, n, K)
    rng = np.random.default_rng(0)
    pooled = np.zeros(logs.shape[1:])
    weights = []
    for f in np.unique(folds):
        train = np.flatnonzero(folds != f)
        if len(train) > _POOL_ROWS:
            train = np.sort(rng.choice(train, _POOL_ROWS, replace=False))
        w = _fit_pool_weights(logs[:, train], labels[train])
        test = folds == f
        pooled[test] = _softmax(np.tensordot(w, logs[:, test], axes=1))
        weights.append(w)
    mean = np.mean(weights, 0)
    return _normalise(pooled), {
        name: round(float(v), 4) for name, v in zip(names, mean, strict=True)
    }


# Rows the pooling weights are fitted on per fold: J (<= 4) numbers need few rows.
_POOL_ROWS = 20_000


def _fit_pool_weights(logs: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize

    n_parts, n, k = logs.shape
    onehot = np.eye(k)[y]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        q = _softmax(np.tensordot(w, logs, axes=1))
        nll = -np.log(np.clip(q[np.arange(n), y], 1e-12, None)).mean()
        grad = np.einsum("nk,jnk->j", q - onehot, logs) / n
        return float(nll), grad

    start = np.full(n_parts, 1.0 / n_parts)  # the plain geometric mean
    fit = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(0.0, 5.0)] * n_parts)
    return fit.x if fit.success or np.isfinite(fit.fun) else start


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _normalise(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return p / p.sum(1, keepdims=True)


def _checker(should_stop: Callable[[], bool] | None) -> Callable[[], None]:
    """Called between chunks of the long passes: raises :class:`Cancelled` on a stop."""

    def check() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled()

    return check


def _reporter(progress: Progress | None, should_stop: Callable[[], bool] | None) -> Progress:
    def report(event: dict[str, Any]) -> None:
        if should_stop is not None and should_stop():
            raise Cancelled()
        if progress is not None:
            progress(event)

    return report


# --------------------------------------------------------------------------------------------
# Time estimates


# Measured by bench/detection.py on a 2-core AMD EPYC shared with other jobs (100k rows:
# embedding 0.50 s, text 0.54 s, neighbours 0.04 s, pooling ~0.3 s; text features 10.6-17 s;
# graph 27-84 s; logreg 4.8 s at 38k real rows), rounded up. Seconds per row unless noted.
_FIT_SECONDS_PER_ROW = {"embedding": 6e-6, "text": 7e-6, "neighbors": 1e-6, "logreg": 1.3e-4}
_POOL_SECONDS_PER_ROW = 4e-6
_TEXT_SECONDS_PER_ROW = 1.5e-4  # TF-IDF + SVD fit on <= TEXT_FIT_ROWS rows + projection
_NEIGHBOR_SECONDS_PER_PAIR = 8e-9  # exact brute-force graph: n * n products of 384-d rows
# Texts per second the packaged encoder embeds at max length 64 on 2 CPU cores: ~370 with
# native bf16 autocast (bench/loop.py), ~130 in fp32 on a CPU without it (bench/big_import.py
# measured 120-145 in a process of its own, 90 at nice 10 beside other work). The GPU figure is
# not measured here; conservative.
EMBED_TEXTS_PER_SECOND = {"cpu-bf16": 370.0, "cpu-fp32": 130.0, "cuda": 3000.0}
# Fine-tuning all-MiniLM-L6-v2, batch 32, max length 64. CPU: measured (bf16 autocast). GPU:
# not measured here (no GPU in this session); conservative figures for a current datacenter GPU.
_FINETUNE_RATES = {
    "cpu": {"train": 70.0, "predict": 330.0, "per_fold": 8.0},
    "cuda": {"train": 1500.0, "predict": 8000.0, "per_fold": 10.0},
}


def estimate_seconds(
    method: str,
    n_rows: int,
    *,
    device: str = "cpu",
    n_folds: int = 5,
    cached: bool = False,
    finetune_rows: int | str | None = "auto",
    epochs: float = 3.0,
) -> float:
    """Rough wall time of :func:`method_probs` for ``n_rows`` rows, embeddings already computed.

    Parameters
    ----------
    method
        One of :data:`METHODS`.
    n_rows
        Rows to score.
    device
        ``"cpu"`` or ``"cuda"`` (resolve ``"auto"`` first, e.g. with
        :func:`runtime.device.resolve_device`); only ``finetune`` methods depend on it.
    n_folds
        Folds.
    cached
        True when the label-independent parts (:func:`text_features`, the neighbour graph)
        are cached, as after the first analysis of a workspace.
    finetune_rows, epochs
        As passed to :func:`method_probs` / in the training config.

    Returns
    -------
    float
        Seconds; expect +-50% (other work on the machine, text lengths).
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; valid: {', '.join(METHODS)}.")
    if device not in _FINETUNE_RATES:
        raise ValueError(f"Unknown device {device!r}; valid: {', '.join(_FINETUNE_RATES)}.")
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 0:
        raise ValueError(f"n_rows must be a whole number >= 0, got {n_rows!r}.")
    total = 0.0
    for name in _COMPONENTS[method]:
        if name == "finetune":
            total += _finetune_seconds(n_rows, device, n_folds, finetune_rows, epochs)
            continue
        total += _FIT_SECONDS_PER_ROW[name] * n_rows
        if not cached and name == "text":
            total += _TEXT_SECONDS_PER_ROW * n_rows
        if not cached and name == "neighbors":
            total += _NEIGHBOR_SECONDS_PER_PAIR * n_rows * n_rows
    if len(_COMPONENTS[method]) > 1:
        total += _POOL_SECONDS_PER_ROW * n_rows
    return round(total, 1)


def analysis_seconds(
    method: str,
    n_rows: int,
    *,
    device: str = "cpu",
    n_folds: int = 5,
    cached: bool = False,
) -> float:
    """Rough wall time of a whole analysis: embedding every text (unless ``cached``; at the
    rate of this CPU's precision, bf16 or fp32), then :func:`estimate_seconds` (the neighbour
    graph and text features too unless ``cached``).

    What the Data page shows before an import starts one, and the Predictions page before a
    run. Expect +-50%.

    Examples
    --------
    >>> analysis_seconds("ensemble", 1_360_000) > 3600  # a 1.36M-row CSV: hours on a CPU
    True
    """
    seconds = estimate_seconds(method, n_rows, device=device, n_folds=n_folds, cached=cached)
    if not cached:
        seconds += n_rows / _embed_rate(device)
    return round(seconds, 1)


def _embed_rate(device: str) -> float:
    if device != "cpu":
        return EMBED_TEXTS_PER_SECOND["cuda"]
    from runtime.device import resolve_precision

    return EMBED_TEXTS_PER_SECOND[f"cpu-{resolve_precision('auto', 'cpu')}"]


def _finetune_seconds(
    n_rows: int, device: str, n_folds: int, cap: int | str | None, epochs: float
) -> float:
    rates = _FINETUNE_RATES[device]
    per_fold = math.ceil(n_rows * (n_folds - 1) / n_folds)
    rows = _resolve_cap(cap, device)
    if rows is not None:
        per_fold = min(per_fold, rows)
    train = n_folds * (per_fold * epochs / rates["train"] + rates["per_fold"])
    return train + n_rows / rates["predict"]


def _resolve_cap(cap: int | str | None, device: str) -> int | None:
    if cap == "auto":
        return FINETUNE_CPU_ROWS if device == "cpu" else None
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 2:
        raise ValueError(
            f"finetune_rows must be 'auto', None (all rows) or a whole number >= 2, got {cap!r}."
        )
    return cap


# Rows per step of the passes over the features (standardising, LDA statistics and posteriors,
# neighbour votes): temporaries stay at ~100 MB at 512 columns however many rows there are, and
# a cancel is noticed between steps (a step takes ~0.1 s).
ROWS_PER_STEP = 32_768


def _steps(n: int) -> list[tuple[int, int]]:
    return [(a, min(n, a + ROWS_PER_STEP)) for a in range(0, n, ROWS_PER_STEP)]


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
    for a, b in _steps(n):
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


# --------------------------------------------------------------------------------------------
# Components


def _embedding_probs(x, y, folds, k, check) -> tuple[np.ndarray, dict[str, Any]]:
    probs = lda_fold_probs(x, y, folds, n_classes=k, standardize=True, check=check)
    return probs, {"model": "shrinkage LDA on embeddings", "shrinkage": SHRINKAGE}


def _text_probs(
    texts, y, folds, k, matrix, seed, report, check
) -> tuple[np.ndarray, dict[str, Any]]:
    cached = matrix is not None
    if matrix is None:
        matrix = text_features(texts, seed=seed, progress=report)
    if not hasattr(matrix, "shape"):  # e.g. nested lists; arrays and NpyRows are read by rows
        matrix = np.asarray(matrix, dtype=np.float32)
    if len(matrix.shape) != 2 or matrix.shape[0] != len(y):
        raise ValueError(
            f"text_matrix must be (n, r) with one row per text, got {matrix.shape} for {len(y)} "
            "rows; pass text_features(texts) for these texts."
        )
    probs = lda_fold_probs(matrix, y, folds, n_classes=k, check=check)
    settings = {
        "model": "shrinkage LDA on TF-IDF LSA",
        "dims": int(matrix.shape[1]),
        "shrinkage": SHRINKAGE,
        "text_matrix_cached": cached,
    }
    return probs, settings


def _neighbor_probs(x, y, k, neighbors, check=None) -> tuple[np.ndarray, dict[str, Any]]:
    n = len(y)
    cached = neighbors is not None
    if neighbors is None:
        neighbors = _nearest(x, vote_k(n))
    neighbors = np.asarray(neighbors)
    if neighbors.ndim != 2 or len(neighbors) != n or not np.issubdtype(neighbors.dtype, np.integer):
        raise ValueError(
            f"neighbors must be an (n, k) integer array of row indices, got {neighbors.shape} "
            f"{neighbors.dtype} for {n} rows."
        )
    used = neighbors[:, : vote_k(n)]
    probs = neighbor_vote_probs(y, used, n_classes=k, check=check)
    return probs, {"model": "neighbour vote", "k": int(used.shape[1]), "graph_cached": cached}


def vote_k(n_rows: int) -> int:
    """Neighbours voting per row: :data:`NEIGHBORS_K`, fewer (about sqrt(n)) on small sets,
    where 30 neighbours would be most of the rows and the vote would only echo the prior."""
    return max(1, min(NEIGHBORS_K, int(math.sqrt(max(n_rows, 1))), n_rows - 1))


def _nearest(x: np.ndarray, k: int) -> np.ndarray:
    from curation.neighbors import knn_graph

    graph = knn_graph(x, k=k)
    return graph.indices.reshape(len(x), k)


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
    n, d = x.shape
    n_folds = int(folds.max()) + 1
    probs = np.zeros((n, n_classes))
    # One BLAS thread: measured 0.34 s (1 thread) against 3.4 s (2 threads) for 100k x 384 on a
    # busy 2-core machine, where a multi-threaded BLAS spin-waits for a core.
    with threadpool_limits(limits=1, user_api="blas"):
        prepare = (
            _standardizer(x, check)
            if standardize
            else (lambda block: np.asarray(block, dtype=np.float32))
        )
        gram = np.zeros((n_folds, d, d))
        sums = np.zeros((n_folds, n_classes, d))
        counts = np.zeros((n_folds, n_classes))
        for a, b in _steps(n):
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
        models = []
        for f in range(n_folds):
            g, s, c = gram.sum(0) - gram[f], sums.sum(0) - sums[f], counts.sum(0) - counts[f]
            present = c > 0
            models.append((present, *_lda_weights(g, s[present], c[present], d, shrinkage)))
        for a, b in _steps(n):
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


def neighbor_vote_probs(
    y: np.ndarray,
    neighbors: np.ndarray,
    *,
    n_classes: int,
    check: Callable[[], None] | None = None,
) -> np.ndarray:
    """Class shares among each row's neighbours, smoothed by one pseudo-vote split evenly.

    Out-of-sample as long as ``neighbors`` leaves each row itself out (the graphs of
    :mod:`curation.neighbors` do): a row's own label never votes for it.

    Parameters
    ----------
    y
        ``(n,)`` class ids.
    neighbors
        ``(n, k)`` row indices of each row's nearest other rows.
    n_classes
        K.
    check
        Called between steps of :data:`ROWS_PER_STEP` rows; it may raise to stop.

    Returns
    -------
    np.ndarray
        ``(n, K)`` float64 probabilities.
    """
    n, k = neighbors.shape
    votes = np.zeros((n, n_classes))
    for a, b in _steps(n):  # (rows, k) label blocks: a million rows' at once would be 0.3 GB
        if check is not None:
            check()
        neighbour_labels = y[neighbors[a:b]]
        for c in range(n_classes):
            votes[a:b, c] = (neighbour_labels == c).sum(1)
    # One pseudo-vote spread evenly (not by the class shares, which include the row's own
    # label): no row of a class is ever certain, and nothing here sees the row's own label.
    votes += 1.0 / n_classes
    return votes / votes.sum(1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Cross-validated fine-tuning


def _finetune_probs(
    texts: list[str],
    y: np.ndarray,
    folds: np.ndarray,
    k: int,
    *,
    cap: int | str | None,
    config: Any,
    label_names: Sequence[str] | None,
    report: Progress,
    should_stop: Callable[[], bool] | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fine-tune once per fold on (at most ``cap`` of) the other folds' rows; predict the fold."""
    from runtime.device import resolve_device, resolve_precision
    from training.config import TrainingConfig
    from training.finetune import fine_tune
    from training.inference import predict_proba

    config = TrainingConfig() if config is None else config
    if not isinstance(config, TrainingConfig):
        raise ValueError(
            f"training_config must be a TrainingConfig, got {type(config).__name__}; build one "
            "with TrainingConfig(...)."
        )
    device = resolve_device(config.device)
    rows = _resolve_cap(cap, device)
    names = [str(v) for v in label_names] if label_names is not None else None
    names = names or [f"class_{i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"label_names has {len(names)} names for {k} classes.")
    config = _fold_config(config, rows)
    n_folds = int(folds.max()) + 1
    probs = np.zeros((len(y), k))
    per_fold: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="second-look-cv-") as tmp:
        for f in range(n_folds):
            train, test = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            report({"stage": "fine-tuning", "fold": f + 1, "done": f, "total": n_folds})
            t = time.perf_counter()
            result = fine_tune(
                [texts[i] for i in train],
                y[train],
                label_names=names,
                config=config,
                output_dir=Path(tmp) / f"fold{f}",
                progress=_fold_progress(report, f, n_folds),
                should_stop=should_stop,
            )
            if result.cancelled:
                raise Cancelled()
            t_train = time.perf_counter() - t
            probs[test] = predict_proba(
                result.model_dir,
                [texts[i] for i in test],
                batch_size=config.batch_size * 2,
                max_length=config.max_length,
                device=device,
                precision=config.precision,
            )
            shutil.rmtree(Path(tmp) / f"fold{f}", ignore_errors=True)
            per_fold.append(
                {
                    "train_rows": int(result.train_samples),
                    "train_seconds": round(t_train, 1),
                    "predict_rows": int(len(test)),
                    "predict_seconds": round(time.perf_counter() - t - t_train, 1),
                }
            )
    settings = {
        "model": "fine-tuned transformer per fold",
        "rows_cap": rows,
        "device": device,
        "precision": resolve_precision(config.precision, device),
        "folds": per_fold,
        "config": config.to_dict(),
    }
    return probs / probs.sum(1, keepdims=True), settings


def _fold_config(config: Any, rows: int | None) -> Any:
    """The run config with the row cap; no validation split unless early stopping uses it."""
    changes: dict[str, Any] = {"max_train_samples": rows}
    if getattr(config, "early_stopping_patience", 0) == 0 and hasattr(
        config, "validation_fraction"
    ):
        changes["validation_fraction"] = 0.0
    return dataclasses.replace(config, **changes)


def _fold_progress(report: Progress, fold: int, n_folds: int) -> Callable[[dict], None]:
    def forward(event: dict) -> None:
        report({**event, "stage": "fine-tuning", "fold": fold + 1, "done": fold, "total": n_folds})

    return forward
