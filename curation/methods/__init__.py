"""Sources of out-of-sample predicted probabilities for label-error detection.

cleanlab ranks labels by how little an out-of-sample model believes them, so better
probabilities find more errors. :func:`method_probs` produces them by one of :data:`METHODS`,
each a registered :class:`DetectionMethod` (:mod:`curation.methods.registry`; add one with
:func:`register_method`):

``ensemble`` (the default)
    Three fast models pooled (:func:`combine`): ``embedding`` + ``text`` + ``neighbors``.
``embedding``
    Frozen-encoder embeddings and a shrinkage linear discriminant (LDA), K-fold
    (:mod:`curation.methods.lda`).
``text``
    TF-IDF word uni+bigrams reduced to 512 dimensions (LSA), then the same K-fold LDA. It sees
    words and phrases the sentence encoder blurs, so its errors differ from ``embedding``'s.
``neighbors``
    The label shares among each row's nearest neighbours by embedding (the row itself left
    out): a local, non-linear vote (:mod:`curation.methods.neighbor_vote`).
``logreg``
    The plain recipe: frozen embeddings and a K-fold logistic regression
    (:func:`curation.probs.out_of_sample_probs`).
``finetune``
    K-fold cross-validated fine-tuning of the transformer itself
    (:mod:`curation.methods.finetune`): slow on a CPU, so the training rows per fold are capped
    there; every row is still predicted by the fold model that never saw it.
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

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from curation.methods.components import EmbeddingLDA, LogisticRegression, NeighborVote, TextLDA
from curation.methods.finetune import FINETUNE_CPU_ROWS, FineTune, FinetuneRates
from curation.methods.lda import SHRINKAGE, lda_fold_probs
from curation.methods.neighbor_vote import NEIGHBORS_K, nearest, neighbor_vote_probs, vote_k
from curation.methods.pooling import combine
from curation.methods.registry import (
    METHOD_HELP,
    METHODS,
    REGISTRY,
    Component,
    DetectionMethod,
    FoldSplit,
    detection_method,
    register_method,
    unregister_method,
)
from runtime.encoder import EMBED_TEXTS_PER_SECOND  # re-exported: the encoder's default rates
from runtime.progress import Progress
from runtime.validation import choice

if TYPE_CHECKING:
    from training.config import TrainingConfig

__all__ = [
    "ANALYSIS_START_SECONDS",
    "DEFAULT_METHOD",
    "EMBEDDING",
    "EMBED_TEXTS_PER_SECOND",
    "FINETUNE",
    "FINETUNE_CPU_ROWS",
    "METHODS",
    "METHOD_HELP",
    "NEIGHBORS_K",
    "REGISTRY",
    "SHRINKAGE",
    "Component",
    "DetectionMethod",
    "FineTune",
    "FinetuneRates",
    "FoldSplit",
    "LOGREG",
    "NEIGHBORS",
    "TEXT",
    "analysis_seconds",
    "combine",
    "detection_method",
    "detection_seconds",
    "lda_fold_probs",
    "method_probs",
    "nearest",
    "neighbor_vote_probs",
    "register_method",
    "unregister_method",
    "vote_k",
]

# bench/detection.py builds the neighbour graph the way the ``neighbors`` component does.
_nearest = nearest

# --------------------------------------------------------------------------------------------
# The built-in methods. Composite methods share the component objects of the single ones.

EMBEDDING, TEXT, NEIGHBORS = EmbeddingLDA(), TextLDA(), NeighborVote()
LOGREG, FINETUNE = LogisticRegression(), FineTune()

register_method(
    DetectionMethod(
        "ensemble",
        "Embedding + text + neighbours, pooled: finds the most errors on a CPU, in seconds "
        "(recommended).",
        (EMBEDDING, TEXT, NEIGHBORS),
    )
)
register_method(
    DetectionMethod(
        "embedding",
        "Frozen-encoder embeddings and a linear discriminant, cross-validated. Fast.",
        (EMBEDDING,),
    )
)
register_method(
    DetectionMethod(
        "text",
        "TF-IDF of words and word pairs (reduced to 512 dimensions) and a linear discriminant, "
        "cross-validated. Catches wording the encoder blurs. Fast.",
        (TEXT,),
    )
)
register_method(
    DetectionMethod(
        "neighbors",
        "Label shares among each row's nearest neighbours by embedding. Fast.",
        (NEIGHBORS,),
    )
)
register_method(
    DetectionMethod(
        "logreg",
        "Frozen-encoder embeddings and logistic regression, cross-validated: the plain recipe, "
        "kept for comparison.",
        (LOGREG,),
    )
)
register_method(
    DetectionMethod(
        "finetune",
        "Fine-tunes the transformer once per fold and predicts the held-out rows. Best with a "
        "GPU; on a CPU the training rows per fold are capped and it takes minutes.",
        (FINETUNE,),
    )
)
register_method(
    DetectionMethod(
        "finetune+ensemble",
        "The fine-tuned folds pooled with the ensemble's three models.",
        (EMBEDDING, TEXT, NEIGHBORS, FINETUNE),
    )
)
DEFAULT_METHOD = "ensemble"


# --------------------------------------------------------------------------------------------
# Public entry points


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
        True, :class:`runtime.progress.Cancelled` is raised.

    Returns
    -------
    probs : np.ndarray
        ``(n, K)`` float64; rows sum to 1.
    info : dict
        JSON-friendly: ``method``, ``components`` (each with its ``seconds`` and settings),
        ``weights`` (of the pooling), ``n_folds``, ``seed``, ``seconds``; ``finetune`` adds
        rows trained per fold, device, precision and the config used.

    Raises
    ------
    ValueError
        Unknown method (the message lists :data:`METHODS`) or inconsistent inputs.
    runtime.progress.Cancelled
        ``should_stop()`` returned True.
    """
    detector = detection_method(method)
    split = FoldSplit.checked(
        texts,
        labels,
        features=features,
        n_classes=n_classes,
        n_folds=n_folds,
        seed=seed,
        text_matrix=text_matrix,
        neighbors=neighbors,
        finetune_rows=finetune_rows,
        training_config=training_config,
        label_names=label_names,
        progress=progress,
        should_stop=should_stop,
    )
    start = time.perf_counter()
    probs, fitted = detector.probs(split)
    info = {"method": method, "n_folds": n_folds, "seed": seed, **fitted}
    info["seconds"] = round(time.perf_counter() - start, 3)
    if progress is not None:  # the work is done: report it without polling should_stop
        done = len(detector.components)
        progress({"stage": "done", "done": done, "total": done})
    return probs, info


