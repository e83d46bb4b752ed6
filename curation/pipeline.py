"""Analyse a workspace: embeddings (cached) -> neighbour graph (cached) -> out-of-sample
probabilities (one of several methods) -> cleanlab label scores, outliers, near-duplicates,
per-class noise and, with several annotators, CROWDLAB consensus.

This is the one place that joins the store with the curation functions; the UI's background job
and ``cli.py analyze`` both call :func:`analyze` / :func:`analyze_workspace`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from curation.issues import score_labels, summarize
from data.prepare import annotator_labels, lonely_labels
from data.records import AnalysisSummary
from runtime.encoder import EmbeddingCache, EncoderSettings, embed_texts
from runtime.progress import Cancelled, Progress, RateMeter, poller, stoppable

# Neighbours kept per row: the ``neighbors`` probability component votes over 30, Datalab's
# checks use the first 10 (their default), the review card shows the first 5.
KNN_K = 30
DATALAB_K = 10
# From this many rows on, embeddings are held in float16: 1.36M x 384 float32 vectors alone
# would be 2.1 GB. Below it results stay bit-for-bit those of float32.
HALF_PRECISION_ROWS = 250_000


@dataclass
class AnalysisResult:
    """Everything one analysis produced.

    ``rows`` is in input order with the columns ``is_label_issue``, ``label_quality``,
    ``analyzed_label``, ``predicted_label``, ``predicted_prob``, ``analyzed_prob``, ``is_outlier``,
    ``outlier_score``, ``dup_group``, ``dup_conflict`` and, with annotators,
    ``consensus_label`` and ``consensus_quality``. ``summary`` holds the counts, the dataset's
    health (per-class noise), annotator qualities, the method's settings and the timings
    (:class:`data.records.AnalysisSummary`; ``encoder`` is left for the caller to fill in).
    """

    rows: pd.DataFrame
    summary: AnalysisSummary
    knn: tuple[np.ndarray, np.ndarray] | None = None
    probs: np.ndarray | None = field(default=None, repr=False)


def _label_ids(labels: list[str], label_names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"Labels {unknown[:5]} are not among label_names {label_names}.")
    _refuse_lonely_labels(labels)
    return np.array([index[label] for label in labels], dtype=int)


def _refuse_lonely_labels(labels: list[str]) -> None:
    """Refuse, naming them, labels with a single row (the import's own rule, ``lonely_labels``):
    no fold model could learn them out-of-sample. Runs before any embedding, so the user learns
    it in seconds."""
    lonely = lonely_labels(labels)
    if lonely:
        shown = ", ".join(repr(name) for name in lonely[:10])
        raise ValueError(
            f"The label(s) {shown} have a single row, which no model can learn from "
            "out-of-sample, so the analysis cannot score them. Relabel that row (Review page, "
            "filter by class) or add rows of that class to the file, then analyse again."
        )


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
    knn: tuple[np.ndarray, np.ndarray] | Callable[[], Any] | None = None,
    annotators: pd.DataFrame | None = None,
    issue_types: tuple[str, ...] = ("near_duplicate", "outlier"),
    method_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_knn: Callable[[np.ndarray, np.ndarray], None] | None = None,
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
        re-analyses. Computed when ``None``. May be a function returning the graph (or
        ``None``), called once the embeddings are done, so a stored graph (0.5 GB at a
        million rows) is not held while embedding.
    annotators
        One column per annotator (label names, ``None`` where missing): adds CROWDLAB's
        consensus label and quality per row and a quality per annotator.
    issue_types
        Which of ``"near_duplicate"`` and ``"outlier"`` to check besides label errors.
    method_options
        Passed to :func:`curation.methods.method_probs` (e.g. the fine-tuning row cap).
    progress
        Called with ``{"stage", "done", "total", "unit"}`` events, plus ``rate`` (units per
        second) and ``eta_seconds`` once measurable: per batch while embedding, per block of
        the neighbour search, per step of the fits.
    should_stop
        Polled (at most every 0.2 s) between batches, blocks and steps; when it returns True
        the analysis stops within about a second: :class:`runtime.progress.Cancelled` is
        raised. Embeddings already computed stay in ``cache``.
    on_knn
        Called with a newly built neighbour graph ``(indices, distances)`` right away, so a
        caller can store it before the later stages run.
    """
    from curation.methods import DEFAULT_METHOD, detection_method, method_probs

    method = method or DEFAULT_METHOD
    # The text (TF-IDF) features are built (and cached) only for methods with a text component.
    uses_text = "text" in detection_method(method).component_names
    settings = settings or EncoderSettings()
    y = _label_ids(labels, label_names)
    stop = poller(should_stop)
    tick = _ticker(progress, stop)
    # Library calls that cannot poll run beside a poller only when there is something to poll.
    guard = stop if should_stop is not None else None

    timings: dict[str, Any] = {"rows": len(texts)}
    t0 = time.perf_counter()
    # Text features first: their one-off SVD needs ~0.6 GB for a moment, best spent before
    # the embeddings (1 GB at a million rows) and the model are in memory.
    text_matrix = _text_matrix(texts, cache, tick, stop) if uses_text else None
    timings["text_features_seconds"] = _since(t0)

    t = time.perf_counter()
    tick({"stage": "embedding"})
    features = embed_texts(
        texts,
        settings=settings,
        cache=cache,
        should_stop=stop,
        dtype=np.float16 if len(texts) >= HALF_PRECISION_ROWS else np.float32,
        progress=lambda done, total: tick(
            {"stage": "embedding", "done": done, "total": total, "unit": "texts"}
        ),
    )
    timings["embed_seconds"] = _since(t)

    t = time.perf_counter()
    if callable(knn):
        tick({"stage": "neighbors"})  # reading a stored graph takes seconds at 1M rows
        knn = knn()
    if knn is None:
        tick({"stage": "neighbors"})
        knn = nearest_neighbors(
            features,
            k=min(KNN_K, len(texts) - 1),
            progress=lambda done, total: tick(
                {"stage": "neighbors", "done": done, "total": total, "unit": "blocks"}
            ),
        )
        if on_knn is not None:
            on_knn(*knn)
    timings["knn_seconds"] = _since(t)

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
        progress=lambda info: tick(
            {**info, "stage": f"probabilities ({method}): {info.get('stage', '')}"}
        ),
        should_stop=stop,
        **(method_options or {}),
    )
    timings["fit_seconds"] = _since(t)
    # The embeddings (1 GB at a million rows) are not needed past this point.
    del features, text_matrix

    tick({"stage": "cleanlab"})
    t = time.perf_counter()
    scores = stoppable(lambda: score_labels(y, probs, label_names=label_names), guard)
    timings["score_seconds"] = _since(t)

    tick({"stage": "outliers and near-duplicates"})
    t = time.perf_counter()
    rows, data_summary = stoppable(
        lambda: _data_issues(None, y, probs, knn, label_names, issue_types), guard
    )
    rows = pd.concat([scores.reset_index(drop=True), rows], axis=1)
    health = stoppable(lambda: _health(y, probs, label_names), guard)
    timings["issues_seconds"] = _since(t)

    summary = AnalysisSummary(
        **{**summarize(scores), **data_summary},
        health=health,
        method=method,
        method_info=method_info,
    )
    if annotators is not None and annotators.shape[1]:
        tick({"stage": "consensus"})
        t = time.perf_counter()
        per_row, per_annotator = stoppable(
            lambda: _consensus(annotators, probs, label_names), guard
        )
        rows["consensus_label"] = per_row["consensus_label"].to_numpy()
        rows["consensus_quality"] = per_row["consensus_quality"].to_numpy()
        summary.annotators = per_annotator.to_dict("records")
        summary.consensus_differs = int((rows["consensus_label"] != rows["analyzed_label"]).sum())
        timings["consensus_seconds"] = _since(t)
    timings["total_seconds"] = _since(t0)
    summary.timings = timings
    return AnalysisResult(rows=rows, summary=summary, knn=knn, probs=probs)


