"""Classification metrics from predicted probabilities, as plain JSON-ready values."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, *, label_names: list[str]
) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1, ROC AUC and the confusion matrix.

    Parameters
    ----------
    y_true : np.ndarray of int, shape (n,)
        True class ids, each in ``range(len(label_names))``.
    probs : np.ndarray of float, shape (n, k)
        Predicted class probabilities; the prediction is the arg-max of each row.
    label_names : list of str
        Names of the ``k`` classes, in column order of ``probs``.

    Returns
    -------
    dict
        ``accuracy``, ``precision``, ``recall``, ``f1`` (macro averages over *all* of
        ``label_names``, with 0 where a class is never predicted or never present),
        ``roc_auc``, ``confusion_matrix`` (list of lists; rows = true class, columns =
        predicted class, both in ``label_names`` order), ``labels`` (``label_names``) and
        ``n`` (number of rows). Every value is a plain Python float/int/list, or ``None``.

    Notes
    -----
    ``roc_auc`` is one-vs-rest and macro-averaged: for each class present in ``y_true`` the
    binary AUC of "this class vs the rest" scored by that class's probability, then the mean.
    Classes absent from ``y_true`` are left out (their AUC is undefined). With two classes
    this is the usual binary AUC. It is ``None`` when fewer than two classes are present.

    Examples
    --------
    >>> m = classification_metrics(
    ...     np.array([0, 1, 1]),
    ...     np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]),
    ...     label_names=["neg", "pos"],
    ... )
    >>> m["confusion_matrix"]  # the 2nd row (true "pos") has one row predicted "neg"
    [[1, 0], [1, 1]]
    >>> m["roc_auc"]
    1.0
    """
    y_true, probs = _check_inputs(y_true, probs, label_names)
    return _metrics_core(y_true, probs, list(label_names))


def _check_inputs(
    y_true: np.ndarray, probs: np.ndarray, label_names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    k = len(label_names)
    if k < 2:
        raise ValueError(f"label_names needs at least 2 classes (got {list(label_names)!r}).")
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise ValueError(
            f"probs must have shape (n, {k}) to match the {k} label_names (got {probs.shape}); "
            "pass one probability column per class, in label_names order."
        )
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contains NaN or infinite values; check the model's output.")
    y = np.asarray(y_true)
    if y.ndim != 1 or len(y) != len(probs):
        raise ValueError(
            f"y_true must be 1-D with one entry per row of probs (got shape {y.shape} for "
            f"{len(probs)} rows)."
        )
    if len(y) == 0:
        raise ValueError("classification_metrics needs at least one row (got 0).")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.mod(y, 1) == 0):
            raise ValueError(
                f"y_true must hold integer class ids (got dtype {y.dtype}); map label names to "
                "ids with label_names.index(name)."
            )
    y = y.astype(int)
    if y.min() < 0 or y.max() >= k:
        raise ValueError(
            f"y_true has class ids outside 0..{k - 1} (min {y.min()}, max {y.max()}); "
            "every id must index into label_names."
        )
    return y, probs


def _metrics_core(y: np.ndarray, probs: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    classes = list(range(len(label_names)))
    pred = probs.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, pred, labels=classes, average="macro", zero_division=0
    )
    matrix = confusion_matrix(y, pred, labels=classes)
    return {
        "accuracy": float(np.mean(pred == y)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": _ovr_macro_auc(y, probs),
        "confusion_matrix": matrix.astype(int).tolist(),
        "labels": list(label_names),
        "n": int(len(y)),
    }


def _ovr_macro_auc(y: np.ndarray, probs: np.ndarray) -> float | None:
    present = np.unique(y)
    if len(present) < 2:
        return None
    # For each present class, y == c has both positives and negatives because another class
    # is present too, so every binary AUC here is defined.
    aucs = [roc_auc_score(y == c, probs[:, c]) for c in present]
    return float(np.mean(aucs))


# Points kept per ROC curve: enough to draw it smoothly, few enough to store with every run.
ROC_MAX_POINTS = 200


def roc_curves(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    label_names: list[str],
    max_points: int = ROC_MAX_POINTS,
    decimals: int = 4,
) -> dict[str, Any]:
    """ROC curves from predicted probabilities, compact enough to store with a run.

    Parameters
    ----------
    y_true : np.ndarray of int, shape (n,)
        True class ids, each in ``range(len(label_names))``.
    probs : np.ndarray of float, shape (n, k)
        Predicted class probabilities, one column per class in ``label_names`` order.
    label_names : list of str
        Names of the ``k`` classes.
    max_points : int
        Most points kept per curve (at least 2): longer curves are thinned to evenly spaced
        thresholds, always keeping the first point (0, 0) and the last (1, 1).
    decimals : int
        Rates are rounded to this many decimals (the stored size; a plot cannot show more).

    Returns
    -------
    dict
        ``{"scheme", "curves"}``. ``scheme`` is ``"binary"`` with two classes (one curve: the
        second class of ``label_names`` as the positive one, scored by its probability) or
        ``"one-vs-rest"`` (a curve per class: that class vs all the others). Each curve is
        ``{"label", "fpr", "tpr", "auc", "positives", "negatives"}``; ``auc`` is computed on
        the full curve, before thinning. A class that has no positives or no negatives among
        the rows has no curve (it is undefined), so ``curves`` is empty when fewer than two
        classes are present.

    Examples
    --------
    >>> roc = roc_curves(
    ...     np.array([0, 0, 1, 1]),
    ...     np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]]),
    ...     label_names=["neg", "pos"],
    ... )
    >>> roc["scheme"], [c["label"] for c in roc["curves"]], roc["curves"][0]["auc"]
    ('binary', ['pos'], 0.75)
    """
    from sklearn.metrics import auc as area
    from sklearn.metrics import roc_curve

    if max_points < 2:
        raise ValueError(f"max_points must be at least 2 (got {max_points}).")
    y, probs = _check_inputs(y_true, probs, label_names)
    k = len(label_names)
    binary = k == 2
    curves = []
    for c in [1] if binary else range(k):
        positive = y == c
        positives = int(positive.sum())
        if positives == 0 or positives == len(y):
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, c])
        keep = _thin(len(fpr), max_points)
        curves.append(
            {
                "label": str(label_names[c]),
                "fpr": np.round(fpr[keep], decimals).tolist(),
                "tpr": np.round(tpr[keep], decimals).tolist(),
                "auc": float(area(fpr, tpr)),
                "positives": positives,
                "negatives": int(len(y) - positives),
            }
        )
    return {"scheme": "binary" if binary else "one-vs-rest", "curves": curves}


def _thin(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` of ``n`` points, evenly spaced, first and last kept."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
