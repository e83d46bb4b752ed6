"""Statistics over human review: agreement between reviewers and errors left to find.

Pure functions over DataFrames (no store, no UI): :func:`agreement` gives Cohen's kappa per
pair of reviewers, overall and per class; :func:`disagreements` lists the samples reviewers
labeled differently; :func:`remaining_errors` extrapolates the error rate found so far to the
flagged rows nobody has reviewed yet.
"""

from __future__ import annotations

import math
import numbers
import warnings
from itertools import combinations
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

LABEL_COLUMNS = ("sample_id", "reviewer", "label")
PAIR_COLUMNS = ("reviewer_a", "reviewer_b", "n", "agreement", "kappa")
PER_CLASS_COLUMNS = ("reviewer_a", "reviewer_b", "label", "n", "kappa")
DISAGREEMENT_COLUMNS = ("sample_id", "labels", "n_reviewers")


def agreement(labels: pd.DataFrame, *, label_names: list[str]) -> dict[str, pd.DataFrame]:
    """Agreement between every pair of reviewers on the samples both labeled.

    Parameters
    ----------
    labels
        One row per (sample_id, reviewer) with columns ``sample_id``, ``reviewer``, ``label``:
        each reviewer's latest label for a sample.
    label_names
        Every class a reviewer may choose; fixes the label set of Cohen's kappa, so a class
        nobody used still counts as a possible answer.

    Returns
    -------
    dict of str to pd.DataFrame
        ``"pairs"``: one row per unordered pair (``reviewer_a < reviewer_b``, by name), with
        ``n`` (samples both labeled), ``agreement`` (share of those with equal labels) and
        ``kappa`` (Cohen's kappa, ``sklearn.metrics.cohen_kappa_score``). Every pair is
        listed, also with ``n == 0``.
        ``"per_class"``: one row per pair and class (in ``label_names`` order) with ``n`` and
        the one-vs-rest ``kappa`` (each reviewer's label reduced to "is this class or not").
        Kappa and agreement are NaN where undefined: fewer than 2 shared samples, or no
        variation to agree on (e.g. both reviewers always chose the same class, or neither
        ever chose the class of a per-class row).

    Examples
    --------
    Two reviewers who agree on 3 of 4 samples:

    >>> df = pd.DataFrame({"sample_id": [1, 2, 3, 4] * 2, "reviewer": ["ann"] * 4 + ["bob"] * 4,
    ...                    "label": ["a", "b", "a", "b", "a", "b", "a", "a"]})
    >>> agreement(df, label_names=["a", "b"])["pairs"].round(2)
      reviewer_a reviewer_b  n  agreement  kappa
    0        ann        bob  4       0.75    0.5
    """
    labels = _check_labels(labels, label_names=label_names)
    return _agreement(labels, list(label_names))


def disagreements(labels: pd.DataFrame) -> pd.DataFrame:
    """Samples on which at least two reviewers chose different labels.

    Parameters
    ----------
    labels
        Same layout as for :func:`agreement` (``sample_id``, ``reviewer``, ``label``, one row
        per sample and reviewer).

    Returns
    -------
    pd.DataFrame
        Columns ``sample_id``, ``labels`` (dict reviewer -> label, reviewers sorted by name)
        and ``n_reviewers`` (how many reviewers labeled the sample), sorted by ``sample_id``.
        Samples labeled by a single reviewer never disagree and are left out.
    """
    labels = _check_labels(labels, label_names=None)
    return _disagreements(labels)


def remaining_errors(
    *, reviewed: int, errors: int, unreviewed: int, confidence: float = 0.95
) -> dict[str, Any]:
    """Estimate how many label errors remain among the flagged rows nobody reviewed yet.

    The error rate among reviewed flagged rows (``errors / reviewed``) is taken as the rate
    among the unreviewed ones. Its interval is the Wilson score interval: unlike the plain
    normal ("Wald") interval it stays inside [0, 1] and keeps close to its nominal coverage with
    small counts or rates near 0 or 1, which is the usual state early in a review. The
    expected remaining count is ``rate * unreviewed``, its interval the rate interval scaled the
    same way (this covers the uncertainty in the rate, not the chance variation of the
    unreviewed rows themselves).

    The estimate is unbiased only when the reviewed rows are a random sample of the flagged
    rows (the review page offers a random order for that). Reviewing worst-first (lowest label
    score first) looks at the likeliest errors first, so it over-estimates the rate and the
    remaining count.

    Parameters
    ----------
    reviewed
        Flagged rows reviewed so far.
    errors
        How many of those the reviewer found wrongly labeled (relabeled).
    unreviewed
        Flagged rows not reviewed yet.
    confidence
        Coverage of the interval, strictly between 0 and 1.

    Returns
    -------
    dict
        ``rate``, ``rate_low``, ``rate_high``, ``remaining``, ``remaining_low``,
        ``remaining_high`` (floats) and the inputs ``reviewed``, ``errors``, ``unreviewed``.
        With ``reviewed == 0`` the six estimates are None and ``note`` says why.

    Examples
    --------
    >>> r = remaining_errors(reviewed=100, errors=10, unreviewed=900)
    >>> round(r["remaining"]), round(r["remaining_low"]), round(r["remaining_high"])
    (90, 50, 157)
    """
    _check_counts(reviewed=reviewed, errors=errors, unreviewed=unreviewed, confidence=confidence)
    return _remaining(int(reviewed), int(errors), int(unreviewed), float(confidence))


# --- checks -------------------------------------------------------------------------------


