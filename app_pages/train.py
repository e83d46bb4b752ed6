"""Train: one run or an experiment in the background; a finished run's honest scores; try it.

Settings come from one validated TrainingConfig (its error names the bad field). A run is
scored on the test split and on the verified subset (test rows a reviewer confirmed or
corrected), with a before/after table of a few test rows; the "Try it" box predicts one
sentence with a finished run's model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app_pages import access
from app_pages.adapt import adapt_section
from app_pages.figures import METRIC_LABELS, loss_figure, metrics_row, run_title
from app_pages.plain import plain
from app_pages.planning import (
    PLAN_FIELDS,
    calibration_offer,
    default_rates,
    plan_seconds,
    plan_summary,
)
from app_pages.progress import active_job, job_progress
from app_pages.run_charts import run_charts
from app_pages.training_form import TECHNIQUE_LABELS, TRAIN_CONFIG_KEY, config_form, launch_training
from app_pages.workspace import open_workspace, require_workspace
from runtime.device import resolve_device, resolve_precision
from runtime.estimates import duration, measured_speed
from training.experiments import (
    DEFAULT_FRACTIONS,
    DEFAULT_NOISE_RATES,
    DEFAULT_SEED_COUNT,
    DEFAULT_THRESHOLDS,
)
from training.finetune import speed_identity
from training.reporting import METRICS
from training.runs import (
    confidence_column,
)

MODES = {
    "single": "Single run",
    "data_size": "Data-size curve",
    "label_quality": "Label quality",
}
FRACTION_CHOICES = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
NOISE_CHOICES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
THRESHOLD_CHOICES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def pct(x: float) -> str:
    return f"{x:.0%}"


def experiment_options(mode: str, seed: int, has_confidence: bool) -> tuple[dict, str | None]:
    """The widgets of an experiment's options; returns (runs.plan options, error)."""
    if mode == "single":
        return {}, None
    cols = st.columns(3)
    if mode == "data_size":
        fractions = cols[0].multiselect(
            "Fractions of the training rows",
            FRACTION_CHOICES,
            default=list(DEFAULT_FRACTIONS),
            format_func=pct,
            key="tr_fractions",
            help="Nested subsets: each larger subset contains the smaller ones.",
        )
        n_seeds = cols[1].number_input(
            "Seeds",
            min_value=1,
            max_value=10,
            value=DEFAULT_SEED_COUNT,
            key="tr_seeds",
            help="Every seed draws its own nested subsets and trains with its own seed; the "
            "chart shows the mean and the standard deviation over seeds.",
        )
        options = {
            "fractions": sorted(fractions),
            "seeds": list(range(seed, seed + int(n_seeds))),
        }
        return options, None if fractions else "Pick at least one fraction."
    noise = cols[0].multiselect(
        "Injected noise on the curated labels",
        NOISE_CHOICES,
        default=list(DEFAULT_NOISE_RATES),
        format_func=pct,
        key="tr_noise",
        help="Share of training labels flipped to another class; 0% is the curated run.",
    )
    options: dict[str, Any] = {"noise_rates": sorted(noise)}
    if has_confidence:
        options["thresholds"] = sorted(
            cols[1].multiselect(
                "Confidence thresholds",
                THRESHOLD_CHOICES,
                default=list(DEFAULT_THRESHOLDS),
                key="tr_thresholds",
                help="Curated labels on the rows whose crowd confidence is at least this.",
            )
        )
    n_seeds = cols[2].number_input("Seeds", min_value=1, max_value=10, value=1, key="tr_lq_seeds")
    options["seeds"] = list(range(seed, seed + int(n_seeds)))
    return options, None


@st.cache_data(show_spinner=False, max_entries=8)
def has_confidence_column(folder: str) -> bool:
    """Whether the data has a numeric crowd-confidence column (metadata never changes)."""
    return confidence_column(open_workspace(folder)) is not None


