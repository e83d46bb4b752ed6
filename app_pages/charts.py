"""Charts: a metric against training-data size, label quality and learning rate, over seeds.

Each point is the mean over an experiment's seeds with a standard-deviation bar, on the full
test split and on the verified subset (test rows a reviewer confirmed or corrected); every run
of an experiment is scored on the same test rows. Experiments are launched from the Train page
(or re-run here with its settings).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app_pages import access
from app_pages.adapt import adaptation_panel
from app_pages.figures import METRIC_LABELS
from app_pages.plain import plain
from app_pages.planning import plan_seconds, summarise
from app_pages.progress import active_job, job_progress
from app_pages.rate_sweep import rate_sweep_panel
from app_pages.training_form import TRAIN_CONFIG_KEY, launch_training
from app_pages.workspace import require_workspace
from data.records import RunRecord
from runtime.estimates import duration
from training.config import TrainingConfig
from training.reporting import METRICS, aggregate_runs, runs_frame

TEST_COLOR, VERIFIED_COLOR = "#1f77b4", "#d62728"
QUALITY_PANELS = {
    "labels": "Original vs curated labels",
    "noise": "Noise injected into curated labels",
    "confidence": "Rows above a crowd-confidence threshold",
}


def job_choice(frame: pd.DataFrame, runs: list[dict], experiment: str, key: str) -> int | None:
    """The experiment job to draw (latest by default): seeds of one job share one config."""
    ids = sorted(frame.loc[frame["experiment"] == experiment, "job"].dropna().unique())[::-1]
    if not ids:
        return None

    def label(job_id: Any) -> str:
        mine = [r for r in runs if r.job_id == job_id and r.done]
        config = mine[0].config if mine else {}
        when = (mine[-1].finished_at or "")[:16].replace("T", " ") if mine else ""
        technique = config.get("technique", "")
        return f"job {int(job_id)} · {len(mine)} runs · {technique} {when}".strip()

    return st.selectbox("Experiment", ids, format_func=label, key=key)


def shared_rows(runs: list[RunRecord], job_id: Any) -> str:
    """A caption naming the test rows every run of the job was scored on."""
    data = [r.data for r in runs if r.job_id == job_id and r.done]
    hashes = {d.get("eval_ids_hash") for d in data}
    rows = {d.get("eval_rows") for d in data}
    verified = {d.get("verified_rows") for d in data}
    if len(hashes) == 1 and len(rows) == 1 and None not in rows:
        text = f"Every point is scored on the same {rows.pop():,} test rows"
        if verified and None not in verified:
            text += f" and the same {max(verified):,} verified rows"
        return text + "."
    return "These runs were not all scored on the same test rows."


def series_traces(agg: pd.DataFrame, x: list, *, what: str, show_legend: bool) -> list:
    """Mean ± std markers for the test split and, where it has scores, the verified subset."""
    traces = []
    for subset, color, mean, std, runs_col in (
        ("full test split", TEST_COLOR, "mean", "std", "n"),
        ("verified subset", VERIFIED_COLOR, "verified_mean", "verified_std", "verified_runs"),
    ):
        if agg[mean].isna().all():
            continue
        rows = agg["verified_n"] if subset == "verified subset" else agg["train_rows"]
        # Plain lists (not arrays) keep the figure's JSON readable (and testable).
        custom = np.column_stack(
            [agg[runs_col], agg[std].fillna(0.0), rows.fillna(0), agg["train_rows"].fillna(0)]
        ).tolist()
        extra = (
            "verified rows: %{customdata[2]:.0f}<br>"
            if subset == "verified subset"
            else "training rows: %{customdata[3]:.0f}<br>"
        )
        traces.append(
            go.Scatter(
                x=x,
                y=agg[mean].tolist(),
                mode="lines+markers",
                name=subset,
                legendgroup=subset,
                showlegend=show_legend,
                marker=dict(color=color, size=8),
                line=dict(color=color),
                error_y=dict(
                    type="data", array=agg[std].fillna(0.0).tolist(), visible=True, width=6
                ),
                customdata=custom,
                hovertemplate=f"<b>{subset}</b><br>{what}: %{{x}}<br>mean %{{y:.3f}} "
                "± %{customdata[1]:.3f} (std)<br>n = %{customdata[0]:.0f} runs<br>"
                + extra
                + "<extra></extra>",
            )
        )
    return traces


def size_figure(agg: pd.DataFrame, metric: str) -> go.Figure:
    agg = agg.sort_values("train_rows")
    fig = go.Figure(
        series_traces(agg, agg["train_rows"].round().tolist(), what="rows", show_legend=True)
    )
    rows = agg["train_rows"].dropna()
    log = len(rows) > 1 and rows.max() / max(rows.min(), 1) >= 8
    fig.update_layout(
        height=380,
        margin=dict(l=0, r=0, t=30, b=0),
        xaxis_title="training rows" + (" (log scale)" if log else ""),
        yaxis_title=METRIC_LABELS[metric],
        xaxis_type="log" if log else "linear",
        legend=dict(orientation="h", y=1.02, x=0, yanchor="bottom"),
    )
    if log:
        # Ticks at the sizes trained on: plotly's own log ticks read "4 5 6 7 8 9 100 2 3".
        sizes = sorted({round(v) for v in rows})
        fig.update_xaxes(tickvals=sizes, ticktext=[f"{v:,}" for v in sizes], minor_showgrid=False)
    return fig


def quality_figure(frame: pd.DataFrame, metric: str) -> go.Figure:
    present = [s for s in QUALITY_PANELS if (frame["series"] == s).any()]
    fig = make_subplots(
        rows=1,
        cols=len(present),
        shared_yaxes=True,
        subplot_titles=[QUALITY_PANELS[s] for s in present],
        horizontal_spacing=0.06,
    )
    for col, series in enumerate(present, start=1):
        agg = aggregate_runs(frame[frame["series"] == series])
        if series == "labels":
            order = {"original": 0, "curated": 1}
            agg = agg.sort_values("x", key=lambda s: s.map(order).fillna(2))
            x, what = [f"{v} labels" for v in agg["x"]], "labels"
        elif series == "noise":
            agg = agg.assign(x=agg["x"].astype(float)).sort_values("x")
            x, what = [f"{v:.0%}" for v in agg["x"]], "noise"
        else:
            agg = agg.assign(x=agg["x"].astype(float)).sort_values("x")
            x, what = [f"≥ {v:g}" for v in agg["x"]], "confidence"
        for trace in series_traces(agg, x, what=what, show_legend=col == 1):
            fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(type="category", row=1, col=col)
    fig.update_layout(
        height=380,
        margin=dict(l=0, r=0, t=50, b=0),
        yaxis_title=METRIC_LABELS[metric],
        legend=dict(orientation="h", y=1.12, x=0, yanchor="bottom"),
    )
    return fig


def numbers(agg: pd.DataFrame) -> None:
    table = agg.drop(columns=["experiment", "metric"])
    if table["x"].map(type).nunique() > 1:  # label quality: "curated", then 0.1 (noise), ...
        table["x"] = table["x"].map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    with st.expander("The numbers"):
        st.dataframe(table, hide_index=True, width="stretch")


st.title("Charts")
ws = require_workspace()
st.markdown(
    "Each experiment trains the **same config** several times, one seed after another, and "
    "scores every run on the **same test rows** (curated labels): the points differ only in what "
    "the chart says. Points are means over seeds with a **standard-deviation bar**, on the full "
    "test split and on the **verified subset** (test rows a reviewer checked)."
)
metric = st.selectbox("Metric", list(METRICS), format_func=METRIC_LABELS.get, key="chart_metric")
running = next((j for j in ws.jobs(active=True) if j.kind in ("experiment", "train")), None)


def experiment_estimate(config: TrainingConfig, experiment: str) -> tuple[float | None, str]:
    """Roughly how long an experiment with default options takes, and how to say it."""
    try:
        summary = summarise(ws, experiment, config, {})
    except ValueError as exc:  # e.g. too few rows for the fractions: said on the button's line
        return None, plain(str(exc))
    runs, seconds = len(summary["train_rows"]), plan_seconds(summary, config)
    return seconds, f"{runs} runs, roughly {duration(seconds)}"


def launch_buttons() -> None:
    saved = st.session_state.get(TRAIN_CONFIG_KEY)
    config = TrainingConfig.from_dict(saved) if saved else TrainingConfig()
    with st.container(horizontal=True, vertical_alignment="center"):
        for experiment, label in (
            ("data_size", "Run the data-size experiment"),
            ("label_quality", "Run the label-quality experiment"),
        ):
            # The cost is on the button: these start tens of minutes of training on a CPU.
            seconds, said = experiment_estimate(config, experiment)
            if st.button(
                f"{label} ({said})",
                key=f"run_{experiment}",
                disabled=seconds is None or not access.can("train"),
            ):
                launch_training(ws, config, experiment, estimate_seconds=seconds)
                st.rerun()
        st.caption(
            "With the Train page's settings and default options (3 seeds for data size); "
            "choose fractions, seeds, noise rates and thresholds on the Train page. Estimates "
            "use this machine's measured training speed once a run has measured it."
        )


@st.fragment(run_every=2.0 if running else None)
def experiments_panel() -> None:
    job = active_job(ws, ("experiment", "train"))
    if job is not None:
        job_progress(ws, job, key="experiment")
    else:
        launch_buttons()
    runs = ws.runs()
    frame = runs_frame(runs, metric=metric)

    st.subheader(f"{METRIC_LABELS[metric]} vs training-data size")
    job_id = job_choice(frame, runs, "data_size", "size_job")
    if job_id is None:
        st.caption("Nested fractions of the training rows, 3 seeds each. Not run yet.")
    else:
        agg = aggregate_runs(frame[(frame["job"] == job_id) & (frame["experiment"] == "data_size")])
        st.plotly_chart(size_figure(agg, metric), width="stretch", key="size_chart")
        st.caption(shared_rows(runs, job_id))
        numbers(agg)

    st.subheader(f"{METRIC_LABELS[metric]} vs label quality")
    job_id = job_choice(frame, runs, "label_quality", "quality_job")
    if job_id is None:
        st.caption(
            "Original vs curated labels on the same rows, curated labels with 10/20/30% "
            "injected noise, and by crowd-confidence threshold when the data has one. Not run "
            "yet."
        )
    else:
        part = frame[(frame["job"] == job_id) & (frame["experiment"] == "label_quality")]
        st.plotly_chart(quality_figure(part, metric), width="stretch", key="quality_chart")
        st.caption(shared_rows(runs, job_id) + " The 0% noise point is the curated-labels run.")
        numbers(aggregate_runs(part))


experiments_panel()
rate_sweep_panel(ws, metric)
adaptation_panel(ws, metric, METRIC_LABELS[metric])