def _ticker(progress: Progress | None, stop: Callable[[], bool]) -> Progress:
    """Every progress event gets a rate and time left, is reported, then polls for a cancel."""
    report = progress or (lambda _info: None)
    meter = RateMeter()

    def tick(info: dict[str, Any]) -> None:
        report(meter(info))
        if stop():
            raise Cancelled()

    return tick


def _reading_progress(
    progress: Progress | None, should_stop: Callable[[], bool] | None
) -> Callable[[int, int], None]:
    """Progress of reading the rows, which may be cancelled like the rest."""
    meter = RateMeter()

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(
                meter({"stage": "reading the rows", "done": done, "total": total, "unit": "rows"})
            )
        if should_stop is not None and should_stop():
            raise Cancelled()

    return report


def _text_matrix(texts: list[str], cache: Any, tick: Progress, stop: Callable[[], bool]) -> Any:
    """The label-independent text features, from the workspace's array cache when it has them.

    In a workspace they are written to disk a block of rows at a time and read back the same
    way (:class:`data.store.arrays.NpyRows`): at 1.36M rows the matrix is 2.8 GB.
    """
    from curation.text_features import text_feature_blocks, text_features, text_features_key

    if not hasattr(cache, "open_array"):
        return text_features(texts, progress=tick, should_stop=stop)
    key = "text-" + text_features_key(texts)
    matrix = cache.open_array(key)
    if matrix is not None and len(matrix) == len(texts):
        return matrix
    with cache.array_writer(key, rows=len(texts)) as writer:
        for _start, block in text_feature_blocks(texts, progress=tick, should_stop=stop):
            writer.write(block)
    return cache.open_array(key)


