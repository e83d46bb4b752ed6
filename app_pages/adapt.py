"""Encoder adaptation on the Train page, and adapted encoders as model choices elsewhere.

:func:`adapt_section` draws "Adapt the encoder to this data": settings, an estimate, a button
that launches the ``adapt`` job (:mod:`training.adapt`), its progress with a Cancel button, and
the adapted encoders this workspace has. :func:`adapted_choice` offers those encoders wherever a
model is chosen (the Train page's settings, the Predictions page's encoder).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages import access
from app_pages.plain import plain
from app_pages.progress import active_job, job_status_line, progress_fraction
from app_pages.words import setting_help
from data.store import Workspace
from runtime.device import resolve_device, resolve_precision
from runtime.estimates import duration
from runtime.progress import describe as describe_progress

ADAPT_KIND = "adapt"
NOT_ADAPTED = "— none (use the field above) —"


def adapted_list(folder: str) -> list[dict[str, Any]]:
    """The workspace's finished adapted encoders, newest first (a folder listing: cheap)."""
    from training.adapt import adapted_encoders

    return adapted_encoders(folder)


def encoder_label(entry: dict[str, Any]) -> str:
    """How an adapted encoder is named in a selectbox."""
    base = entry.get("base_model") or "packaged all-MiniLM-L6-v2"
    rows = entry.get("rows")
    loss = ""
    if entry.get("loss_before") is not None and entry.get("loss_after") is not None:
        loss = f", MLM loss {entry['loss_before']:.2f} → {entry['loss_after']:.2f}"
    return f"{entry['name']} (from {base}, {rows or 0:,} texts{loss})"


def adapted_choice(container: Any, folder: str | None, *, key: str) -> str | None:
    """A selectbox of this workspace's adapted encoders; the chosen folder, or None.

    Drawn only when the workspace has some, so pages without adapted encoders look as before.
    The caller uses the folder instead of its own model field when one is chosen.
    """
    if not folder:
        return None
    found = adapted_list(folder)
    if not found:
        return None
    paths = [NOT_ADAPTED, *[e["path"] for e in found]]
    names = {e["path"]: encoder_label(e) for e in found}
    picked = container.selectbox(
        "Adapted encoders in this workspace",
        paths,
        format_func=lambda p: names.get(p, p),
        key=key,
        help="Encoders adapted to this workspace's texts (Train page, 'Adapt the encoder to "
        "this data'). Choosing one replaces the model field above.",
    )
    return None if picked == NOT_ADAPTED else picked


def _settings() -> tuple[Any, str, str | None]:
    """The adaptation settings widgets; returns (AdaptConfig or None, base model, error)."""
    from training.adapt import AdaptConfig

    defaults = AdaptConfig()
    help_ = AdaptConfig.FIELD_HELP
    values: dict[str, Any] = {}
    cols = st.columns(4)
    model = cols[0].text_input(
        "Base encoder",
        value="",
        key="ad_model",
        placeholder="packaged all-MiniLM-L6-v2",
        help="Empty for the packaged model, or a local BERT-like folder (an adapted one too).",
    )
    values["epochs"] = cols[1].number_input(
        "Epochs",
        value=defaults.epochs,
        step=0.5,
        format="%g",
        key="ad_epochs",
        help=setting_help("epochs", help_["epochs"]),
    )
    values["max_steps"] = cols[2].number_input(
        "Steps at most",
        value=None,
        step=1,
        key="ad_max_steps",
        placeholder="the epochs decide",
        help=setting_help("max_steps", help_["max_steps"]),
    )
    values["max_length"] = cols[3].number_input(
        "Max tokens per text",
        value=defaults.max_length,
        step=1,
        key="ad_max_length",
        help=setting_help("max_length", help_["max_length"]),
    )
    with st.expander("More adaptation settings"):
        more = st.columns(4)
        values["learning_rate"] = more[0].number_input(
            "Learning rate",
            value=defaults.learning_rate,
            step=1e-5,
            format="%g",
            key="ad_lr",
            help=setting_help("learning_rate", help_["learning_rate"]),
        )
        values["batch_size"] = more[1].number_input(
            "Batch size",
            value=defaults.batch_size,
            step=1,
            key="ad_batch",
            help=setting_help("batch_size", help_["batch_size"]),
        )
        values["mlm_probability"] = more[2].number_input(
            "Share of tokens masked",
            value=defaults.mlm_probability,
            step=0.05,
            format="%g",
            key="ad_mlm",
            help=setting_help("mlm_probability", help_["mlm_probability"]),
        )
        values["seed"] = more[3].number_input(
            "Random seed",
            value=defaults.seed,
            step=1,
            key="ad_seed",
            help=setting_help("seed", help_["seed"]),
        )
        hw = st.columns(4)
        values["device"] = hw[0].selectbox(
            "Device",
            ["auto", "cpu", "cuda"],
            key="ad_device",
            help=setting_help("device", help_["device"]),
        )
        values["precision"] = hw[1].selectbox(
            "Precision",
            ["auto", "fp32", "bf16", "fp16"],
            key="ad_precision",
            help=setting_help("precision", help_["precision"]),
        )
    for name in ("max_steps", "max_length", "batch_size", "seed"):
        if isinstance(values[name], float) and values[name].is_integer():
            values[name] = int(values[name])
    try:
        config = AdaptConfig.from_dict(values)
        resolve_precision(config.precision, resolve_device(config.device))
    except ValueError as exc:
        return None, model.strip(), str(exc)
    return config, model.strip(), None


