"""A short calibration: this machine's embedding, training and prediction speeds, measured.

Every estimate the app shows before a run (an analysis, a training run, an experiment) is rows
divided by a speed. Until a real run has measured a speed on this machine, the speed is a
typical machine's figure, which was 4x off on a loaded 2-core machine (an analysis estimated at
2 min took 14). :func:`calibrate` times the three tasks on the workspace's own texts in
about a minute on a 2-core CPU and keeps the speeds where real runs keep theirs
(:mod:`runtime.estimates`, per machine, model and settings), so the first estimate is already a
measured one; every real run then refreshes them.

>>> sorted(CALIBRATION_ROWS)
['embed', 'predict', 'train']
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runtime.encoder import EncoderSettings, embed_texts
from runtime.encoder import speed_identity as encoder_identity
from runtime.estimates import measured_speed
from runtime.progress import Cancelled
from runtime.validation import check_texts
from training.config import TrainingConfig
from training.finetune import fine_tune, speed_identity

# Rows per task: 5-15 s each on a 2-core CPU in fp32 (embed ~100 texts/s, full fine-tuning
# ~30 rows/s, predict ~100 texts/s), over the MIN_SECONDS a measurement needs to be kept.
# Training is timed from the end of its first step on (fine_tune's steady rate): 15 steps of
# 32, 14 timed. On a GPU these finish too fast to time and nothing is kept:
# the first real run measures the GPU.
CALIBRATION_ROWS = {"embed": 1500, "train": 480, "predict": 1500}


def calibrate(
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    *,
    label_names: list[str],
    config: TrainingConfig,
    settings: EncoderSettings,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    seed: int = 0,
) -> dict[str, float | None]:
    """Time embedding, training and prediction on a sample of ``texts``; keep the speeds.

    Parameters
    ----------
    texts, labels
        The workspace's texts and their class ids (indexing ``label_names``).
    label_names
        Class names in id order.
    config
        The training settings to time (model, technique, batch size, max length, precision,
        device): speeds are kept per setting, as :func:`training.finetune.speed_identity` says.
        Epochs, row caps, validation and tracking are overridden: one epoch over
        ``CALIBRATION_ROWS["train"]`` rows, nothing held out, nothing tracked.
    settings
        The encoder settings to time, as an analysis would use them.
    progress
        Called with ``{"stage": ...}`` before each task.
    should_stop
        Polled by each task; a stop raises :class:`runtime.progress.Cancelled`.
    seed
        Which rows are sampled.

    Returns
    -------
    dict
        ``{"embed", "train", "predict"}``: the speed now kept for each (units per second), or
        None where the task was too quick to time (a GPU, or a tiny workspace).
    """
    check_texts(texts)
    labels = np.asarray(labels, dtype=int)
    if len(labels) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels; give one label per text.")
    order = np.random.default_rng(seed).permutation(len(texts))
    say = progress or (lambda info: None)

    say({"stage": "calibrating: embedding"})
    sample = [texts[i] for i in order[: CALIBRATION_ROWS["embed"]]]
    embed_texts(sample, settings=settings, cache=None, should_stop=should_stop)

    say({"stage": "calibrating: training and predicting"})
    train = order[: CALIBRATION_ROWS["train"]]
    scored = order[-CALIBRATION_ROWS["predict"] :]
    timed = TrainingConfig.from_dict(
        {
            **config.to_dict(),
            "epochs": 1.0,
            "max_train_samples": None,
            "max_eval_samples": None,
            "validation_fraction": 0.0,
            "early_stopping_patience": 0,
            "report_to": "none",
        }
    )
    with tempfile.TemporaryDirectory(prefix="second-look-calibration-") as folder:
        result = fine_tune(
            [texts[i] for i in train],
            labels[train],
            label_names=label_names,
            config=timed,
            output_dir=folder,
            eval_texts=[texts[i] for i in scored],
            eval_labels=labels[scored],
            should_stop=should_stop,
        )
    if result.cancelled:
        raise Cancelled()
    return {
        "embed": measured_speed("embed", **encoder_identity(settings)),
        "train": measured_speed("train", **speed_identity(timed, "train")),
        "predict": measured_speed("predict", **speed_identity(timed, "predict")),
    }
