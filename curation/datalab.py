"""More than label errors: near duplicates, outliers and the dataset's class-level noise.

* :func:`find_data_issues` runs cleanlab Datalab's ``near_duplicate`` and ``outlier`` checks on
  a precomputed k-nearest-neighbour graph (:func:`curation.neighbors.knn_graph`) and adds
  duplicate *groups* (connected sets of mutual near duplicates) and whether a group's members
  carry different labels.
* :func:`class_noise` estimates how many labels are wrong overall and which way
  ("given X, actually Y"), from cleanlab's calibrated confident joint.

The near-duplicate and outlier verdicts depend only on the graph, i.e. on the texts: after a
relabel only the conflict flags change, and the store recomputes them from the stored group
ids (``Workspace.duplicate_groups``, the side-by-side view) in milliseconds.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

ISSUE_TYPES = ("near_duplicate", "outlier")
# Datalab's defaults (NearDuplicateIssueManager.threshold, OutlierIssueManager
# .DEFAULT_THRESHOLDS["features"]), repeated so they can be recorded with each analysis.
NEAR_DUPLICATE_THRESHOLD = 0.13
OUTLIER_THRESHOLD = 0.37037
GROUP_COLUMNS = ("group", "row", "label", "group_size", "n_labels", "conflicting")


def find_data_issues(
    features: np.ndarray | None,
    labels: np.ndarray,
    pred_probs: np.ndarray | None = None,
    *,
    knn_graph: sparse.csr_matrix | None,
    label_names: Sequence[str],
    issue_types: Sequence[str] = ISSUE_TYPES,
    metric: str = "cosine",
    near_duplicate_threshold: float = NEAR_DUPLICATE_THRESHOLD,
    outlier_threshold: float = OUTLIER_THRESHOLD,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Flag near duplicates and outliers among the rows, and duplicate groups with mixed labels.

    Both checks are cleanlab Datalab's own (``Datalab.find_issues(knn_graph=...)``), run on the
    given graph:

    * near duplicate: some neighbour closer than ``near_duplicate_threshold`` times the median
      nearest-neighbour distance; score ``1 - exp(-d / median)`` of the nearest distance ``d``
      (0 = exact duplicate, low = likely duplicate).
    * outlier: mean distance to the ``k`` neighbours above ``Q3 + (1 / outlier_threshold - 1)
      * IQR`` of those means; score ``exp(-mean / median mean)`` (low = more outlying).

    Parameters
    ----------
    features
        ``(n, d)`` embeddings; only used to build the graph when ``knn_graph`` is None.
    labels
        ``(n,)`` integer class ids ``0..K-1`` as currently given (for the conflict flags).
    pred_probs
        Not used by these checks (they read the graph); accepted so the call mirrors
        ``Datalab.find_issues`` and checked for shape when given.
    knn_graph
        The cached graph from :func:`curation.neighbors.knn_graph` (rows in the same order as
        ``labels``); ``None`` builds one from ``features`` (slow at scale: cache it).
    label_names
        The K class names, in id order.
    issue_types
        Any of ``"near_duplicate"``, ``"outlier"``.
    metric
        The metric the graph was built with (Datalab uses it to correct float round-off).
    near_duplicate_threshold, outlier_threshold
        Datalab's ``threshold`` of each check; the defaults are Datalab's.

    Returns
    -------
    issues : pd.DataFrame
        One row per input row (index 0..n-1): ``nearest_neighbor`` (row id) and
        ``nearest_distance`` always; for ``near_duplicate`` ``is_near_duplicate``,
        ``near_duplicate_score``, ``near_duplicate_group`` (group id, -1 if none; groups are
        numbered by their first row) and ``near_duplicate_conflict`` (the group's members carry
        different labels); for ``outlier`` ``is_outlier`` and ``outlier_score``.
    summary : dict
        JSON-friendly: ``n``, ``issue_types`` and per type ``n_issues`` and its thresholds;
        for ``near_duplicate`` also ``n_groups``, ``n_conflicting_groups``,
        ``rows_in_conflicting_groups``, ``largest_group``, ``radius`` (the distance cut-off).
    """
    types = _check_issue_types(issue_types)
    labels = _check_labels(labels, label_names)
    n = len(labels)
    graph = _resolve_graph(features, knn_graph, n=n, metric=metric)
    if pred_probs is not None:
        check_pred_probs(pred_probs, n=n, k=len(label_names))
    _check_threshold("near_duplicate_threshold", near_duplicate_threshold, upper=None)
    _check_threshold("outlier_threshold", outlier_threshold, upper=1.0)
    lab = _run_datalab(
        graph,
        types,
        metric=metric,
        near_duplicate_threshold=near_duplicate_threshold,
        outlier_threshold=outlier_threshold,
    )
    found = lab.get_issues()
    k = graph.nnz // n
    nearest = graph.indices.reshape(n, k)[:, 0]
    issues = pd.DataFrame(
        {"nearest_neighbor": nearest.astype(np.int64), "nearest_distance": graph.data[::k]}
    )
    summary: dict[str, Any] = {"n": n, "issue_types": list(types), "k": k, "metric": metric}
    if "near_duplicate" in types:
        info = lab.get_info("near_duplicate")
        groups = _groups_from_sets(info["near_duplicate_sets"], n)
        conflict = _conflicts(groups, labels)
        issues["is_near_duplicate"] = found["is_near_duplicate_issue"].to_numpy(bool)
        issues["near_duplicate_score"] = found["near_duplicate_score"].to_numpy(float)
        issues["near_duplicate_group"] = groups
        issues["near_duplicate_conflict"] = conflict
        sizes = np.bincount(groups[groups >= 0]) if (groups >= 0).any() else np.zeros(0, int)
        median = float(info["median_distance_to_nearest_neighbor"])
        summary["near_duplicate"] = {
            "n_issues": int(issues["is_near_duplicate"].sum()),
            "n_groups": int(len(sizes)),
            "largest_group": int(sizes.max()) if len(sizes) else 0,
            "n_conflicting_groups": int(len(np.unique(groups[conflict]))),
            "rows_in_conflicting_groups": int(conflict.sum()),
            "threshold": float(near_duplicate_threshold),
            "median_nn_distance": median,
            "radius": float(near_duplicate_threshold * median),
        }
    if "outlier" in types:
        info = lab.get_info("outlier")
        issues["is_outlier"] = found["is_outlier_issue"].to_numpy(bool)
        issues["outlier_score"] = found["outlier_score"].to_numpy(float)
        summary["outlier"] = {
            "n_issues": int(issues["is_outlier"].sum()),
            "threshold": float(outlier_threshold),
            "mean_distance_cutoff": float(info["issue_threshold"]),
        }
    return issues, summary