def _job_panel(ws: Workspace, config: Any, model: str, blocked: bool) -> None:
    job = active_job(ws, (ADAPT_KIND,))
    if job is not None:
        st.info(job_status_line(job))
        st.progress(
            progress_fraction(job.progress) or 0.0,
            text=describe_progress(job.progress) or "loading the model…",
        )
        if st.button("Cancel adaptation", key="cancel_adapt"):
            access.cancel(ws, job)
            st.rerun()
        return
    training = any(j.kind in ("train", "experiment") for j in ws.jobs(active=True))
    if training:
        st.caption("A training job is running; start the adaptation when it ends.")
    if st.button("Start adapting", disabled=blocked or training, key="start_adapt"):
        access.launch(ws, ADAPT_KIND, {"config": config.to_dict(), "model": model})
        st.rerun()
    last = next(iter(ws.jobs(kind=ADAPT_KIND)), None)
    if last is not None and last.status == "failed":
        st.error(f"The last adaptation failed: {plain(last.error)}")
    elif last is not None and last.status == "cancelled":
        st.info(f"Adaptation job {last.id} was cancelled; nothing of it was kept.")


def adapt_section(ws: Workspace) -> None:
    """The Train page's "Adapt the encoder to this data" section."""
    from training.adapt import HOLDOUT_CAP, HOLDOUT_FRACTION, adapt_seconds

    st.subheader("Adapt the encoder to this data")
    counts = ws.counts()
    n_texts = counts["n"] - counts.get("excluded", 0)
    st.markdown(
        "Continues the encoder's masked-language-model pretraining on this workspace's texts "
        "(domain-adaptive pretraining): it **uses every text in the workspace (all splits), "
        f"never the labels** ({n_texts:,} texts; rows a reviewer excluded are left out). The "
        "adapted encoder is saved in the workspace and then appears as a model choice here and "
        "on the Predictions page; compare it with the base model on the Charts page."
    )
    config, model, error = _settings()
    if error:
        st.error(plain(error))
    else:
        device = resolve_device(config.device)
        precision = resolve_precision(config.precision, device)
        # The job trains on what is left after the held-out texts (training.adapt._holdout).
        held = min(HOLDOUT_CAP, max(1, round(n_texts * HOLDOUT_FRACTION)), n_texts - 1)
        steps = config.steps(max(n_texts - held, 1))
        st.caption(
            f"Roughly **{duration(adapt_seconds(n_texts, config, model))}** on {device} "
            f"({precision}): {steps:,} steps of {config.batch_size} texts, plus the masked-LM "
            "loss on 5% held-out texts before and after."
        )
    running = any(j.kind == ADAPT_KIND for j in ws.jobs(active=True))
    st.fragment(_job_panel, run_every=1.5 if running else None)(
        ws, config, model, config is None or n_texts < 2
    )
    found = adapted_list(str(ws.folder))
    if found:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "encoder": e["name"],
                        "base": e.get("base_model") or "packaged",
                        "texts": e.get("rows"),
                        "steps": e.get("steps"),
                        "MLM loss before": e.get("loss_before"),
                        "MLM loss after": e.get("loss_after"),
                        "took": duration(e.get("seconds") or 0),
                        "folder": e["path"],
                    }
                    for e in found
                ]
            ),
            hide_index=True,
            width="stretch",
            key="adapted_table",
        )
        st.caption(
            "Masked-LM loss on held-out texts (same masks before and after). The packaged "
            "encoder has no masked-LM head, so the loss before is that of a new, untrained head."
        )


def adaptation_panel(ws: Workspace, metric: str, metric_label: str) -> None:
    """The Charts page's "With and without adaptation" panel: paired runs, or how to get them."""
    from training.reporting import adaptation_pairs

    st.subheader(f"{metric_label} with and without encoder adaptation")
    found = adapted_list(str(ws.folder))
    pairs = adaptation_pairs(ws.runs(), ws.folder, metric) if found else None
    if pairs is None or pairs.empty:
        first = (
            "Adapt the encoder on the Train page ('Adapt the encoder to this data'), then"
            if not found
            else f"This workspace has {len(found)} adapted encoder{'s' if len(found) > 1 else ''}."
            " To compare,"
        )
        st.caption(
            f"{first} train a single run with the base model and one with the adapted encoder "
            "(Train page, 'Adapted encoders in this workspace') with the same seed and settings "
            "and no label changes in between: both are scored on the same test rows, and each "
            "such pair appears here. Several seeds give a fairer picture than one."
        )
        return
    labels = [f"{e} · seed {s}" for e, s in zip(pairs["encoder"], pairs["seed"], strict=True)]
    figure = go.Figure(
        [
            go.Bar(name="base model", x=labels, y=pairs["base"].tolist(), marker_color="#7f7f7f"),
            go.Bar(
                name="adapted encoder",
                x=labels,
                y=pairs["adapted"].tolist(),
                marker_color="#2ca02c",
            ),
        ]
    )
    figure.update_layout(
        barmode="group",
        height=320,
        margin=dict(l=0, r=0, t=30, b=0),
        yaxis_title=metric_label,
        legend=dict(orientation="h", y=1.02, x=0, yanchor="bottom"),
    )
    st.plotly_chart(figure, width="stretch", key="adaptation_chart")
    mean = float(pairs["difference"].mean())
    rows = pairs["test_rows"].dropna()
    st.caption(
        f"{len(pairs)} pair{'s' if len(pairs) > 1 else ''} of runs; each pair shares the test "
        f"rows{f' ({int(rows.iloc[0]):,})' if len(rows) else ''}, training rows, labels, seed and "
        f"settings. Mean difference (adapted - base): {mean:+.3f}."
    )
    with st.expander("The pairs"):
        st.dataframe(pairs, hide_index=True, width="stretch")