st.title("Train")
ws = require_workspace()
access.require_page("train")  # team mode: curators and admins (the page is not listed for others)
counts = ws.counts()
all_runs = ws.runs()

st.markdown(
    "Fine-tunes a transformer classifier on the **curated labels** of the training split "
    f"({counts['train']:,} rows; excluded rows are left out) and scores it on the test split "
    f"({counts['test']:,} rows) and on the **verified subset**: the test rows a reviewer "
    "confirmed or corrected."
)

st.subheader("Settings")
config, error = config_form("tr")
if error:
    st.error(plain(error), icon=":material/error:")  # it quotes the value typed
else:
    st.session_state[TRAIN_CONFIG_KEY] = config.to_dict()

st.subheader("What to run")
mode = (
    st.segmented_control(
        "Launch",
        list(MODES),
        default="single",
        format_func=MODES.get,
        key="tr_mode",
        label_visibility="collapsed",
    )
    or "single"
)
has_confidence = mode == "label_quality" and has_confidence_column(str(ws.folder))
seed = config.seed if config is not None else 0
options, option_error = experiment_options(mode, seed, has_confidence)
if mode == "data_size":
    st.caption(
        "Every fraction is trained once per seed and every run is scored on the same test "
        "rows; the Charts page draws the mean with a standard-deviation bar per size."
    )
elif mode == "label_quality":
    extra = " and curated labels above each crowd-confidence threshold" if has_confidence else ""
    st.caption(
        "Original vs curated labels on the same rows, curated labels with injected noise"
        f"{extra}; every run is scored on the same test rows (curated labels)."
    )
if option_error:
    st.error(option_error)

summary, plan_error = None, option_error
if config is not None and not option_error:
    try:
        summary = plan_summary(
            str(ws.folder),
            ws.label_version(),
            mode,
            {k: getattr(config, k) for k in PLAN_FIELDS},
            json.dumps(options, sort_keys=True),
        )
    except ValueError as exc:
        plan_error = str(exc)
        st.error(plain(plan_error))
seconds = None
if summary is not None:
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    measured = measured_speed("train", **speed_identity(config, "train"))
    speed = measured or default_rates(config)[0]
    seconds = plan_seconds(summary, config)
    rows = summary["train_rows"]
    size = f"{rows[0]:,}" if min(rows) == max(rows) else f"{min(rows):,}–{max(rows):,}"
    source = (
        f"measured on this machine: {speed:.0f} rows/s"
        if measured
        else f"about {speed:.0f} rows/s until a run here measures it"
    )
    n_runs = len(rows)
    st.markdown(
        f"**{n_runs} run{'s' if n_runs > 1 else ''}**, roughly **{duration(seconds)}** on "
        f"{device} ({precision}; {source}) · {size} training rows × {config.epochs:g} epochs "
        f"per run · scored on {summary['eval_rows']:,} test rows and "
        f"{summary['verified_rows']:,} verified rows · {summary['validation_rows']:,} "
        "validation rows."
    )
    if device == "cpu" and config.max_train_samples is None:
        st.caption("No training-row cap on a CPU: this may take a long time.")
    calibration_offer(ws, config=config, key="train")


@st.fragment(run_every=1.5)
def job_panel() -> None:
    job = active_job(ws, ("train", "experiment"))
    if job is not None:
        run = job_progress(ws, job, key="training")
        history = run.history if run is not None else []
        if history:
            st.plotly_chart(loss_figure(history, height=250), width="stretch", key="live_loss")
        return
    label = "Start training" if mode == "single" else f"Start the experiment ({MODES[mode]})"
    # One training-like job at a time: an adaptation and a training would share the cores (or
    # the GPU) and each take twice as long as its estimate.
    adapting = any(j.kind == "adapt" for j in ws.jobs(active=True))
    if adapting:
        st.caption("An encoder adaptation is running (below); start training when it ends.")
    blocked = config is None or summary is None or bool(plan_error) or adapting
    if st.button(label, type="primary", disabled=blocked, key="start_training"):
        launch_training(ws, config, mode, options, estimate_seconds=seconds)
        st.rerun()
    last = next(iter(ws.jobs(kind="train")), None)
    last_exp = next(iter(ws.jobs(kind="experiment")), None)
    if last_exp is not None and (last is None or last_exp.id > last.id):
        last = last_exp
    if last is not None and last.status == "failed":
        st.error(f"The last training job failed: {plain(last.error)}")
    elif last is not None and last.status == "cancelled":
        st.info(f"Job {last.id} was cancelled; runs it finished are kept.")