def _check_issue_types(issue_types: Sequence[str]) -> tuple[str, ...]:
    if isinstance(issue_types, str):
        issue_types = [issue_types]
    types = tuple(dict.fromkeys(issue_types))
    unknown = [t for t in types if t not in ISSUE_TYPES]
    if unknown or not types:
        raise ValueError(
            f"Unknown issue type(s) {unknown or list(types)}; valid: {', '.join(ISSUE_TYPES)}."
        )
    return types


def _check_labels(labels: np.ndarray, label_names: Sequence[str]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D array of integer class ids, got dtype {labels.dtype} and "
            f"shape {labels.shape}; map names to ids in label_names order."
        )
    if len(label_names) < 1 or len(set(label_names)) != len(label_names):
        raise ValueError(f"label_names must be distinct class names, got {list(label_names)}.")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(label_names)):
        raise ValueError(f"labels must lie in 0..{len(label_names) - 1} (one per label name).")
    return labels


def check_pred_probs(pred_probs: np.ndarray, *, n: int, k: int) -> np.ndarray:
    """``pred_probs`` as float64 ``(n, k)`` probabilities, or a ValueError naming the fix."""
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.shape != (n, k):
        raise ValueError(
            f"pred_probs must be (n, K) = ({n}, {k}) (one column per label name), "
            f"got {probs.shape}."
        )
    if (probs < 0).any() or not np.allclose(probs.sum(1), 1.0, atol=1e-4):
        raise ValueError("pred_probs rows must be probabilities (non-negative, summing to 1).")
    return probs


