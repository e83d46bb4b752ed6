"""Consensus labels and annotator quality when several people labeled the same rows (CROWDLAB).

:func:`annotator_consensus` wraps ``cleanlab.multiannotator.get_label_quality_multiannotator``.
With out-of-sample ``pred_probs`` it is CROWDLAB proper: a consensus label per row that weighs
each annotator by how well they agree with the others and the model by how well it agrees with
the annotators, a quality score for that consensus, and a quality score per annotator.

Without ``pred_probs`` there is no model to weigh, and inventing one from the annotations would
count the annotators twice. The function then says so and uses cleanlab's model-free setting
instead: majority vote (ties broken by the rarer class, then by the annotators who agree more
with the others — cleanlab's own tie-breaks) and ``quality_method="agreement"`` (consensus
quality = share of a row's annotators who chose the consensus; annotator quality = agreement
with the consensus on rows someone else also labeled). The best ``pred_probs`` to pass are
those of :func:`curation.probs.out_of_sample_probs` fitted on the majority-vote labels, as in
cleanlab's CROWDLAB tutorial.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from curation.datalab import check_pred_probs

ROW_COLUMNS = ("consensus_label", "consensus_quality", "annotator_agreement", "num_annotations")
ANNOTATOR_COLUMNS = ("annotator", "quality", "agreement_with_consensus", "num_labeled")


def annotator_consensus(
    annotator_labels: pd.DataFrame,
    *,
    label_names: Sequence[str],
    pred_probs: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Consensus label per row and quality per annotator, from several annotators' labels.

    Parameters
    ----------
    annotator_labels
        One column per annotator (the column name is the annotator), one row per sample; cells
        are label names from ``label_names`` or missing (``None``/``NaN``/``pd.NA``) where that
        annotator did not label the row. At least two annotator columns.
    label_names
        The K class names, in id order.
    pred_probs
        ``(n, K)`` out-of-sample model probabilities for the same rows (recommended: CROWDLAB
        weighs the model in). ``None``: majority vote with agreement-based quality (see the
        module docstring); the returned frames' ``attrs["method"]`` says which was used.

    Returns
    -------
    rows : pd.DataFrame
        Same index as ``annotator_labels``: ``consensus_label`` (name; ``None`` for rows nobody
        labeled), ``consensus_quality`` (0..1, low = doubtful consensus; NaN for unlabeled rows),
        ``annotator_agreement`` (share of the row's annotators who chose the consensus) and
        ``num_annotations``.
    annotators : pd.DataFrame
        One row per annotator, worst quality first: ``annotator``, ``quality`` (0..1),
        ``agreement_with_consensus``, ``num_labeled``.

    Raises
    ------
    ValueError
        Fewer than two annotator columns, a label outside ``label_names`` (the message names
        the values and columns), an annotator with no labels, no row labeled by two or more
        annotators, or ``pred_probs`` of the wrong shape.
    """
    names = list(label_names)
    codes = _encode(annotator_labels, names)
    counts = (~np.isnan(codes)).sum(1)
    labeled = counts > 0
    probs = None if pred_probs is None else check_pred_probs(pred_probs, n=len(codes), k=len(names))
    if probs is None:
        method = "majority_vote+agreement"
        probs = consensus_pred_probs_fallback(codes[labeled], n_classes=len(names))
        options = {"consensus_method": "majority_vote", "quality_method": "agreement"}
    else:
        method = "crowdlab"
        probs = probs[labeled]
        options = {"consensus_method": "best_quality", "quality_method": "crowdlab"}
    result = _run_cleanlab(codes[labeled], probs, annotator_labels.columns, options)
    rows = _row_frame(result["label_quality"], labeled, counts, annotator_labels.index, names)
    annotators = _annotator_frame(result["annotator_stats"])
    rows.attrs["method"] = annotators.attrs["method"] = method
    return rows, annotators


