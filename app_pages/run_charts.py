"""A run's charts people defend a model with: its confusion matrix (counts or row shares) and
its ROC curves, on the test split or the verified subset; and the compared runs' ROC curves.

Shown on the Train page (a finished run's results) and on Run history (one run's details and
the comparison). The curves are the ones stored with the run at evaluation time
(:func:`training.metrics.roc_curves`); runs recorded before they were kept say so.
"""

from __future__ import annotations

import streamlit as st

from app_pages.figures import ROC_NOT_KEPT, confusion_figure, roc_figure
from app_pages.plain import plain
from data.records import RunRecord
from training.reporting import has_roc, roc_frame

SUBSETS = {"test": "test split", "verified": "verified subset"}


def run_charts(run: RunRecord, *, key: str) -> None:
    """The run's confusion-matrix heatmap and ROC curves side by side.

    With verified test rows, a control picks the subset both charts are drawn on; a toggle
    shows the matrix as counts or row-normalised. ``key`` prefixes the widgets' keys.
    """
    subset, verified = "test", int((run.verified or {}).get("n") or 0)
    with st.container(horizontal=True, vertical_alignment="center"):
        if verified:
            pick = st.segmented_control(
                "Charts on",
                list(SUBSETS),
                default="test",
                format_func=SUBSETS.get,
                key=f"{key}_subset",
                label_visibility="collapsed",
            )
            subset = pick or "test"
        normalise = st.toggle(
            "Row-normalised confusion matrix",
            key=f"{key}_normalise",
            help="Each true class's row as shares of its rows (its recall on the diagonal), "
            "instead of counts.",
        )
    metrics = (run.test if subset == "test" else run.verified) or {}
    left, right = st.columns(2)
    with left:
        st.markdown(
            f"**Confusion matrix** on the {SUBSETS[subset]} (rows: true, columns: predicted)"
        )
        if metrics.get("confusion_matrix"):
            st.plotly_chart(
                confusion_figure(metrics, normalise=normalise), width="stretch", key=f"{key}_cm"
            )
        else:
            st.caption("No confusion matrix: no rows were scored.")
    with right:
        st.markdown(f"**ROC curve** on the {SUBSETS[subset]}")
        roc_chart([run], subset=subset, key=f"{key}_roc")


def roc_chart(runs: list[RunRecord], *, subset: str = "test", key: str, side_by_side=False):
    """The runs' stored ROC curves (overlaid, or a panel per run), or why there are none."""
    old = [r for r in runs if not has_roc(r, subset=subset)]
    for run in old:
        name = f"Run {run.id}" if len(runs) > 1 else "This run"
        st.info(ROC_NOT_KEPT.replace("This run", name), icon=":material/info:")
    kept = [r for r in runs if r not in old]
    if not kept:
        return
    frame = roc_frame(kept, subset=subset)
    empty = [r.id for r in kept if not r.roc(subset)["curves"]]
    if empty:
        which = ", ".join(f"run {i}" for i in empty) if len(runs) > 1 else "this run"
        st.caption(
            f"No ROC curve for {which}: its {SUBSETS[subset]} holds only one class, so there "
            "is no false-positive rate to draw."
        )
    if frame.empty:
        return
    st.plotly_chart(roc_figure(frame, side_by_side=side_by_side), width="stretch", key=key)
    schemes = set(frame["scheme"])
    if schemes == {"binary"} and len(runs) == 1:
        positive = frame["label"].iloc[0]
        st.caption(
            f"Positive class: {plain(positive)} (scored by its probability). The dotted "
            "diagonal is chance."
        )
    else:
        st.caption(
            "One-vs-rest: a curve per class, that class against all the others, scored by "
            "its probability; AUC in the legend. The dotted diagonal is chance."
            if "one-vs-rest" in schemes
            else "AUC in the legend; the dotted diagonal is chance."
        )
