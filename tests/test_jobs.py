"""Background jobs: real child processes write progress and results into the store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import jobs
from tests.conftest import TINY
from training.config import TrainingConfig


def wait(ws, job_id, *, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = ws.job(job_id)
        if not job.active:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout}s: {job}")


def test_analysis_job_scores_every_row(workspace):
    job_id = jobs.launch(workspace, "analyze", {"n_folds": 3, "seed": 0})
    job = wait(workspace, job_id)
    assert job.status == "done", job.error
    latest = workspace.latest_analysis()
    assert latest.id == job.result["analysis_id"]
    assert latest.label_version == 0
    results = workspace.analysis_results()
    assert results["label_quality"].notna().all() and len(results) == workspace.counts()["n"]
    # The finished child is waited for: no <defunct> process is left behind the app.
    wait_for_exit(job.pid)


def wait_for_exit(pid: int, *, timeout: float = 30) -> None:
    """Fail unless ``pid`` is gone (not a zombie) within ``timeout`` seconds."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return  # reaped
        if state != "Z":  # still exiting (writing its log, closing the store)
            time.sleep(0.2)
            continue
        time.sleep(0.2)  # a zombie; give the waiter a moment before failing
    pytest.fail(f"job process {pid} is still there (a <defunct> zombie) after {timeout:.0f} s")


def test_train_job_records_a_run_with_metrics_and_model(workspace):
    job_id = jobs.launch(workspace, "train", {"config": TINY.to_dict()})
    job = wait(workspace, job_id)
    assert job.status == "done", job.error
    [run] = workspace.runs(job_id=job_id)
    assert run.status == "done"
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix"} <= set(run.test)
    # Validation rows are held out of the training split (stratified): 14 train + 4 validation.
    data = run.data
    assert data["train_rows"] + data["validation_rows"] == workspace.counts()["train"]
    assert data["validation_source"] == "held out" and data["label_version"] == 0
    assert run.verified["n"] == 0 and run.verified["accuracy"] is None
    assert any("eval_loss" in h for h in run.history)
    assert (workspace.run_dir(run.id) / "model" / "config.json").exists()


def test_cancel_leaves_the_workspace_intact(workspace):
    workspace.relabel(0, "negative", reviewer="ana")
    version, events = workspace.label_version(), len(workspace.events())
    slow = TrainingConfig.from_dict({**TINY.to_dict(), "epochs": 50.0})
    job_id = jobs.launch(workspace, "train", {"config": slow.to_dict()})
    deadline = time.monotonic() + 120
    while not workspace.runs(job_id=job_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    jobs.cancel(workspace, job_id, grace_seconds=60)
    job = workspace.job(job_id)
    assert job.status == "cancelled" and job.error is None  # stopped, not killed
    assert workspace.sample(0)["label"] == "negative"
    assert (workspace.label_version(), len(workspace.events())) == (version, events)
    [run] = workspace.runs(job_id=job_id)
    assert run.status == "cancelled" and run.finished_at
    folder = workspace.run_dir(run.id)
    assert not (folder / "model").exists() and not (folder / "trainer").exists()


def test_child_command_is_plain_python_or_one_process_per_gpu(workspace):
    single = jobs.child_command(workspace.folder, 7)
    assert single[1:] == ["-m", "jobs", str(workspace.folder), "7"]
    multi = jobs.child_command(workspace.folder, 7, gpus=4)
    assert multi[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert multi[multi.index("--num_processes") + 1] == "4"
    assert multi[-4:] == ["-m", "jobs", str(workspace.folder), "7"]
    # Training uses every visible GPU (one process on a CPU-only machine); analysis and CPU
    # training stay single-process whatever the machine has.
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert jobs.gpus_for("train", {"config": TINY.to_dict()}) == max(1, visible)
    assert jobs.gpus_for("analyze", {}) == 1
    assert jobs.gpus_for("train", {"config": {"device": "cpu"}}) == 1
    with pytest.raises(ValueError, match="gpus"):
        jobs.child_command(workspace.folder, 7, gpus=0)


def test_a_dead_job_is_reported_failed(workspace):
    job_id = workspace.create_job("analyze", {})
    workspace.update_job(job_id, status="running", pid=2**22 + 12345)  # no such process
    run_id = workspace.create_run(name="r", config={}, data={}, job_id=job_id)
    jobs.reap(workspace)
    assert workspace.job(job_id).status == "failed"
    assert workspace.run(run_id).status == "failed"  # no run left "running" forever


def test_unknown_job_kind_is_refused(workspace):
    with pytest.raises(ValueError, match="valid"):
        workspace.create_job("dance", {})


def test_the_store_accepts_exactly_the_registered_job_kinds():
    # The store refuses unknown kinds on its own (it cannot import jobs/); the two lists agree.
    from data.store import JOB_KINDS

    assert set(jobs.KINDS) == set(JOB_KINDS)
    with pytest.raises(ValueError, match="valid: analyze, train"):
        jobs.job_kind("no-such-kind")
