"""K-fold cross-validated fine-tuning of the transformer itself, as a detection component.

Each fold's model is fine-tuned (:func:`training.finetune.fine_tune`) on the other folds' rows
and predicts its own fold, so every row's probabilities come from a model that never saw its
label. Slow on a CPU, so there the training rows per fold are capped (:data:`FINETUNE_CPU_ROWS`);
every row is still predicted whatever the cap.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curation.methods.registry import Component, FoldSplit
from runtime.progress import Cancelled, Progress

# "auto" row cap per fold for fine-tuning on a CPU (the TrainingConfig default).
FINETUNE_CPU_ROWS = 2000


@dataclass(frozen=True)
class FinetuneRates:
    """Speeds of fine-tuning on one kind of device: rows trained per second (per epoch), rows
    predicted per second, and the fixed seconds per fold (loading the model, saving it)."""

    train: float
    predict: float
    per_fold: float


# Fine-tuning all-MiniLM-L6-v2, batch 32, max length 64. CPU: measured (bf16 autocast). GPU:
# not measured here (no GPU in that session); conservative figures for a current datacenter GPU.
_RATES = {
    "cpu": FinetuneRates(train=70.0, predict=330.0, per_fold=8.0),
    "cuda": FinetuneRates(train=1500.0, predict=8000.0, per_fold=10.0),
}


@dataclass(frozen=True)
class FineTune(Component):
    """Fine-tunes the transformer once per fold on (at most ``rows_cap`` of) the other folds'
    rows and predicts the held-out fold."""

    name: str = "finetune"
    cpu_rows: int = FINETUNE_CPU_ROWS
    rates: Mapping[str, FinetuneRates] = field(default_factory=lambda: dict(_RATES))

    def rows_cap(self, cap: int | str | None, device: str) -> int | None:
        """Training rows per fold for ``cap`` (``"auto"``, a whole number >= 2 or None = all)
        on ``device``: ``"auto"`` is :attr:`cpu_rows` on a CPU and all rows on a GPU."""
        if cap == "auto":
            return self.cpu_rows if device == "cpu" else None
        if cap is None:
            return None
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 2:
            raise ValueError(
                "finetune_rows must be 'auto', None (all rows) or a whole number >= 2, "
                f"got {cap!r}."
            )
        return cap

    def estimate(
        self,
        n_rows: int,
        *,
        device: str = "cpu",
        n_folds: int = 5,
        cached: bool = False,
        finetune_rows: int | str | None = "auto",
        epochs: float = 3.0,
    ) -> float:
        rates = self.rates[device]
        per_fold = math.ceil(n_rows * (n_folds - 1) / n_folds)
        rows = self.rows_cap(finetune_rows, device)
        if rows is not None:
            per_fold = min(per_fold, rows)
        train = n_folds * (per_fold * epochs / rates.train + rates.per_fold)
        return train + n_rows / rates.predict

    def probs(self, split: FoldSplit) -> tuple[np.ndarray, dict[str, Any]]:
        from runtime.device import resolve_device, resolve_precision

        config = _checked_config(split.training_config)
        device = resolve_device(config.device)
        rows = self.rows_cap(split.finetune_rows, device)
        names = _class_names(split.label_names, split.n_classes)
        config = _fold_config(config, rows)
        probs = np.zeros((len(split.labels), split.n_classes))
        with tempfile.TemporaryDirectory(prefix="second-look-cv-") as tmp:
            per_fold = [
                _fit_fold(split, f, probs, config, names, device, Path(tmp))
                for f in range(split.n_folds)
            ]
        settings = {
            "model": "fine-tuned transformer per fold",
            "rows_cap": rows,
            "device": device,
            "precision": resolve_precision(config.precision, device),
            "folds": per_fold,
            "config": config.to_dict(),
        }
        return probs / probs.sum(1, keepdims=True), settings


def _fit_fold(
    split: FoldSplit,
    f: int,
    probs: np.ndarray,
    config: Any,
    names: list[str],
    device: str,
    tmp: Path,
) -> dict[str, Any]:
    """Fine-tune on the folds other than ``f``, fill ``probs`` for fold ``f``'s rows, and return
    the fold's row counts and seconds."""
    from training.finetune import fine_tune
    from training.inference import predict_proba

    texts, y = split.texts, split.labels
    train, test = np.flatnonzero(split.folds != f), np.flatnonzero(split.folds == f)
    split.report({"stage": "fine-tuning", "fold": f + 1, "done": f, "total": split.n_folds})
    t = time.perf_counter()
    result = fine_tune(
        [texts[i] for i in train],
        y[train],
        label_names=names,
        config=config,
        output_dir=tmp / f"fold{f}",
        progress=_fold_progress(split.report, f, split.n_folds),
        should_stop=split.should_stop,
    )
    if result.cancelled:
        raise Cancelled()
    t_train = time.perf_counter() - t
    probs[test] = predict_proba(
        result.model_dir,
        [texts[i] for i in test],
        batch_size=config.batch_size * 2,
        max_length=config.max_length,
        device=device,
        precision=config.precision,
    )
    shutil.rmtree(tmp / f"fold{f}", ignore_errors=True)
    return {
        "train_rows": int(result.train_samples),
        "train_seconds": round(t_train, 1),
        "predict_rows": int(len(test)),
        "predict_seconds": round(time.perf_counter() - t - t_train, 1),
    }


def _checked_config(config: Any) -> Any:
    from training.config import TrainingConfig

    config = TrainingConfig() if config is None else config
    if not isinstance(config, TrainingConfig):
        raise ValueError(
            f"training_config must be a TrainingConfig, got {type(config).__name__}; build one "
            "with TrainingConfig(...)."
        )
    return config


def _class_names(label_names: Any, n_classes: int) -> list[str]:
    names = [str(v) for v in label_names] if label_names is not None else None
    names = names or [f"class_{i}" for i in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"label_names has {len(names)} names for {n_classes} classes.")
    return names


def _fold_config(config: Any, rows: int | None) -> Any:
    """The run config with the row cap; no validation split unless early stopping uses it."""
    changes: dict[str, Any] = {"max_train_samples": rows}
    if getattr(config, "early_stopping_patience", 0) == 0 and hasattr(
        config, "validation_fraction"
    ):
        changes["validation_fraction"] = 0.0
    return dataclasses.replace(config, **changes)


def _fold_progress(report: Progress, fold: int, n_folds: int) -> Callable[[dict], None]:
    def forward(event: dict) -> None:
        report({**event, "stage": "fine-tuning", "fold": fold + 1, "done": fold, "total": n_folds})

    return forward
