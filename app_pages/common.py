"""Shared UI pieces: the current workspace, the reviewer's name, job progress panels.

Pages read from the store and call core functions; nothing heavy runs here (long work is a
background job, see ``training.jobs``).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import streamlit as st

from app_pages.plain import plain, plain_chart
from data.records import RunRecord
from data.store import (
    DamagedWorkspace,
    StoreError,
    Workspace,
    diagnose,
    list_workspaces,
    plan_restore,
    restore_workspace,
    workspace_problem,
    workspaces_root,
)
from data.store.backup import RestorePlan
from training import jobs

WS_KEY = "workspace_path"
REVIEWER_KEY = "reviewer"
RESTORED_KEY = "_restored_message"


@st.cache_resource(show_spinner=False)
def open_workspace(path: str) -> Workspace:
    """One Workspace object per folder, shared by sessions (it is thread-safe)."""
    return Workspace(path)


def select_workspace(path: str | Path) -> None:
    st.session_state[WS_KEY] = str(Path(path).resolve())


def current_workspace() -> Workspace | None:
    """The workspace chosen in the sidebar, else the most recently used one, else None.

    A damaged one shows :func:`damaged_workspace_panel` and gives None, so that the Data page
    still offers the demo and imports.
    """
    return _current()[0]


def _current() -> tuple[Workspace | None, DamagedWorkspace | None]:
    path = st.session_state.get(WS_KEY)
    if path is None:
        found = list_workspaces()
        if not found:
            return None, None
        path = str(found[0])
        st.session_state[WS_KEY] = path
    try:
        ws = open_workspace(path)
    except DamagedWorkspace as exc:  # stays selected: its panel offers the restore
        damaged_workspace_panel(exc)
        return None, exc
    except StoreError as exc:
        st.session_state.pop(WS_KEY, None)
        st.error(str(exc))
        return None, None
    if restored := st.session_state.pop(RESTORED_KEY, None):
        st.success(restored, icon=":material/restore:")
    return ws, None


def require_workspace() -> Workspace:
    """The current workspace, or a pointer to the Data page (or the damaged-workspace panel)
    and a stop."""
    ws, damaged = _current()
    if ws is None:
        if damaged is None:
            st.info("No dataset yet. Open the **Data** page to load the demo or import a file.")
            st.page_link("app_pages/data.py", label="Go to Data", icon=":material/upload_file:")
        st.stop()
    return ws


def forget_workspace(path: str | Path) -> None:
    """Close and uncache the Workspace of ``path``: its connection is on a file that is
    damaged, or about to be set aside by a restore."""
    path = str(Path(path).resolve())
    try:
        open_workspace(path).close()  # the cached object (opening it anew when not cached)
    except StoreError:
        pass
    open_workspace.clear(path)


def damaged_workspace_panel(exc: DamagedWorkspace) -> None:
    """What is wrong with a damaged workspace and what to do: restore its backup (keeping the
    newer label events its log still holds), import again, or choose another workspace."""
    st.error(
        f"**The workspace {plain(exc.folder.name)} is damaged** and cannot be opened: "
        f"{plain(exc.problem)}.",
        icon=":material/broken_image:",
    )
    plan = plan_restore(exc.folder)
    if plan.backup is None:
        st.warning(
            "There is no sound backup of it to restore. Its damaged file is left as it is: "
            "import the dataset again into a new workspace, or choose another workspace in the "
            "sidebar."
        )
    else:
        st.info(_restore_text(plan), icon=":material/restore:")
        if st.button(
            f"Restore the backup from {plan.backup.when}", type="primary", key="restore_workspace"
        ):
            _restore(exc.folder)
        st.caption("The same from a terminal:")
        st.code(f"python cli.py restore {shlex.quote(str(exc.folder))}", language="bash")
    st.page_link(
        "app_pages/data.py",
        label="Import a dataset on the Data page",
        icon=":material/upload_file:",
    )


def _restore_text(plan: RestorePlan) -> str:
    unreadable = ""
    if plan.unreadable:
        unreadable = f" ({plan.unreadable:,} newer one(s) cannot be read any more)"
    elif plan.unreadable is None:
        unreadable = " (the end of its log cannot be read)"
    return (
        f"A backup from {plan.backup.when} holds the label events up to "
        f"#{plan.backup_version:,}. The damaged file still holds **{plan.newer_events:,} newer "
        f"label event(s)**{unreadable}: restoring keeps them, on top of the backup. The damaged "
        "file is set aside (renamed), never deleted."
    )


def _restore(folder: Path) -> None:
    forget_workspace(folder)
    try:
        with st.spinner("Restoring the backup and the newer label events…"):
            report = restore_workspace(folder)
    except StoreError as exc:
        st.error(plain(str(exc)))
        return
    st.session_state[RESTORED_KEY] = plain(report.describe())
    st.rerun()


def show_database_error(exc: Exception) -> None:
    """For app.py, when a page fails with an SQLite error: if the current workspace's file
    turns out damaged (it was fine when opened), drop it from the cache and show its panel;
    any other error is raised again, as it is."""
    path = st.session_state.get(WS_KEY)
    problem = diagnose(path) if path else None
    if problem is None:
        raise exc
    forget_workspace(path)
    damaged_workspace_panel(DamagedWorkspace(path, problem))


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
            # Damaged ones stay listed (choosing one shows what to do), marked. The current one
            # is opened first (cached), so damage deeper than its header is marked at once.
            try:
                open_workspace(current)
            except StoreError:
                pass
            damaged = {p for p in paths if workspace_problem(p)}
            choice = st.selectbox(
                "Workspace",
                paths,
                index=paths.index(current),
                format_func=lambda p: Path(p).name + (" (damaged)" if p in damaged else ""),
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


# What each technique means, in the words the Train page uses.
TECHNIQUE_LABELS = {
    "head": "Feature extraction (frozen backbone + head)",
    "full": "Full fine-tuning",
    "lora": "LoRA adapters",
}
# The Train page keeps its last valid config here so the Charts page can re-run an experiment
# with the same settings.
TRAIN_CONFIG_KEY = "train_config"
TRACKER_LABELS = {"mlflow": "MLflow", "wandb": "Weights & Biases"}
# Widget layout: (section title or None for always visible, fields). LoRA fields only show
# for technique "lora"; report_to is a toggle of its own.
_MAIN_FIELDS = (
    ("technique", "model", "learning_rate", "epochs"),
    ("batch_size", "gradient_accumulation_steps", "max_length", "seed"),
)
_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout")
_MORE_FIELDS = (
    ("weight_decay", "warmup_ratio", "dropout", "validation_fraction"),
    ("early_stopping_patience", "eval_steps", "max_train_samples", "max_eval_samples"),
    ("device", "precision"),
)


def config_form(prefix: str, **overrides: Any):
    """Widgets for a TrainingConfig (defaults from the dataclass); returns (config, error).

    ``error`` is TrainingConfig's own message (it starts with the field's name), or the
    tracker's when logging is on and its package is missing; ``config`` is None then.
    """
    from training.config import CHOICES, TrainingConfig

    defaults = {**TrainingConfig().to_dict(), **overrides}
    values: dict[str, Any] = {}

    def widget(col, name: str) -> None:
        values[name] = _field_widget(col, prefix, name, defaults[name], values, CHOICES)

    for row in _MAIN_FIELDS:
        for col, name in zip(st.columns(4), row, strict=False):
            widget(col, name)
    technique = values.get("technique", defaults["technique"])
    if technique == "lora":
        st.caption("LoRA: low-rank adapters on the attention query/value projections.")
        for col, name in zip(st.columns(4), _LORA_FIELDS, strict=False):
            widget(col, name)
    with st.expander("Regularisation, validation, data caps and hardware"):
        for row in _MORE_FIELDS:
            for col, name in zip(st.columns(4), row, strict=False):
                widget(col, name)
    track = st.toggle(
        "Log to an experiment tracker",
        value=defaults["report_to"] != "none",
        key=f"{prefix}_track",
        help=TrainingConfig.FIELD_HELP["report_to"],
    )
    values["report_to"] = "none"
    if track:
        current = defaults["report_to"] if defaults["report_to"] != "none" else "mlflow"
        values["report_to"] = st.radio(
            "Tracker",
            list(TRACKER_LABELS),
            index=list(TRACKER_LABELS).index(current),
            format_func=TRACKER_LABELS.get,
            horizontal=True,
            key=f"{prefix}_report_to",
        )
    for name, default in defaults.items():
        values.setdefault(name, default)  # LoRA fields while another technique is chosen
    return _validated(values)


def _field_widget(col, prefix: str, name: str, default: Any, values: dict, choices: dict) -> Any:
    """One config field's widget; optional numbers start empty (None) when their default is."""
    from training.config import DEFAULT_LEARNING_RATES, OPTIONAL_FIELDS, TrainingConfig

    key, help_ = f"{prefix}_{name}", TrainingConfig.FIELD_HELP[name]
    if name == "technique":
        options = ["head", "full", "lora"]
        return col.selectbox(
            "technique",
            options,
            index=options.index(default),
            format_func=TECHNIQUE_LABELS.get,
            key=key,
            help=help_,
        )
    if name == "model":
        return col.text_input(
            name, value=default, key=key, help=help_, placeholder="packaged all-MiniLM-L6-v2"
        )
    if name in choices:
        options = list(choices[name])
        return col.selectbox(name, options, index=options.index(default), key=key, help=help_)
    integer = name in _INTEGER_FIELDS
    placeholder = None
    if name == "learning_rate":
        placeholder = f"{DEFAULT_LEARNING_RATES[values.get('technique', 'full')]:g} (default)"
    elif name in OPTIONAL_FIELDS:
        placeholder = "all rows" if name.startswith("max_") else "default"
    if default is None and name not in OPTIONAL_FIELDS:
        default = 0
    return col.number_input(
        name,
        value=None if default is None else (int(default) if integer else float(default)),
        step=1 if integer else (1e-5 if name == "learning_rate" else 0.01),
        format=None if integer else "%g",
        key=key,
        help=help_,
        placeholder=placeholder,
    )