def _since(t: float) -> float:
    return round(time.perf_counter() - t, 3)


def nearest_neighbors(
    features: np.ndarray,
    *,
    k: int = KNN_K,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, distances)``, each ``(n, k)``: every row's ``k`` nearest other rows by
    cosine distance, nearest first (int32 and float32 in memory; the store keeps int64 ids).

    ``progress(done, total)`` is called after every block of the search; an exception it
    raises (a cancel) stops the search within a fraction of a second.
    """
    from curation.neighbors import knn_arrays

    return knn_arrays(features, k=k, progress=progress)


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
    if progress is not None:  # reading a million rows takes a while: say so at once
        progress({"stage": "reading the rows"})
    label_version = ws.label_version()
    info = ws.info()
    annotator_columns = list(info.get("annotator_columns") or [])
    rows = ws.analysis_inputs(
        with_meta=bool(annotator_columns),
        progress=_reading_progress(progress, should_stop),
    )
    annotators = None
    if annotator_columns:
        # The same normalisation as at import, so votes match the label names.
        annotators = annotator_labels(
            pd.DataFrame({c: [m.get(c) for m in rows["meta"]] for c in annotator_columns}),
            annotator_columns,
        )
    model_key = settings.key()
    result = analyze(
        rows["text"],
        rows["label"],
        label_names=ws.label_names,
        method=method,
        settings=settings,
        n_folds=n_folds,
        seed=seed,
        cache=ws,
        knn=lambda: ws.get_knn(model_key),
        annotators=annotators,
        method_options=method_options,
        progress=progress,
        should_stop=should_stop,
        # Stored as soon as it is built: at a million rows it takes hours, and a cancel or a
        # failure in a later stage must not throw it away.
        on_knn=lambda indices, distances: ws.put_knn(model_key, indices, distances),
    )
    del rows["text"], rows["label"]
    # The analysis's columns are the store's: written as they are, with the rows' ids.
    results = result.rows.assign(sample_id=rows["id"])
    summary = replace(result.summary, encoder=settings.describe())
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
