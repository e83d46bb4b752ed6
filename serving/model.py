"""A saved classifier loaded once for serving, with what was saved next to it.

:func:`load_served_model` takes what :func:`training.finetune.fine_tune` writes (``DIR`` or
``DIR/model``; a training run of a workspace is ``<workspace>/runs/run-NNNN``) or any
sequence-classification folder saved with ``save_pretrained``, and fails at once, with a
message that says what to pass, when the folder holds no classifier. Loading and predicting
are :mod:`training.inference`'s; this module adds the description that ``GET /model`` answers:

- ``labels``: the class names in the model's class order (``config.json``'s ``id2label``);
- ``config`` and ``training``: the training config and facts (device, precision, technique,
  rows, seconds, ...) from ``training_run.json``;
- ``metrics`` and ``verified_metrics``: the test metrics (``metrics.json``) and, for a
  workspace run, those on the test rows a reviewer verified (``evaluation.json``);
- ``data``: the data version: for a workspace run its record in the workspace's store (label
  source, label version, row counts and id hashes, noise, ...), else the row counts that
  ``training_run.json`` and ``metrics.json`` hold; ``None`` for a bare ``save_pretrained``
  folder.

The before/after examples in ``evaluation.json`` are left out: they are test rows' texts.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.device import resolve_device, resolve_precision
from runtime.models import DEFAULT_MODEL_NAME
from runtime.validation import positive_int
from training.finetune import METRICS_FILE, RUN_FILE
from training.inference import (
    MODEL_SUBDIR,
    classifier_dir,
    load_for_inference,
    predict_loaded,
)
from training.runs import EVALUATION_FILE

__all__ = ["DEFAULT_MAX_LENGTH", "ModelLoadError", "ServedModel", "load_served_model"]

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 64  # word pieces, when the folder does not say what it was trained with
TRAINING_FACTS_LEFT_OUT = {"config", "label_names", "history", "cancelled"}


class ModelLoadError(ValueError):
    """The folder holds no loadable classifier; the message says what to pass instead."""


@dataclass
class ServedModel:
    """A classifier in memory and its description; :meth:`predict` is safe from any thread."""

    folder: Path
    labels: list[str]
    info: dict[str, Any]
    max_length: int
    batch_size: int
    device: str
    precision: str
    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities ``(len(texts), len(labels))``, rows sorted by length into
        batches of at most ``batch_size`` (:func:`training.inference.predict_loaded`)."""
        with self._lock:  # one forward pass at a time: torch already uses every core
            return predict_loaded(
                self.model,
                self.tokenizer,
                texts,
                batch_size=self.batch_size,
                max_length=self.max_length,
                precision=self.precision,
            )

    def describe(self) -> str:
        return (
            f"{self.folder} ({len(self.labels)} labels, max length {self.max_length}, "
            f"batch size {self.batch_size}, {self.device} {self.precision})"
        )


def load_served_model(
    model_dir: str | Path,
    *,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = 64,
    max_length: int | None = None,
) -> ServedModel:
    """Load a saved classifier once, check it, warm it up, and read its description.

    Parameters
    ----------
    model_dir
        ``DIR`` or ``DIR/model`` as written by ``fine_tune`` (``cli.py train --out DIR``, a
        workspace run's folder), or a ``save_pretrained`` folder of a classifier.
    device, precision
        As for :func:`training.inference.predict_proba` (``fp32``: the same probabilities as
        ``cli.py predict``).
    batch_size
        Most texts per forward pass.
    max_length
        Truncation length in word pieces; default: the one the model was trained with (from
        ``training_run.json``), else 64.

    Raises
    ------
    ModelLoadError
        No classifier in the folder, or it cannot be loaded; the message says why.
    ValueError
        A bad ``device``, ``precision``, ``batch_size`` or ``max_length``.
    """
    batch_size = positive_int("batch_size", batch_size)
    if max_length is not None:
        max_length = positive_int("max_length", max_length)
        if max_length < 8:
            raise ValueError(f"max_length must be a whole number >= 8 (got {max_length!r}).")
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    try:
        folder = classifier_dir(model_dir)
    except FileNotFoundError as exc:
        raise ModelLoadError(str(exc)) from exc
    labels = _labels(folder)
    run_folder = folder.parent if folder.name == MODEL_SUBDIR else folder
    run = _read_json(run_folder / RUN_FILE) or _read_json(folder / RUN_FILE)
    config = run.get("config") if isinstance(run, dict) else None
    if max_length is None:
        trained = (config or {}).get("max_length")
        max_length = trained if isinstance(trained, int) and trained > 0 else DEFAULT_MAX_LENGTH
    try:
        model, tokenizer = load_for_inference(folder, device=device)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"Could not load the classifier in {folder}: {exc}") from exc
    if int(model.config.num_labels) != len(labels):
        raise ModelLoadError(
            f"{folder}/config.json names {len(labels)} labels but the model has "
            f"{model.config.num_labels} outputs; save the model again with save_pretrained."
        )
    served = ServedModel(
        folder=folder,
        labels=labels,
        info=_describe(folder, run_folder, run, config, labels),
        max_length=max_length,
        batch_size=batch_size,
        device=device,
        precision=precision,
        model=model,
        tokenizer=tokenizer,
    )
    served.predict(["warm up"])  # the first forward pass is slow; pay for it before serving
    return served