_INTEGER_FIELDS = {
    "batch_size",
    "max_length",
    "seed",
    "max_train_samples",
    "max_eval_samples",
    "gradient_accumulation_steps",
    "early_stopping_patience",
    "eval_steps",
    "lora_r",
    "lora_alpha",
}


def _validated(values: dict[str, Any]):
    from training.config import TrainingConfig
    from training.tracking import check_tracker

    try:
        config = TrainingConfig.from_dict(values)
        check_tracker(config.report_to)
    except ValueError as exc:
        return None, str(exc)
    if config.early_stopping_patience and config.validation_fraction == 0:
        # fine_tune refuses this too, but only once the job has started.
        return None, (
            "early_stopping_patience needs validation rows: set validation_fraction > 0 "
            "(e.g. 0.15), or early_stopping_patience to 0."
        )
    return config, None


def launch_training(
    ws: Workspace, config: Any, experiment: str = "single", options: dict | None = None
) -> int:
    """Start a single run (job kind ``train``) or an experiment as a background job."""
    if experiment == "single":
        return jobs.launch(ws, "train", {"config": config.to_dict()})
    params = {"config": config.to_dict(), "experiment": experiment, "options": options or {}}
    return jobs.launch(ws, "experiment", params)


def job_progress(ws: Workspace, job: dict[str, Any], *, key: str) -> dict[str, Any] | None:
    """Status, overall progress (runs done + the current run's steps) and a Cancel button.

    Returns the run that is training now (None before the first one starts).
    """
    st.info(job_status_line(job))
    runs = ws.runs(job_id=job["id"])
    run = runs[-1] if runs else None
    progress = run.progress if run is not None else {}
    step, steps, loss = progress.get("step"), progress.get("total_steps"), progress.get("loss")
    within = progress_fraction(progress) or 0.0
    job_progress_ = job.get("progress") or {}
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
        jobs.cancel(ws, job["id"])
        st.rerun()
    return run


