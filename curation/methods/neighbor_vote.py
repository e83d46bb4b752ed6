"""The neighbour vote: class shares among each row's nearest other rows by embedding.

A local, non-linear model with nothing to fit: once the neighbour graph is built (label-free,
so cached across relabels) a vote over 100,000 rows takes a few hundredths of a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from curation.methods.lda import row_steps

# Neighbours voting per row: 30 scored within 0.001 of 50, 10 was 0.004 lower.
NEIGHBORS_K = 30


def vote_k(n_rows: int) -> int:
    """Neighbours voting per row: :data:`NEIGHBORS_K`, fewer (about sqrt(n)) on small sets,
    where 30 neighbours would be most of the rows and the vote would only echo the prior."""
    return max(1, min(NEIGHBORS_K, int(math.sqrt(max(n_rows, 1))), n_rows - 1))


def nearest(x: np.ndarray, k: int) -> np.ndarray:
    """``(n, k)`` row indices of each row's ``k`` nearest other rows, nearest first."""
    from curation.neighbors import knn_graph

    graph = knn_graph(x, k=k)
    return graph.indices.reshape(len(x), k)


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
        Called between steps of :data:`curation.methods.lda.ROWS_PER_STEP` rows; it may raise
        to stop.

    Returns
    -------
    np.ndarray
        ``(n, K)`` float64 probabilities.
    """
    n, k = neighbors.shape
    votes = np.zeros((n, n_classes))
    for a, b in row_steps(n):  # (rows, k) label blocks: a million rows' at once would be 0.3 GB
        if check is not None:
            check()
        neighbour_labels = y[neighbors[a:b]]
        for c in range(n_classes):
            votes[a:b, c] = (neighbour_labels == c).sum(1)
    # One pseudo-vote spread evenly (not by the class shares, which include the row's own
    # label): no row of a class is ever certain, and nothing here sees the row's own label.
    votes += 1.0 / n_classes
    return votes / votes.sum(1, keepdims=True)
