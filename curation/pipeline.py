"""Analyse a workspace: embeddings (cached) -> neighbour graph (cached) -> out-of-sample
probabilities (one of several methods) -> cleanlab label scores, outliers, near-duplicates,
per-class noise and, with several annotators, CROWDLAB consensus.

This is the one place that joins the store with the curation functions; the UI's background job
and ``cli.py analyze`` both call :func:`analyze` / :func:`analyze_workspace`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from curation.issues import score_labels, summarize
from curation.probs import EmbeddingCache, EncoderSettings, embed_texts
from data.prepare import annotator_labels

Progress = Callable[[dict[str, Any]], None]

# Neighbours kept per row: the ``neighbors`` probability component votes over 30, Datalab's
# checks use the first 10 (their default), the review card shows the first 5.
KNN_K = 30
DATALAB_K = 10
# Methods that use the text (TF-IDF) features.
_TEXT_METHODS = ("ensemble", "text", "finetune+ensemble")


class Cancelled(Exception):
    """Raised inside a job when the user asked to cancel it."""


@dataclass
class AnalysisResult:
    """Everything one analysis produced.

    ``rows`` is in input order with the columns ``is_label_issue``, ``label_score``,
    ``given_label``, ``predicted_label``, ``predicted_prob``, ``given_prob``, ``is_outlier``,
    ``outlier_score``, ``dup_group``, ``dup_conflict`` and, with annotators,
    ``consensus_label`` and ``consensus_quality``. ``summary`` holds the counts, the dataset's
    health (per-class noise), annotator qualities, the method's settings and the timings.
    """

    rows: pd.DataFrame
    summary: dict[str, Any]
    knn: tuple[np.ndarray, np.ndarray] | None = None
    probs: np.ndarray | None = field(default=None, repr=False)


def _label_ids(labels: list[str], label_names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"Labels {unknown[:5]} are not among label_names {label_names}.")
    return np.array([index[label] for label in labels], dtype=int)


def analyze(
    texts: list[str],
    labels: list[str],
    *,
    label_names: list[str],
    method: str | None = None,
    settings: EncoderSettings | None = None,
    n_folds: int = 5,
    seed: int = 0,
    cache: EmbeddingCache | None = None,
    knn: tuple[np.ndarray, np.ndarray] | None = None,
    annotators: pd.DataFrame | None = None,
    issue_types: tuple[str, ...] = ("near_duplicate", "outlier"),
    method_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AnalysisResult:
    """Score every label, and find outliers and near-duplicates.

    Parameters
    ----------
    texts, labels
        The rows' texts and their current labels (names from ``label_names``).
    method
        Where the out-of-sample probabilities come from: one of
        :data:`curation.methods.METHODS` (default :data:`curation.methods.DEFAULT_METHOD`).
    knn
        A precomputed neighbour graph ``(indices, distances)`` of these texts under
        ``settings``' encoder; it depends on the texts only, so callers cache it across
        re-analyses. Computed when ``None``.
    annotators
        One column per annotator (label names, ``None`` where missing): adds CROWDLAB's
        consensus label and quality per row and a quality per annotator.
    issue_types
        Which of ``"near_duplicate"`` and ``"outlier"`` to check besides label errors.
    method_options
        Passed to :func:`curation.methods.method_probs` (e.g. the fine-tuning row cap).
    """
    from curation.methods import DEFAULT_METHOD, method_probs

    method = method or DEFAULT_METHOD
    settings = settings or EncoderSettings()
    y = _label_ids(labels, label_names)
    report = progress or (lambda _info: None)

    def tick(info: dict[str, Any]) -> None:
        report(info)
        if should_stop is not None and should_stop():
            raise Cancelled()

    timings: dict[str, Any] = {"rows": len(texts)}
    t0 = time.perf_counter()
    features = embed_texts(
        texts,
        settings=settings,
        cache=cache,
        progress=lambda done, total: tick({"stage": "embedding", "done": done, "total": total}),
    )
    timings["embed_seconds"] = _since(t0)

    t = time.perf_counter()
    if knn is None:
        tick({"stage": "neighbours", "done": 0, "total": 1})
        knn = nearest_neighbours(features, k=min(KNN_K, len(texts) - 1))
    timings["knn_seconds"] = _since(t)

    t = time.perf_counter()
    text_matrix = _text_matrix(texts, cache, tick) if method in _TEXT_METHODS else None
    timings["text_features_seconds"] = _since(t)

    tick({"stage": f"probabilities ({method})", "done": 0, "total": n_folds})
    t = time.perf_counter()
    probs, method_info = method_probs(
        texts,
        y,
        method=method,
        features=features,
        n_classes=len(label_names),
        n_folds=n_folds,
        seed=seed,
        text_matrix=text_matrix,
        neighbors=knn[0],
        label_names=label_names,
        progress=lambda info: tick({"stage": f"probabilities ({method})", **info}),
        should_stop=should_stop,
        **(method_options or {}),
    )
    timings["fit_seconds"] = _since(t)

    tick({"stage": "cleanlab", "done": 0, "total": 1})
    t = time.perf_counter()
    scores = score_labels(y, probs, label_names=label_names)
    timings["score_seconds"] = _since(t)

    t = time.perf_counter()
    rows, data_summary = _data_issues(features, y, probs, knn, label_names, issue_types)
    rows = pd.concat([scores.reset_index(drop=True), rows], axis=1)
    health = _health(y, probs, label_names)
    timings["issues_seconds"] = _since(t)

    summary: dict[str, Any] = {
        **summarize(scores),
        **data_summary,
        "health": health,
        "method": method,
        "method_info": method_info,
    }
    if annotators is not None and annotators.shape[1]:
        tick({"stage": "consensus", "done": 0, "total": 1})
        t = time.perf_counter()
        per_row, per_annotator = _consensus(annotators, probs, label_names)
        rows["consensus_label"] = per_row["consensus_label"].to_numpy()
        rows["consensus_quality"] = per_row["consensus_quality"].to_numpy()
        summary["annotators"] = per_annotator.to_dict("records")
        summary["consensus_differs"] = int((rows["consensus_label"] != rows["given_label"]).sum())
        timings["consensus_seconds"] = _since(t)
    timings["total_seconds"] = _since(t0)
    summary["timings"] = timings
    return AnalysisResult(rows=rows, summary=summary, knn=knn, probs=probs)


def _text_matrix(texts: list[str], cache: Any, tick: Progress) -> np.ndarray:
    """The label-independent text features, from the workspace's array cache when it has them."""
    from curation.text_features import text_features, text_features_key

    if not hasattr(cache, "get_array"):
        return text_features(texts, progress=tick)
    key = "text-" + text_features_key(texts)
    matrix = cache.get_array(key)
    if matrix is None or len(matrix) != len(texts):
        matrix = text_features(texts, progress=tick)
        cache.put_array(key, matrix)
    return matrix


