"""Run history: every run with its config, data version, scores and status; compare runs.

Pick one finished run to see its confusion matrix and ROC curves. Pick two or more runs to
overlay their loss curves and ROC curves (or see them side by side), see their metrics with
the differences from the first one picked, and see which settings and data differ between them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app_pages import access
from app_pages.figures import METRIC_LABELS, loss_figure, run_title
from app_pages.run_charts import roc_chart, run_charts
from app_pages.training_form import TECHNIQUE_LABELS, field_label
from app_pages.words import COLUMN_WORDS, blank_empty
from app_pages.workspace import require_workspace
from data.records import RunRecord
from training.config import DEFAULT_LEARNING_RATES
from training.reporting import METRICS, history_frame

# The data version and training facts a comparison shows next to the config.
DATA_KEYS = (
    "experiment",
    "series",
    "x",
    "label_source",
    "noise_rate",
    "noise_flipped",
    "label_version",
    "train_rows",
    "train_ids_hash",
    "eval_rows",
    "eval_ids_hash",
    "verified_rows",
    "validation_rows",
    "validation_source",
    "device",
    "precision",
    "trainable_parameters",
    "train_seconds",
    "epochs_completed",
    "stopped_early",
    "best_validation_loss",
)
DIFF_COLOR = "background-color: rgba(255, 196, 0, 0.25)"


def learning_rate(run: RunRecord) -> float | None:
    data, config = run.data, run.config
    if data.get("learning_rate"):
        return data["learning_rate"]
    if config.get("learning_rate"):
        return config["learning_rate"]
    return DEFAULT_LEARNING_RATES.get(config.get("technique", ""))


def history_row(run: RunRecord) -> dict[str, Any]:
    """One row of the history table: config, data version, metrics (test + verified), status."""
    data, config, test, verified = run.data, run.config, run.test, run.verified or {}
    return {
        "run": run.id,
        "status": run.status,
        "name": run.name,
        "job": run.job_id,
        "technique": data.get("technique") or config.get("technique"),
        "learning rate": learning_rate(run),
        "epochs": config.get("epochs"),
        "batch": config.get("batch_size"),
        "max length": config.get("max_length"),
        "seed": data.get("seed", config.get("seed")),
        "labels": data.get("label_source"),
        "noise": data.get("noise_rate"),
        "train rows": data.get("train_rows"),
        "label version": data.get("label_version"),
        "train ids": data.get("train_ids_hash"),
        "test rows": test.get("n", data.get("eval_rows")),
        "accuracy": test.get("accuracy"),
        "F1": test.get("f1"),
        "verified accuracy": verified.get("accuracy"),
        "verified F1": verified.get("f1"),
        "verified n": verified.get("n"),
        "train s": data.get("train_seconds"),
        "device": data.get("device"),
        "finished": (run.finished_at or "")[:19].replace("T", " "),
    }


def metrics_table(runs: list[RunRecord]) -> pd.DataFrame:
    """Metrics per run (test and verified), with each later run's difference from the first."""
    rows = []
    for subset in ("test", "verified"):
        for metric in (*METRICS, "n"):
            row = {"metric": f"{METRIC_LABELS.get(metric, 'rows (n)')} · {subset}"}
            for run in runs:
                value = (run.test if subset == "test" else run.verified or {}).get(metric)
                row[f"run {run.id}"] = float(value) if value is not None else None
            rows.append(row)
    table = pd.DataFrame(rows)
    first = f"run {runs[0].id}"
    for run in runs[1:]:
        name = f"run {run.id}"
        table[f"Δ {name} − {first}"] = table[name] - table[first]
    return table


