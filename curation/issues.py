"""Label quality and label issues from out-of-sample probabilities, with cleanlab.

:func:`score_labels` gives one row per sample with the columns of cleanlab Datalab's label
issue table, in this project's words (``is_label_issue``, ``label_quality``, ``analyzed_label``,
``predicted_label``), plus the two probabilities a reviewer wants to see; :func:`summarize`
condenses it for the UI.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

# cleanlab.filter.find_label_issues(filter_by=...) and cleanlab.rank.get_label_quality_scores
# (method=...) accept these; cleanlab checks them with a bare assert, so we check first.
FILTER_BY = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)
METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
COLUMNS = (
    "is_label_issue",
    "label_quality",
    "analyzed_label",
    "predicted_label",
    "predicted_prob",
    "analyzed_prob",
)
_DTYPES = (bool, float, object, object, float, float)


def score_labels(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    label_names: list[str],
    filter_by: str = "prune_by_noise_rate",
    method: str = "self_confidence",
) -> pd.DataFrame:
    """Score every label and flag the likely wrong ones.

    Parameters
    ----------
    labels
        ``(n,)`` integer class ids ``0..K-1``: the labels to score (the current ones).
    pred_probs
        ``(n, K)`` out-of-sample probabilities (:func:`curation.probs.out_of_sample_probs`).
    label_names
        The K class names, in id order.
    filter_by
        How cleanlab decides which rows are issues (``cleanlab.filter.find_label_issues``).
    method
        How cleanlab scores label quality (``cleanlab.rank.get_label_quality_scores``).

    Returns
    -------
    pd.DataFrame
        One row per sample, in input order (same index 0..n-1), with columns
        ``is_label_issue`` (bool), ``label_quality`` (float in [0, 1], low = likely wrong),
        ``analyzed_label`` and ``predicted_label`` (str, the argmax class), ``predicted_prob``
        and ``analyzed_prob`` (float).

    Examples
    --------
    >>> p = np.array([[0.9, 0.1]] * 5 + [[0.1, 0.9]] * 5)
    >>> s = score_labels(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), p, label_names=["a", "b"])
    >>> s.loc[s["is_label_issue"], ["analyzed_label", "predicted_label"]]  # row 4 is likely an "a"
      analyzed_label predicted_label
    4              b               a
    """
    labels, pred_probs = _check_inputs(labels, pred_probs, label_names, filter_by, method)
    return _score(labels, pred_probs, list(label_names), filter_by, method)


def _check_inputs(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    label_names: list[str],
    filter_by: str,
    method: str,
) -> tuple[np.ndarray, np.ndarray]:
    if filter_by not in FILTER_BY:
        raise ValueError(f"Unknown filter_by {filter_by!r}; valid: {', '.join(FILTER_BY)}.")
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; valid: {', '.join(METHODS)}.")
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2 or labels.ndim != 1 or len(labels) != len(pred_probs):
        raise ValueError(
            f"labels must be (n,) and pred_probs (n, K); got {labels.shape} and {pred_probs.shape}."
        )
    if pred_probs.shape[1] != len(label_names):
        raise ValueError(
            f"pred_probs has {pred_probs.shape[1]} columns but label_names has "
            f"{len(label_names)} names; pass one name per class, in id order."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be integer class ids, got dtype {labels.dtype}; map names to ids "
            "with the same order as label_names."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(label_names)):
        raise ValueError(f"labels must lie in 0..{len(label_names) - 1} (one per label name).")
    if not np.allclose(pred_probs.sum(1), 1.0, atol=1e-4) or (pred_probs < 0).any():
        raise ValueError("pred_probs rows must be probabilities (non-negative, summing to 1).")
    return labels, pred_probs


def _score(
    labels: np.ndarray, pred_probs: np.ndarray, names: list[str], filter_by: str, method: str
) -> pd.DataFrame:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if len(labels) == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(COLUMNS, _DTYPES, strict=True)})
    rows = np.arange(len(labels))
    predicted = pred_probs.argmax(1)
    # n_jobs=1: cleanlab otherwise forks a process pool, which costs more than it saves on a
    # few tens of thousands of rows and misbehaves inside a Streamlit server.
    is_issue = find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=1)
    scores = get_label_quality_scores(labels, pred_probs, method=method)
    name_arr = np.asarray(names, dtype=object)
    return pd.DataFrame(
        {
            "is_label_issue": is_issue.astype(bool),
            "label_quality": np.clip(scores, 0.0, 1.0),
            "analyzed_label": name_arr[labels],
            "predicted_label": name_arr[predicted],
            "predicted_prob": pred_probs[rows, predicted],
            "analyzed_prob": pred_probs[rows, labels],
        }
    )


def summarize(scores: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers of a :func:`score_labels` table.

    Returns
    -------
    dict
        ``n`` rows, ``n_issues``, ``issue_rate`` (0 for an empty table),
        ``issues_per_class`` (analyzed label -> issue count, every class present listed, also
        with 0), and ``issue_pairs``: a list of ``{"given", "predicted", "count"}`` among
        issues, most frequent first (JSON-friendly).
    """
    missing = [
        c for c in ("is_label_issue", "analyzed_label", "predicted_label") if c not in scores
    ]
    if missing:
        raise ValueError(f"scores lacks column(s) {missing}; pass the output of score_labels.")
    issues = scores[scores["is_label_issue"].astype(bool)]
    per_class = {str(c): 0 for c in sorted(scores["analyzed_label"].unique())}
    per_class.update(Counter(issues["analyzed_label"].astype(str)))
    given, predicted = issues["analyzed_label"].astype(str), issues["predicted_label"].astype(str)
    pairs = Counter(zip(given, predicted, strict=True))
    n = len(scores)
    return {
        "n": n,
        "n_issues": len(issues),
        "issue_rate": len(issues) / n if n else 0.0,
        "issues_per_class": per_class,
        "issue_pairs": [
            {"given": g, "predicted": p, "count": c}
            for (g, p), c in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }
