"""Run records as tidy tables: the points the charts draw and the loss curves.

Pure functions of the records ``ws.runs()`` / ``ws.run(run_id)`` return (see
:mod:`training.runs` for what a record holds); nothing here touches the store or a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.records import RunRecord
from training.experiments import rate_label

FRAME_COLUMNS = (
    "job",
    "run",
    "experiment",
    "series",
    "x",
    "seed",
    "train_rows",
    "label_source",
    "noise_rate",
    "metric",
    "value",
    "verified_value",
    "verified_n",
)


def runs_frame(runs: list[RunRecord], *, metric: str = "accuracy") -> pd.DataFrame:
    """One row per finished experiment run and chart series: the tidy data behind the charts.

    Parameters
    ----------
    runs
        Run records as returned by ``ws.runs()`` (any job; filter the frame by ``job``).
    metric
        One of accuracy, precision, recall, f1, roc_auc.

    Returns
    -------
    pandas.DataFrame
        Columns ``FRAME_COLUMNS``: job, run, experiment, series ("single", "data size",
        "labels", "noise", "confidence"), x (fraction, label source, noise rate or threshold),
        seed, train_rows, label_source, noise_rate, metric, value (on the test rows),
        verified_value (on the verified test rows; NaN when none) and verified_n. A run that
        stands for more than one point (the curated run is also the 0% noise point) has a
        row per point. Runs recorded before series existed get one from their x.
    """
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; valid: {list(METRICS)}.")
    records = []
    for run in runs:
        if not run.done or not run.test:
            continue
        data, metrics, verified = run.data, run.test, run.verified or {}
        base = {
            "job": run.job_id,
            "run": run.id,
            "experiment": data.get("experiment"),
            "seed": data.get("seed", run.config.get("seed")),
            "train_rows": data.get("train_rows"),
            "label_source": data.get("label_source"),
            "noise_rate": data.get("noise_rate", 0.0),
            "metric": metric,
            "value": _number(metrics.get(metric)),
            "verified_value": _number(verified.get(metric)),
            "verified_n": int(verified.get("n") or 0),
        }
        points = [{"series": _series(data), "x": data.get("x")}, *(data.get("also") or [])]
        records.extend({**base, "series": p["series"], "x": p["x"]} for p in points)
    return pd.DataFrame(records, columns=list(FRAME_COLUMNS))


def aggregate_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count per chart point, over seeds (and repeated jobs).

    Parameters
    ----------
    frame
        A :func:`runs_frame` result (filter it to the jobs to combine first).

    Returns
    -------
    pandas.DataFrame
        One row per (experiment, series, x), in first-seen order: mean, std (NaN with one
        run), n (runs), train_rows (mean), verified_mean, verified_std, verified_runs (runs
        with a verified score) and verified_n (verified rows per run, the largest).
    """
    columns = [
        "experiment",
        "series",
        "x",
        "metric",
        "mean",
        "std",
        "n",
        "train_rows",
        "verified_mean",
        "verified_std",
        "verified_runs",
        "verified_n",
    ]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    keys = ["experiment", "series", "x", "metric"]
    grouped = frame.groupby(keys, sort=False, dropna=False)
    out = grouped.agg(
        mean=("value", "mean"),
        std=("value", "std"),
        n=("value", "count"),
        train_rows=("train_rows", "mean"),
        verified_mean=("verified_value", "mean"),
        verified_std=("verified_value", "std"),
        verified_runs=("verified_value", "count"),
        verified_n=("verified_n", "max"),
    ).reset_index()
    return out[columns]


def history_frame(history: list[dict[str, Any]] | None) -> pd.DataFrame:
    """A run's loss history in long form for one line per split: step, epoch, split, loss.

    ``split`` is ``"train"`` (training loss per logging step) or ``"validation"``
    (validation loss per evaluation).
    """
    rows = []
    for h in history or []:
        if h.get("loss") is not None:
            rows.append(
                {"step": h["step"], "epoch": h.get("epoch"), "split": "train", "loss": h["loss"]}
            )
        if h.get("eval_loss") is not None:
            rows.append(
                {
                    "step": h["step"],
                    "epoch": h.get("epoch"),
                    "split": "validation",
                    "loss": h["eval_loss"],
                }
            )
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "loss"])


METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def _number(value: Any) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else np.nan
    )


