"""Workers: processes that claim queued jobs from the workspaces' stores and run them.

In team mode the app only queues jobs (:func:`jobs.runner.launch`); ``python cli.py worker``
runs :func:`run_worker`, on the app's machine or on others that see the same workspaces
(``SECOND_LOOK_HOME``). A worker loops over every workspace: it re-queues (once) or fails the
jobs whose worker stopped heartbeating, claims the oldest queued job
(``Workspace.claim_job``, one immediate transaction, so two workers never take the same job),
and runs it as the app would, in a child process (``python -m jobs WORKSPACE JOB_ID``, one
process per GPU for training), logging to ``WORKSPACE/jobs/job-NNNN.log``. While the child
runs it heartbeats, honours a cancel (killing the child's process group after a grace
period) and marks the job failed if the child ends without reporting. SIGTERM or SIGINT
stops claiming, stops the running child and puts its job back in the queue.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from data.records import JobRecord
from data.store import StoreError, Workspace, list_workspaces
from data.store.dialect import database_errors
from jobs.runner import _close_runs, _stop_group, gpus_for, start_child

Say = Callable[[str], None]


# What a workspace can raise besides StoreError: sqlite3's errors, and psycopg's.
DATABASE_ERRORS = database_errors()


def worker_name() -> str:
    """This worker's name in the store: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def parse_gpus(gpus: str | Sequence[int | str] | None) -> list[str] | None:
    """The GPU list of ``--gpus`` ("0,1" or [0, 1]); ``[]`` for "" (no GPU); None: not given.

    >>> parse_gpus("0, 1"), parse_gpus([2]), parse_gpus(""), parse_gpus(None)
    (['0', '1'], ['2'], [], None)
    """
    if gpus is None:
        return None
    items = gpus.split(",") if isinstance(gpus, str) else [str(g) for g in gpus]
    found = [item.strip() for item in items if item.strip()]
    for item in found:
        if not item.isdigit():
            raise ValueError(f"--gpus takes device numbers such as 0,1 (got {item!r}).")
    return found


def child_setup(job: JobRecord, gpus: list[str] | None) -> tuple[int, dict[str, str] | None]:
    """How many processes the job's child runs and its environment (None: this one's).

    With a GPU list the child sees only those devices (``CUDA_VISIBLE_DEVICES``) and training
    runs one process per listed GPU; without one, what :func:`jobs.runner.gpus_for` says.
    """
    if gpus is None:
        return gpus_for(job.kind, job.params), None
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpus)}
    return gpus_for(job.kind, job.params, available=max(1, len(gpus))), env