def _since(t: float) -> float:
    return round(time.perf_counter() - t, 3)


def nearest_neighbours(features: np.ndarray, *, k: int = KNN_K) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, distances)``, each ``(n, k)``: every row's ``k`` nearest other rows by
    cosine distance, nearest first."""
    from curation.neighbors import knn_graph

    graph = knn_graph(features, k=k)
    n = graph.shape[0]
    indices = graph.indices.reshape(n, k).astype(np.int64)
    distances = graph.data.reshape(n, k).astype(np.float32)
    return indices, distances


def knn_csr(knn: tuple[np.ndarray, np.ndarray]) -> Any:
    """The ``(indices, distances)`` pair as the sorted CSR graph cleanlab's Datalab takes."""
    from scipy.sparse import csr_matrix

    indices, distances = knn
    indices, distances = indices[:, :DATALAB_K], distances[:, :DATALAB_K]
    n, k = indices.shape
    return csr_matrix(
        (distances.ravel().astype(np.float64), indices.ravel(), np.arange(0, n * k + 1, k)),
        shape=(n, n),
    )


def _data_issues(features, y, probs, knn, label_names, issue_types):
    from curation.datalab import find_data_issues

    frame, summary = find_data_issues(
        features,
        y,
        probs,
        knn_graph=knn_csr(knn),
        label_names=label_names,
        issue_types=tuple(issue_types),
    )
    n = len(y)
    out = pd.DataFrame(
        {
            "is_outlier": frame.get("is_outlier", pd.Series(np.zeros(n, bool))).to_numpy(),
            "outlier_score": frame.get("outlier_score", pd.Series(np.full(n, np.nan))).to_numpy(),
            "dup_group": _groups(frame.get("near_duplicate_group"), n),
            "dup_conflict": frame.get(
                "near_duplicate_conflict", pd.Series(np.zeros(n, bool))
            ).to_numpy(),
        }
    )
    return out, summary


