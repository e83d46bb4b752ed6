"""Shared UI pieces: the current workspace, the reviewer's name, job progress panels.

Pages read from the store and call core functions; nothing heavy runs here (long work is a
background job, see ``training.jobs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from data.store import StoreError, Workspace, list_workspaces, workspaces_root
from training import jobs

WS_KEY = "workspace_path"
REVIEWER_KEY = "reviewer"


@st.cache_resource(show_spinner=False)
def open_workspace(path: str) -> Workspace:
    """One Workspace object per folder, shared by sessions (it is thread-safe)."""
    return Workspace(path)


def select_workspace(path: str | Path) -> None:
    st.session_state[WS_KEY] = str(Path(path).resolve())


def current_workspace() -> Workspace | None:
    """The workspace chosen in the sidebar, else the most recently used one, else None."""
    path = st.session_state.get(WS_KEY)
    if path is None:
        found = list_workspaces()
        if not found:
            return None
        path = str(found[0])
        st.session_state[WS_KEY] = path
    try:
        return open_workspace(path)
    except StoreError as exc:
        st.session_state.pop(WS_KEY, None)
        st.error(str(exc))
        return None


def require_workspace() -> Workspace:
    """The current workspace, or a pointer to the Data page and a stop."""
    ws = current_workspace()
    if ws is None:
        st.info("No dataset yet. Open the **Data** page to load the demo or import a file.")
        st.page_link("app_pages/data.py", label="Go to Data", icon=":material/upload_file:")
        st.stop()
    return ws


def reviewer() -> str:
    return (st.session_state.get(REVIEWER_KEY) or "").strip()


def sidebar() -> None:
    with st.sidebar:
        found = list_workspaces()
        if found:
            paths = [str(p) for p in found]
            current = st.session_state.get(WS_KEY, paths[0])
            if current not in paths:
                paths.insert(0, current)
            choice = st.selectbox(
                "Workspace",
                paths,
                index=paths.index(current),
                format_func=lambda p: Path(p).name,
                help=f"Workspaces live in {workspaces_root()} (set SECOND_LOOK_HOME to move them).",
            )
            if choice != st.session_state.get(WS_KEY):
                select_workspace(choice)
        st.text_input(
            "Reviewer name",
            key=REVIEWER_KEY,
            placeholder="your name",
            help="Every label change is logged with this name.",
        )


def job_status_line(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    parts = [f"Job {job['id']} ({job['kind']}): **{job['status']}**"]
    if progress.get("stage"):
        parts.append(str(progress["stage"]))
    if progress.get("name"):
        parts.append(f"run {progress.get('run')}/{progress.get('runs')}: {progress['name']}")
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


def active_job(ws: Workspace, kinds: tuple[str, ...]) -> dict[str, Any] | None:
    """The running job of one of ``kinds``, if any.

    Called from polling fragments: when a job that this session saw running has ended, the
    whole page reruns so that everything outside the fragment shows the new results.
    """
    jobs.reap(ws)
    job = next((j for j in ws.jobs(active=True) if j["kind"] in kinds), None)
    seen_key = f"_watching_{'_'.join(kinds)}"
    if job is not None:
        st.session_state[seen_key] = job["id"]
    elif st.session_state.pop(seen_key, None) is not None:
        st.rerun(scope="app")
    return job


def config_form(prefix: str, **overrides: Any):
    """Widgets for a TrainingConfig (defaults from the dataclass); returns (config, error)."""
    from dataclasses import fields

    from training.config import DEVICES, PRECISIONS, TrainingConfig

    defaults = {**TrainingConfig().to_dict(), **overrides}
    help_ = TrainingConfig.FIELD_HELP
    values: dict[str, Any] = {}
    cols = st.columns(4)
    for i, f in enumerate(fields(TrainingConfig)):
        col, name, default = cols[i % 4], f.name, defaults[f.name]
        key = f"{prefix}_{name}"
        if name == "model":
            values[name] = col.text_input(
                "model",
                value=default,
                key=key,
                help=help_[name],
                placeholder="packaged all-MiniLM-L6-v2",
            )
        elif name in ("device", "precision"):
            options = list(DEVICES if name == "device" else PRECISIONS)
            values[name] = col.selectbox(
                name, options, index=options.index(default), key=key, help=help_[name]
            )
        elif name in ("max_train_samples", "max_eval_samples"):
            text = col.text_input(
                name, value="" if default is None else str(default), key=key, help=help_[name]
            )
            values[name] = text.strip() or None
        elif isinstance(default, float):
            values[name] = col.number_input(
                name, value=float(default), key=key, help=help_[name], format="%g"
            )
        else:
            values[name] = col.number_input(
                name, value=int(default), step=1, key=key, help=help_[name]
            )
    try:
        for name in ("max_train_samples", "max_eval_samples"):
            if values[name] is not None:
                values[name] = int(values[name])
        return TrainingConfig.from_dict(values), None
    except ValueError as exc:
        return None, str(exc)


def metrics_row(metrics: dict[str, Any] | None) -> None:
    if not metrics:
        return
    cols = st.columns(5)
    for col, key in zip(cols, ("accuracy", "precision", "recall", "f1", "roc_auc"), strict=True):
        value = metrics.get(key)
        col.metric(
            key.replace("_", "-").upper() if key == "roc_auc" else key.capitalize(),
            "—" if value is None else f"{value:.3f}",
        )


def confusion_figure(metrics: dict[str, Any]):
    import plotly.express as px

    labels = metrics.get("labels") or []
    fig = px.imshow(
        metrics["confusion_matrix"],
        x=labels,
        y=labels,
        text_auto=True,
        color_continuous_scale="Blues",
        labels={"x": "predicted", "y": "true", "color": "rows"},
    )
    fig.update_layout(height=320, margin=dict(l=0, r=0, t=10, b=0))
    return fig
