"""Workers claim queued jobs from the store (jobs/worker.py): exclusively, with heartbeats,
honouring cancel, re-queueing a job whose worker vanished once, and in team mode only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import jobs
from data.store import Workspace
from jobs.runner import _alive
from jobs.worker import run_worker, worker_name

ROOT = Path(__file__).resolve().parent.parent


def _wait_for(predicate, *, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {timeout:.0f} s")


def _backdate(ws: Workspace, job_id: int, stamp: str = "2000-01-01T00:00:00.000+00:00") -> None:
    ws._write(lambda c: c.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", (stamp, job_id)))


def test_claims_are_exclusive_across_connections(workspace):
    ids = [workspace.create_job("analyze", {"seed": i}) for i in range(24)]
    workspace.request_cancel(ids[5])  # never claimed
    taken: dict[str, list[int]] = {}

    def claim_all(name: str) -> None:
        ws = Workspace(workspace.folder)  # its own connection: real BEGIN IMMEDIATE contention
        try:
            mine = taken.setdefault(name, [])
            while (job := ws.claim_job(name)) is not None:
                mine.append(job.id)
        finally:
            ws.close()

    threads = [threading.Thread(target=claim_all, args=(f"h:{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [job_id for mine in taken.values() for job_id in mine]
    assert sorted(everything) == [i for i in ids if i != ids[5]]  # each once, none twice
    for name, mine in taken.items():
        assert mine == sorted(mine)  # oldest first
        for job_id in mine:
            job = workspace.job(job_id)
            assert (job.status, job.worker, job.attempts) == ("running", name, 1)
            assert job.started_at and job.heartbeat_at
    assert workspace.job(ids[5]).status == "queued"
    assert workspace.claim_job("h:9") is None


def test_heartbeat_belongs_to_the_claiming_worker(workspace):
    job_id = workspace.create_job("analyze", {})
    workspace.claim_job("a:1")
    _backdate(workspace, job_id)
    assert workspace.heartbeat(job_id, "a:1")
    assert workspace.job(job_id).heartbeat_at > "2000-01-01T00:00:00.000+00:00"
    assert not workspace.heartbeat(job_id, "b:2")  # not its job
    workspace.update_job(job_id, status="cancelled")
    assert not workspace.heartbeat(job_id, "a:1")  # no longer running: the worker stops it


def test_a_job_whose_worker_stopped_heartbeating_is_requeued_once_then_failed(workspace):
    job_id = workspace.create_job("train", {})
    fresh = workspace.create_job("analyze", {})
    first = workspace.claim_job("ghost:1")
    assert first.id == job_id
    workspace.claim_job("alive:2")  # heartbeating: never touched
    run = workspace.create_run(name="r", config={}, data={}, job_id=job_id)
    workspace.update_job(job_id, pid=4242, progress={"stage": "training", "done": 3})
    assert workspace.requeue_or_fail_stale(45) == []  # its heartbeat is recent
    _backdate(workspace, job_id)
    assert [j.id for j in workspace.stale_jobs(45)] == [job_id]

    assert workspace.requeue_or_fail_stale(45, max_attempts=2) == [job_id]
    job = workspace.job(job_id)
    assert (job.status, job.worker, job.pid, job.heartbeat_at, job.attempts) == (
        "queued",
        None,
        None,
        None,
        1,
    )
    assert job.progress["stage"] == "re-queued" and "ghost:1" in job.progress["note"]
    assert workspace.run(run).status == "failed"  # the dead worker's run is closed

    again = workspace.claim_job("ghost:3")
    assert (again.id, again.attempts) == (job_id, 2)
    _backdate(workspace, job_id, "2000-01-02T03:04:05.000+00:00")
    assert workspace.requeue_or_fail_stale(45, max_attempts=2) == [job_id]
    job = workspace.job(job_id)
    assert job.status == "failed" and job.finished_at
    assert "worker ghost:3 last seen at 2000-01-02T03:04:05.000+00:00" in job.error
    assert "stopped heartbeating" in job.error and "re-queued once already" in job.error
    assert workspace.requeue_or_fail_stale(45) == []
    assert workspace.job(fresh).status == "running"


def test_team_mode_launch_only_queues_and_reap_trusts_heartbeats(workspace, monkeypatch):
    monkeypatch.setenv("SECOND_LOOK_DATABASE_URL", "postgresql://team@db/second-look")
    job_id = jobs.launch(workspace, "analyze", {"n_folds": 3, "seed": 0})
    job = workspace.job(job_id)
    assert (job.status, job.pid, job.worker) == ("queued", None, None)
    assert not (workspace.folder / "jobs" / f"job-{job_id:04d}.log").exists()  # no child

    claimed = workspace.claim_job("elsewhere:7")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    workspace.update_job(job_id, pid=dead.pid)  # a pid on the worker's machine, dead here
    jobs.reap(workspace)
    assert workspace.job(job_id).status == "running"  # not failed on a pid
    _backdate(workspace, claimed.id)
    jobs.reap(workspace)
    assert workspace.job(job_id).status == "queued"  # re-queued on the heartbeat

    monkeypatch.delenv("SECOND_LOOK_DATABASE_URL")
    monkeypatch.setenv("SECOND_LOOK_JOBS", "queue")
    assert workspace.job(jobs.launch(workspace, "analyze", {})).status == "queued"


def test_a_worker_kills_a_cancelled_child_after_the_grace_period(tmp_path, workspace):
    job_id = workspace.create_job("analyze", {"n_folds": 3, "seed": 0})
    lines: list[str] = []
    worker = threading.Thread(
        target=run_worker,
        kwargs={"root": tmp_path, "once": True, "grace_seconds": 0.5, "say": lines.append},
    )
    worker.start()
    job = _wait_for(lambda: (j := workspace.job(job_id)).pid and j, what="child pid")
    assert job.status == "running" and job.worker == worker_name()
    workspace.request_cancel(job_id)
    worker.join(60)
    assert not worker.is_alive()
    job = workspace.job(job_id)
    assert job.status == "cancelled" and job.error == "killed after the cancel grace period"
    assert not _alive(job.pid)
    assert any(f"claimed job {job_id} (analyze)" in line for line in lines), lines
    assert any(f"job {job_id} (analyze) in ws: cancelled" in line for line in lines), lines


def test_a_stopped_worker_stops_its_child_and_requeues_the_job(tmp_path, workspace):
    job_id = workspace.create_job("analyze", {"n_folds": 3, "seed": 0})
    stop = threading.Event()
    worker = threading.Thread(
        target=run_worker, kwargs={"root": tmp_path, "stop": stop, "say": lambda line: None}
    )
    worker.start()
    pid = _wait_for(lambda: workspace.job(job_id).pid, what="child pid")
    stop.set()  # what SIGTERM/SIGINT do
    worker.join(60)
    assert not worker.is_alive() and not _alive(pid)
    job = workspace.job(job_id)
    assert (job.status, job.worker, job.pid, job.attempts) == ("queued", None, None, 0)
    assert "was stopped" in job.progress["note"]


def test_a_worker_stops_a_child_whose_job_was_requeued_under_it(tmp_path, workspace):
    job_id = workspace.create_job("analyze", {"n_folds": 3, "seed": 0})
    lines: list[str] = []
    worker = threading.Thread(
        target=run_worker,
        kwargs={"root": tmp_path, "once": True, "heartbeat_seconds": 0.2, "say": lines.append},
    )
    worker.start()
    pid = _wait_for(lambda: workspace.job(job_id).pid, what="child pid")
    # Another worker or the app judged it stale (a worker that was paused, say).
    _wait_for(lambda: workspace.requeue_or_fail_stale(0) == [job_id], what="re-queue")
    worker.join(60)
    assert not worker.is_alive() and not _alive(pid)
    job = workspace.job(job_id)
    assert (job.status, job.worker, job.attempts) == ("queued", None, 1)  # left to the queue
    assert any("no longer this worker's" in line for line in lines), lines


def test_cli_worker_once_runs_a_queued_analysis_and_skips_a_damaged_workspace(tmp_path, workspace):
    damaged = tmp_path / "broken"
    damaged.mkdir()
    (damaged / "store.sqlite").write_bytes(b"this is not a database" * 10)
    job_id = workspace.create_job("analyze", {"n_folds": 3, "seed": 0})
    env = {**os.environ, "SECOND_LOOK_HOME": str(tmp_path / "elsewhere")}
    out = subprocess.run(
        [sys.executable, "cli.py", "worker", "--home", str(tmp_path), "--once", "--poll", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "warning: skipping" in out.stdout and "broken" in out.stdout
    assert f"claimed job {job_id} (analyze) in ws" in out.stdout
    assert f"job {job_id} (analyze) in ws: done" in out.stdout
    job = workspace.job(job_id)
    assert job.status == "done", job.error
    assert job.result["analysis_id"] == workspace.latest_analysis().id
    # The child's run_job set running and its pid again, but left the worker's claim alone.
    assert job.worker and job.worker.split(":")[0] and job.heartbeat_at and job.attempts == 1
    assert job.pid and (workspace.folder / "jobs" / f"job-{job_id:04d}.log").exists()

    nothing = subprocess.run(
        [sys.executable, "cli.py", "worker", "--home", str(tmp_path), "--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert nothing.returncode == 0 and "claimed" not in nothing.stdout


@pytest.mark.parametrize("gpus", ["0,x", "-1"])
def test_cli_worker_refuses_a_bad_gpu_list(gpus, capsys):
    import cli

    assert cli.main(["worker", "--gpus", gpus, "--once"]) == 2
    assert "--gpus takes device numbers" in capsys.readouterr().err


def test_gpu_list_sets_the_child_environment_and_processes():
    from data.records import JobRecord
    from jobs.worker import child_setup

    train = JobRecord(id=1, kind="train", params={"config": {"device": "auto"}})
    assert child_setup(train, ["0", "1"]) == (2, {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"})
    analyze = JobRecord(id=2, kind="analyze")
    assert child_setup(analyze, ["0", "1"])[0] == 1
    cpu = JobRecord(id=3, kind="train", params={"config": {"device": "cpu"}})
    assert child_setup(cpu, ["3"])[0] == 1


def test_a_sigterm_puts_the_running_job_back(tmp_path, workspace):
    job_id = workspace.create_job("analyze", {"n_folds": 3, "seed": 0})
    proc = subprocess.Popen(
        [sys.executable, "cli.py", "worker", "--home", str(tmp_path), "--poll", "0.2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        child = _wait_for(lambda: workspace.job(job_id).pid, what="child pid")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "SIGTERM: stopping" in output
    assert not _alive(child)
    job = workspace.job(job_id)
    assert (job.status, job.worker, job.attempts) == ("queued", None, 0)


def test_the_apps_cancel_never_kills_a_pid_of_another_machines_worker(workspace):
    job_id = workspace.create_job("analyze", {})
    workspace.claim_job("another-host:7")
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        workspace.update_job(job_id, pid=bystander.pid)  # the same number, here someone else
        jobs.cancel(workspace, job_id, grace_seconds=0.3)
        assert bystander.poll() is None  # alive: the flag is the remote worker's to honour
        job = workspace.job(job_id)
        assert job.status == "running" and job.cancel_requested
    finally:
        bystander.kill()
        bystander.wait()
