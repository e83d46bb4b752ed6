"""Optional experiment trackers (MLflow, Weights & Biases), kept local by default.

``report_to="mlflow"`` logs through transformers' ``MLflowCallback`` to a local file store
(``MLFLOW_TRACKING_URI=file:<tracking_dir>/mlruns``) unless ``MLFLOW_TRACKING_URI`` is already
set; ``report_to="wandb"`` runs W&B in offline mode (``WANDB_MODE=offline``, files under
``<tracking_dir>/wandb``) unless ``WANDB_MODE`` is set, so nothing leaves the machine by
default. Neither package is a dependency: choosing one that is not installed fails before the
model loads, naming the ``pip install`` to run.

Browse the results with ``mlflow ui --backend-store-uri file:<tracking_dir>/mlruns`` or
``wandb sync <tracking_dir>/wandb/offline-run-*``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from pathlib import Path

from training.config import TRACKERS

PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}
EXPERIMENT_NAME = "second-look"


def check_tracker(report_to: str) -> None:
    """Raise ``ValueError`` naming the ``pip install`` when the tracker's package is missing."""
    if report_to not in TRACKERS:
        raise ValueError(f"report_to must be one of {', '.join(TRACKERS)} (got {report_to!r}).")
    if report_to == "none":
        return
    package = PACKAGES[report_to]
    try:
        importlib.import_module(package)
    except ImportError as exc:
        raise ValueError(
            f"report_to={report_to!r} needs the {package} package, which is not installed: "
            f"run `pip install {package}`, or set report_to='none'."
        ) from exc


def trainer_report_to(report_to: str) -> str | list[str]:
    """The ``TrainingArguments.report_to`` value for a tracker choice."""
    return "none" if report_to == "none" else [report_to]


@contextlib.contextmanager
def tracker_env(report_to: str, *, tracking_dir: str | Path) -> Iterator[None]:
    """Point the tracker at a local store for the duration of a run, then restore the env.

    Variables the user already set win (``MLFLOW_TRACKING_URI``, ``WANDB_MODE``, ...).
    """
    folder = Path(tracking_dir).resolve()
    wanted: dict[str, str] = {}
    if report_to == "mlflow":
        wanted = {
            "MLFLOW_TRACKING_URI": (folder / "mlruns").as_uri(),
            "MLFLOW_EXPERIMENT_NAME": EXPERIMENT_NAME,
        }
    elif report_to == "wandb":
        wanted = {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(folder),
            "WANDB_PROJECT": EXPERIMENT_NAME,
            "WANDB_SILENT": "true",
        }
    added = {k: v for k, v in wanted.items() if k not in os.environ}
    if report_to == "wandb":
        folder.mkdir(parents=True, exist_ok=True)
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