def plain(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return str(value)
    return str(value)


def settings_table(runs: list[RunRecord]) -> pd.DataFrame:
    """Config and data version side by side, one column per run, and whether they differ."""
    config_keys = list(dict.fromkeys(k for r in runs for k in r.config))
    rows = []
    for section, keys in (("config", config_keys), ("data", DATA_KEYS)):
        for key in keys:
            values = [plain(getattr(r, section).get(key)) for r in runs]
            if (section, key) == ("config", "learning_rate"):
                # None means the technique's default: show the rate the run used.
                values = [
                    v if v != "—" else f"{plain(learning_rate(r))} (default)"
                    for r, v in zip(runs, values, strict=True)
                ]
            if section == "data" and all(v == "—" for v in values):
                continue
            # The page's words, the code name (run records, CLI flags) in brackets.
            words = field_label(key) if section == "config" else COLUMN_WORDS.get(key, key)
            same = words.lower().replace(" ", "_") == key  # "Learning rate": no brackets
            row = {"setting": words if same else f"{words} ({key})", "of": section}
            row.update({f"run {r.id}": v for r, v in zip(runs, values, strict=True)})
            row["differs"] = len(set(values)) > 1
            rows.append(row)
    table = pd.DataFrame(rows)
    # What differs first (a stable sort keeps the config's own order within each group).
    return table.sort_values("differs", ascending=False, kind="stable").reset_index(drop=True)


def loss_curves(runs: list[RunRecord]):
    """The runs' loss curves overlaid: a colour per run, dashes for validation."""
    frames = [history_frame(run.history).assign(run=f"run {run.id}") for run in runs]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return None
    return loss_figure(pd.concat(frames, ignore_index=True), color="run", height=360)


def signed(value: Any) -> str:
    return "" if pd.isna(value) else f"{value:+.3f}"


def colour_delta(value: Any) -> str:
    if pd.isna(value) or abs(value) < 5e-4:
        return ""
    return "color: #1a7f37" if value > 0 else "color: #cf222e"


st.title("Run history")
ws = require_workspace()
runs = list(reversed(ws.runs()))
if not runs:
    st.info("No runs yet: start one on the **Train** page.")
    if access.can("train"):  # team mode lists Train only for those who may train
        st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

table = pd.DataFrame([history_row(r) for r in runs])
left, middle, right = st.columns(3)
statuses = left.multiselect("Status", sorted(table["status"].unique()), key="runs_status")
techniques = middle.multiselect(
    "Technique",
    sorted(table["technique"].dropna().unique()),
    format_func=lambda t: TECHNIQUE_LABELS.get(t, t),
    key="runs_technique",
)
jobs_picked = right.multiselect(
    "Job", sorted(table["job"].dropna().astype(int).unique())[::-1], key="runs_job"
)
shown = table
if statuses:
    shown = shown[shown["status"].isin(statuses)]
if techniques:
    shown = shown[shown["technique"].isin(techniques)]
if jobs_picked:
    shown = shown[shown["job"].isin(jobs_picked)]
st.dataframe(
    # Blank, not "None": a run without verified rows has no verified scores, a running one no
    # scores yet.
    blank_empty(
        shown,
        **{"learning rate": "{:g}", "noise": "{:.0%}", "train s": "{:.0f}"},
        **dict.fromkeys(("accuracy", "F1", "verified accuracy", "verified F1"), "{:.3f}"),
    ),
    hide_index=True,
    width="stretch",
    column_config={"name": st.column_config.TextColumn(width="medium")},
    key="runs_table",
)
st.caption(
    f"{len(shown):,} of {len(table):,} runs. Data version: label source, injected noise, "
    "training rows, the label version (last label event when the run started) and a "
    "fingerprint of the training row ids."
)

by_id = {r.id: r for r in runs}
finished = [r.id for r in runs if r.done]
st.subheader("One run")
if finished:
    detail = st.selectbox(
        "Run", finished, format_func=lambda i: run_title(by_id[i]), key="runs_detail"
    )
    run_charts(by_id[detail], key="detail")
else:
    st.caption("No finished runs yet.")

st.subheader("Compare runs")
picked = st.multiselect(
    "Runs to compare (the first one is the reference)",
    [r.id for r in runs],
    default=finished[:2][::-1] if len(finished) >= 2 else None,
    format_func=lambda i: run_title(by_id[i]),
    key="compare_runs",
)
if len(picked) < 2:
    st.caption("Pick two or more runs.")
    st.stop()
chosen = [by_id[i] for i in picked]

figure = loss_curves(chosen)
if figure is not None:
    st.markdown("**Loss curves** (solid: training, dashed: validation)")
    st.plotly_chart(figure, width="stretch", key="compare_loss")

done_chosen = [r for r in chosen if r.done]
if done_chosen:
    left, right = st.columns([3, 1])
    left.markdown("**ROC curves** on the test split (AUC in the legend)")
    side = right.toggle("Side by side", key="compare_roc_side")
    roc_chart(done_chosen, key="compare_roc", side_by_side=side)

st.markdown(f"**Metrics**, with the difference from run {picked[0]}")
metrics = metrics_table(chosen)
deltas = [c for c in metrics.columns if c.startswith("Δ")]
values = [c for c in metrics.columns if c.startswith("run ")]
counts = metrics["metric"].str.startswith("rows").to_numpy()
styled = (
    metrics.style.format("{:.3f}", subset=(~counts, values), na_rep="—")
    .format(signed, subset=(~counts, deltas))
    .format("{:,.0f}", subset=(counts, values), na_rep="—")
    .format(lambda v: "" if pd.isna(v) else f"{v:+,.0f}", subset=(counts, deltas))
    .map(colour_delta, subset=(~counts, deltas))
)
# Tall enough for every row: the verified rows must not hide below a scroll.
height = 35 * (len(metrics) + 1) + 3
st.dataframe(styled, hide_index=True, width="stretch", height=height, key="compare_metrics")

st.markdown("**Settings and data version** (what differs is highlighted)")
settings = settings_table(chosen)
only = st.toggle("Only what differs", key="compare_only_diff")
if only:
    settings = settings[settings["differs"]]
styled = settings.style.apply(lambda row: [DIFF_COLOR if row["differs"] else ""] * len(row), axis=1)
st.dataframe(
    styled,
    hide_index=True,
    width="stretch",
    column_config={"differs": st.column_config.CheckboxColumn(width="small")},
    key="compare_settings",
)
