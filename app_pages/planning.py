"""What launching a training plan would run, and roughly how long it would take.

Shared by the Train page (a run or an experiment) and the Charts page (the learning-rate
sweep): :func:`plan_summary` counts the rows of each planned run, :func:`plan_seconds` turns
them into a duration from this machine's measured speeds (:mod:`runtime.estimates`), else the
rough defaults below.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from app_pages import access
from app_pages.plain import plain
from app_pages.workspace import open_workspace
from runtime.encoder import EncoderSettings, embed_rate
from runtime.encoder import speed_identity as encoder_identity
from runtime.estimates import duration, estimate_seconds, measured_speed, speed
from training.config import TrainingConfig
from training.experiments import eval_ids
from training.finetune import speed_identity
from training.runs import plan, split_ids, validation_split, verified_ids

# Training and scoring throughput (rows/s, batch 32, max length 64) assumed until this machine
# has measured its own (runtime.estimates; every finished run records it, and a calibration
# measures it in about a minute). CPU figures by precision: bf16 from bench/results/
# (training-cpu2, loop-*), fp32 (a CPU without native bf16 trains in fp32) from
# bench/results/estimates-* (30 rows/s full fine-tuning, 100-130 texts/s scoring; LoRA and
# head scaled alike); rounded. The GPU speed-up is a conservative guess.
CPU_TRAIN_ROWS_PER_SECOND = {
    "bf16": {"full": 75.0, "lora": 120.0, "head": 220.0},
    "fp32": {"full": 30.0, "lora": 48.0, "head": 90.0},
}
CPU_PREDICT_ROWS_PER_SECOND = {"bf16": 370.0, "fp32": 100.0}
GPU_SPEEDUP = 20.0
# Per run: start the job's process, load the model, tokenize (15-17 s from launch to the first
# step on 2 cores), then save the model and write the record (~5 s): bench/results/estimates-*.
RUN_OVERHEAD_SECONDS = 20.0
# The settings that change which rows a plan picks (the plan cache's key; ~1 s per miss at 38k).
PLAN_FIELDS = ("seed", "max_train_samples", "max_eval_samples", "validation_fraction")


@st.cache_data(show_spinner=False, max_entries=32)
def plan_summary(
    folder: str, label_version: int, experiment: str, config: dict, options: str
) -> dict[str, Any]:
    """What launching would run: rows per run and the shared evaluation rows (cached per
    label version, since the plan reads every row)."""
    ws = open_workspace(folder)
    cfg = TrainingConfig.from_dict(config)
    train, test = split_ids(ws)
    train, validation, _ = validation_split(ws, train, config=cfg)
    specs = plan(ws, experiment, config=cfg, train_ids=train, **json.loads(options))
    return {
        "train_rows": [len(s.train_ids) for s in specs],
        "eval_rows": len(eval_ids(test, seed=cfg.seed, cap=cfg.max_eval_samples)),
        "verified_rows": len(verified_ids(ws, test)),
        "validation_rows": len(validation),
    }


def summarise(ws: Any, experiment: str, config: TrainingConfig, options: dict) -> dict[str, Any]:
    """:func:`plan_summary` of ``experiment`` on ``ws`` with ``config`` and ``options``."""
    return plan_summary(
        str(ws.folder),
        ws.label_version(),
        experiment,
        {k: getattr(config, k) for k in PLAN_FIELDS},
        json.dumps(options, sort_keys=True),
    )


def default_rates(config: TrainingConfig) -> tuple[float, float]:
    """Training rows/s and scoring texts/s assumed for ``config`` until measured here."""
    train = speed_identity(config, "train")
    cpu = "bf16" if train["precision"] == "bf16" else "fp32"
    speedup = GPU_SPEEDUP if train["device"] == "cuda" else 1.0
    return (
        CPU_TRAIN_ROWS_PER_SECOND[cpu][config.technique] * speedup,
        CPU_PREDICT_ROWS_PER_SECOND[cpu] * speedup,
    )


def plan_seconds(summary: dict[str, Any], config: TrainingConfig) -> float:
    """A rough duration of the plan's runs: training rows x epochs at this machine's measured
    training speed (else the default), plus scoring and validation passes and overhead."""
    train, predict = speed_identity(config, "train"), speed_identity(config, "predict")
    train_rate, predict_rate = default_rates(config)
    scored = summary["eval_rows"] + summary["verified_rows"] + 16  # + before/after rows
    total = 0.0
    for rows in summary["train_rows"]:
        steps = rows * config.epochs / (config.batch_size * config.gradient_accumulation_steps)
        evaluations = config.epochs if config.eval_steps is None else steps / config.eval_steps
        validation = summary["validation_rows"] * max(1.0, evaluations)
        total += estimate_seconds(
            "train",
            rows * config.epochs,
            **train,
            default_rate=train_rate,
            overhead_seconds=RUN_OVERHEAD_SECONDS,
        )
        total += estimate_seconds(
            "predict",
            scored + validation,
            **predict,
            default_rate=predict_rate,
        )
    return total


def calibration_seconds(config: TrainingConfig, settings: EncoderSettings) -> float:
    """How long :func:`training.calibration.calibrate` should take here: its rows at the
    speeds known now, plus loading the model twice."""
    from training.calibration import CALIBRATION_ROWS

    embed = embed_rate(settings)
    train_rate, predict_rate = default_rates(config)
    train = speed("train", **speed_identity(config, "train"), default=train_rate)
    predict = speed("predict", **speed_identity(config, "predict"), default=predict_rate)
    rows = CALIBRATION_ROWS
    return rows["embed"] / embed + rows["train"] / train + rows["predict"] / predict + 10.0


def unmeasured(config: TrainingConfig | None, settings: EncoderSettings | None) -> list[str]:
    """Which of the speeds behind an estimate are still a typical machine's, not this one's."""
    missing = []
    if settings is not None and measured_speed("embed", **encoder_identity(settings)) is None:
        missing.append("embedding")
    if config is not None:
        if measured_speed("train", **speed_identity(config, "train")) is None:
            missing.append("training")
        if measured_speed("predict", **speed_identity(config, "predict")) is None:
            missing.append("prediction")
    return missing


def calibration_offer(
    ws: Any,
    *,
    config: TrainingConfig | None = None,
    settings: EncoderSettings | None = None,
    key: str,
) -> None:
    """Under an estimate: say when it rests on a typical machine's speed, and offer to measure
    this one (a short ``calibrate`` job) so the estimate becomes a measured one."""
    running = next((j for j in ws.jobs(active=True) if j.kind == "calibrate"), None)
    if running is not None:
        st.caption(
            f"Measuring this machine's speed… ({plain(running.progress.get('stage') or 'starting')})"
        )
        return
    missing = unmeasured(config, settings)
    if not missing:
        return
    config = config or TrainingConfig()
    settings = settings or EncoderSettings()
    seconds = calibration_seconds(config, settings)
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.caption(
        f"The {', '.join(missing)} speed behind this estimate is a typical machine's, not yet "
        "measured here: a real run measures it, or measure it now on this workspace's texts."
    )
    if right.button(f"Measure (about {duration(seconds)})", key=f"calibrate_{key}"):
        access.launch(
            ws, "calibrate", {"config": config.to_dict(), "encoder": dict(settings.__dict__)}
        )
        st.rerun(scope="app")