def _check_labels(labels: pd.DataFrame, *, label_names: list[str] | None) -> pd.DataFrame:
    if not isinstance(labels, pd.DataFrame):
        raise ValueError(
            f"labels must be a DataFrame with columns {list(LABEL_COLUMNS)}, "
            f"got {type(labels).__name__}."
        )
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(
            f"labels lacks column(s) {missing}; pass one row per (sample_id, reviewer) with "
            f"columns {list(LABEL_COLUMNS)}."
        )
    labels = labels[list(LABEL_COLUMNS)].copy()
    if labels["reviewer"].isna().any() or labels["label"].isna().any():
        raise ValueError("labels has missing reviewer or label values; drop those rows first.")
    # Reviewer names are compared and sorted as text, so "1" and 1 cannot become two people.
    labels["reviewer"] = labels["reviewer"].astype(str)
    dup = labels.duplicated(["sample_id", "reviewer"])
    if dup.any():
        first = labels.loc[dup, ["sample_id", "reviewer"]].iloc[0].tolist()
        raise ValueError(
            f"labels has {int(dup.sum())} repeated (sample_id, reviewer) rows, e.g. {first}; "
            "keep only each reviewer's latest label per sample."
        )
    if label_names is not None:
        if len(label_names) < 2 or len(set(label_names)) != len(label_names):
            raise ValueError(
                f"label_names must hold 2 or more distinct classes, got {label_names}."
            )
        unknown = sorted(set(labels["label"]) - set(label_names), key=str)
        if unknown:
            raise ValueError(
                f"Labels {unknown[:5]} are not among label_names {list(label_names)}; "
                "pass every class a reviewer can choose."
            )
    return labels


def _check_counts(*, reviewed: Any, errors: Any, unreviewed: Any, confidence: Any) -> None:
    for name, value in (("reviewed", reviewed), ("errors", errors), ("unreviewed", unreviewed)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be a whole number of rows, got {value!r}.")
        if value < 0:
            raise ValueError(f"{name} must be 0 or more, got {value}.")
    if errors > reviewed:
        raise ValueError(
            f"errors ({errors}) exceeds reviewed ({reviewed}); errors counts only reviewed rows."
        )
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, numbers.Real)
        or not 0 < confidence < 1
    ):
        raise ValueError(
            f"confidence must lie strictly between 0 and 1 (e.g. 0.95), got {confidence!r}."
        )


# --- cores --------------------------------------------------------------------------------


def _agreement(labels: pd.DataFrame, names: list[str]) -> dict[str, pd.DataFrame]:
    wide = labels.pivot(index="sample_id", columns="reviewer", values="label")
    pairs, per_class = [], []
    for a, b in combinations(sorted(wide.columns), 2):
        both = wide[[a, b]].dropna()
        ya, yb = both[a].to_numpy(), both[b].to_numpy()
        n = len(both)
        share = float(np.mean(ya == yb)) if n else math.nan
        pairs.append((a, b, n, share, _kappa(ya, yb, names)))
        for name in names:
            per_class.append((a, b, name, n, _kappa(ya == name, yb == name, [False, True])))
    return {
        "pairs": _frame(pairs, PAIR_COLUMNS, {"n": int, "agreement": float, "kappa": float}),
        "per_class": _frame(per_class, PER_CLASS_COLUMNS, {"n": int, "kappa": float}),
    }


def _kappa(ya: np.ndarray, yb: np.ndarray, names: list) -> float:
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    if len(ya) < 2:
        return math.nan
    # Kappa is 0/0 when chance agreement is already certain (no variation to agree on); sklearn
    # warns and returns replace_undefined_by. NaN says "undefined" in the table without noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        value = cohen_kappa_score(ya, yb, labels=names, replace_undefined_by=math.nan)
    return float(value)


def _frame(rows: list[tuple], columns: tuple[str, ...], dtypes: dict[str, type]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    return frame.astype({c: t for c, t in dtypes.items()}) if rows else _empty(columns, dtypes)


def _empty(columns: tuple[str, ...], dtypes: dict[str, type]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, object)) for c in columns})


def _disagreements(labels: pd.DataFrame) -> pd.DataFrame:
    if labels.empty:
        return _empty(DISAGREEMENT_COLUMNS, {"n_reviewers": int})
    rows = []
    for sample_id, group in labels.sort_values("reviewer").groupby("sample_id", sort=True):
        if group["label"].nunique() > 1:
            given = dict(zip(group["reviewer"], group["label"], strict=True))
            rows.append((sample_id, given, len(given)))
    return _frame(rows, DISAGREEMENT_COLUMNS, {"n_reviewers": int})


def _remaining(reviewed: int, errors: int, unreviewed: int, confidence: float) -> dict[str, Any]:
    counts = {"reviewed": reviewed, "errors": errors, "unreviewed": unreviewed}
    if reviewed == 0:
        estimates = dict.fromkeys(
            ("rate", "rate_low", "rate_high", "remaining", "remaining_low", "remaining_high")
        )
        note = "Nothing reviewed yet: review some flagged rows (in random order) to estimate."
        return {**estimates, **counts, "note": note}
    rate = errors / reviewed
    low, high = _wilson(errors, reviewed, confidence)
    return {
        "rate": rate,
        "rate_low": low,
        "rate_high": high,
        "remaining": rate * unreviewed,
        "remaining_low": low * unreviewed,
        "remaining_high": high * unreviewed,
        **counts,
    }


def _wilson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # Clip: at p == 0 or 1 the bound is exactly 0 or 1 in theory but can miss by rounding.
    return max(0.0, center - half), min(1.0, center + half)
