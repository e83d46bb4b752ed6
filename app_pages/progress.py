"""Background jobs on a page: status lines, progress bars, the Cancel button, reruns when a job
ends. The work itself runs in a job process (``jobs``); pages only poll the store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import streamlit as st

import jobs
from app_pages import access
from app_pages.plain import plain
from app_pages.workspace import WS_KEY, open_workspace
from data.records import JobRecord, RunRecord
from data.store import Workspace
from runtime.estimates import duration
from runtime.progress import describe


def job_status_line(job: JobRecord) -> str:
    progress = job.progress
    parts = [f"Job {job.id} ({job.kind}): **{job.status}**"]
    if job.status == "queued" and job.pid is None and access.team():
        # Team mode: pages only queue; a worker process runs the job.
        parts.append("waiting for a worker (`python cli.py worker`)")
    elif job.worker:
        parts.append(f"on worker {plain(job.worker)}")
    # Stages and run names may quote data (a model path, a run's name): shown as plain text.
    if progress.get("stage"):
        parts.append(plain(progress["stage"]))
    if progress.get("name"):
        parts.append(f"run {progress.get('run')}/{progress.get('runs')}: {plain(progress['name'])}")
    return " · ".join(parts)


def progress_fraction(progress: dict[str, Any] | None) -> float | None:
    progress = progress or {}
    done, total = progress.get("done"), progress.get("total")
    if done is not None and total:
        return min(1.0, float(done) / float(total))
    step, steps = progress.get("step"), progress.get("total_steps")
    if step is not None and steps:
        return min(1.0, float(step) / float(steps))
    return None


def active_job(ws: Workspace, kinds: tuple[str, ...]) -> JobRecord | None:
    """The running job of one of ``kinds``, if any.

    Called from polling fragments: when a job that this session saw running has ended, the
    whole page reruns so that everything outside the fragment shows the new results.
    """
    jobs.reap(ws)
    job = next((j for j in ws.jobs(active=True) if j.kind in kinds), None)
    seen_key = f"_watching_{'_'.join(kinds)}"
    if job is not None:
        st.session_state[seen_key] = job.id
    elif st.session_state.pop(seen_key, None) is not None:
        st.rerun(scope="app")
    return job


def run_share(job: JobRecord, runs: list[RunRecord]) -> tuple[int, int, float]:
    """A training job's run count, its current run (from 1) and its share done: the runs
    before this one plus this run's share of its steps."""
    n_runs, current = job.progress.get("runs") or 1, job.progress.get("run") or 1
    within = progress_fraction(runs[-1].progress if runs else {}) or 0.0
    return n_runs, current, min(1.0, (current - 1 + within) / n_runs)


def job_progress(ws: Workspace, job: JobRecord, *, key: str) -> RunRecord | None:
    """Status, overall progress (runs done + the current run's steps) and a Cancel button.

    Returns the run that is training now (None before the first one starts).
    """
    st.info(job_status_line(job))
    runs = ws.runs(job_id=job.id)
    run = runs[-1] if runs else None
    progress = run.progress if run is not None else {}
    step, steps, loss = progress.get("step"), progress.get("total_steps"), progress.get("loss")
    n_runs, current, overall = run_share(job, runs)
    parts = [f"run {current}/{n_runs}"] if n_runs > 1 else []
    if steps:
        parts.append(f"step {step}/{steps}")
        if progress.get("rate"):
            parts.append(step_rate(progress["rate"]))
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
    else:
        parts.append("loading the model…")
    left = time_left(job, runs, datetime.now(UTC))
    if left is not None:
        parts.append(left)
    st.progress(overall, text=" · ".join(parts))
    if st.button("Cancel", key=f"cancel_{key}"):
        access.cancel(ws, job)
        st.rerun()
    return run


def step_rate(rate: float) -> str:
    """Steps per second, or seconds per step when a step takes longer than one."""
    return f"{rate:.1f} steps/s" if rate >= 1 else f"{1 / rate:.1f} s/step"


def _seconds_between(start: str | None, end: str | datetime | None) -> float | None:
    if not start or not end:
        return None
    end_time = end if isinstance(end, datetime) else datetime.fromisoformat(end)
    return (end_time - datetime.fromisoformat(start)).total_seconds()