job_panel()
adapt_section(ws)

# --------------------------------------------------------------------------- results

st.subheader("Results")
done = [r for r in reversed(all_runs) if r.done]
if not done:
    st.caption("No finished runs yet.")
    st.stop()


def short_title(run_id: int) -> str:
    run = next(r for r in done if r.id == run_id)
    accuracy = run.test.get("accuracy")
    score = f" · accuracy {accuracy:.3f}" if isinstance(accuracy, float) else ""
    return run_title(run) + score


choice = st.selectbox("Run", [r.id for r in done], format_func=short_title, key="run_detail")
run = ws.run(choice)
test, verified = run.test, run.verified or {}
data, run_config = run.data, run.config

HEADLINE = ("accuracy", "f1", "roc_auc")
n_verified = int(verified.get("n") or 0)
left, right = st.columns(2)
with left:
    st.markdown(f"**Full test split** · n = {test.get('n', data.get('eval_rows', 0)):,}")
    metrics_row(test, keys=HEADLINE)
with right:
    st.markdown(f"**Verified subset** · n = {n_verified:,} (test rows a reviewer checked)")
    if n_verified:
        metrics_row(verified, keys=HEADLINE, against=test)
        if n_verified < 30:
            st.caption(f"Only {n_verified} verified rows: expect a wide spread.")
    else:
        st.caption(
            "No verified test rows yet: confirm or correct some **test** rows on the Review "
            "page, then train again, to score the model on labels a person checked."
        )
with st.expander("Every metric, side by side"):
    st.dataframe(
        pd.DataFrame(
            {
                "metric": [METRIC_LABELS[k] for k in METRICS],
                f"full test split (n = {test.get('n', 0):,})": [test.get(k) for k in METRICS],
                f"verified subset (n = {n_verified:,})": [verified.get(k) for k in METRICS],
            }
        ),
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(format="%.3f")
            for c in (
                f"full test split (n = {test.get('n', 0):,})",
                f"verified subset (n = {n_verified:,})",
            )
        },
    )

facts = [
    TECHNIQUE_LABELS.get(data.get("technique") or run_config.get("technique"), ""),
    f"lr {data['learning_rate']:g}" if data.get("learning_rate") else "",
    f"{data['train_rows']:,} training rows" if data.get("train_rows") else "",
    f"{data['label_source']} labels" if data.get("label_source") else "",
    f"{data['noise_rate']:.0%} noise" if data.get("noise_rate") else "",
    f"{duration(data['train_seconds'])} on {data.get('device')}"
    if data.get("train_seconds")
    else "",
    "stopped early" if data.get("stopped_early") else "",
]
st.caption(" · ".join(f for f in facts if f))
# What went wrong on the side (an experiment tracker that failed): the run itself is complete.
for warning in data.get("warnings") or []:
    st.warning(plain(warning))  # tracker errors quote paths and URIs

run_charts(run, key="cm")  # the confusion matrix and the ROC curves
if run.history:
    st.markdown("**Loss** (training per logging step, validation per evaluation)")
    st.plotly_chart(loss_figure(run.history), width="stretch", key="loss")