def metrics_row(
    metrics: dict[str, Any] | None,
    *,
    keys: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc"),
    against: dict[str, Any] | None = None,
) -> None:
    """One st.metric per key; with ``against``, the difference from it as a grey delta."""
    if not metrics:
        return
    for col, key in zip(st.columns(len(keys)), keys, strict=True):
        value = metrics.get(key)
        other = (against or {}).get(key)
        delta = (
            f"{value - other:+.3f} vs test"
            if value is not None and other is not None and against
            else None
        )
        col.metric(
            METRIC_LABELS[key],
            "—" if value is None else f"{value:.3f}",
            delta,
            delta_color="off",
        )


METRIC_LABELS = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "roc_auc": "ROC-AUC",
}


def run_title(run: RunRecord) -> str:
    technique = run.data.get("technique") or run.config.get("technique")
    parts = [f"run {run.id}", run.name]
    if technique:
        parts.append(technique)
    return " · ".join(p for p in parts if p)


def loss_figure(history: Any, *, color: str = "split", height: int = 320):
    """Training loss per logging step and validation loss per evaluation, as lines."""
    import plotly.express as px

    from training.reporting import history_frame

    frame = history if hasattr(history, "columns") else history_frame(history)
    dash = "split" if color != "split" else None
    colours = {"train": "#1f77b4", "validation": "#ff7f0e"} if color == "split" else None
    fig = px.line(
        frame,
        x="step",
        y="loss",
        color=color,
        line_dash=dash,
        color_discrete_map=colours,
        color_discrete_sequence=px.colors.qualitative.D3,
        markers=True,
        hover_data=["epoch"],
        labels={"step": "optimiser step", "split": ""},
    )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=10, b=0),
        legend=dict(orientation="h", y=1.02, x=0, yanchor="bottom", title_text=""),
    )
    return fig


def confusion_figure(metrics: dict[str, Any]):
    import plotly.express as px

    # Plotly reads HTML tags in tick labels: class names are escaped for it.
    labels = [plain_chart(label) for label in metrics.get("labels") or []]
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
