"""Training runs on a workspace: pick rows and labels, fine-tune, record everything in the store.

Every run's record holds its config, the data version (label source, label version, row count,
evaluation rows), the loss history and the metrics, so a chart point can always be traced back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from training.config import TrainingConfig
from training.experiments import RunSpec, eval_ids, plan_data_size, plan_label_quality
from training.finetune import fine_tune


class RunCancelled(Exception):
    """The user cancelled the job while this run was training."""


def split_ids(ws: Any) -> tuple[list[int], list[int]]:
    """Training and test sample ids, leaving out rows a reviewer excluded.

    A ``validation`` split, if the data has one, is not used for training in v1.
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


def execute_run(
    ws: Any,
    spec: RunSpec,
    *,
    config: TrainingConfig,
    eval_rows: list[int],
    job_id: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Train one spec and record it; returns the run id. Raises RunCancelled on cancel."""
    rows = ws.samples().set_index("id")
    label_col = "label" if spec.label_source == "curated" else "original_label"
    names = ws.label_names
    index = {n: i for i, n in enumerate(names)}
    train = rows.loc[spec.train_ids]
    test = rows.loc[eval_rows]
    data = {
        "experiment": spec.experiment,
        "x": spec.x,
        "label_source": spec.label_source,
        "label_version": ws.label_version(),
        "train_rows": len(train),
        "eval_rows": len(test),
        "eval_labels": "curated",
        **spec.notes,
    }
    run_id = ws.create_run(name=spec.name, config=config.to_dict(), data=data, job_id=job_id)
    history: list[dict[str, Any]] = []

    def progress(info: dict[str, Any]) -> None:
        if info.get("loss") is not None:
            history.append({k: info.get(k) for k in ("step", "loss", "epoch")})
        # The history goes along so the Train page can draw the loss curve while it trains.
        ws.update_run(run_id, progress=info, history=history)

    # The run's own sample cap would re-sample the rows the experiment chose: turn it off, the
    # spec already holds exactly the rows to train on (and eval_rows the rows to test on).
    run_config = TrainingConfig.from_dict(
        {**config.to_dict(), "max_train_samples": None, "max_eval_samples": None}
    )
    try:
        result = fine_tune(
            train["text"].tolist(),
            np.array([index[v] for v in train[label_col]]),
            label_names=names,
            config=run_config,
            output_dir=ws.run_dir(run_id),
            eval_texts=test["text"].tolist(),
            eval_labels=np.array([index[v] for v in test["label"]]),
            progress=progress,
            should_stop=should_stop,
        )
    except BaseException as exc:
        ws.update_run(run_id, status="failed", history=history, progress={"error": str(exc)})
        raise
    if result.cancelled:
        ws.update_run(run_id, status="cancelled", history=history)
        raise RunCancelled()
    data.update(
        device=result.device,
        precision=result.precision,
        train_seconds=result.train_seconds,
        train_samples_per_second=result.train_samples_per_second,
    )
    ws.update_run(
        run_id,
        status="done",
        metrics=result.metrics,
        history=result.history or history,
        model_dir=str(result.model_dir),
        data=data,
    )
    return run_id


def plan(ws: Any, experiment: str, *, config: TrainingConfig, **options: Any) -> list[RunSpec]:
    """The run specs for ``experiment`` on this workspace's current state.

    ``"single"`` is one run on all (capped) curated training rows; ``"data_size"`` and
    ``"label_quality"`` see :mod:`training.experiments`. For label quality, a numeric
    ``confidence`` metadata column (the demo's crowd confidence) adds threshold runs.
    """
    train, _ = split_ids(ws)
    cap = config.max_train_samples
    if experiment == "single":
        pool = plan_data_size(train, fractions=(1.0,), seed=config.seed, cap=cap)[0]
        pool.experiment, pool.name = "single", f"curated labels ({len(pool.train_ids)} rows)"
        return [pool]
    if experiment == "data_size":
        return plan_data_size(
            train,
            fractions=options.get("fractions") or (0.1, 0.25, 0.5, 1.0),
            seed=config.seed,
            cap=cap,
        )
    if experiment == "label_quality":
        confidence = confidence_column(ws)
        return plan_label_quality(
            train,
            confidence=confidence,
            thresholds=options.get("thresholds") or (0.5, 0.7, 0.9, 1.0),
            seed=config.seed,
            cap=cap,
        )
    raise ValueError(
        f"Unknown experiment {experiment!r}; valid: 'single', 'data_size', 'label_quality'."
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
    """Plan and run an experiment, one run after another, all on the same evaluation rows."""
    specs = plan(ws, experiment, config=config, **options)
    _, test = split_ids(ws)
    evaluation = eval_ids(test, seed=config.seed, cap=config.max_eval_samples)
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
            )
        )
    return run_ids