def time_left(job: JobRecord, runs: list[RunRecord], now: datetime) -> str | None:
    """ "about 4 min left" for a training job, as honest as what is known so far.

    The current run's own rate (steps/s over the last minute, from its second step on) gives
    its time left; the runs still to come take as long as the finished ones did on average
    (else as long as this one will). Before any step is measured, the estimate made at launch
    minus the time elapsed, labelled as such, so a figure shows from the first second.
    """
    n_runs, current = job.progress.get("runs") or 1, job.progress.get("run") or 1
    run = runs[-1] if runs else None
    progress = run.progress if run is not None else {}
    this_left = progress.get("eta_seconds")
    if this_left is None or run is None:
        launch = _launch_estimate(job, now)
        if launch is None:
            return None
        planned, elapsed = launch
        if elapsed > planned:
            return f"taking longer than the {duration(planned)} estimated"
        return f"about {duration(planned - elapsed)} left (estimated at the start)"
    finished = [
        seconds
        for r in runs
        if r.status == "done" and (seconds := _seconds_between(r.created_at, r.finished_at))
    ]
    this_total = (_seconds_between(run.created_at, now) or 0.0) + this_left
    per_run = sum(finished) / len(finished) if finished else this_total
    left = this_left + max(0, n_runs - current) * per_run
    return f"about {duration(left)} left"


# Where each kind's progress is drawn in full, with its Cancel button.
JOB_PAGES = {
    "analyze": "app_pages/issues.py",
    "train": "app_pages/train.py",
    "experiment": "app_pages/charts.py",
    "adapt": "app_pages/train.py",
}


def job_summary(ws: Workspace, job: JobRecord) -> tuple[str, float | None]:
    """One short line for any running job, and its fraction done (None when unknown)."""
    kind = jobs.KINDS.get(job.kind)
    title = kind.title if kind else job.kind
    if kind is not None and kind.trains:
        runs = ws.runs(job_id=job.id)
        _, _, fraction = run_share(job, runs)
        left = time_left(job, runs, datetime.now(UTC))
        return " · ".join(p for p in (title, f"{fraction:.0%}", left) if p), fraction
    fraction = progress_fraction(job.progress)
    said = staged_progress(job)
    stage = job.progress.get("stage")
    # Stages may quote data (a model path): plain text.
    return " · ".join(plain(p) for p in (title, stage, said) if p), fraction


def estimate_left(job: JobRecord, now: datetime) -> str | None:
    """ "about 4 min left in all": the estimate made at launch minus the time elapsed, while
    it has not run out (then the stage's own time left is all that is said)."""
    launch = _launch_estimate(job, now)
    if launch is None or launch[0] - launch[1] < 1:
        return None
    planned, elapsed = launch
    return f"about {duration(planned - elapsed)} left in all (estimated at the start)"


def _launch_estimate(job: JobRecord, now: datetime) -> tuple[float, float] | None:
    """The seconds estimated when the job was launched and the seconds since it started."""
    planned = job.params.get("estimate_seconds")
    elapsed = _seconds_between(job.started_at or job.created_at, now)
    return None if planned is None or elapsed is None else (planned, elapsed)


def staged_progress(job: JobRecord) -> str:
    """A job of stages (the analysis): the current stage's counts, rate and time left, then
    the whole job's time left from the launch estimate."""
    overall = estimate_left(job, datetime.now(UTC))
    if not overall:
        return describe(job.progress)
    said = describe(job.progress, scope=" in this stage")
    return " · ".join(p for p in (said, overall) if p)


def running_jobs_sidebar() -> None:
    """Every page's sidebar says what runs in the background and how far along it is.

    Polls every 3 s while a job runs; a page without a running job draws nothing and polls
    nothing (the next full rerun looks again). Quiet about a workspace that cannot be opened:
    the page itself says what is wrong with it.
    """
    path = st.session_state.get(WS_KEY)
    try:
        ws = open_workspace(path) if path else None
        if ws is None or not ws.jobs(active=True):
            return
    except Exception:  # noqa: BLE001 - a damaged workspace: its page shows the panel
        return

    @st.fragment(run_every=3.0)
    def panel() -> None:
        jobs.reap(ws)
        for job in ws.jobs(active=True):
            said, fraction = job_summary(ws, job)
            st.caption(f"Running: {said}")
            if fraction is not None:
                st.progress(fraction)
            target = JOB_PAGES.get(job.kind, "app_pages/data.py")
            # Team mode lists Train only for those who may train: no link to a page not listed.
            if target != "app_pages/train.py" or access.can("train"):
                st.page_link(target, label="Details")

    with st.sidebar:
        panel()