def run_claimed(
    ws: Workspace,
    job: JobRecord,
    *,
    worker: str,
    gpus: list[str] | None = None,
    heartbeat_seconds: float = 10.0,
    grace_seconds: float = 10.0,
    stop: threading.Event | None = None,
) -> str:
    """Run a job this worker claimed in a child process until it ends; returns its status
    (``"re-queued"`` when ``stop`` was set and the job went back to the queue)."""
    stop = stop or threading.Event()
    if ws.cancel_requested(job.id):  # asked to stop between the claim and now
        ws.update_job(job.id, status="cancelled")
        return "cancelled"
    processes, env = child_setup(job, gpus)
    proc = start_child(ws, job.id, gpus=processes, env=env)
    beat, cancel_seen = time.monotonic(), None
    note = None
    while True:
        try:
            proc.wait(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if stop.is_set():
            _stop_group(proc.pid)
            proc.wait()
            if ws.release_job(job.id, worker, note=f"re-queued: worker {worker} was stopped"):
                return "re-queued"
            break
        if now - beat >= heartbeat_seconds:
            beat = now
            if not ws.heartbeat(job.id, worker):
                if ws.job(job.id).active:  # re-queued (and maybe claimed by another worker)
                    note = "no longer this worker's"
                else:  # it ended meanwhile (done, cancelled, failed): the child is leaving
                    try:
                        proc.wait(timeout=grace_seconds)
                    except subprocess.TimeoutExpired:
                        pass
                _stop_group(proc.pid)
                proc.wait()
                break
        if cancel_seen is None and ws.cancel_requested(job.id):
            cancel_seen = now
        if cancel_seen is not None and now - cancel_seen >= grace_seconds:
            _stop_group(proc.pid)
            proc.wait()
            if ws.job(job.id).active:
                ws.update_job(
                    job.id, status="cancelled", error="killed after the cancel grace period"
                )
                _close_runs(ws, job.id, "cancelled")
            break
    code = proc.returncode
    current = ws.job(job.id)
    if current.active and current.worker == worker:
        ws.update_job(
            job.id,
            status="failed",
            error=f"The job's process ended (exit code {code}) without reporting (killed or "
            f"crashed); see {ws.folder / 'jobs'} for its log.",
        )
        _close_runs(ws, job.id, "failed")
        current = ws.job(job.id)
    return note or current.status


def run_worker(
    *,
    root: str | os.PathLike | None = None,
    gpus: str | Sequence[int | str] | None = None,
    once: bool = False,
    poll_seconds: float = 2.0,
    heartbeat_seconds: float = 10.0,
    stale_seconds: float = 45.0,
    grace_seconds: float = 10.0,
    stop: threading.Event | None = None,
    say: Say | None = None,
) -> int:
    """Claim and run queued jobs of every workspace under ``root`` until ``stop`` is set (or
    SIGTERM/SIGINT arrives); returns how many jobs it ran.

    ``once`` runs at most one job (none when nothing is queued) and returns. ``gpus`` ("0,1")
    chooses the devices the children see. A workspace that cannot be opened (damaged, of
    another schema version) is skipped with a warning, said once per problem.
    """
    gpu_list = parse_gpus(gpus)
    stop = stop or threading.Event()
    say = say or (lambda line: print(line, flush=True))
    name = worker_name()
    warned: dict[Path, str] = {}
    restore = _on_signals(stop, say, name)
    ran = 0
    say(f"worker {name}: watching {Path(root or _default_root()).resolve()}")
    try:
        while not stop.is_set():
            claimed = False
            for folder in list_workspaces(root):
                if stop.is_set() or (once and claimed):
                    break
                took = _serve_workspace(
                    folder,
                    name=name,
                    gpus=gpu_list,
                    heartbeat_seconds=heartbeat_seconds,
                    stale_seconds=stale_seconds,
                    grace_seconds=grace_seconds,
                    stop=stop,
                    say=say,
                    warned=warned,
                )
                claimed |= took
                ran += took
            if once:
                break
            if not claimed:
                stop.wait(poll_seconds)
    finally:
        restore()
    return ran


def _serve_workspace(
    folder: Path,
    *,
    name: str,
    gpus: list[str] | None,
    heartbeat_seconds: float,
    stale_seconds: float,
    grace_seconds: float,
    stop: threading.Event,
    say: Say,
    warned: dict[Path, str],
) -> bool:
    """Settle the stale jobs of one workspace and run one of its queued jobs; whether it
    claimed one."""
    try:
        ws = Workspace(folder)
    except (StoreError, *DATABASE_ERRORS, OSError) as exc:
        problem = str(exc)
        if warned.get(folder) != problem:
            warned[folder] = problem
            say(f"worker {name}: warning: skipping {folder}: {problem}")
        return False
    warned.pop(folder, None)
    try:
        for job_id in ws.requeue_or_fail_stale(stale_seconds):
            job = ws.job(job_id)
            say(
                f"worker {name}: job {job_id} in {folder.name}: its worker stopped heartbeating;"
                f" {job.status}"
            )
        job = ws.claim_job(name)
        if job is None:
            return False
        say(f"worker {name}: claimed job {job.id} ({job.kind}) in {folder.name}")
        started = time.monotonic()
        status = run_claimed(
            ws,
            job,
            worker=name,
            gpus=gpus,
            heartbeat_seconds=heartbeat_seconds,
            grace_seconds=grace_seconds,
            stop=stop,
        )
        say(
            f"worker {name}: job {job.id} ({job.kind}) in {folder.name}: {status} after "
            f"{time.monotonic() - started:.1f} s"
        )
        return True
    except (StoreError, *DATABASE_ERRORS, OSError) as exc:
        say(f"worker {name}: warning: {folder}: {exc}")
        return False
    finally:
        ws.close()


def _default_root() -> Path:
    from data.store import workspaces_root

    return workspaces_root()


def _on_signals(stop: threading.Event, say: Say, name: str) -> Callable[[], None]:
    """SIGTERM/SIGINT set ``stop`` (in the main thread only); returns what undoes that."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame) -> None:  # noqa: ARG001 - the signal module's signature
        if not stop.is_set():
            say(
                f"worker {name}: {signal.Signals(signum).name}: stopping (a running job is "
                "stopped and queued again)"
            )
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
