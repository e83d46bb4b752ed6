"""The learning-rate sweep on the Charts page: pick rates and seeds, see the estimate, launch
it as an ``experiment`` job (progress and Cancel as for the other experiments), and draw a
metric against the rate with the mean and spread over seeds and the best rate marked.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app_pages import access
from app_pages.figures import METRIC_LABELS, rate_sweep_figure
from app_pages.plain import plain
from app_pages.planning import plan_seconds, summarise
from app_pages.training_form import TRAIN_CONFIG_KEY, launch_training
from data.records import RunRecord
from runtime.device import resolve_device
from runtime.estimates import duration
from training.config import TrainingConfig
from training.experiments import DEFAULT_RATE_GRID, DEFAULT_SEED_COUNT, rate_label
from training.reporting import rate_sweep_table, runs_frame

EXPERIMENT = "learning_rate"
# Rates offered: a 1-2-3-5 log grid from 1e-6 to 1e-2 (the default is 1e-5 ... 1e-3).
RATE_CHOICES = tuple(
    sorted({float(f"{m}e{e}") for e in range(-6, -2) for m in (1, 2, 3, 5)} | {1e-2})
)


def sweep_options(seed: int) -> tuple[dict[str, Any], str | None]:
    """The rate and seed widgets; returns (the experiment's options, an error or None)."""
    left, right = st.columns([3, 1])
    rates = left.multiselect(
        "Learning rates",
        RATE_CHOICES,
        default=list(DEFAULT_RATE_GRID),
        format_func=rate_label,
        key="lr_rates",
        help="Every rate trains on the same rows with the same seed; the chart's x axis is "
        "logarithmic, so a 1-3-10 grid spaces the points evenly.",
    )
    n_seeds = right.number_input(
        "Seeds",
        min_value=1,
        max_value=10,
        value=DEFAULT_SEED_COUNT,
        key="lr_seeds",
        help="Each rate is trained once per seed; the chart shows the mean and the standard "
        "deviation over seeds.",
    )
    options = {"learning_rates": sorted(rates), "seeds": list(range(seed, seed + int(n_seeds)))}
    return options, None if rates else "Pick at least one learning rate."


def estimate_line(ws: Any, config: TrainingConfig, options: dict[str, Any]) -> str:
    """How many runs the sweep makes and roughly how long they take (Train page's estimate)."""
    summary = summarise(ws, EXPERIMENT, config, options)
    n_rates, n_seeds = len(options["learning_rates"]), len(options["seeds"])
    rows = summary["train_rows"]
    runs = len(rows)
    seconds = plan_seconds(summary, config)
    return (
        f"**{runs} run{'s' if runs > 1 else ''}** ({n_rates} rate{'s' if n_rates > 1 else ''} "
        f"× {n_seeds} seed{'s' if n_seeds > 1 else ''}), roughly **{duration(seconds)}** on "
        f"{resolve_device(config.device)} · {max(rows):,} training rows × {config.epochs:g} "
        f"epochs per run · scored on {summary['eval_rows']:,} test rows."
    )


def launch_form(ws: Any, *, blocked: bool) -> None:
    saved = st.session_state.get(TRAIN_CONFIG_KEY)
    config = TrainingConfig.from_dict(saved) if saved else TrainingConfig()
    options, error = sweep_options(config.seed)
    if error:
        st.error(error)
    else:
        try:
            st.markdown(estimate_line(ws, config, options))
        except ValueError as exc:
            error = str(exc)
            st.error(plain(error))
    st.caption(
        "With the Train page's settings (technique, model, epochs, row caps); its learning rate "
        "is replaced by each rate of the sweep."
    )
    if st.button(
        "Run the learning-rate sweep",
        key="run_learning_rate",
        disabled=blocked or bool(error) or not access.can("train"),
    ):
        seconds = plan_seconds(summarise(ws, EXPERIMENT, config, options), config)
        launch_training(ws, config, EXPERIMENT, options, estimate_seconds=seconds)
        st.rerun()


def sweep_job(frame: pd.DataFrame, runs: list[RunRecord]) -> int | None:
    """The sweep job to draw (latest by default)."""
    ids = sorted(frame.loc[frame["experiment"] == EXPERIMENT, "job"].dropna().unique())[::-1]
    if not ids:
        return None

    def label(job_id: Any) -> str:
        mine = [r for r in runs if r.job_id == job_id and r.done]
        technique = mine[0].config.get("technique", "") if mine else ""
        when = (mine[-1].finished_at or "")[:16].replace("T", " ") if mine else ""
        return f"job {int(job_id)} · {len(mine)} runs · {technique} {when}".strip()

    return st.selectbox("Sweep", ids, format_func=label, key="rate_job")


def rate_sweep_panel(ws: Any, metric: str) -> None:
    """The learning-rate section of the Charts page."""
    st.subheader(f"{METRIC_LABELS[metric]} vs learning rate")
    runs = ws.runs()
    frame = runs_frame(runs, metric=metric)
    job_id = sweep_job(frame, runs)
    if job_id is None:
        st.caption(
            "The same training rows at each learning rate, for each seed; the chart shows the "
            "mean and spread per rate and marks the best. Not run yet."
        )
    else:
        part = frame[(frame["job"] == job_id) & (frame["experiment"] == EXPERIMENT)]
        table = rate_sweep_table(part)
        st.plotly_chart(
            rate_sweep_figure(table, part, metric=metric), width="stretch", key="rate_chart"
        )
        if not table.empty:
            best = table[table["best"]].iloc[0]
            spread = "" if pd.isna(best["std"]) else f" ± {best['std']:.3f}"
            st.caption(
                f"Best rate: **{best['rate']}** ({METRIC_LABELS[metric]} {best['mean']:.3f}"
                f"{spread} over {int(best['n'])} run{'s' if best['n'] > 1 else ''}). Bars are "
                "one standard deviation over seeds; faint dots are single runs."
            )
            with st.expander("The numbers"):
                st.dataframe(
                    table.drop(columns=["metric"]),
                    hide_index=True,
                    width="stretch",
                    column_config={"learning_rate": st.column_config.NumberColumn(format="%g")},
                )
    running = any(j.kind in ("experiment", "train") for j in ws.jobs(active=True))
    with st.expander("Run a learning-rate sweep", expanded=job_id is None):
        if running:
            st.caption("A training job is running (its progress is above); start this after.")
        launch_form(ws, blocked=running)