# --------------------------------------------------------------------------------------------
# Time estimates (each component's speed figures are its attributes)

# Devices an estimate is for: resolve "auto" first (runtime.device.resolve_device).
_ESTIMATE_DEVICES = ("cpu", "cuda")


def detection_seconds(
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
    detector = detection_method(method)
    device = choice("device", device, _ESTIMATE_DEVICES)
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 0:
        raise ValueError(f"n_rows must be a whole number >= 0, got {n_rows!r}.")
    seconds = detector.estimate(
        n_rows,
        device=device,
        n_folds=n_folds,
        cached=cached,
        finetune_rows=finetune_rows,
        epochs=epochs,
    )
    return round(seconds, 1)


# Starting the job's process and reading the rows before the first stage: ~3 s at 4-6k rows
# (bench/results/estimates-*).
ANALYSIS_START_SECONDS = 3.0


def analysis_seconds(
    method: str,
    n_rows: int,
    *,
    device: str = "cpu",
    n_folds: int = 5,
    cached: bool = False,
) -> float:
    """Rough wall time of a whole analysis: embedding every text (unless ``cached``; at the
    rate of this CPU's precision, bf16 or fp32), then :func:`detection_seconds` (the neighbour
    graph and text features too unless ``cached``).

    What the Data page shows before an import starts one, and the Predictions page before a
    run. Expect +-50%.

    Examples
    --------
    >>> analysis_seconds("ensemble", 1_360_000) > 3600  # a 1.36M-row CSV: hours on a CPU
    True
    """
    seconds = ANALYSIS_START_SECONDS + detection_seconds(
        method, n_rows, device=device, n_folds=n_folds, cached=cached
    )
    if not cached:
        seconds += n_rows / _embed_rate(choice("device", device, _ESTIMATE_DEVICES))
    return round(seconds, 1)


def _embed_rate(device: str) -> float:
    # As measured on this machine by earlier runs of the packaged encoder, else its default.
    from runtime.encoder import EncoderSettings, embed_rate

    return embed_rate(EncoderSettings(device=device))
