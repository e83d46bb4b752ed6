"""How runs look: metric rows, run titles, loss curves, confusion matrices, ROC curves and the
learning-rate sweep.

Every class name drawn here goes through :func:`app_pages.plain.plain_chart` (Plotly reads
HTML tags in its texts); the tables behind the figures come from :mod:`training.reporting`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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


def confusion_figure(metrics: dict[str, Any], *, normalise: bool = False, height: int = 320):
    """A subset's confusion matrix as a heatmap: counts, or each true class's row as shares.

    Rows are the true class, columns the predicted one; the hover shows the count and the
    row share either way.
    """
    import plotly.graph_objects as go

    from training.reporting import confusion_table

    counts = confusion_table(metrics)
    shares = confusion_table(metrics, normalise=True)
    # Plotly reads HTML tags in tick labels: class names are escaped for it.
    labels = [plain_chart(label) for label in counts.index]
    shown = shares if normalise else counts
    text = [[f"{v:.0%}" if normalise else f"{v:,.0f}" for v in row] for row in shown.to_numpy()]
    custom = [
        [[f"{c:,.0f}", f"{s:.1%}"] for c, s in zip(crow, srow, strict=True)]
        for crow, srow in zip(counts.to_numpy(), shares.to_numpy(), strict=True)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=shown.to_numpy().tolist(),
            x=labels,
            y=labels,
            text=text,
            texttemplate="%{text}",
            customdata=custom,
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalise else None,
            colorbar=dict(
                title="share of row" if normalise else "rows",
                tickformat=".0%" if normalise else None,
            ),
            hovertemplate="true: %{y}<br>predicted: %{x}<br>%{customdata[0]} rows "
            "(%{customdata[1]} of the true class)<extra></extra>",
        )
    )
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=10, b=0),
        xaxis=dict(title="predicted", type="category"),
        yaxis=dict(title="true", type="category", autorange="reversed"),
    )
    return fig


# Line styles of the classes when several runs share one ROC plot (colour = run).
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
ROC_NOT_KEPT = "This run was recorded before ROC curves were kept; retrain to see it."


def roc_figure(frame: Any, *, side_by_side: bool = False, height: int = 360):
    """ROC curves of one or more runs (a :func:`training.reporting.roc_frame`), with each
    curve's AUC in the legend and the chance diagonal.

    One run: a colour per class. Several runs overlaid: a colour per run and a line style per
    class; ``side_by_side``: a panel per run, a colour per class.
    """
    import plotly.express as px
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    runs = list(dict.fromkeys(frame["run"]))
    labels = list(dict.fromkeys(frame["label"]))
    colours = px.colors.qualitative.D3
    panels = len(runs) if side_by_side and len(runs) > 1 else 1
    fig = make_subplots(
        rows=1,
        cols=panels,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=[f"run {r}" for r in runs] if panels > 1 else None,
    )
    for col in range(1, panels + 1):
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name="chance (AUC 0.5)",
                legendgroup="chance",
                showlegend=col == 1,
                line=dict(color="#999", dash="dot", width=1),
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
    for (run, label), curve in frame.groupby(["run", "label"], sort=False):
        r, c = runs.index(run), labels.index(label)
        name = f"{plain_chart(label)} (AUC {curve['auc'].iloc[0]:.3f})"
        if len(runs) > 1:
            name = f"run {run} · {name}"
        by_class = panels > 1 or len(runs) == 1
        fig.add_trace(
            go.Scatter(
                x=curve["fpr"].tolist(),
                y=curve["tpr"].tolist(),
                mode="lines",
                name=name,
                line=dict(
                    color=colours[(c if by_class else r) % len(colours)],
                    dash="solid" if by_class else _DASHES[c % len(_DASHES)],
                    width=2,
                ),
                hovertemplate="%{fullData.name}<br>false positive rate %{x:.3f}<br>"
                "true positive rate %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=r + 1 if panels > 1 else 1,
        )
    fig.update_xaxes(title_text="false positive rate", range=[0, 1], constrain="domain")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="true positive rate", row=1, col=1)
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30 if panels > 1 else 10, b=0),
        # One run's few curves fit above the plot; a comparison's list goes to the right.
        legend=dict(title_text="")
        if len(runs) > 1
        else dict(title_text="", orientation="h", y=1.02, x=0, yanchor="bottom"),
    )
    return fig


def rate_sweep_figure(table: Any, frame: Any, *, metric: str, height: int = 380):
    """A metric against the learning rate: mean +- std over seeds per rate (full test split and,
    when scored, the verified subset), each seed's run as a faint dot, and the best rate starred.

    ``table`` is a :func:`training.reporting.rate_sweep_table`, ``frame`` the
    :func:`training.reporting.runs_frame` rows it came from. The x axis is logarithmic with a
    tick at each rate, written as people write them (``1e-5``, ``3e-5``, ``1e-4``).
    """
    import plotly.graph_objects as go

    from training.experiments import rate_label

    what = METRIC_LABELS[metric]
    fig = go.Figure()
    seeds = frame[frame["value"].notna()]
    fig.add_trace(
        go.Scatter(
            x=seeds["x"].astype(float).tolist(),
            y=seeds["value"].tolist(),
            mode="markers",
            name="each run (seed)",
            marker=dict(color="rgba(31, 119, 180, 0.35)", size=6),
            customdata=seeds[["seed", "run"]].to_numpy().tolist(),
            hovertemplate="lr %{x:.1e}<br>seed %{customdata[0]} (run %{customdata[1]})<br>"
            + what
            + " %{y:.3f}<extra></extra>",
        )
    )
    for subset, colour, mean, std in (
        ("full test split", "#1f77b4", "mean", "std"),
        ("verified subset", "#d62728", "verified_mean", "verified_std"),
    ):
        if table[mean].isna().all():
            continue
        fig.add_trace(
            go.Scatter(
                x=table["learning_rate"].tolist(),
                y=table[mean].tolist(),
                mode="lines+markers",
                name=f"{subset} (mean ± std)",
                marker=dict(color=colour, size=8),
                line=dict(color=colour),
                error_y=dict(type="data", array=table[std].fillna(0.0).tolist(), width=6),
                customdata=np.column_stack(
                    [table["rate"], table[std].fillna(0.0), table["n"]]
                ).tolist(),
                hovertemplate=f"<b>{subset}</b><br>lr %{{customdata[0]}}<br>mean %{{y:.3f}} "
                "± %{customdata[1]:.3f} (std)<br>n = %{customdata[2]} runs<extra></extra>",
            )
        )
    best = table[table["best"]]
    if not best.empty:
        rate, value = float(best["learning_rate"].iloc[0]), float(best["mean"].iloc[0])
        fig.add_trace(
            go.Scatter(
                x=[rate],
                y=[value],
                mode="markers",
                name=f"best: {rate_label(rate)}",
                marker=dict(
                    symbol="star", size=18, color="#ffbf00", line=dict(color="#000", width=1)
                ),
                hovertemplate=f"best rate {rate_label(rate)}<br>mean {value:.3f}<extra></extra>",
            )
        )
        fig.add_annotation(x=np.log10(rate), y=value, text=f"best {rate_label(rate)}", ax=0, ay=-36)
    rates = table["learning_rate"].tolist()
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30, b=0),
        xaxis=dict(
            title="learning rate (log scale)",
            type="log",
            tickmode="array",
            tickvals=rates,
            ticktext=[rate_label(r) for r in rates],
        ),
        yaxis_title=what,
        legend=dict(orientation="h", y=1.02, x=0, yanchor="bottom"),
    )
    return fig