def _labels(folder: Path) -> list[str]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} is not a model config (not a JSON object).")
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise ModelLoadError(
            f"{folder} holds a {', '.join(map(str, architectures)) or 'model'} without a "
            "classification head (its config.json has no *ForSequenceClassification "
            "architecture); serve a folder written by `cli.py train --out DIR` or a "
            "workspace's training run."
        )
    id2label = config.get("id2label") or {}
    try:
        names = {int(i): str(name) for i, name in id2label.items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path} has a garbled id2label: {exc}") from exc
    k = int(config.get("num_labels") or len(names) or 0)
    labels = [names.get(j, f"LABEL_{j}") for j in range(max(k, len(names)))]
    if len(labels) < 2:
        raise ModelLoadError(f"{path} names fewer than two labels; this is not a classifier.")
    if len(set(labels)) != len(labels):
        raise ModelLoadError(f"{path} names the same label twice in id2label: {labels}.")
    return labels


def _describe(
    folder: Path, run_folder: Path, run: Any, config: dict | None, labels: list[str]
) -> dict[str, Any]:
    """What ``GET /model`` answers (JSON-ready: no NaN or infinity)."""
    run = run if isinstance(run, dict) else {}
    metrics = _read_json(run_folder / METRICS_FILE)
    evaluation = _read_json(run_folder / EVALUATION_FILE)
    verified = evaluation.get("verified") if isinstance(evaluation, dict) else None
    base = (config or {}).get("model")
    info = {
        "labels": labels,
        "name": run_folder.name,
        "base_model": (base or DEFAULT_MODEL_NAME) if config is not None else None,
        "config": config,
        "training": {k: v for k, v in run.items() if k not in TRAINING_FACTS_LEFT_OUT} or None,
        "data": _data_version(run_folder, run, metrics),
        "metrics": metrics if isinstance(metrics, dict) else None,
        "verified_metrics": verified if isinstance(verified, dict) else None,
    }
    return json_ready(info)


def _data_version(run_folder: Path, run: dict, metrics: Any) -> dict[str, Any] | None:
    workspace = run_folder.parent.parent
    if run_folder.parent.name == "runs" and run_folder.name.startswith("run-"):
        from data.store.base import is_workspace

        if is_workspace(workspace):
            return _workspace_run_data(workspace, run_folder.name)
    if not run:
        return None
    return {
        "source": RUN_FILE,
        "train_rows": run.get("train_samples"),
        "validation_rows": run.get("validation_samples"),
        "eval_rows": metrics.get("n") if isinstance(metrics, dict) else None,
    }


def _workspace_run_data(workspace: Path, run_name: str) -> dict[str, Any]:
    """The run's data version as the workspace's store recorded it."""
    try:
        from data.store import Workspace

        run_id = int(run_name.removeprefix("run-"))
        ws = Workspace(workspace)
        try:
            record = ws.run(run_id)
            return {
                "source": "workspace",
                "workspace": ws.name,
                "run_id": run_id,
                "run_name": record.name,
                **(record.data or {}),
            }
        finally:
            ws.close()
    except Exception as exc:  # the model still serves; /model says why the record is missing
        log.warning("could not read the run's record from %s: %s", workspace, exc)
        return {"source": "workspace", "error": f"could not read the run's record: {exc}"}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has neither) and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return json_ready(value.item())
    return value
