"""Optional experiment trackers (MLflow, Weights & Biases): kept local, and never cost a run.

``report_to="mlflow"`` logs through transformers' ``MLflowCallback`` to a local SQLite store,
``<tracking_dir>/mlflow.db`` (``MLFLOW_TRACKING_URI=sqlite:///...``), unless
``MLFLOW_TRACKING_URI`` is already set. SQLite, not a folder of files: MLflow 3 refuses the
file store (``./mlruns``, "in maintenance mode") unless ``MLFLOW_ALLOW_FILE_STORE`` is set.
``report_to="wandb"`` runs W&B in offline mode (``WANDB_MODE=offline``, files under
``<tracking_dir>/wandb``) unless ``WANDB_MODE`` is set, so nothing leaves the machine by
default. Neither package is a dependency (see the README's optional extras).

A tracker is a side channel: whatever goes wrong with it (the package or its SQLite driver is
missing, the store refuses the run at start, a metric fails to log, the run fails to close)
becomes a sentence in the run's ``warnings`` (:attr:`training.finetune.FineTuneResult.warnings`)
and the training goes on, untracked from then on, and is saved as usual.

Browse the results with ``mlflow ui --backend-store-uri sqlite:///<tracking_dir>/mlflow.db``
or ``wandb sync <tracking_dir>/wandb/offline-run-*``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runtime.device import is_main_process
from training.config import TRACKERS

EXPERIMENT_NAME = "second-look"
MLFLOW_DB = "mlflow.db"
# What each tracker imports: MLflow's SQLite store needs SQLAlchemy and Alembic, which the full
# ``mlflow`` package brings and ``mlflow-skinny`` does not.
PACKAGES = {"mlflow": ("mlflow", "sqlalchemy", "alembic"), "wandb": ("wandb",)}
INSTALL = {"mlflow": "mlflow-skinny sqlalchemy alembic", "wandb": "wandb"}
LABELS = {"mlflow": "MLflow", "wandb": "W&B"}
# How a warning names the moment a tracker failed, by Trainer event (others: "at save", ...).
MOMENTS = {
    "on_train_begin": "at the start",
    "on_log": "while logging",
    "on_train_end": "at the end",
}
# Longest tracker error quoted in a warning: MLflow's run to several sentences of advice.
MAX_ERROR_CHARS = 300


def mlflow_uri(tracking_dir: str | Path) -> str:
    """The local MLflow tracking URI of a tracking folder: its ``mlflow.db`` SQLite store."""
    return f"sqlite:///{(Path(tracking_dir).resolve() / MLFLOW_DB).as_posix()}"


def tracker_problem(report_to: str) -> str | None:
    """Why ``report_to`` cannot track here (a package is missing), naming the ``pip install``;
    ``None`` when it can, or when ``report_to`` is ``"none"``.

    Raises
    ------
    ValueError
        ``report_to`` is not one of :data:`training.config.TRACKERS`.
    """
    if report_to not in TRACKERS:
        raise ValueError(f"report_to must be one of {', '.join(TRACKERS)} (got {report_to!r}).")
    if report_to == "none":
        return None
    needed = PACKAGES[report_to]
    if report_to == "mlflow" and "MLFLOW_TRACKING_URI" in os.environ:
        needed = needed[:1]  # the user's store (e.g. a server) may need no SQL driver here
    missing = [name for name in needed if not _importable(name)]
    if not missing:
        return None
    return (
        f"report_to={report_to!r} needs {', '.join(missing)}, which "
        f"{'is' if len(missing) == 1 else 'are'} not installed: run "
        f"`pip install {INSTALL[report_to]}`, or set report_to='none'."
    )


def check_tracker(report_to: str) -> None:
    """Raise ``ValueError`` naming the ``pip install`` when the tracker's packages are missing.

    For a form or a command line to refuse the choice before a run starts; :func:`tracking`
    turns the same problem into a warning instead.
    """
    problem = tracker_problem(report_to)
    if problem:
        raise ValueError(problem)


@contextlib.contextmanager
def tracking(report_to: str, *, tracking_dir: str | Path, warnings: list[str]) -> Iterator[Any]:
    """Set up one run's tracker; yield the ``TrainerCallback`` to give the Trainer, or ``None``.

    The callback is transformers' own, wrapped so that an exception from it is appended to
    ``warnings`` (and the tracker left out of the rest of the run) instead of ending the
    training. The tracker's environment variables are set for the run and restored after it;
    variables the user already set win (``MLFLOW_TRACKING_URI``, ``WANDB_MODE``, ...).

    Parameters
    ----------
    report_to
        ``"none"``, ``"mlflow"`` or ``"wandb"``.
    tracking_dir
        Folder of the local store: ``mlflow.db`` or ``wandb/``.
    warnings
        Where a tracking failure is described, one sentence each.
    """
    label = LABELS.get(report_to, report_to)
    problem = tracker_problem(report_to)
    if report_to == "none" or problem:
        if problem:
            warnings.append(f"{problem} The run was not tracked.")
        yield None
        return
    with _tracker_env(report_to, Path(tracking_dir)):
        callback = None
        try:
            Path(tracking_dir).mkdir(parents=True, exist_ok=True)
            ours = os.environ.get("MLFLOW_TRACKING_URI") == mlflow_uri(tracking_dir)
            # One process creates the store: only the main one logs (MLflowCallback), and
            # ranks creating a fresh SQLite store at once would trip over each other.
            if report_to == "mlflow" and ours and is_main_process():
                _mlflow_experiment(Path(tracking_dir))
            callback = _safe_callback(report_to, warnings)
        except Exception as exc:  # a tracker must never cost the run
            warnings.append(_failure(label, "at the start", exc))
        try:
            yield callback
        finally:
            if callback is not None:
                # Normally a no-op (the run closed at on_train_end); after a training error
                # it ends the tracker's run so that the next one in this process starts clean.
                callback.abandon()


@contextlib.contextmanager
def _tracker_env(report_to: str, folder: Path) -> Iterator[None]:
    wanted: dict[str, str] = {}
    if report_to == "mlflow":
        wanted = {
            "MLFLOW_TRACKING_URI": mlflow_uri(folder),
            "MLFLOW_EXPERIMENT_NAME": EXPERIMENT_NAME,
        }
    elif report_to == "wandb":
        wanted = {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(folder.resolve()),
            "WANDB_PROJECT": EXPERIMENT_NAME,
            "WANDB_SILENT": "true",
        }
    added = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _mlflow_experiment(folder: Path) -> None:
    """Create the local store's experiment with its artifacts beside the store: MLflow would
    put them under ``./mlruns`` in whatever folder the process happens to run in."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri(folder))
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT_NAME)
    if client.get_experiment_by_name(name) is not None:
        return
    try:
        client.create_experiment(
            name, artifact_location=(folder.resolve() / "mlartifacts").as_uri()
        )
    except Exception:
        # Another process (a parallel run) created it first: that is fine.
        if client.get_experiment_by_name(name) is None:
            raise


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # sys.modules[name] is None, or a broken package
        return False


