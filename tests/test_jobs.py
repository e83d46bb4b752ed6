"""Background jobs: real child processes write progress and results into the store."""

from __future__ import annotations

import time

import pytest

from training import jobs
from training.config import TrainingConfig

TINY = TrainingConfig(
    epochs=1.0,
    batch_size=8,
    max_length=32,
    max_train_samples=None,
    max_eval_samples=None,
    precision="fp32",
)


def wait(ws, job_id, *, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = ws.job(job_id)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")


def test_analysis_job_scores_every_row(workspace):
    job_id = jobs.launch(workspace, "analyze", {"n_folds": 3, "seed": 0})
    job = wait(workspace, job_id)
    assert job["status"] == "done", job["error"]
    latest = workspace.latest_analysis()
    assert latest["id"] == job["result"]["analysis_id"]
    assert latest["label_version"] == 0
    results = workspace.analysis_results()
    assert results["label_quality"].notna().all() and len(results) == workspace.counts()["n"]


def test_train_job_records_a_run_with_metrics_and_model(workspace):
    job_id = jobs.launch(workspace, "train", {"config": TINY.to_dict()})
    job = wait(workspace, job_id)
    assert job["status"] == "done", job["error"]
    [run] = workspace.runs(job_id=job_id)
    assert run["status"] == "done"
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix"} <= set(
        run["metrics"]
    )
    assert run["data"]["train_rows"] == workspace.counts()["train"]
    assert (workspace.run_dir(run["id"]) / "model" / "config.json").exists()


def test_cancel_leaves_the_workspace_intact(workspace):
    workspace.relabel(0, "negative", reviewer="ana")
    slow = TrainingConfig.from_dict({**TINY.to_dict(), "epochs": 50.0})
    job_id = jobs.launch(workspace, "train", {"config": slow.to_dict()})
    deadline = time.monotonic() + 120
    while not workspace.runs(job_id=job_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    jobs.cancel(workspace, job_id, grace_seconds=60)
    job = workspace.job(job_id)
    assert job["status"] == "cancelled"
    assert workspace.sample(0)["label"] == "negative"
    assert all(r["status"] in ("cancelled", "failed") for r in workspace.runs(job_id=job_id))


def test_a_dead_job_is_reported_failed(workspace):
    job_id = workspace.create_job("analyze", {})
    workspace.update_job(job_id, status="running", pid=2**22 + 12345)  # no such process
    jobs.reap(workspace)
    assert workspace.job(job_id)["status"] == "failed"


def test_unknown_job_kind_is_refused(workspace):
    with pytest.raises(ValueError, match="valid"):
        workspace.create_job("dance", {})
