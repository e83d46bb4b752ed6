"""Training runs on a workspace: pick rows and labels, fine-tune, record everything in the store.

Every run's record (``ws.run(run_id)``) holds:

- ``config``: the whole :class:`TrainingConfig` (with the run's own seed; row caps off, since
  the run's rows are chosen here);
- ``data``: the data version: experiment, series, x, seed, label_source, noise_rate,
  noise_flipped, label_version, train_rows, train_ids_hash, eval_rows, eval_ids_hash,
  verified_rows, validation_rows, validation_source, plus training facts (device, precision,
  technique, learning_rate, train_seconds, train_samples_per_second, trainable_parameters,
  stopped_early, best_validation_loss, epochs_completed) and ``warnings`` (what went wrong on
  the side without stopping the run, e.g. an experiment tracker that failed);
- ``history``: ``{"step", "loss", "epoch"}`` per training logging step and
  ``{"step", "eval_loss", "epoch"}`` per validation pass (:func:`training.reporting.history_frame` makes it long);
- ``test``, ``verified`` and ``examples``: the test metrics, the verified-subset metrics
  (test rows a reviewer confirmed or corrected; each with its ROC curves under ``roc``) and
  the before/after table; stored together
  as :func:`data.records.run_metrics` and also in ``<run_dir>/evaluation.json``.

``ws.run(run_id)`` and ``ws.runs()`` give :class:`data.records.RunRecord` objects.

:mod:`training.reporting` turns these records into the tidy tables the charts draw.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.artifacts import folder_checksums
from data.records import run_metrics
from runtime.device import is_main_process
from runtime.progress import Cancelled
from training.config import TrainingConfig
from training.experiments import (
    DEFAULT_FRACTIONS,
    DEFAULT_NOISE_RATES,
    DEFAULT_RATE_GRID,
    DEFAULT_SEED_COUNT,
    DEFAULT_THRESHOLDS,
    RunSpec,
    eval_ids,
    ids_hash,
    inject_noise,
    plan_data_size,
    plan_label_quality,
    plan_learning_rate,
    probe_ids,
)
from training.finetune import METRICS_FILE, fine_tune
from training.metrics import classification_metrics, roc_curves
from training.sampling import stratified_holdout, stratified_sample, validation_cap

EVALUATION_FILE = "evaluation.json"


def split_ids(ws: Any) -> tuple[list[int], list[int]]:
    """Training and test sample ids, leaving out rows a reviewer excluded.

    A ``validation`` split, if the data has one, is never trained on: :func:`validation_split`
    uses it for validation loss and early stopping.
    """
    rows = ws.samples()
    keep = rows[~rows["excluded"]]
    train = keep.loc[keep["split"] == "train", "id"].astype(int).tolist()
    test = keep.loc[keep["split"] == "test", "id"].astype(int).tolist()
    if not train:
        raise ValueError("No training rows: the workspace has no non-excluded rows in 'train'.")
    if not test:
        raise ValueError(
            "No test rows: the workspace has no non-excluded rows in 'test'; re-import with a "
            "test split (or let Second Look make one)."
        )
    return train, test


def validation_split(
    ws: Any, train_ids: Sequence[int], *, config: TrainingConfig
) -> tuple[list[int], list[int], str]:
    """Validation rows for a workspace's runs: ``(train_ids, validation_ids, source)``.

    The workspace's own ``validation`` split (non-excluded rows) when it has one, else
    ``config.validation_fraction`` of the training rows held out, stratified by the curated
    label and seeded by ``config.seed``. Either way the rows are capped in proportion to
    ``config.max_train_samples``. ``source`` is ``"split"``, ``"held out"`` or ``"none"``
    (``validation_fraction=0``: no validation rows, no early stopping).
    """
    fraction = config.validation_fraction
    train = [int(i) for i in train_ids]
    if fraction == 0:
        return train, [], "none"
    rows = ws.samples()
    own = rows[(rows["split"] == "validation") & ~rows["excluded"]]
    if len(own):
        ids, labels, source = own["id"].to_numpy(), own["label"].to_numpy(), "split"
    else:
        labels_of = rows.set_index("id").loc[train, "label"].to_numpy()
        kept, held = stratified_holdout(labels_of, fraction, seed=config.seed)
        ids, labels, source = np.asarray(train)[held], labels_of[held], "held out"
        train = np.asarray(train)[kept].tolist()
    keep = stratified_sample(
        labels, validation_cap(config.max_train_samples, fraction), seed=config.seed
    )
    return train, [int(i) for i in np.asarray(ids)[keep]], source


def verified_ids(ws: Any, test_ids: Sequence[int]) -> list[int]:
    """Test rows a reviewer confirmed or corrected (reviewed and not excluded), sorted."""
    rows = ws.samples()
    wanted = set(int(i) for i in test_ids)
    mask = rows["reviewed"] & ~rows["excluded"] & rows["id"].isin(wanted)
    return sorted(int(i) for i in rows.loc[mask, "id"])


def execute_run(
    ws: Any,
    spec: RunSpec,
    *,
    config: TrainingConfig,
    eval_rows: list[int],
    job_id: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    validation_rows: list[int] | None = None,
    verified_rows: list[int] | None = None,
    probe_rows: list[int] | None = None,
    validation_source: str | None = None,
) -> int:
    """Train one spec, evaluate it honestly, and record it; returns the run id.

    Parameters
    ----------
    ws
        The workspace.
    spec
        Rows, label source, seed and noise rate of the run.
    config
        Hyper-parameters; its row caps are ignored (the spec and ``eval_rows`` hold the rows),
        its seed is replaced by ``spec.seed`` when set.
    eval_rows
        Test rows for the "test" metrics (the same for every run of an experiment).
    validation_rows
        Rows for validation loss and early stopping (labels of ``spec.label_source``, never
        noised); ``None`` lets :func:`fine_tune` hold out ``config.validation_fraction`` of the
        spec's rows, ``[]`` means none.
    verified_rows
        Reviewed test rows for the "verified" metrics; ``None`` = every verified test row.
    probe_rows
        Rows of the before/after table; ``None`` = 8 seeded rows of ``eval_rows``.
    validation_source
        Where ``validation_rows`` came from, for the record (``"split"``, ``"held out"``);
        default ``"given"``.

    Returns
    -------
    int
        The run id (``-1`` on a non-main process of a distributed launch, which records
        nothing).

    Raises
    ------
    Cancelled
        The job was cancelled while this run trained (the run is marked ``cancelled``).

    Notes
    -----
    Five steps, one function each: :func:`_plan_run` (seed, rows, config, data version),
    :func:`_run_rows` (texts and label ids), :func:`_train` (fine-tune, with live progress),
    :func:`_evaluation` (test and verified metrics, before/after table) and
    :func:`_record` (the store and ``<run_dir>/evaluation.json``). The record is a
    :class:`data.records.RunRecord`.
    """
    plan = _plan_run(
        ws,
        spec,
        config,
        eval_rows=eval_rows,
        validation_rows=validation_rows,
        verified_rows=verified_rows,
        probe_rows=probe_rows,
        validation_source=validation_source,
    )
    rows = _run_rows(ws, plan)
    main = is_main_process()
    run_id = (
        ws.create_run(name=spec.name, config=plan.config.to_dict(), data=plan.data, job_id=job_id)
        if main
        else -1
    )
    history: list[dict[str, Any]] = []
    try:
        result = _train(ws, run_id, plan, rows, history, main=main, should_stop=should_stop)
        if result.cancelled:
            if main:
                ws.update_run(run_id, status="cancelled", history=result.history or history)
            raise Cancelled()
        if not main:
            return -1
        _record(ws, run_id, plan, result, _evaluation(result, rows, plan), history)
    except Cancelled:
        raise
    except BaseException as exc:
        # Whatever fails after the run was recorded (data prep, training, evaluation), the run
        # must not stay "running" forever.
        if main:
            ws.update_run(run_id, status="failed", history=history, progress={"error": str(exc)})
        raise
    return run_id


@dataclass
class _RunPlan:
    """What one run will do: its spec, config, rows and data version, decided up front."""

    spec: RunSpec
    config: TrainingConfig
    names: list[str]
    eval_rows: list[int]
    verified_rows: list[int]
    probe_rows: list[int]
    validation_rows: list[int] | None
    data: dict[str, Any]

    @property
    def scored(self) -> list[int]:
        """The rows the trained model predicts: test rows, then verified ones not among them."""
        return list(dict.fromkeys([*self.eval_rows, *self.verified_rows]))


def _plan_run(
    ws: Any,
    spec: RunSpec,
    config: TrainingConfig,
    *,
    eval_rows: list[int],
    validation_rows: list[int] | None,
    verified_rows: list[int] | None,
    probe_rows: list[int] | None,
    validation_source: str | None,
) -> _RunPlan:
    seed = config.seed if spec.seed is None else spec.seed
    if verified_rows is None:
        verified_rows = verified_ids(ws, split_ids(ws)[1])
    if probe_rows is None:
        probe_rows = probe_ids(eval_rows, seed=config.seed)
    # The run's own caps would re-sample the rows the experiment chose: turn them off.
    overrides = {"max_train_samples": None, "max_eval_samples": None, "seed": seed}
    if spec.learning_rate is not None:  # the learning-rate sweep
        overrides["learning_rate"] = spec.learning_rate
    if validation_rows is not None and not validation_rows:
        overrides["validation_fraction"] = 0.0
    run_config = TrainingConfig.from_dict({**config.to_dict(), **overrides})
    data = _data_version(ws, spec, run_config, eval_rows, verified_rows, validation_rows)
    if validation_rows and validation_source:
        data["validation_source"] = validation_source
    return _RunPlan(
        spec=spec,
        config=run_config,
        names=ws.label_names,
        eval_rows=eval_rows,
        verified_rows=verified_rows,
        probe_rows=probe_rows,
        validation_rows=validation_rows,
        data=data,
    )


@dataclass
class _RunRows:
    """The rows a run reads (by sample id) and its training labels, noise injected."""

    rows: pd.DataFrame
    label_column: str
    y_train: np.ndarray
    flipped: np.ndarray

    def label_ids(self, ids: Sequence[int], names: list[str], column: str | None = None):
        index = {n: i for i, n in enumerate(names)}
        return np.array([index[v] for v in self.rows.loc[ids, column or self.label_column]])


def _run_rows(ws: Any, plan: _RunPlan) -> _RunRows:
    spec = plan.spec
    wanted = [*spec.train_ids, *plan.scored, *plan.probe_rows, *(plan.validation_rows or [])]
    rows = ws.samples(ids=list(dict.fromkeys(wanted))).set_index("id")
    label_column = "label" if spec.label_source == "curated" else "given_label"
    index = {n: i for i, n in enumerate(plan.names)}
    y = np.array([index[v] for v in rows.loc[spec.train_ids, label_column]], dtype=np.int64)
    y, flipped = inject_noise(y, spec.noise_rate, n_classes=len(plan.names), seed=plan.config.seed)
    plan.data["noise_flipped"] = int(len(flipped))
    return _RunRows(rows=rows, label_column=label_column, y_train=y, flipped=flipped)


def _train(
    ws: Any,
    run_id: int,
    plan: _RunPlan,
    data: _RunRows,
    history: list[dict[str, Any]],
    *,
    main: bool,
    should_stop: Callable[[], bool] | None,
):
    spec, rows = plan.spec, data.rows

    def progress(info: dict[str, Any]) -> None:
        _extend_live_history(history, info)
        # The history goes along so the Train page can draw the loss curve while it trains.
        ws.update_run(run_id, progress=info, history=history)

    with _run_folder(ws, run_id) as out:
        if len(data.flipped):
            noise = {
                "noise_rate": spec.noise_rate,
                "flipped_ids": np.asarray(spec.train_ids)[data.flipped].tolist(),
            }
            (out / "noise.json").write_text(json.dumps(noise))
        validation = {}
        if plan.validation_rows:
            validation = dict(
                validation_texts=rows.loc[plan.validation_rows, "text"].tolist(),
                validation_labels=data.label_ids(plan.validation_rows, plan.names),
            )
        return fine_tune(
            rows.loc[spec.train_ids, "text"].tolist(),
            data.y_train,
            label_names=plan.names,
            config=plan.config,
            output_dir=out,
            eval_texts=rows.loc[plan.scored, "text"].tolist(),
            # Test rows are always scored against the curated labels.
            eval_labels=data.label_ids(plan.scored, plan.names, column="label"),
            progress=progress if main else None,
            should_stop=should_stop,
            probe_texts=rows.loc[plan.probe_rows, "text"].tolist(),
            tracking_dir=ws.folder / "tracking",
            **validation,
        )


def _record(
    ws: Any,
    run_id: int,
    plan: _RunPlan,
    result: Any,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
) -> None:
    out = ws.run_dir(run_id)
    (out / EVALUATION_FILE).write_text(json.dumps(metrics, indent=2))
    (out / METRICS_FILE).write_text(json.dumps(metrics["test"], indent=2))
    plan.data.update(
        {k: v for k, v in result.summary().items() if k in RESULT_KEYS},
        validation_rows=result.validation_samples,
        # Checked before the model is exported or served: a changed file is reported, not used.
        model_files=folder_checksums(result.model_dir),
    )
    ws.update_run(
        run_id,
        status="done",
        metrics=metrics,
        history=result.history or history,
        model_dir=str(result.model_dir),
        data=plan.data,
    )


def _extend_live_history(history: list[dict[str, Any]], info: dict[str, Any]) -> None:
    # Progress repeats the latest losses every step: keep a point only when one changes.
    for key in ("loss", "eval_loss"):
        value = info.get(key)
        last = next((h[key] for h in reversed(history) if key in h), None)
        if value is not None and value != last:
            history.append({"step": info.get("step"), key: value, "epoch": info.get("epoch")})


# Training facts copied from the FineTuneResult into the run's data record.
RESULT_KEYS = (
    "device",
    "precision",
    "train_seconds",
    "train_samples_per_second",
    "validation_seconds",
    "technique",
    "learning_rate",
    "trainable_parameters",
    "total_parameters",
    "best_validation_loss",
    "stopped_early",
    "epochs_completed",
    "warnings",
)


@contextlib.contextmanager
def _run_folder(ws: Any, run_id: int) -> Iterator[Path]:
    # A non-main process of a distributed launch trains into a scratch folder it then drops.
    if run_id >= 0:
        folder = ws.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="second-look-rank-") as tmp:
        yield Path(tmp)


def _data_version(
    ws: Any,
    spec: RunSpec,
    config: TrainingConfig,
    eval_rows: list[int],
    verified_rows: list[int],
    validation_rows: list[int] | None,
) -> dict[str, Any]:
    """The data a run saw, so every chart point can be traced back and reproduced.

    Keys: experiment, series, x, seed, label_source, noise_rate, label_version (the last label
    event id when the run started), train_rows, train_ids_hash, eval_rows, eval_ids_hash,
    eval_labels ("curated"), verified_rows, validation_source ("split", "held out", "given"
    or "none"), plus the spec's notes (rows, fraction, threshold, also, ...).
    """
    return {
        "experiment": spec.experiment,
        "series": spec.notes.get("series", spec.experiment),
        "x": spec.x,
        "seed": config.seed,
        "label_source": spec.label_source,
        "noise_rate": spec.noise_rate,
        "label_version": ws.label_version(),
        "train_rows": len(spec.train_ids),
        "train_ids_hash": ids_hash(spec.train_ids),
        "eval_rows": len(eval_rows),
        "eval_ids_hash": ids_hash(eval_rows),
        "eval_labels": "curated",
        "verified_rows": len(verified_rows),
        "validation_source": (
            "held out"
            if validation_rows is None and config.validation_fraction > 0
            else ("given" if validation_rows else "none")
        ),
        **spec.notes,
    }


def _evaluation(result: Any, data: _RunRows, plan: _RunPlan) -> dict[str, Any]:
    """Test and verified-subset metrics side by side, plus the before/after table.

    Each subset's metrics also keep its ROC curves (``roc``: :func:`training.metrics.roc_curves`,
    at most 200 points per class), so charts can draw them without the model.
    """
    position = {sample_id: i for i, sample_id in enumerate(plan.scored)}
    probs = result.eval_probs

    def metrics_on(ids: list[int]) -> dict[str, Any]:
        if not ids:
            return empty_metrics(plan.names)
        y = data.label_ids(ids, plan.names, column="label")
        picked = probs[[position[i] for i in ids]]
        return {
            **classification_metrics(y, picked, label_names=plan.names),
            "roc": roc_curves(y, picked, label_names=plan.names),
        }

    return run_metrics(
        test=metrics_on(plan.eval_rows),
        verified=metrics_on(plan.verified_rows),
        examples=_examples(result, data.rows, plan.names, plan.probe_rows),
    )


def empty_metrics(label_names: list[str]) -> dict[str, Any]:
    """The metrics dict of an empty subset: every metric ``None``, ``n`` 0."""
    keys = ("accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix", "roc")
    return {**dict.fromkeys(keys), "labels": list(label_names), "n": 0}


def _examples(result, rows, names, probe_rows) -> dict[str, Any]:
    def prediction(p: np.ndarray) -> dict[str, Any]:
        j = int(np.argmax(p))
        return {
            "label": names[j],
            "prob": round(float(p[j]), 4),
            "probs": {n: round(float(v), 4) for n, v in zip(names, p, strict=True)},
        }

    table = [
        {
            "id": int(sample_id),
            "text": rows.at[sample_id, "text"],
            "label": rows.at[sample_id, "label"],
            "before": prediction(result.probe_before[i]),
            "after": prediction(result.probe_after[i]),
        }
        for i, sample_id in enumerate(probe_rows)
    ]
    note = (
        "before = the model as loaded, with a newly initialised classification head: chance "
        "level, not a trained baseline"
        if result.new_head
        else "before = the model as loaded (its classification head was already trained)"
    )
    return {"new_head": bool(result.new_head), "note": note, "rows": table}


PLAN_OPTIONS = ("fractions", "thresholds", "seeds", "noise_rates", "learning_rates", "train_ids")


def plan(ws: Any, experiment: str, *, config: TrainingConfig, **options: Any) -> list[RunSpec]:
    """The run specs for ``experiment`` on this workspace's current state.

    ``"single"`` is one run on all (capped) curated training rows; ``"data_size"``,
    ``"learning_rate"`` and ``"label_quality"`` see :mod:`training.experiments`. Options:
    ``fractions`` (data size, default 10/25/50/100%), ``learning_rates`` (learning rate,
    default 1e-5, 3e-5, 1e-4, 3e-4, 1e-3), ``seeds`` (default 3 seeds from ``config.seed`` for
    data size and learning rate, 1 for label quality), ``noise_rates`` (label quality, default 10/20/30%; ``[]`` for none),
    ``thresholds`` (label quality; used when a numeric ``confidence`` metadata column exists,
    e.g. the demo's crowd confidence) and ``train_ids`` (the pool; default the training split
    minus the validation rows of :func:`validation_split`).
    """
    unknown = sorted(set(options) - set(PLAN_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown experiment option(s) {unknown}; valid: {list(PLAN_OPTIONS)}.")
    train = options.get("train_ids")
    if train is None:
        train, _, _ = validation_split(ws, split_ids(ws)[0], config=config)
    cap, seed = config.max_train_samples, config.seed
    if experiment == "single":
        pool = plan_data_size(train, fractions=(1.0,), seed=seed, cap=cap)[0]
        pool.experiment, pool.name = "single", f"curated labels ({len(pool.train_ids)} rows)"
        pool.notes["series"] = "single"
        return [pool]
    if experiment == "data_size":
        seeds = options.get("seeds") or [seed + i for i in range(DEFAULT_SEED_COUNT)]
        return plan_data_size(
            train,
            fractions=options.get("fractions") or DEFAULT_FRACTIONS,
            seed=seed,
            cap=cap,
            seeds=seeds,
        )
    if experiment == "learning_rate":
        return plan_learning_rate(
            train,
            rates=options.get("learning_rates") or DEFAULT_RATE_GRID,
            seed=seed,
            cap=cap,
            seeds=options.get("seeds") or [seed + i for i in range(DEFAULT_SEED_COUNT)],
        )
    if experiment == "label_quality":
        rates = options.get("noise_rates")
        return plan_label_quality(
            train,
            confidence=confidence_column(ws),
            thresholds=options.get("thresholds") or DEFAULT_THRESHOLDS,
            seed=seed,
            cap=cap,
            noise_rates=DEFAULT_NOISE_RATES if rates is None else rates,
            seeds=options.get("seeds") or [seed],
        )
    raise ValueError(
        f"Unknown experiment {experiment!r}; valid: 'single', 'data_size', 'label_quality', "
        "'learning_rate'."
    )


def confidence_column(ws: Any, column: str = "confidence") -> pd.Series | None:
    """A numeric per-row crowd confidence from the metadata, indexed by sample id, if any."""
    if column not in (ws.info().get("meta_columns") or []):
        return None
    rows = ws.samples(with_meta=True)
    values = pd.to_numeric(
        pd.Series([m.get(column) for m in rows["meta"]], index=rows["id"]), errors="coerce"
    )
    return values if values.notna().any() else None


def run_experiment(
    ws: Any,
    experiment: str,
    *,
    config: TrainingConfig,
    job_id: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> list[int]:
    """Plan and run an experiment, one run after another, all on the same evaluation rows.

    Every run is scored on the same test rows (``eval_ids``: a seeded sample of the test split
    capped at ``config.max_eval_samples``), on the same verified test rows (all of them, never
    capped), shows the same before/after rows, and validates on the same validation rows.
    Options as for :func:`plan`.
    """
    train, test = split_ids(ws)
    train, validation, source = validation_split(ws, train, config=config)
    specs = plan(ws, experiment, config=config, **{**options, "train_ids": train})
    evaluation = eval_ids(test, seed=config.seed, cap=config.max_eval_samples)
    verified = verified_ids(ws, test)
    probes = probe_ids(evaluation, seed=config.seed)
    run_ids = []
    for i, spec in enumerate(specs):
        if progress:
            progress({"stage": "training", "run": i + 1, "runs": len(specs), "name": spec.name})
        run_ids.append(
            execute_run(
                ws,
                spec,
                config=config,
                eval_rows=evaluation,
                job_id=job_id,
                should_stop=should_stop,
                validation_rows=validation,
                verified_rows=verified,
                probe_rows=probes,
                validation_source=source,
            )
        )
    return run_ids