def _groups(column: pd.Series | None, n: int) -> pd.array:
    if column is None:
        return pd.array([pd.NA] * n, dtype="Int64")
    values = pd.Series(column.to_numpy(), dtype="Int64")
    return values.mask(values < 0).array


def _health(y: np.ndarray, probs: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    from curation.datalab import class_noise

    health = class_noise(y, probs, label_names=label_names)
    # JSON-able: the summary is stored as JSON.
    return {
        k: (v.to_dict("split") if isinstance(v, pd.DataFrame) else v) for k, v in health.items()
    }


def _consensus(annotators: pd.DataFrame, probs: np.ndarray, label_names: list[str]):
    from curation.multiannotator import annotator_consensus

    return annotator_consensus(annotators, label_names=label_names, pred_probs=probs)


def analyze_workspace(
    ws: Any,
    *,
    method: str | None = None,
    settings: EncoderSettings | None = None,
    n_folds: int = 5,
    seed: int = 0,
    method_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Analyse the workspace's *current* labels (all rows, all splits); returns the analysis id.

    Excluded rows are scored too (a reviewer may want to see why), but they do not change
    anything else. The label version (last event id) is read before the labels, so the record
    says exactly which labels were scored. The neighbour graph is stored once per encoder and
    reused: it does not depend on labels.
    """
    from curation.methods import DEFAULT_METHOD

    method = method or DEFAULT_METHOD
    settings = settings or EncoderSettings()
    label_version = ws.label_version()
    info = ws.info()
    annotator_columns = list(info.get("annotator_columns") or [])
    rows = ws.samples(with_meta=bool(annotator_columns))
    annotators = None
    if annotator_columns:
        # The same normalisation as at import, so votes match the label names.
        annotators = annotator_labels(
            pd.DataFrame({c: [m.get(c) for m in rows["meta"]] for c in annotator_columns}),
            annotator_columns,
        )
    model_key = settings.key()
    knn = ws.get_knn(model_key)
    result = analyze(
        rows["text"].tolist(),
        rows["label"].tolist(),
        label_names=ws.label_names,
        method=method,
        settings=settings,
        n_folds=n_folds,
        seed=seed,
        cache=ws,
        knn=knn,
        annotators=annotators,
        method_options=method_options,
        progress=progress,
        should_stop=should_stop,
    )
    if knn is None and result.knn is not None:
        ws.put_knn(model_key, *result.knn)
    scores = result.rows
    results = pd.DataFrame(
        {
            "sample_id": rows["id"].to_numpy(),
            "label_used": scores["given_label"].to_numpy(),
            "predicted_label": scores["predicted_label"].to_numpy(),
            "predicted_prob": scores["predicted_prob"].to_numpy(),
            "given_prob": scores["given_prob"].to_numpy(),
            "label_quality": scores["label_score"].to_numpy(),
            "is_label_issue": scores["is_label_issue"].to_numpy(),
        }
    )
    for column in ("is_outlier", "outlier_score", "dup_group", "dup_conflict"):
        results[column] = scores[column].to_numpy()
    for column in ("consensus_label", "consensus_quality"):
        if column in scores:
            results[column] = scores[column].to_numpy()
    summary = {**result.summary, "encoder": settings.describe()}
    return ws.save_analysis(
        results,
        method=method,
        settings={
            **asdict(settings),
            "model_key": model_key,
            "method": method,
            "n_folds": n_folds,
            "seed": seed,
            **(method_options or {}),
        },
        label_version=label_version,
        summary=summary,
    )
