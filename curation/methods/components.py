"""The fast components: embedding LDA, text LDA, the neighbour vote and logistic regression.

Their speed figures were measured by bench/detection.py on a 2-core AMD EPYC shared with other
jobs (100k rows: embedding 0.50 s, text 0.54 s, neighbours 0.04 s, pooling ~0.3 s; text
features 10.6-17 s; graph 27-84 s; logreg 4.8 s at 38k real rows), rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.methods.lda import SHRINKAGE, lda_fold_probs
from curation.methods.neighbor_vote import nearest, neighbor_vote_probs, vote_k
from curation.methods.registry import Component, FoldSplit
from curation.probs import out_of_sample_probs
from curation.text_features import text_features


@dataclass(frozen=True)
class EmbeddingLDA(Component):
    """Frozen-encoder embeddings (standardised) and a shrinkage LDA, K-fold."""

    name: str = "embedding"
    shrinkage: float = SHRINKAGE
    fit_seconds_per_row: float = 6e-6

    def probs(self, split: FoldSplit) -> tuple[np.ndarray, dict[str, Any]]:
        probs = lda_fold_probs(
            split.features,
            split.labels,
            split.folds,
            n_classes=split.n_classes,
            shrinkage=self.shrinkage,
            standardize=True,
            check=split.check,
        )
        return probs, {"model": "shrinkage LDA on embeddings", "shrinkage": self.shrinkage}


@dataclass(frozen=True)
class TextLDA(Component):
    """TF-IDF word uni+bigrams reduced by LSA (:func:`text_features`), then a shrinkage LDA.

    It sees words and phrases the sentence encoder blurs, so its errors differ from
    :class:`EmbeddingLDA`'s.
    """

    name: str = "text"
    shrinkage: float = SHRINKAGE
    fit_seconds_per_row: float = 7e-6
    # TF-IDF + SVD fit on <= TEXT_FIT_ROWS rows + projection: skipped when the matrix is cached.
    # The fit costs ~3 s whatever the size (3.5-4.4 s at 4-6k rows, bench/results/estimates-*),
    # the rows ~1e-4 s each (136 s at 1.36M rows, bench/results/big_import-*).
    features_seconds_per_row: float = 1e-4
    features_fixed_seconds: float = 3.0

    def prepare_seconds(self, n_rows: int) -> float:
        if n_rows <= 0:
            return 0.0
        return self.features_fixed_seconds + self.features_seconds_per_row * n_rows

    def probs(self, split: FoldSplit) -> tuple[np.ndarray, dict[str, Any]]:
        matrix = split.text_matrix
        cached = matrix is not None
        if matrix is None:
            matrix = text_features(split.texts, seed=split.seed, progress=split.report)
        matrix = _checked_text_matrix(matrix, len(split.labels))
        probs = lda_fold_probs(
            matrix,
            split.labels,
            split.folds,
            n_classes=split.n_classes,
            shrinkage=self.shrinkage,
            check=split.check,
        )
        settings = {
            "model": "shrinkage LDA on TF-IDF LSA",
            "dims": int(matrix.shape[1]),
            "shrinkage": self.shrinkage,
            "text_matrix_cached": cached,
        }
        return probs, settings


def _checked_text_matrix(matrix: Any, n_rows: int) -> Any:
    if not hasattr(matrix, "shape"):  # e.g. nested lists; arrays and NpyRows are read by rows
        matrix = np.asarray(matrix, dtype=np.float32)
    if len(matrix.shape) != 2 or matrix.shape[0] != n_rows:
        raise ValueError(
            f"text_matrix must be (n, r) with one row per text, got {matrix.shape} for {n_rows} "
            "rows; pass text_features(texts) for these texts."
        )
    return matrix


@dataclass(frozen=True)
class NeighborVote(Component):
    """The label shares among each row's nearest neighbours by embedding (the row itself left
    out): a local, non-linear vote over the first :func:`vote_k` neighbours."""

    name: str = "neighbors"
    fit_seconds_per_row: float = 1e-6
    # Building the exact brute-force graph: n * n products of 384-d rows (skipped when cached).
    graph_seconds_per_pair: float = 8e-9

    def prepare_seconds(self, n_rows: int) -> float:
        return self.graph_seconds_per_pair * n_rows * n_rows

    def probs(self, split: FoldSplit) -> tuple[np.ndarray, dict[str, Any]]:
        n = len(split.labels)
        cached = split.neighbors is not None
        graph = split.neighbors if cached else nearest(split.features, vote_k(n))
        graph = np.asarray(graph)
        if graph.ndim != 2 or len(graph) != n or not np.issubdtype(graph.dtype, np.integer):
            raise ValueError(
                f"neighbors must be an (n, k) integer array of row indices, got {graph.shape} "
                f"{graph.dtype} for {n} rows."
            )
        used = graph[:, : vote_k(n)]
        probs = neighbor_vote_probs(
            split.labels, used, n_classes=split.n_classes, check=split.check
        )
        return probs, {"model": "neighbour vote", "k": int(used.shape[1]), "graph_cached": cached}


@dataclass(frozen=True)
class LogisticRegression(Component):
    """The plain recipe: frozen embeddings and a K-fold logistic regression
    (:func:`curation.probs.out_of_sample_probs`, which draws the same folds)."""

    name: str = "logreg"
    C: float = 0.003
    fit_seconds_per_row: float = 1.3e-4

    def probs(self, split: FoldSplit) -> tuple[np.ndarray, dict[str, Any]]:
        probs = out_of_sample_probs(
            split.features,
            split.labels,
            n_folds=split.n_folds,
            seed=split.seed,
            C=self.C,
            n_classes=split.n_classes,
        )
        return probs, {"model": "logistic regression", "C": self.C}