def _series(data: dict[str, Any]) -> str:
    if data.get("series"):
        return data["series"]
    experiment, x = data.get("experiment"), data.get("x")
    if experiment == "label_quality":
        return "labels" if isinstance(x, str) else "confidence"
    return {"data_size": "data size", "learning_rate": "learning rate"}.get(
        experiment, experiment or "single"
    )


RATE_COLUMNS = (
    "learning_rate",
    "rate",
    "metric",
    "mean",
    "std",
    "min",
    "max",
    "n",
    "verified_mean",
    "verified_std",
    "best",
)


def rate_sweep_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The learning-rate sweep per rate: mean, spread over seeds, and which rate did best.

    Parameters
    ----------
    frame
        A :func:`runs_frame` result, filtered to one learning-rate experiment job.

    Returns
    -------
    pandas.DataFrame
        One row per learning rate, smallest first (columns ``RATE_COLUMNS``): learning_rate,
        rate (as people write it: ``3e-5``), metric, mean, std (NaN with one seed), min, max,
        n (runs), verified_mean, verified_std and best (True on the rate with the highest mean
        test score; the first such rate on a tie; every metric here is higher-is-better).
    """
    part = frame[frame["series"] == "learning rate"] if not frame.empty else frame
    part = part[part["value"].notna()] if not part.empty else part
    if part.empty:
        return pd.DataFrame(columns=list(RATE_COLUMNS))
    part = part.assign(learning_rate=part["x"].astype(float))
    out = (
        part.groupby(["learning_rate", "metric"], sort=True)
        .agg(
            mean=("value", "mean"),
            std=("value", "std"),
            min=("value", "min"),
            max=("value", "max"),
            n=("value", "count"),
            verified_mean=("verified_value", "mean"),
            verified_std=("verified_value", "std"),
        )
        .reset_index()
    )
    out["rate"] = [rate_label(r) for r in out["learning_rate"]]
    out["best"] = False
    out.loc[out["mean"].idxmax(), "best"] = True
    return out[list(RATE_COLUMNS)]


def roc_frame(runs: list[RunRecord], *, subset: str = "test") -> pd.DataFrame:
    """The stored ROC curves of runs in long form: one row per curve point.

    Parameters
    ----------
    runs
        Run records; those without stored curves (recorded before ROC curves were kept, or
        not done) add nothing: see :func:`has_roc`.
    subset
        ``"test"`` or ``"verified"``.

    Returns
    -------
    pandas.DataFrame
        Columns run, label (the positive class), auc, scheme (``binary`` / ``one-vs-rest``),
        point (its order along the curve), fpr and tpr.
    """
    columns = ["run", "label", "auc", "scheme", "point", "fpr", "tpr"]
    rows = []
    for run in runs:
        roc = run.roc(subset)
        for curve in (roc or {}).get("curves") or []:
            for i, (fpr, tpr) in enumerate(zip(curve["fpr"], curve["tpr"], strict=True)):
                rows.append((run.id, curve["label"], curve["auc"], roc["scheme"], i, fpr, tpr))
    return pd.DataFrame(rows, columns=columns)


def has_roc(run: RunRecord, *, subset: str = "test") -> bool:
    """Whether the run kept its ROC curves (runs recorded before they were kept did not)."""
    return run.roc(subset) is not None


def confusion_table(metrics: dict[str, Any], *, normalise: bool = False) -> pd.DataFrame:
    """A subset's confusion matrix as a frame: rows = true class, columns = predicted class.

    With ``normalise``, each row is divided by its total, so a cell is the share of that true
    class predicted as the column's class (a row with no rows stays 0).
    """
    labels = list(metrics.get("labels") or [])
    matrix = np.asarray(metrics.get("confusion_matrix") or [], dtype=float)
    if matrix.size == 0:
        return pd.DataFrame(index=labels, columns=labels, dtype=float)
    if normalise:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    return pd.DataFrame(matrix, index=labels, columns=labels)


# --------------------------------------------------------------------------------------------
# Runs with and without an adapted encoder (the Charts page's adaptation panel)


# What else must match between the two runs of a pair (besides rows, seed and settings).
PAIR_DATA_KEYS = ("label_version", "label_source", "noise_rate", "experiment", "x")


def adaptation_pairs(runs: Sequence[Any], folder: str | Path, metric: str = "accuracy") -> Any:
    """Finished runs with an adapted encoder beside the same runs with its base model.

    A pair shares the base model, the test rows (``eval_ids_hash``), the training rows
    (``train_ids_hash``), the seed, the labels (label version, source, noise) and every other
    training setting, so the two scores differ only by the adaptation (and by the training
    noise a seed does not fix). The latest run of each side is used.

    Returns a ``pandas.DataFrame`` with one row per pair: ``encoder``, ``base_model``,
    ``seed``, ``test_rows``, ``base``, ``adapted``, ``difference`` (adapted - base),
    ``base_run`` and ``adapted_run``; empty (with those columns) when there is no pair.
    """
    columns = [
        "encoder",
        "base_model",
        "seed",
        "test_rows",
        "base",
        "adapted",
        "difference",
        "base_run",
        "adapted_run",
    ]
    from training.adapt import adapted_encoders

    adapted = {str(Path(e["path"])): e for e in adapted_encoders(folder)}

    def resolved(model: str) -> str:
        if not model:
            return ""
        try:
            return str(Path(model).expanduser().resolve())
        except (OSError, RuntimeError):
            return model

    base_side: dict[tuple, Any] = {}
    adapted_side: dict[tuple, list] = {}
    for run in sorted((r for r in runs if r.done), key=lambda r: r.id):
        data, config = run.data or {}, run.config or {}
        if run.test.get(metric) is None:
            continue
        seed = data.get("seed", config.get("seed"))
        # The same rows, labels and settings: only the model differs within a pair.
        same = json.dumps(
            {
                "config": {k: v for k, v in config.items() if k != "model"},
                "data": {k: data.get(k) for k in PAIR_DATA_KEYS},
            },
            sort_keys=True,
            default=str,
        )
        rows = (data.get("eval_ids_hash"), data.get("train_ids_hash"), seed, same)
        model = config.get("model") or ""
        entry = adapted.get(resolved(model))
        if entry is not None:
            key = (entry.get("base_model") or "", *rows)
            adapted_side.setdefault(key, []).append((entry, run))
        else:
            base_side[(model, *rows)] = run
    pairs = []
    for key, found in adapted_side.items():
        base = base_side.get(key)
        if base is None:
            continue
        by_encoder = {entry["name"]: (entry, run) for entry, run in found}  # latest per encoder
        for entry, run in by_encoder.values():
            pairs.append(
                {
                    "encoder": entry["name"],
                    "base_model": key[0] or "packaged",
                    "seed": key[3],
                    "test_rows": run.data.get("eval_rows"),
                    "base": base.test[metric],
                    "adapted": run.test[metric],
                    "difference": run.test[metric] - base.test[metric],
                    "base_run": base.id,
                    "adapted_run": run.id,
                }
            )
    return pd.DataFrame(pairs, columns=columns)


def model_choices(runs: Sequence[RunRecord], *, experiments: bool = False) -> list[RunRecord]:
    """The finished runs with a saved model, in the order a user should pick them.

    Runs the user trained on the Train page ("single" runs) come first, best test accuracy
    first (the newest wins a tie), because a chart experiment's run is usually trained on a
    fraction of the data, noised labels or an odd learning rate: offering the latest run by
    default once put a 0.403 data-size run above the real 0.733 one. Experiment runs follow,
    newest first, only when ``experiments`` is True.

    Parameters
    ----------
    runs
        Run records as ``ws.runs()`` returns them.
    experiments
        Also list the runs of data-size, label-quality and learning-rate experiments.

    Returns
    -------
    list[RunRecord]
        The candidates; the first is the default.
    """
    saved = [r for r in runs if r.done and r.model_dir]
    single = [r for r in saved if (r.data or {}).get("experiment", "single") == "single"]
    single.sort(key=_accuracy_then_newest, reverse=True)
    if not experiments:
        return single
    others = sorted((r for r in saved if r not in single), key=lambda r: r.id, reverse=True)
    return single + others


def _accuracy_then_newest(run: RunRecord) -> tuple[float, int]:
    accuracy = _number((run.test or {}).get("accuracy"))
    # A run without an accuracy (its evaluation failed) sorts below every measured one.
    return (-np.inf if np.isnan(accuracy) else accuracy, run.id)
