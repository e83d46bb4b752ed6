"""Charts: accuracy against training-data size and against label quality."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.common import (
    active_job,
    config_form,
    job_status_line,
    progress_fraction,
    require_workspace,
)
from training import jobs
from training.runs import confidence_column

st.title("Charts")
ws = require_workspace()
has_confidence = confidence_column(ws) is not None

st.markdown(
    "Each experiment trains the **same config** several times and evaluates every run on the "
    "**same test rows** (curated labels), so the points differ only in what the chart says."
)
with st.expander("Experiment config", expanded=False):
    # Smaller than a single training run: an experiment is 4-6 runs back to back on a CPU.
    config, error = config_form("ex", max_train_samples=1000, epochs=2.0, max_eval_samples=1000)
    if error:
        st.error(error)
    st.caption(
        "Defaults: up to 1,000 training rows, 2 epochs, 1,000 test rows: about 30 s per "
        "run on 2 free CPU cores."
    )

metric = st.selectbox(
    "Metric", ["accuracy", "f1", "precision", "recall", "roc_auc"], key="chart_metric"
)


def points(experiment: str) -> pd.DataFrame:
    rows = []
    for run in ws.runs():
        data = run["data"] or {}
        if data.get("experiment") != experiment or run["status"] != "done":
            continue
        rows.append(
            {
                "job": run["job_id"],
                "run": run["id"],
                "x": data.get("x"),
                "rows": data.get("train_rows"),
                "labels": data.get("label_source"),
                metric: (run["metrics"] or {}).get(metric),
            }
        )
    return pd.DataFrame(rows)


@st.fragment(run_every=2.0)
def experiments_panel() -> None:
    job = active_job(ws, ("experiment", "train"))
    if job is not None:
        st.info(job_status_line(job))
        st.progress(
            progress_fraction(
                {
                    "done": (job.get("progress") or {}).get("run", 1) - 1,
                    "total": (job.get("progress") or {}).get("runs"),
                }
            )
            or 0.0
        )
        if st.button("Cancel", key="cancel_experiment"):
            jobs.cancel(ws, job["id"])
            st.rerun()
    else:
        with st.container(horizontal=True):
            for experiment, label in (
                ("data_size", "Run the data-size experiment"),
                ("label_quality", "Run the label-quality experiment"),
            ):
                if st.button(label, disabled=config is None, key=f"run_{experiment}"):
                    jobs.launch(
                        ws, "experiment", {"config": config.to_dict(), "experiment": experiment}
                    )
                    st.rerun()

    left, right = st.columns(2)
    with left:
        st.subheader("Accuracy vs training-data size")
        df = points("data_size")
        if df.empty:
            st.caption("Nested fractions (10/25/50/100%) of the training rows. Not run yet.")
        else:
            df = df[df["job"] == df["job"].max()].sort_values("rows")
            fig = px.line(df, x="rows", y=metric, markers=True, hover_data=["x", "run"])
            fig.update_layout(height=350, xaxis_title="training rows")
            st.plotly_chart(fig, width="stretch", key="size_chart")
    with right:
        st.subheader("Accuracy vs label quality")
        df = points("label_quality")
        if df.empty:
            extra = " and by crowd-confidence threshold" if has_confidence else ""
            st.caption(f"Original vs curated labels on the same rows{extra}. Not run yet.")
        else:
            df = df[df["job"] == df["job"].max()]
            df["point"] = [
                f"{x} labels" if isinstance(x, str) else f"confidence ≥ {x:g}" for x in df["x"]
            ]
            fig = px.bar(df, x="point", y=metric, text=metric, hover_data=["rows", "run"])
            fig.update_traces(texttemplate="%{text:.3f}")
            lo = max(0.0, float(df[metric].min()) - 0.1)
            fig.update_layout(height=350, xaxis_title="", yaxis_range=[lo, 1.0])
            st.plotly_chart(fig, width="stretch", key="quality_chart")


experiments_panel()