def _failure(label: str, when: str, exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    return (
        f"{label} tracking failed {when} ({type(exc).__name__}: {message}); the run went on "
        "without it."
    )


def _safe_callback(report_to: str, warnings: list[str]) -> Any:
    """transformers' callback for ``report_to``, behind a wrapper that turns its exceptions
    into ``warnings``. Built here so that transformers is imported only when training starts."""
    from transformers import TrainerCallback
    from transformers.integrations import get_reporting_integration_callbacks

    label = LABELS[report_to]
    # Built at once, not in the Trainer: a tracker that fails to construct (its import
    # fails, say) is then a warning, not an exception from Trainer(...).
    inner = get_reporting_integration_callbacks([report_to])[0]()

    class _SafeTracker(TrainerCallback):
        def __init__(self) -> None:
            self.failed = False
            self._wandb_owned = False

        def _call(self, event: str, args, state, control, **kwargs):
            if self.failed:
                return None
            try:
                if event == "on_train_begin" and report_to == "wandb":
                    # W&B reuses a run already open in this process; only one it opens here
                    # is closed here.
                    self._wandb_owned = inner._wandb.run is None
                result = getattr(inner, event)(args, state, control, **kwargs)
                if event == "on_train_end":
                    self._close()
                return result
            except Exception as exc:  # a tracker must never cost the run
                self.failed = True
                when = MOMENTS.get(event, "at " + event.removeprefix("on_").replace("_", " "))
                warnings.append(_failure(label, when, exc))
                self.abandon()
                return None

        def _close(self) -> None:
            # transformers' WandbCallback leaves its run open: the next fine_tune in this
            # process (an experiment's next run) would log into it.
            if report_to == "wandb" and self._wandb_owned and inner._wandb.run is not None:
                inner._wandb.finish()
            self._wandb_owned = False

        def abandon(self) -> None:
            """End a tracker run left open (training failed, or the tracker did), quietly."""
            with contextlib.suppress(Exception):
                if report_to == "mlflow":
                    if inner._auto_end_run and inner._ml_flow.active_run() is not None:
                        inner._ml_flow.end_run(status="FAILED")
                    inner._auto_end_run = False
                elif self._wandb_owned and inner._wandb.run is not None:
                    inner._wandb.finish(exit_code=1)
                    self._wandb_owned = False

    def forward(event: str):
        def method(self, args, state, control, **kwargs):
            return self._call(event, args, state, control, **kwargs)

        method.__name__ = event
        return method

    # Every event the Trainer can send (on_train_begin, on_log, on_save, ...).
    for event in [name for name in vars(TrainerCallback) if name.startswith("on_")]:
        setattr(_SafeTracker, event, forward(event))
    return _SafeTracker()
