"""How runs look: metric rows, run titles, loss curves and confusion matrices."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app_pages.plain import plain_chart
from data.records import RunRecord


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
