"""Label-independent text features for the ``text`` detection method: LSA of TF-IDF.

The matrix depends only on the texts, never on the labels, so it is computed once per dataset
(seconds per 10k rows), cached by the caller under :func:`text_features_key`, and reused by
every re-analysis after a relabel (:func:`curation.methods.method_probs` ``text_matrix=``).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from curation.probs import _check_texts, text_hash

# LSA dimensions: 512 beat 256 by ~0.006 AUPRC in the ensemble and tied 768.
TEXT_DIMS = 512
# Vocabulary cap and rows the SVD is fitted on: neither cap changed AUPRC (20k words, 4k of
# 12k rows measured), and together they keep the one-off cost to seconds at 100k rows.
TEXT_VOCAB = 50_000
TEXT_FIT_ROWS = 20_000
_TEXT_VERSION = "tfidf12-sublinear-lsa-v1"

Progress = Callable[[dict[str, Any]], None]


def text_features(
    texts: Sequence[str],
    *,
    dims: int = TEXT_DIMS,
    seed: int = 0,
    progress: Progress | None = None,
) -> np.ndarray:
    """Dense text features for the ``text`` component: standardised LSA of TF-IDF.

    TF-IDF of word unigrams and bigrams (sublinear counts, at most :data:`TEXT_VOCAB` terms
    seen in at least 2 texts), projected on the top ``dims`` singular vectors of a seeded
    sample of at most :data:`TEXT_FIT_ROWS` rows, then centred (one scale for all columns).

    The result depends only on the texts (and ``dims``/``seed``), never on the labels: compute
    it once, cache it under :func:`text_features_key`, and pass it as ``text_matrix``.

    Parameters
    ----------
    texts
        The texts, in row order.
    dims
        Output columns (fewer when the vocabulary or the row count is smaller).
    seed
        Seed of the SVD's row sample and random start.
    progress
        Called with ``{"stage": "text features", "done", "total"}`` after each step.

    Returns
    -------
    np.ndarray
        ``(n, r)`` float32, ``1 <= r <= dims``. About 2 KB per row at 512 dimensions.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.utils.extmath import randomized_svd
    from threadpoolctl import threadpool_limits

    texts = _check_texts(texts)
    if not isinstance(dims, int) or dims < 1:
        raise ValueError(f"dims must be a positive integer, got {dims!r}.")
    report = progress or (lambda _event: None)
    n = len(texts)
    report({"stage": "text features", "done": 0, "total": 2})
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2),
        # Terms seen once carry no information across rows; tiny sets keep them all.
        min_df=2 if n >= 1000 else 1,
        max_features=TEXT_VOCAB,
        sublinear_tf=True,
        dtype=np.float32,
    )
    try:
        tfidf = vectorizer.fit_transform(texts)
    except ValueError:  # no term at all (e.g. every text empty): a constant feature
        return np.zeros((n, 1), dtype=np.float32)
    report({"stage": "text features", "done": 1, "total": 2})
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, TEXT_FIT_ROWS, replace=False)) if n > TEXT_FIT_ROWS else None
    fit = tfidf if sample is None else tfidf[sample]
    rank = max(1, min(dims, min(fit.shape) - 1))
    # One BLAS thread: see curation.probs._k_fold_probs (spin-waiting on busy cores).
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, _, vt = randomized_svd(fit, rank, n_iter=2, random_state=seed)
        dense = np.asarray(tfidf @ vt.T.astype(np.float32), dtype=np.float32)
    report({"stage": "text features", "done": 2, "total": 2})
    return _centre(dense)


def text_features_key(texts: Sequence[str], *, dims: int = TEXT_DIMS, seed: int = 0) -> str:
    """Cache key of :func:`text_features` for these texts in this order (SHA-1 hex)."""
    digest = hashlib.sha1(f"{_TEXT_VERSION}|{TEXT_VOCAB}|{TEXT_FIT_ROWS}|{dims}|{seed}".encode())
    for text in _check_texts(texts):
        digest.update(text_hash(text).encode())
    return digest.hexdigest()


def _centre(x: np.ndarray) -> np.ndarray:
    """Centre the columns and scale all of them by one factor (mean square 1 per column).

    Unlike per-column standardising, this keeps the singular values' order of importance:
    whitening gave the many weak LSA directions as much say as the strong ones and cost
    0.01 AUPRC at 12k rows and 0.15-0.2 at 300-1,000 rows.
    """
    x = np.asarray(x, dtype=np.float32)
    x = x - x.mean(0, dtype=np.float64).astype(np.float32)
    scale = float(np.sqrt(np.einsum("ij,ij->", x, x, dtype=np.float64) / max(x.size, 1)))
    return x / np.float32(scale) if scale > 0 else x
