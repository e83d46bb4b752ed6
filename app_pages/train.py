"""Train: fine-tune a classifier on the curated labels, as a background job with live progress."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.common import (
    active_job,
    config_form,
    confusion_figure,
    job_status_line,
    metrics_row,
    progress_fraction,
    require_workspace,
)
from training import jobs
from training.device import resolve_device, resolve_precision

st.title("Train")
ws = require_workspace()
counts = ws.counts()

st.markdown(
    "Fine-tunes a transformer sequence classifier on the **curated labels** of the training "
    f"split ({counts['train']:,} rows; excluded rows are left out) and evaluates it on the test "
    f"split ({counts['test']:,} rows)."
)
with st.expander("Hyperparameters", expanded=False):
    config, error = config_form("tr")
    if error:
        st.error(error)
if config is not None:
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    st.caption(
        f"Runs on **{device}** in **{precision}**. On a CPU the defaults cap training at "
        f"{config.max_train_samples or 'all'} rows × {config.epochs:g} epochs and evaluation at "
        f"{config.max_eval_samples or 'all'} test rows so a run takes a minute or two (about 60–80 "
        "training rows/s on 2 cores); on a GPU, clear the caps."
    )


@st.fragment(run_every=1.5)
def job_panel() -> None:
    job = active_job(ws, ("train", "experiment"))
    if job is None:
        if st.button(
            "Start training", type="primary", disabled=config is None, key="start_training"
        ):
            jobs.launch(ws, "train", {"config": config.to_dict()})
            st.rerun()
        last = next(iter(ws.jobs(kind="train")), None)
        if last is not None and last["status"] == "failed":
            st.error(f"The last training job failed: {last['error']}")
        elif last is not None and last["status"] == "cancelled":
            st.info(f"Training job {last['id']} was cancelled; the workspace is unchanged.")
        return
    st.info(job_status_line(job))
    runs = ws.runs(job_id=job["id"])
    run = runs[-1] if runs else None
    progress = (run or {}).get("progress") or {}
    frac = progress_fraction(progress)
    step, steps = progress.get("step"), progress.get("total_steps")
    loss = progress.get("loss")
    text = (
        f"step {step}/{steps}" + (f" · loss {loss:.4f}" if loss is not None else "")
        if steps
        else "loading the model…"
    )
    st.progress(frac or 0.0, text=text)
    if st.button("Cancel", key="cancel_training"):
        jobs.cancel(ws, job["id"])
        st.rerun()
    history = (run or {}).get("history") or []
    if history:
        fig = px.line(pd.DataFrame(history), x="step", y="loss", markers=True)
        fig.update_layout(height=250, margin=dict(l=0, r=0, t=10, b=0))
        st.plotly_chart(fig, width="stretch", key="live_loss")


job_panel()

st.subheader("Runs")
runs = [r for r in ws.runs() if r["status"] != "running"]
if not runs:
    st.caption("No finished runs yet.")
    st.stop()
table = pd.DataFrame(
    [
        {
            "run": r["id"],
            "name": r["name"],
            "status": r["status"],
            "labels": r["data"].get("label_source"),
            "train rows": r["data"].get("train_rows"),
            "eval rows": r["data"].get("eval_rows"),
            "accuracy": (r["metrics"] or {}).get("accuracy"),
            "f1": (r["metrics"] or {}).get("f1"),
            "roc_auc": (r["metrics"] or {}).get("roc_auc"),
            "device": r["data"].get("device"),
            "finished": (r["finished_at"] or "")[:19],
        }
        for r in reversed(runs)
    ]
)
st.dataframe(table, hide_index=True, width="stretch")
done = [r for r in reversed(runs) if r["status"] == "done"]
if done:
    choice = st.selectbox(
        "Run details", [r["id"] for r in done], format_func=lambda i: f"run {i}", key="run_detail"
    )
    run = ws.run(choice)
    metrics_row(run["metrics"])
    left, right = st.columns(2)
    with left:
        st.plotly_chart(confusion_figure(run["metrics"]), width="stretch", key="cm")
    with right:
        if run["history"]:
            fig = px.line(pd.DataFrame(run["history"]), x="step", y="loss", markers=True)
            fig.update_layout(height=320, margin=dict(l=0, r=0, t=10, b=0))
            st.plotly_chart(fig, width="stretch", key="loss")
    with st.expander("Config and data of this run"):
        st.json({"config": run["config"], "data": run["data"], "model_dir": run["model_dir"]})
