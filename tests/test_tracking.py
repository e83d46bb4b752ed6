"""Experiment trackers (training/tracking.py): a tracker that is missing or fails is a warning
on a run that still completes and is saved; MLflow (local SQLite store) and W&B (offline)
receive tiny real runs when installed (they are optional extras: those tests skip without)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import training.tracking as tracking_module
from tests.conftest import TINY
from tests.test_training import LABELS, NAMES, TEXTS, tiny_config
from training.config import TrainingConfig
from training.experiments import eval_ids
from training.finetune import RUN_FILE, fine_tune
from training.runs import execute_run, plan, split_ids
from training.tracking import check_tracker, mlflow_uri, tracking

EVENTS = ("on_train_begin", "on_log", "on_train_end")


def train(tmp_path, report_to: str):
    """A tiny real run (one optimiser step) with the tracker's store in tmp_path/tracking."""
    return fine_tune(
        TEXTS,
        LABELS,
        label_names=NAMES,
        config=tiny_config(report_to=report_to, batch_size=16),
        output_dir=tmp_path / "run",
        eval_texts=TEXTS,
        eval_labels=LABELS,
        tracking_dir=tmp_path / "tracking",
    )


def assert_saved(tmp_path, result, *, warnings: int) -> list[str]:
    """The run completed and was saved: model, metrics and a record holding its warnings."""
    assert result.metrics is not None and not result.cancelled
    assert (tmp_path / "run" / "model" / "config.json").exists()
    record = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert record["warnings"] == result.warnings and len(result.warnings) == warnings
    return result.warnings


def planted_tracker(monkeypatch, fail_at: str) -> list[str]:
    """Plant a tracker callback in transformers' registry (as "mlflow") that raises at
    ``fail_at`` ("__init__" or an event); returns the events it received."""
    from transformers import TrainerCallback
    from transformers.integrations import integration_utils

    calls: list[str] = []

    class Broken(TrainerCallback):
        def __init__(self) -> None:
            if fail_at == "__init__":
                raise ImportError("tracker backend went away")

    def event(name: str):
        def method(self, args, state, control, **kwargs):
            calls.append(name)
            if name == fail_at:
                raise RuntimeError(f"store refused {name}")

        return method

    for name in EVENTS:
        setattr(Broken, name, event(name))
    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "mlflow", Broken)
    # The planted tracker needs no package; a user's URI skips the local store's set-up.
    monkeypatch.setattr(tracking_module, "tracker_problem", lambda report_to: None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///unused.db")
    return calls


# --------------------------------------------------------------------------- failures


def test_check_tracker_names_the_pip_install_of_a_missing_tracker(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # import fails as if not installed
    with pytest.raises(ValueError, match="needs sqlalchemy.*pip install mlflow-skinny sqlalchemy"):
        check_tracker("mlflow")
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ValueError, match="pip install wandb"):
        check_tracker("wandb")
    check_tracker("none")


@pytest.mark.parametrize("fail_at", ["__init__", *EVENTS])
def test_a_tracker_failing_at_any_moment_is_one_warning(tmp_path, monkeypatch, fail_at):
    # The wrapper alone, driven as the Trainer drives it: no model, so every moment is cheap.
    calls = planted_tracker(monkeypatch, fail_at)
    warnings: list[str] = []
    with tracking("mlflow", tracking_dir=tmp_path, warnings=warnings) as callback:
        if fail_at == "__init__":
            assert callback is None
        else:
            state = SimpleNamespace(is_world_process_zero=True)
            for name in ("on_train_begin", "on_log", "on_log", "on_train_end"):
                assert getattr(callback, name)(None, state, None, logs={"loss": 1.0}) is None
    assert len(warnings) == 1 and "the run went on without it" in warnings[0]
    assert ("tracker backend went away" if fail_at == "__init__" else "store refused") in warnings[
        0
    ]
    # Once failed, the tracker hears nothing more.
    expected = {"__init__": [], "on_train_begin": ["on_train_begin"]}
    expected["on_log"] = ["on_train_begin", "on_log"]
    expected["on_train_end"] = ["on_train_begin", "on_log", "on_log", "on_train_end"]
    assert calls == expected[fail_at]
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///unused.db"  # the user's, untouched


@pytest.mark.slow
def test_a_tracker_failing_mid_run_costs_nothing_but_a_warning(tmp_path, monkeypatch):
    calls = planted_tracker(monkeypatch, "on_log")
    result = train(tmp_path, "mlflow")
    (warning,) = assert_saved(tmp_path, result, warnings=1)
    assert warning.startswith("MLflow tracking failed while logging (RuntimeError: store refused")
    assert calls == ["on_train_begin", "on_log"]


@pytest.mark.slow
def test_a_missing_tracker_is_a_warning_and_the_run_is_saved(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails as if not installed
    result = train(tmp_path, "wandb")
    (warning,) = assert_saved(tmp_path, result, warnings=1)
    assert "pip install wandb" in warning and "The run was not tracked." in warning


@pytest.mark.slow
def test_a_workspace_run_keeps_its_tracker_warning_in_its_record(workspace, monkeypatch):
    # The app's path: the Train page shows the record's warnings beside the run.
    planted_tracker(monkeypatch, "on_train_begin")
    config = TrainingConfig.from_dict({**TINY.to_dict(), "report_to": "mlflow"})
    (spec,) = plan(workspace, "single", config=config)
    _, test = split_ids(workspace)
    run = workspace.run(execute_run(workspace, spec, config=config, eval_rows=eval_ids(test)))
    assert run.status == "done" and (Path(run.model_dir) / "config.json").exists()
    (warning,) = run.data["warnings"]
    assert warning.startswith("MLflow tracking failed at the start (RuntimeError: store refused")


# --------------------------------------------------------------------------- real trackers


@pytest.mark.slow
def test_mlflow_records_the_run_in_a_local_sqlite_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("alembic")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    result = train(tmp_path, "mlflow")
    assert_saved(tmp_path, result, warnings=0)
    assert (tmp_path / "tracking" / "mlflow.db").exists()
    assert "MLFLOW_TRACKING_URI" not in os.environ  # set for the run only
    client = MlflowClient(mlflow_uri(tmp_path / "tracking"))
    experiment = client.get_experiment_by_name("second-look")
    # Artifacts beside the store, not under ./mlruns of whatever folder the process ran in.
    assert experiment.artifact_location == (tmp_path / "tracking" / "mlartifacts").as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert {"loss", "eval_loss", "train_loss"} <= set(run.data.metrics)
    assert run.data.params["learning_rate"] == str(result.learning_rate)


@pytest.mark.slow
def test_mlflow_at_an_unusable_store_is_a_warning_and_the_run_is_saved(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("alembic")
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/a-file/mlflow.db")
    result = train(tmp_path, "mlflow")
    (warning,) = assert_saved(tmp_path, result, warnings=1)
    assert warning.startswith("MLflow tracking failed at the start")


@pytest.mark.slow
def test_wandb_records_the_run_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    result = train(tmp_path, "wandb")
    assert_saved(tmp_path, result, warnings=0)
    (folder,) = (tmp_path / "tracking" / "wandb").glob("offline-run-*")
    assert list(folder.glob("*.wandb"))  # the run's history, for `wandb sync`
    assert wandb.run is None  # closed: the next run in this process starts its own
