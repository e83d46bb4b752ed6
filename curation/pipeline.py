"""Analyse a workspace: embeddings (cached) -> out-of-sample probabilities -> cleanlab scores.

This is the one place that joins the store with the curation functions; the UI's background job
and ``cli.py analyze`` both call :func:`analyze_frame` / :func:`analyze_workspace`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from curation.issues import score_labels, summarize
from curation.probs import EmbeddingCache, EncoderSettings, embed_texts, out_of_sample_probs

METHOD = "embeddings+logreg"

Progress = Callable[[dict[str, Any]], None]


class Cancelled(Exception):
    """Raised inside a job when the user asked to cancel it."""


def analyze_frame(
    texts: list[str],
    labels: list[str],
    *,
    label_names: list[str],
    settings: EncoderSettings | None = None,
    n_folds: int = 5,
    seed: int = 0,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score every label: returns cleanlab's per-row columns and timing figures.

    The returned frame is in input order with columns ``is_label_issue``, ``label_score``,
    ``given_label``, ``predicted_label``, ``predicted_prob``, ``given_prob``.
    """
    settings = settings or EncoderSettings()
    index = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"Labels {unknown[:5]} are not among label_names {label_names}.")
    y = np.array([index[label] for label in labels], dtype=int)
    report = progress or (lambda _info: None)
    timings: dict[str, Any] = {"rows": len(texts)}

    t0 = time.perf_counter()

    def on_batch(done: int, total: int) -> None:
        report({"stage": "embedding", "done": done, "total": total})
        if should_stop is not None and should_stop():
            raise Cancelled()

    features = embed_texts(texts, settings=settings, cache=cache, progress=on_batch)
    timings["embed_seconds"] = round(time.perf_counter() - t0, 3)

    report({"stage": "cross-validation", "done": 0, "total": n_folds})
    t1 = time.perf_counter()
    probs = out_of_sample_probs(features, y, n_folds=n_folds, seed=seed)
    timings["fit_seconds"] = round(time.perf_counter() - t1, 3)

    report({"stage": "cleanlab", "done": 0, "total": 1})
    t2 = time.perf_counter()
    scores = score_labels(y, probs, label_names=label_names)
    timings["score_seconds"] = round(time.perf_counter() - t2, 3)
    timings["total_seconds"] = round(time.perf_counter() - t0, 3)
    return scores, timings


def analyze_workspace(
    ws: Any,
    *,
    settings: EncoderSettings | None = None,
    n_folds: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Analyse the workspace's *current* labels (all rows, all splits); returns the analysis id.

    Excluded rows are scored too (a reviewer may want to see why), but they do not change
    anything else. The label version (last event id) is read before the labels, so the record
    says exactly which labels were scored.
    """
    settings = settings or EncoderSettings()
    label_version = ws.label_version()
    rows = ws.samples()
    scores, timings = analyze_frame(
        rows["text"].tolist(),
        rows["label"].tolist(),
        label_names=ws.label_names,
        settings=settings,
        n_folds=n_folds,
        seed=seed,
        cache=ws,
        progress=progress,
        should_stop=should_stop,
    )
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
    summary = {**summarize(scores), "timings": timings, "encoder": settings.describe()}
    return ws.save_analysis(
        results,
        method=METHOD,
        settings={**_settings_dict(settings), "n_folds": n_folds, "seed": seed},
        label_version=label_version,
        summary=summary,
    )


def _settings_dict(settings: EncoderSettings) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(settings)