def consensus_pred_probs_fallback(codes: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Uniform probabilities: the stand-in model when there is none, carrying no information.

    cleanlab's multi-annotator functions need a ``(n, K)`` array even in their model-free
    setting (``quality_method="agreement"``), where it only sizes the classes and breaks
    majority-vote ties; uniform rows leave every tie to cleanlab's next, annotation-based,
    tie-break instead of pretending a model prefers a class.
    """
    codes = np.asarray(codes, dtype=float)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D (rows, annotators) array, got {codes.shape}.")
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer of at least 2, got {n_classes!r}.")
    return np.full((len(codes), n_classes), 1.0 / n_classes)


def _encode(annotator_labels: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Label names -> float class ids, NaN where missing; every problem named in the error."""
    if not isinstance(annotator_labels, pd.DataFrame):
        raise ValueError(
            "annotator_labels must be a DataFrame with one column per annotator, got "
            f"{type(annotator_labels).__name__}."
        )
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"label_names must be at least two distinct names, got {names}.")
    columns = list(annotator_labels.columns)
    if len(columns) < 2:
        raise ValueError(
            f"Need at least two annotator columns, got {len(columns)} ({columns}); with one "
            "annotator use curation.issues.score_labels instead."
        )
    if len(set(map(str, columns))) != len(columns):
        raise ValueError(f"Annotator column names must be distinct, got {columns}.")
    index = {name: i for i, name in enumerate(names)}
    codes = np.full(annotator_labels.shape, np.nan)
    bad: dict[str, list[str]] = {}
    for j, column in enumerate(columns):
        values = annotator_labels.iloc[:, j]
        present = values.notna().to_numpy()
        mapped = values[present].map(index)
        unknown = sorted({repr(v) for v in values[present][mapped.isna()]})
        if unknown:
            bad[str(column)] = unknown[:5]
        codes[present, j] = mapped.to_numpy(dtype=float)
    if bad:
        detail = "; ".join(f"column {c!r}: {', '.join(v)}" for c, v in bad.items())
        raise ValueError(f"Labels not among label_names {names}: {detail}.")
    empty = [str(c) for c, has in zip(columns, (~np.isnan(codes)).any(0), strict=True) if not has]
    if empty:
        raise ValueError(f"Annotator column(s) {empty} hold no labels; drop them.")
    if not ((~np.isnan(codes)).sum(1) >= 2).any():
        raise ValueError(
            "No row was labeled by two or more annotators, so annotators cannot be compared; "
            "consensus needs overlapping annotations."
        )
    return codes


def _run_cleanlab(codes: np.ndarray, probs: np.ndarray, columns: pd.Index, options: dict) -> dict:
    from cleanlab.multiannotator import get_label_quality_multiannotator

    frame = pd.DataFrame(codes, columns=[str(c) for c in columns])
    with warnings.catch_warnings():
        # "Annotators do not agree on any example" and similar: the returned scores say it.
        warnings.simplefilter("ignore")
        return get_label_quality_multiannotator(
            frame,
            probs,
            **options,
            return_detailed_quality=options["quality_method"] == "crowdlab",
            verbose=False,
        )


def _row_frame(
    quality: pd.DataFrame,
    labeled: np.ndarray,
    counts: np.ndarray,
    index: pd.Index,
    names: list[str],
) -> pd.DataFrame:
    n = len(labeled)
    consensus = np.full(n, None, dtype=object)
    consensus[labeled] = np.asarray(names, dtype=object)[quality["consensus_label"].to_numpy(int)]
    score = np.full(n, np.nan)
    score[labeled] = quality["consensus_quality_score"].to_numpy(float)
    agreement = np.full(n, np.nan)
    agreement[labeled] = quality["annotator_agreement"].to_numpy(float)
    return pd.DataFrame(
        {
            "consensus_label": consensus,
            "consensus_quality": score,
            "annotator_agreement": agreement,
            "num_annotations": counts.astype(np.int64),
        },
        index=index,
    )


def _annotator_frame(stats: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "annotator": stats.index.astype(str),
            "quality": stats["annotator_quality"].to_numpy(float),
            "agreement_with_consensus": stats["agreement_with_consensus"].to_numpy(float),
            "num_labeled": stats["num_examples_labeled"].to_numpy(np.int64),
        }
    )
    return frame.sort_values(["quality", "annotator"]).reset_index(drop=True)