def _check_threshold(name: str, value: float, *, upper: float | None) -> None:
    if not isinstance(value, int | float) or value < 0 or (upper is not None and value > upper):
        bound = f"0 to {upper}" if upper is not None else "0 or more"
        raise ValueError(f"{name} must be a number from {bound}, got {value!r}.")


def _resolve_graph(
    features: np.ndarray | None, graph: sparse.csr_matrix | None, *, n: int, metric: str
) -> sparse.csr_matrix:
    from curation.neighbors import METRICS, graph_arrays
    from curation.neighbors import knn_graph as build

    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; valid: {', '.join(METRICS)}.")
    if graph is None:
        if features is None:
            raise ValueError("Pass knn_graph (cached, from curation.neighbors) or features.")
        if len(features) != n:
            raise ValueError(f"features has {len(features)} rows but labels has {n}.")
        return build(features, metric=metric)
    if graph.shape[0] != n:
        raise ValueError(
            f"knn_graph has {graph.shape[0]} rows but labels has {n}; the graph belongs to "
            "other texts, rebuild it."
        )
    graph_arrays(graph)  # checks the format cleanlab relies on (k entries in every row)
    return graph


def _run_datalab(
    graph: sparse.csr_matrix,
    types: tuple[str, ...],
    *,
    metric: str,
    near_duplicate_threshold: float,
    outlier_threshold: float,
) -> Any:
    from cleanlab import Datalab

    params = {
        "near_duplicate": {"metric": metric, "threshold": near_duplicate_threshold},
        "outlier": {"metric": metric, "threshold": outlier_threshold},
    }
    # No labels in the Datalab: building its label column iterates a datasets.Dataset row by
    # row (~10 s at 100k) and neither check reads labels when given a graph.
    lab = Datalab(data={"row": np.arange(graph.shape[0])}, verbosity=0)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # Datalab prints, rather than raises, a failed check
        lab.find_issues(knn_graph=graph, issue_types={t: params[t] for t in types})
    missing = [t for t in types if f"is_{t}_issue" not in lab.get_issues()]
    if missing:
        raise RuntimeError(f"cleanlab's {missing} check failed: {out.getvalue().strip()}")
    return lab


def _groups_from_sets(sets: list[np.ndarray], n: int) -> np.ndarray:
    """Connected components of Datalab's near-duplicate sets: group id per row, -1 if alone."""
    from scipy.sparse.csgraph import connected_components

    sizes = np.fromiter((len(s) for s in sets), dtype=np.int64, count=n)
    if not sizes.any():
        return np.full(n, -1, dtype=np.int64)
    rows = np.repeat(np.arange(n), sizes)
    cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in sets])
    adjacency = sparse.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    n_components, component = connected_components(adjacency, directed=False)
    member = sizes > 0
    # Number the groups 0.. by their first row, so ids are stable for the same graph.
    ids, firsts = np.unique(component[member], return_index=True)
    renumber = np.full(n_components, -1, dtype=np.int64)
    renumber[ids[np.argsort(firsts)]] = np.arange(len(ids))
    groups = np.full(n, -1, dtype=np.int64)
    groups[member] = renumber[component[member]]
    return groups


