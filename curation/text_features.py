"""Label-independent text features for the ``text`` detection method: LSA of TF-IDF.

The matrix depends only on the texts, never on the labels, so it is computed once per dataset
(seconds per 10k rows), cached by the caller under :func:`text_features_key`, and reused by
every re-analysis after a relabel (:func:`curation.methods.method_probs` ``text_matrix=``).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np

from runtime.encoder import text_hash
from runtime.progress import Cancelled, Progress, stoppable
from runtime.validation import check_texts

# LSA dimensions: 512 beat 256 by ~0.006 AUPRC in the ensemble and tied 768.
TEXT_DIMS = 512
# Vocabulary cap and rows the SVD is fitted on: neither cap changed AUPRC (20k words, 4k of
# 12k rows measured), and together they keep the one-off cost to seconds at 100k rows.
TEXT_VOCAB = 50_000
TEXT_FIT_ROWS = 20_000
# Rows the vocabulary and IDF are learnt from. sklearn counts every distinct uni- and bigram
# of the rows it fits before keeping the top TEXT_VOCAB, which at a million varied rows is
# millions of Python strings (GBs); a 100k-row sample finds the same frequent terms.
TEXT_VOCAB_ROWS = 100_000
# Rows transformed and projected per step (and between two cancel checks).
TEXT_BLOCK_ROWS = 8_192
_TEXT_VERSION = "tfidf12-sublinear-lsa-v1"


def text_features(
    texts: Sequence[str],
    *,
    dims: int = TEXT_DIMS,
    seed: int = 0,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Dense text features for the ``text`` component: standardised LSA of TF-IDF.

    TF-IDF of word unigrams and bigrams (sublinear counts, at most :data:`TEXT_VOCAB` terms
    seen in at least 2 texts, vocabulary and IDF from a seeded sample of at most
    :data:`TEXT_VOCAB_ROWS` rows), projected on the top ``dims`` singular vectors of a seeded
    sample of at most :data:`TEXT_FIT_ROWS` rows, then centred (one scale for all columns).

    The result depends only on the texts (and ``dims``/``seed``), never on the labels: compute
    it once, cache it under :func:`text_features_key`, and pass it as ``text_matrix``. For
    more rows than fit in memory, write :func:`text_feature_blocks` to disk instead.

    Parameters
    ----------
    texts
        The texts, in row order.
    dims
        Output columns (fewer when the vocabulary or the row count is smaller).
    seed
        Seed of the row samples and the SVD's random start.
    progress
        Called with ``{"stage": "text features", "done", "total", "unit": "rows"}`` after each
        step.
    should_stop
        Polled between blocks of rows (and while the vocabulary and the SVD are fitted); when
        it returns True, :class:`runtime.progress.Cancelled` is raised.

    Returns
    -------
    np.ndarray
        ``(n, r)`` float32, ``1 <= r <= dims``. About 2 KB per row at 512 dimensions.
    """
    texts = check_texts(texts)
    out: np.ndarray | None = None
    for start, block in text_feature_blocks(
        texts, dims=dims, seed=seed, progress=progress, should_stop=should_stop
    ):
        if out is None:
            out = np.empty((len(texts), block.shape[1]), dtype=np.float32)
        out[start : start + len(block)] = block
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


