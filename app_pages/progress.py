"""Background jobs on a page: status lines, progress bars, the Cancel button, reruns when a job
ends. The work itself runs in a job process (``jobs``); pages only poll the store."""

from __future__ import annotations

from typing import Any

import streamlit as st

import jobs
from app_pages.plain import plain
from data.records import JobRecord, RunRecord
from data.store import Workspace


def job_status_line(job: JobRecord) -> str:
    progress = job.progress
    parts = [f"Job {job.id} ({job.kind}): **{job.status}**"]
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


def job_progress(ws: Workspace, job: JobRecord, *, key: str) -> RunRecord | None:
    """Status, overall progress (runs done + the current run's steps) and a Cancel button.

    Returns the run that is training now (None before the first one starts).
    """
    st.info(job_status_line(job))
    runs = ws.runs(job_id=job.id)
    run = runs[-1] if runs else None
    progress = run.progress if run is not None else {}
    step, steps, loss = progress.get("step"), progress.get("total_steps"), progress.get("loss")
    within = progress_fraction(progress) or 0.0
    job_progress_ = job.progress
    n_runs, current = job_progress_.get("runs") or 1, job_progress_.get("run") or 1
    overall = min(1.0, (current - 1 + within) / n_runs)
    text = (
        f"step {step}/{steps}" + (f" · loss {loss:.4f}" if loss is not None else "")
        if steps
        else "loading the model…"
    )
    if n_runs > 1:
        text = f"run {current}/{n_runs} · {text}"
    st.progress(overall, text=text)
    if st.button("Cancel", key=f"cancel_{key}"):
        jobs.cancel(ws, job.id)
        st.rerun()
    return run
