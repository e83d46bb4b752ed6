"""Background jobs: long work runs in a child process, never in Streamlit's script thread.

The UI calls :func:`launch`, which records a job in the store and starts
``python -m jobs WORKSPACE JOB_ID``. The child writes progress to the store; the page
polls it, so a browser refresh (or a second browser) sees the same job. Cancel is a flag in the
store that the child polls between batches/steps; :func:`cancel` also kills a child that does not
stop within a grace period.

What each kind of job does is in the registry, :mod:`jobs.kinds`.

Several GPUs: when torch sees more than one CUDA device and the config's device is ``auto`` or
``cuda``, a ``train``/``experiment`` child is started under Hugging Face Accelerate, one
process per GPU (data parallel; ``batch_size`` is per GPU), exactly as you would by hand::

    python -m accelerate.commands.launch --multi_gpu --num_processes 4 --num_machines 1 \
        --mixed_precision no --dynamo_backend no -m jobs WORKSPACE_DIR JOB_ID

(``accelerate launch ...`` is the same command; ``torchrun --nproc-per-node 4 -m
jobs WORKSPACE_DIR JOB_ID`` works too. Precision is still chosen by the config.) Only
the main process (rank 0) writes progress, runs and results to the store and saves the model;
every process polls the cancel flag and they agree to stop at the same step. Set
``CUDA_VISIBLE_DEVICES`` to choose the GPUs; on one GPU or the CPU the child is the plain
single process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from data.store import StoreError, Workspace
from jobs.kinds import job_kind
from runtime.device import is_main_process
from runtime.progress import Cancelled

ROOT = Path(__file__).resolve().parent.parent


def child_command(folder: str | Path, job_id: int, *, gpus: int = 1) -> list[str]:
    """The command line of a job's child process: plain Python, or one process per GPU.

    Examples
    --------
    >>> child_command("ws", 3)[1:]
    ['-m', 'jobs', 'ws', '3']
    >>> child_command("ws", 3, gpus=2)[1:6]
    ['-m', 'accelerate.commands.launch', '--multi_gpu', '--num_processes', '2']
    """
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be a whole number >= 1 (got {gpus!r}).")
    job = ["-m", "jobs", str(folder), str(int(job_id))]
    if gpus == 1:
        return [sys.executable, *job]
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(gpus)]
    # Explicit values so accelerate neither asks for a config file nor warns about defaults.
    fixed = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return [sys.executable, *launcher, *fixed, *job]


def gpus_for(kind: str, params: dict[str, Any], *, available: int | None = None) -> int:
    """How many GPUs a job's child should use: all visible ones for training on ``auto``/``cuda``.

    Analysis jobs and CPU training stay single-process; torch is imported only for training,
    and not at all when ``available`` says how many GPUs there are (a worker's ``--gpus``).
    """
    if not job_kind(kind).trains:
        return 1
    device = str((params.get("config") or {}).get("device", "auto")).strip().lower()
    if device not in ("auto", "cuda"):
        return 1
    if available is not None:
        return max(1, int(available))
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def queue_only(root: str | Path | None = None) -> bool:
    """Whether :func:`launch` only queues jobs for workers (``python cli.py worker``): with
    ``SECOND_LOOK_JOBS=queue``, or in team mode (for the workspaces under ``root``)."""
    from data.store.accounts import team_mode

    if os.environ.get("SECOND_LOOK_JOBS", "").strip().lower() == "queue":
        return True
    return team_mode(root)


def job_log(ws: Workspace, job_id: int) -> Path:
    """Where a job's child writes its output: ``WORKSPACE/jobs/job-NNNN.log``."""
    path = ws.folder / "jobs" / f"job-{int(job_id):04d}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def start_child(
    ws: Workspace, job_id: int, *, gpus: int = 1, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a job's child process (its own session, so killable as a group), logging to
    :func:`job_log`, and record its pid on the job."""
    env = {
        **(os.environ if env is None else env),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    with open(job_log(ws, job_id), "ab") as log:
        proc = subprocess.Popen(
            child_command(ws.folder, job_id, gpus=gpus),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # survives the Streamlit session; killable as a group
        )
    ws.update_job(job_id, pid=proc.pid)
    return proc


def launch(ws: Workspace, kind: str, params: dict[str, Any]) -> int:
    """Record a job and start its child process; returns the job id at once.

    Training on a machine with several GPUs starts one process per GPU (see the module
    docstring); everything else starts one process. In team mode (or with
    ``SECOND_LOOK_JOBS=queue``) the job is only queued: a worker (``python cli.py worker``,
    :mod:`jobs.worker`) claims and runs it.
    """
    job_id = ws.create_job(kind, params)
    if queue_only(ws.folder.parent):
        return job_id
    proc = start_child(ws, job_id, gpus=gpus_for(kind, params))
    # Wait for the child in a thread: a child that finishes normally is no longer "active",
    # so reap() never looks at it, and unwaited it would stay a <defunct> zombie for as long
    # as the app runs.
    threading.Thread(target=proc.wait, name=f"reap-job-{job_id}", daemon=True).start()
    return job_id


def cancel(ws: Workspace, job_id: int, *, grace_seconds: float = 10.0) -> None:
    """Ask a job to stop; kill its process group if it has not stopped after the grace period.

    Returns as soon as the child has stopped: an analysis polls the flag at least every 0.2 s
    while it embeds, searches neighbours or fits, and runs the library calls it cannot
    interrupt beside a poller, so a cooperative stop takes about a second (bench/big_import.py
    measures it). The grace period is for a child that is still starting (imports) or stuck.
    """
    ws.request_cancel(job_id)
    job = ws.job(job_id)
    if job.status == "queued" and not _alive(job.pid):
        ws.update_job(job_id, status="cancelled")
        return
    # A worker's job on another machine: its pid means nothing here; the worker sees the flag
    # and stops the child itself (killing it after its own grace period).
    remote = job.worker is not None and not is_local_worker(job.worker)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        job = ws.job(job_id)
        if not job.active:
            break
        # A worker that has claimed the job but not started its child yet has no pid: wait.
        if not remote and not (job.worker is not None and job.pid is None):
            if not _alive(job.pid):
                break
        time.sleep(0.1)
    job = ws.job(job_id)
    if remote:
        return
    if job.active:
        _stop_group(job.pid)
        ws.update_job(job_id, status="cancelled", error="killed after the cancel grace period")
        _close_runs(ws, job_id, "cancelled")


def _close_runs(ws: Workspace, job_id: int, status: str) -> None:
    # A killed child cannot mark its run: do it here so no run stays "running" forever.
    for run in ws.runs(job_id=job_id):
        if run.status == "running":
            ws.update_run(run.id, status=status)


def _stop_group(pid: int | None, *, term_seconds: float = 5.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there.

    SIGTERM first because a distributed launcher (torch elastic, under ``accelerate launch``)
    starts its workers in process groups of their own and only stops them when it gets a
    signal it can handle.
    """
    if not _alive(pid):
        return
    for sig, wait in ((signal.SIGTERM, term_seconds), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            return


def is_local_worker(worker: str) -> bool:
    """Whether a worker name ("host:pid") is of this machine."""
    return worker.rsplit(":", 1)[0] == socket.gethostname()


def reap(ws: Workspace, *, stale_seconds: float = 45.0) -> None:
    """Mark jobs whose process died without a word (killed, machine restarted) as failed.

    A job a worker claimed may run on another machine, so its pid says nothing here: it is
    re-queued or failed when its worker stops heartbeating (``Workspace.requeue_or_fail_stale``).
    """
    ws.requeue_or_fail_stale(stale_seconds)
    for job in ws.jobs(active=True):
        if job.worker is not None:
            continue
        if job.pid is not None and not _alive(job.pid):
            # Re-read: the child may have finished between the two reads.
            if ws.job(job.id).active:
                ws.update_job(
                    job.id,
                    status="failed",
                    error="The job's process ended without reporting (killed or crashed); "
                    f"see {ws.folder / 'jobs'} for its log.",
                )
                _close_runs(ws, job.id, "failed")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own zombie children
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_job(ws: Workspace, job_id: int) -> None:
    """Run a recorded job in this process (the child's main; also handy in tests).

    Under a distributed launch only the main process writes to the store; the launcher's pid
    (recorded by :func:`launch`) stays the job's pid so a cancel kills the whole group.
    """
    main = is_main_process()
    job = ws.job(job_id)
    if main and "RANK" not in os.environ:
        ws.update_job(job_id, status="running", pid=os.getpid())
    elif main:
        ws.update_job(job_id, status="running")

    def should_stop() -> bool:
        return ws.cancel_requested(job_id)

    last = [0.0]

    def progress(info: dict[str, Any]) -> None:
        if not main:
            return
        # Throttle writes: a progress row per batch would contend with reviewers' commits.
        now = time.monotonic()
        if now - last[0] >= 0.5 or info.get("done") == info.get("total"):
            last[0] = now
            ws.update_job(job_id, progress=info)

    try:
        result = job_kind(job.kind).run(ws, job.params, job_id, progress, should_stop)
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the user
        if isinstance(exc, Cancelled):
            if main:
                ws.update_job(job_id, status="cancelled")
            return
        if not main:
            raise
        ws.update_job(
            job_id,
            status="failed",
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=6)}",
        )
        raise
    if main:
        ws.update_job(job_id, status="done", result=result)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m jobs WORKSPACE_DIR JOB_ID", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        ws = Workspace(argv[0])
    except StoreError as exc:  # a damaged or missing workspace: say so, no traceback
        print(f"Cannot run job {argv[1]}: {exc}", file=sys.stderr)
        return 1
    try:
        run_job(ws, int(argv[1]))
    except Exception:  # noqa: BLE001 - already recorded in the store
        return 1
    return 0