def text_feature_blocks(
    texts: Sequence[str],
    *,
    dims: int = TEXT_DIMS,
    seed: int = 0,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`text_features` a block of rows at a time: yields ``(first_row, block)``.

    The vocabulary is learnt from at most :data:`TEXT_VOCAB_ROWS` rows (up to that many, the
    sparse TF-IDF of all rows is made in one pass and kept) and the SVD from at most
    :data:`TEXT_FIT_ROWS`; then each block of :data:`TEXT_BLOCK_ROWS` rows is transformed,
    projected and centred on its own, so a million rows cost one block at a time (a
    1.36M x 512 float32 matrix would be 2.8 GB).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = check_texts(texts)
    if not isinstance(dims, int) or dims < 1:
        raise ValueError(f"dims must be a positive integer, got {dims!r}.")
    report = progress or (lambda _event: None)
    n = len(texts)
    report({"stage": "text features", "done": 0, "total": n, "unit": "rows"})
    rng = np.random.default_rng(seed)
    svd_rows = np.sort(rng.choice(n, TEXT_FIT_ROWS, replace=False)) if n > TEXT_FIT_ROWS else None
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2),
        # Terms seen once carry no information across rows; tiny sets keep them all.
        min_df=2 if n >= 1000 else 1,
        max_features=TEXT_VOCAB,
        sublinear_tf=True,
        dtype=np.float32,
    )
    try:
        if n <= TEXT_VOCAB_ROWS:  # all rows at once, as sklearn does it: one pass over them
            tfidf = stoppable(partial(vectorizer.fit_transform, texts), should_stop)
            fit = tfidf if svd_rows is None else tfidf[svd_rows]
        else:
            stoppable(
                partial(vectorizer.fit, _sample(texts, n, TEXT_VOCAB_ROWS, seed)), should_stop
            )
            tfidf = None
            fit = vectorizer.transform([texts[i] for i in svd_rows])
    except ValueError:  # no term at all (e.g. every text empty): a constant feature
        yield from _constant_blocks(n, report)
        return
    vt = stoppable(partial(_svd, fit, dims, seed), should_stop)
    sample = np.asarray(fit @ vt.T, dtype=np.float32)
    del fit
    mean, scale = _centring(sample)
    if svd_rows is None:  # the sample is every row: already projected
        sample -= mean
        if scale > 0:
            sample /= scale
        for start in range(0, n, TEXT_BLOCK_ROWS):
            yield start, sample[start : start + TEXT_BLOCK_ROWS]
        report({"stage": "text features", "done": n, "total": n, "unit": "rows"})
        return
    del sample
    for start in range(0, n, TEXT_BLOCK_ROWS):
        if should_stop is not None and should_stop():
            raise Cancelled()
        stop = start + TEXT_BLOCK_ROWS
        rows = tfidf[start:stop] if tfidf is not None else vectorizer.transform(texts[start:stop])
        block = np.asarray(rows @ vt.T, dtype=np.float32) - mean
        yield start, block / scale if scale > 0 else block
        report(
            {
                "stage": "text features",
                "done": min(n, start + TEXT_BLOCK_ROWS),
                "total": n,
                "unit": "rows",
            }
        )


def _sample(texts: list[str], n: int, cap: int, seed: int) -> list[str]:
    """All texts, or a seeded sample of ``cap`` of them in row order."""
    if n <= cap:
        return texts
    # A generator of its own: the SVD sample stays what it was before the vocabulary cap.
    rows = np.sort(np.random.default_rng(seed + 1).choice(n, cap, replace=False))
    return [texts[i] for i in rows.tolist()]


def _svd(fit: Any, dims: int, seed: int) -> np.ndarray:
    """The top right singular vectors of the sample's TF-IDF, float32 ``(rank, terms)``."""
    from sklearn.utils.extmath import randomized_svd
    from threadpoolctl import threadpool_limits

    rank = max(1, min(dims, min(fit.shape) - 1))
    # One BLAS thread: see curation.probs._k_fold_probs (spin-waiting on busy cores).
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, _, vt = randomized_svd(fit, rank, n_iter=2, random_state=seed)
    return vt.astype(np.float32)


def _constant_blocks(n: int, report: Progress) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, n, TEXT_BLOCK_ROWS):
        yield start, np.zeros((min(n, start + TEXT_BLOCK_ROWS) - start, 1), dtype=np.float32)
    report({"stage": "text features", "done": n, "total": n, "unit": "rows"})


def text_features_key(texts: Sequence[str], *, dims: int = TEXT_DIMS, seed: int = 0) -> str:
    """Cache key of :func:`text_features` for these texts in this order (SHA-1 hex)."""
    digest = hashlib.sha1(f"{_TEXT_VERSION}|{TEXT_VOCAB}|{TEXT_FIT_ROWS}|{dims}|{seed}".encode())
    for text in check_texts(texts):
        digest.update(text_hash(text).encode())
    return digest.hexdigest()


def _centring(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Column means and one scale for all columns (mean square 1 per column after centring),
    from a sample of the projected rows (all rows up to :data:`TEXT_FIT_ROWS`).

    Unlike per-column standardising, one scale keeps the singular values' order of importance:
    whitening gave the many weak LSA directions as much say as the strong ones and cost
    0.01 AUPRC at 12k rows and 0.15-0.2 at 300-1,000 rows. Above the sample size the moments
    are the sample's; the LDA that reads these features is unchanged by any shift or common
    scale of them, so this only keeps the numbers near 0 and 1.
    """
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(0, dtype=np.float64).astype(np.float32)
    x = x - mean
    scale = float(np.sqrt(np.einsum("ij,ij->", x, x, dtype=np.float64) / max(x.size, 1)))
    return mean, np.float32(scale)
