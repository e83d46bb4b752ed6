"""Predictions & flags: run the analysis, watch it, and see what cleanlab found."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages import access
from app_pages.adapt import adapted_choice
from app_pages.plain import plain, plain_chart
from app_pages.planning import calibration_offer
from app_pages.progress import active_job, job_status_line, progress_fraction, staged_progress
from app_pages.words import column_words
from app_pages.workspace import require_workspace
from curation.methods import (
    ANALYSIS_START_SECONDS,
    DEFAULT_METHOD,
    METHOD_HELP,
    METHODS,
    detection_seconds,
)
from runtime.device import resolve_device
from runtime.encoder import EncoderSettings, embed_seconds
from runtime.estimates import duration

st.title("Predictions & flags")
ws = require_workspace()

with st.expander("Analysis settings", expanded=ws.latest_analysis() is None):
    method = st.radio(
        "Where the predicted probabilities come from",
        METHODS,
        index=METHODS.index(DEFAULT_METHOD),
        format_func=lambda m: f"{m}{' (default)' if m == DEFAULT_METHOD else ''}",
        captions=[METHOD_HELP.get(m, "") for m in METHODS],
        horizontal=True,
        key="an_method",
    )
    c1, c2, c3 = st.columns(3)
    model = c1.text_input(
        "Encoder",
        value="",
        placeholder="packaged all-MiniLM-L6-v2",
        help="Leave empty for the packaged model; or a local model folder, or a hub id "
        "(needs a network).",
        key="enc_model",
    )
    model = adapted_choice(c1, str(ws.folder), key="enc_adapted") or model
    max_length = c2.number_input("Max tokens", 16, 512, 64, step=16, key="enc_maxlen")
    precision = c3.selectbox(
        "Precision",
        ["auto", "fp32", "bf16"],
        key="enc_precision",
        help="auto: bf16 autocast where supported (about 1.7x faster on "
        "CPU, embeddings at cosine ≥ 0.9999 to fp32).",
    )
    n_folds = c1.number_input("Cross-validation folds", 2, 10, 5, key="cv_folds")
    settings = EncoderSettings(model=model.strip(), max_length=int(max_length), precision=precision)
    device = resolve_device("auto")
    n_rows = ws.counts()["n"]
    # Embeddings, text features and the neighbour graph are cached after the first analysis
    # with this encoder; before it, embedding every text dominates: at the speed this machine
    # measured for these encoder settings (runtime.estimates), else a default.
    done_before = any(a.settings.get("model_key") == settings.key() for a in ws.analyses())
    seconds = (
        ANALYSIS_START_SECONDS
        + detection_seconds(method, n_rows, device=device, n_folds=int(n_folds), cached=done_before)
        + (0.0 if done_before else embed_seconds(n_rows, settings))
    )
    st.caption(
        f"Estimated time on this machine ({device}) for {n_rows:,} rows: about "
        f"{duration(seconds)}"
        + ("" if done_before else ", most of it embedding every text once (cached after)")
        + "."
    )
    if not done_before:
        calibration_offer(ws, settings=settings, key="analysis")
    st.caption(
        f"Out-of-sample probabilities: {plain(settings.describe())}, then {n_folds}-fold "
        f"cross-validation ({method}); cleanlab scores each label and Datalab looks for "
        "outliers and near-duplicates. Embeddings and the neighbor graph are cached, so a "
        "re-analysis after relabeling only refits the classifier."
    )


@st.fragment(run_every=1.5)
def analysis_panel() -> None:
    job = active_job(ws, ("analyze",))
    if job is not None:
        st.info(job_status_line(job))
        frac = progress_fraction(job.progress)
        # Counts, rows/s and time left of the current stage, from its first batch on.
        st.progress(frac or 0.0, text=staged_progress(job) or "starting…")
        if st.button("Cancel analysis", key="cancel_analysis"):
            access.cancel(ws, job)
            st.rerun()
        return
    latest = ws.latest_analysis()
    stale = latest is not None and latest.label_version < ws.label_version()
    label = "Re-analyse with current labels" if latest else "Run analysis"
    if st.button(
        label,
        type="primary" if (stale or not latest) else "secondary",
        key="run_analysis",
        disabled=not access.can("analyze"),
    ):
        access.launch(
            ws,
            "analyze",
            {
                "encoder": settings.__dict__,
                "method": method,
                "n_folds": int(n_folds),
                "seed": 0,
                # What this page estimated: the time left in all until the job ends.
                "estimate_seconds": round(seconds, 1),
            },
        )
        st.rerun(scope="app")
    last_job = next(iter(ws.jobs(kind="analyze")), None)
    if last_job is not None and last_job.status == "failed":
        st.error(f"The last analysis failed: {plain(last_job.error)}")
    elif last_job is not None and last_job.status == "cancelled":
        st.info("The last analysis was cancelled.")
    if stale:
        st.warning(
            f"{ws.label_version() - latest.label_version} label events since this analysis: "
            "re-analyse to rescore with the current labels."
        )


analysis_panel()

latest = ws.latest_analysis()
if latest is None:
    if active_job(ws, ("analyze",)) is None:
        st.info("No analysis yet. It finds likely label errors; start it above.")
    st.stop()

summary = latest.summary
timings = summary.timings


@st.cache_data(max_entries=4, show_spinner=False)
def analysis_table(folder: str, analysis_id: int, label_version: int):
    """Per-row results joined with current labels; cached per analysis and label version."""
    return ws.analysis_results(analysis_id)


results = analysis_table(str(ws.folder), latest.id, ws.label_version())
n = len(results)
flagged = int(results["is_label_issue"].sum())
disagree = int((results["predicted_label"] != results["analyzed_label"]).sum())
cols = st.columns(4)
cols[0].metric("Rows scored", f"{n:,}")
cols[1].metric(
    "Flagged as likely label errors",
    f"{flagged:,}",
    f"{flagged / max(n, 1):.1%} of rows",
    delta_color="off",
    delta_arrow="off",
)
cols[2].metric("Prediction ≠ label", f"{disagree:,}")
cols[3].metric(
    "Agreement with analyzed labels",
    f"{1 - disagree / max(n, 1):.1%}",
    help="Share of rows whose out-of-sample prediction equals the analyzed label (the row's "
    "label when the analysis ran).",
)
st.caption(
    f"Analysis {latest.id} ({plain(summary.method)}) at "
    f"{latest.created_at[:19]} UTC on label version "
    f"{latest.label_version} · {plain(summary.encoder)} · took "
    f"{duration(float(timings.get('total_seconds') or 0))} ("
    + ", ".join(
        f"{name} {duration(float(timings[key]))}"
        for name, key in (
            ("embedding", "embed_seconds"),
            ("neighbors", "knn_seconds"),
            ("text features", "text_features_seconds"),
            ("fit", "fit_seconds"),
            ("cleanlab", "score_seconds"),
            ("other issues", "issues_seconds"),
        )
        if key in timings
    )
    + ")"
)

left, right = st.columns(2)
with left:
    st.subheader("Flags per analyzed label")
    per_class = (
        results.groupby("analyzed_label")["is_label_issue"]
        .agg(["sum", "count"])
        .rename(columns={"sum": "flagged", "count": "rows"})
    )
    per_class["rate"] = (per_class["flagged"] / per_class["rows"]).map("{:.1%}".format)
    st.dataframe(per_class.rename_axis("analyzed label"), width="stretch")
with right:
    st.subheader("Analyzed label → model's prediction (flagged rows)")
    flagged_rows = results[results["is_label_issue"]]
    if len(flagged_rows):
        cross = pd.crosstab(flagged_rows["analyzed_label"], flagged_rows["predicted_label"])
        # Plotly reads HTML tags in tick labels: class names are escaped for it.
        cross = cross.rename(index=plain_chart, columns=plain_chart)
        fig = px.imshow(
            cross,
            text_auto=True,
            color_continuous_scale="Reds",
            labels={"x": "predicted", "y": "analyzed", "color": "rows"},
        )
        fig.update_layout(height=300, margin=dict(l=0, r=0, t=10, b=0))
        st.plotly_chart(fig, width="stretch")
    else:  # an empty heading reads like a broken chart: say why there is nothing
        st.caption("Nothing is flagged, so there are no disagreements to show here.")

st.subheader("Lowest label quality first")
st.caption(
    "Predictions are out-of-sample: each row's prediction comes from a model that did "
    "not see that row. Open **Review** to act on them."
)
worst = results.sort_values("label_quality").head(200)
st.dataframe(
    worst[
        [
            "ext_id",
            "analyzed_label",
            "label",
            "predicted_label",
            "predicted_prob",
            "label_quality",
            "is_label_issue",
            "text",
        ]
    ],
    width="stretch",
    hide_index=True,
    height=400,
    column_config=column_words(
        worst.columns,
        predicted_prob=st.column_config.NumberColumn("p(predicted)", format="%.2f"),
        label_quality=st.column_config.ProgressColumn(
            "label quality", min_value=0.0, max_value=1.0, format="%.3f"
        ),
    ),
)
st.page_link("app_pages/review.py", label="Review flagged rows", icon=":material/rate_review:")