def _conflicts(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: its duplicate group holds more than one distinct label."""
    member = groups >= 0
    if not member.any():
        return np.zeros(len(groups), dtype=bool)
    frame = pd.DataFrame({"g": groups[member], "y": labels[member]})
    n_labels = frame.groupby("g")["y"].transform("nunique").to_numpy()
    out = np.zeros(len(groups), dtype=bool)
    out[member] = n_labels > 1
    return out


def class_noise(
    labels: np.ndarray, pred_probs: np.ndarray, *, label_names: Sequence[str]
) -> dict[str, Any]:
    """Dataset health: how many labels look wrong, per class, and which way.

    From cleanlab's calibrated confident joint (``cleanlab.count.estimate_joint``): the
    estimated joint distribution of given and true labels, scaled to row counts. Its
    off-diagonal mass is cleanlab's ``num_label_issues(estimation_method=
    "off_diagonal_calibrated")``; the per-class figures are those of
    ``cleanlab.dataset.rank_classes_by_label_quality`` (what ``health_summary`` prints).

    Parameters
    ----------
    labels
        ``(n,)`` integer class ids ``0..K-1`` as given.
    pred_probs
        ``(n, K)`` out-of-sample probabilities.
    label_names
        The K class names, in id order.

    Returns
    -------
    dict
        ``n``; ``num_label_issues`` (estimated wrong labels) and ``noise_rate`` (their share);
        ``health_score`` (``1 - noise_rate``); ``confusion``: DataFrame, index = given label,
        columns = actual label, estimated row counts (rows sum to the given-label counts);
        ``noise_matrix``: the same row-normalised, ``P(actual | given)``; ``per_class``:
        DataFrame with one row per class (``label``, ``given``, ``label_issues`` = labeled as
        it but actually another, ``inverse_label_issues`` = actually it but labeled another,
        ``label_noise``, ``inverse_label_noise``, ``label_quality``); ``top_pairs``: list of
        ``{"given", "actual", "count", "rate"}`` for the off-diagonal cells with at least one
        estimated row, most first.
    """
    from cleanlab.count import estimate_joint

    labels = _check_labels(labels, label_names)
    n, k = len(labels), len(label_names)
    if n == 0:
        raise ValueError("class_noise needs at least one row.")
    probs = check_pred_probs(pred_probs, n=n, k=k)
    names = list(label_names)
    joint = estimate_joint(labels, probs)
    counts = joint * n
    given = np.bincount(labels, minlength=k)
    n_issues = int(np.rint(n * (1.0 - np.trace(joint))))
    confusion = pd.DataFrame(
        counts,
        index=pd.Index(names, name="given"),
        columns=pd.Index(names, name="actual"),
    )
    row_sums = counts.sum(1, keepdims=True)
    noise_matrix = confusion / np.where(row_sums > 0, row_sums, 1.0)
    off_given = counts.sum(1) - np.diag(counts)
    off_true = counts.sum(0) - np.diag(counts)
    true_sums = counts.sum(0)
    per_class = pd.DataFrame(
        {
            "label": names,
            "given": given,
            "label_issues": np.rint(off_given).astype(np.int64),
            "inverse_label_issues": np.rint(off_true).astype(np.int64),
            "label_noise": off_given / np.where(row_sums[:, 0] > 0, row_sums[:, 0], 1.0),
            "inverse_label_noise": off_true / np.where(true_sums > 0, true_sums, 1.0),
        }
    )
    per_class["label_quality"] = 1.0 - per_class["label_noise"]
    pairs = [
        {"given": names[i], "actual": names[j], "count": int(round(counts[i, j])),
         "rate": float(noise_matrix.iat[i, j])}
        for i in range(k)
        for j in range(k)
        if i != j and round(counts[i, j]) >= 1
    ]  # fmt: skip
    pairs.sort(key=lambda p: (-p["count"], p["given"], p["actual"]))
    return {
        "n": n,
        "num_label_issues": n_issues,
        "noise_rate": n_issues / n,
        "health_score": 1.0 - n_issues / n,
        "confusion": confusion,
        "noise_matrix": noise_matrix,
        "per_class": per_class,
        "top_pairs": pairs,
    }