def sample_summary(rows: list[dict[str, Any]], run) -> str:
    """How the before/after sample did, beside the run's accuracy, so that a lucky sample
    (all correct beside 73% accuracy) reads as the sample it is."""
    n = len(rows)
    before = sum(r["before"]["label"] == r["label"] for r in rows)
    after = sum(r["after"]["label"] == r["label"] for r in rows)
    accuracy = (run.test or {}).get("accuracy")
    overall = (
        f"; on all {run.test.get('n', 0):,} test rows: {accuracy:.0%}"
        if isinstance(accuracy, int | float)
        else ""
    )
    return (
        f"(a fixed random sample of {n} test rows, drawn from the seed before training): "
        f"base model {before} of {n} correct, fine-tuned {after} of {n} ({after / n:.0%}{overall})"
    )


examples = run.examples or {}
if examples.get("rows"):
    st.markdown(f"**Before and after fine-tuning** {sample_summary(examples['rows'], run)}")

    def said(p: dict[str, Any]) -> str:
        return f"{p['label']} ({p['prob']:.2f})"

    def spread(p: dict[str, Any]) -> str:
        return " · ".join(f"{k} {v:.2f}" for k, v in p["probs"].items())

    table = pd.DataFrame(
        [
            {
                "text": r["text"],
                "label": r["label"],
                "base model": said(r["before"]),
                "fine-tuned": said(r["after"]),
                "correct": r["after"]["label"] == r["label"],
                "fine-tuned probabilities": spread(r["after"]),
                "base probabilities": spread(r["before"]),
            }
            for r in examples["rows"]
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "text": st.column_config.TextColumn(width="medium"),
            "correct": st.column_config.CheckboxColumn(
                width="small", help="The fine-tuned prediction matches the label."
            ),
        },
        key="before_after",
    )
    st.caption(examples.get("note", ""))

with st.expander("Config and data version of this run"):
    st.json({"config": run_config, "data": data, "model_dir": run.model_dir})

# --------------------------------------------------------------------------- try it


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def load_model(model_dir: str):
    """A finished run's classifier and tokenizer, loaded once per server (CPU, eval mode)."""
    from training.inference import load_for_inference

    return load_for_inference(model_dir, device="cpu")


def classify(model_dir: str, text: str, max_length: int) -> pd.Series:
    """Class probabilities of one sentence (one forward pass: fine in the script thread)."""
    from training.inference import predict_loaded

    model, tokenizer = load_model(model_dir)
    probs = predict_loaded(
        model, tokenizer, [text], batch_size=1, max_length=max_length, precision="fp32"
    )[0]
    names = [model.config.id2label[i] for i in range(len(probs))]
    return pd.Series(probs, index=names, name="probability")


st.subheader("Try it")
usable = [r for r in done if r.model_dir and (Path(r.model_dir) / "config.json").exists()]
if not usable:
    st.caption("No saved model yet: finished runs keep theirs in the workspace's runs/ folder.")
    st.stop()
left, right = st.columns([3, 2])
with left:
    sentence = st.text_area(
        "Sentence",
        key="try_text",
        placeholder="Type a sentence, e.g. the delivery was late again",
        height=90,
    )
    model_run = st.selectbox(
        "Model",
        [r.id for r in usable],
        format_func=lambda i: run_title(next(r for r in usable if r.id == i)),
        key="try_run",
    )
with right:
    if sentence.strip():
        chosen = next(r for r in usable if r.id == model_run)
        length = int(chosen.config.get("max_length") or 64)
        probs = classify(chosen.model_dir, sentence, length)
        st.metric(
            "Predicted label",
            plain(probs.idxmax()),  # a metric's value renders markdown too
            f"{probs.max():.1%} probability",
            delta_color="off",
            delta_arrow="off",
        )
        st.dataframe(
            probs.rename_axis("label").reset_index(),
            hide_index=True,
            width="stretch",
            column_config={
                "probability": st.column_config.ProgressColumn(
                    "probability", min_value=0.0, max_value=1.0, format="%.3f"
                )
            },
            key="try_probs",
        )
    else:
        st.caption("The label and every class's probability appear here.")
