"""Background jobs: long work runs in a child process, never in Streamlit's script thread.

The UI calls :func:`launch`, which records a job in the store and starts
``python -m training.jobs WORKSPACE JOB_ID``. The child writes progress to the store; the page
polls it, so a browser refresh (or a second browser) sees the same job. Cancel is a flag in the
store that the child polls between batches/steps; :func:`cancel` also kills a child that does not
stop within a grace period.

Job kinds:
- ``analyze``: embeddings + K-fold probabilities + cleanlab scores (``params``: encoder settings,
  n_folds, seed);
- ``train``: one fine-tuning run on the curated labels (``params``: a TrainingConfig dict);
- ``experiment``: a data-size or label-quality sweep (``params``: config, experiment, options).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from data.store import Workspace

ROOT = Path(__file__).resolve().parent.parent


def launch(ws: Workspace, kind: str, params: dict[str, Any]) -> int:
    """Record a job and start its child process; returns the job id at once."""
    job_id = ws.create_job(kind, params)
    log_path = ws.folder / "jobs" / f"job-{job_id:04d}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "training.jobs", str(ws.folder), str(job_id)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # survives the Streamlit session; killable as a group
        )
    ws.update_job(job_id, pid=proc.pid)
    return job_id


def cancel(ws: Workspace, job_id: int, *, grace_seconds: float = 10.0) -> None:
    """Ask a job to stop; kill its process group if it has not stopped after the grace period."""
    ws.request_cancel(job_id)
    job = ws.job(job_id)
    if job["status"] == "queued" and not _alive(job["pid"]):
        ws.update_job(job_id, status="cancelled")
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if ws.job(job_id)["status"] not in ("queued", "running") or not _alive(job["pid"]):
            break
        time.sleep(0.2)
    job = ws.job(job_id)
    if job["status"] in ("queued", "running"):
        if _alive(job["pid"]):
            try:
                os.killpg(job["pid"], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        ws.update_job(job_id, status="cancelled", error="killed after the cancel grace period")


def reap(ws: Workspace) -> None:
    """Mark jobs whose process died without a word (killed, machine restarted) as failed."""
    for job in ws.jobs(active=True):
        if job["pid"] is not None and not _alive(job["pid"]):
            # Re-read: the child may have finished between the two reads.
            if ws.job(job["id"])["status"] in ("queued", "running"):
                ws.update_job(
                    job["id"],
                    status="failed",
                    error="The job's process ended without reporting (killed or crashed); "
                    f"see {ws.folder / 'jobs'} for its log.",
                )


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
    """Run a recorded job in this process (the child's main; also handy in tests)."""
    job = ws.job(job_id)
    ws.update_job(job_id, status="running", pid=os.getpid())

    def should_stop() -> bool:
        return ws.cancel_requested(job_id)

    last = [0.0]

    def progress(info: dict[str, Any]) -> None:
        # Throttle writes: a progress row per batch would contend with reviewers' commits.
        now = time.monotonic()
        if now - last[0] >= 0.5 or info.get("done") == info.get("total"):
            last[0] = now
            ws.update_job(job_id, progress=info)

    try:
        result = _dispatch(ws, job["kind"], job["params"], job_id, progress, should_stop)
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the user
        from curation.pipeline import Cancelled
        from training.runs import RunCancelled

        if isinstance(exc, Cancelled | RunCancelled):
            ws.update_job(job_id, status="cancelled")
            return
        ws.update_job(
            job_id,
            status="failed",
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=6)}",
        )
        raise
    ws.update_job(job_id, status="done", result=result)


def _dispatch(ws, kind, params, job_id, progress, should_stop) -> dict[str, Any]:
    if kind == "analyze":
        from curation.pipeline import analyze_workspace
        from curation.probs import EncoderSettings

        settings = EncoderSettings(**params.get("encoder", {}))
        aid = analyze_workspace(
            ws,
            settings=settings,
            n_folds=int(params.get("n_folds", 5)),
            seed=int(params.get("seed", 0)),
            progress=progress,
            should_stop=should_stop,
        )
        return {"analysis_id": aid}
    if kind in ("train", "experiment"):
        from training.config import TrainingConfig
        from training.runs import run_experiment

        config = TrainingConfig.from_dict(params.get("config", {}))
        experiment = params.get("experiment", "single") if kind == "experiment" else "single"
        run_ids = run_experiment(
            ws,
            experiment,
            config=config,
            job_id=job_id,
            progress=progress,
            should_stop=should_stop,
            **params.get("options", {}),
        )
        return {"run_ids": run_ids}
    raise ValueError(f"Unknown job kind {kind!r}; valid: 'analyze', 'train', 'experiment'.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m training.jobs WORKSPACE_DIR JOB_ID", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ws = Workspace(argv[0])
    try:
        run_job(ws, int(argv[1]))
    except Exception:  # noqa: BLE001 - already recorded in the store
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
