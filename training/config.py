"""Settings for one fine-tuning run, validated up front.

One dataclass with defaults and a ``__post_init__`` that rejects bad values before any model
loads, so the UI and the CLI can show the problem at once instead of minutes into a run.

The defaults are sized for the packaged all-MiniLM-L6-v2 on a laptop CPU. Measured through
``fine_tune`` on a 2-core AMD EPYC with AVX512-BF16 (batch 32, max_length 64, demo tweets;
other jobs shared the CPU, so these are noisy): ~40 train samples/s in fp32 and 60-80 in bf16
autocast when the CPU was mostly free, and prediction ~220 (fp32) / ~370 (bf16) rows/s. A default
run on the demo (2,000 rows x 3 epochs = 189 steps, then 1,000 evaluation rows) took 79 s on a
free CPU and reached accuracy 0.746; on a GPU lift the caps (``None``).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainingConfig:
    """Hyper-parameters and resource choices for :func:`training.finetune.fine_tune`.

    Examples
    --------
    >>> TrainingConfig(epochs=1, max_train_samples=None).epochs
    1.0
    >>> TrainingConfig(learning_rate=-1)
    Traceback (most recent call last):
    ...
    ValueError: learning_rate must be a number > 0 (got -1); a typical value is 2e-5 to 1e-4.
    """

    # "" means the packaged encoder, so a fresh machine without hub access can still train.
    model: str = ""
    # Measured on the demo (2,000 rows, 1,000 test rows): 5e-5 x 2 epochs reached accuracy
    # 0.668, 1e-4 x 2 reached 0.731 and 1e-4 x 3 reached 0.746. A small 6-layer model with a
    # new head wants a higher rate than the BERT-base folklore of 2e-5 to 5e-5.
    learning_rate: float = 1e-4
    # 32 keeps CPU memory modest and gives enough optimiser steps on a 2,000-row cap (~63/epoch).
    batch_size: int = 32
    # Three passes over 2,000 rows: ~80 s of training at ~80 rows/s (CPU bf16, 2 free cores).
    epochs: float = 3.0
    # Tweets and short reviews fit in 64 word pieces; attention cost grows with the square of it.
    max_length: int = 64
    weight_decay: float = 0.01
    # A short warm-up protects the newly initialised classifier head from a large first step.
    warmup_ratio: float = 0.1
    seed: int = 0
    # CPU default cap so a demo run finishes in minutes; None = all rows.
    max_train_samples: int | None = 2000
    # Evaluation is ~5x faster than training per row, so 1,000 rows cost only a few seconds.
    max_eval_samples: int | None = 1000
    device: str = "auto"
    precision: str = "auto"

    FIELD_HELP: ClassVar[dict[str, str]] = {
        "model": "Encoder to fine-tune: empty for the packaged all-MiniLM-L6-v2, a local folder "
        "saved with save_pretrained, or a Hugging Face hub id (needs a network).",
        "learning_rate": "Peak learning rate of AdamW (linear warm-up, then linear decay).",
        "batch_size": "Rows per optimiser step (and per prediction batch on the device).",
        "epochs": "Passes over the training rows; fractions are allowed (e.g. 0.5).",
        "max_length": "Longest input in word pieces; longer texts are truncated.",
        "weight_decay": "AdamW weight decay (L2-style regularisation); 0 turns it off.",
        "warmup_ratio": "Fraction of the steps spent ramping the learning rate up from 0.",
        "seed": "Random seed for sampling rows, the new classifier head and shuffling.",
        "max_train_samples": "Cap on training rows (stratified sample); empty = use all rows.",
        "max_eval_samples": "Cap on evaluation rows (stratified sample); empty = use all rows.",
        "device": "Where to train: auto (GPU if available, else CPU), cpu or cuda.",
        "precision": "Number format: auto (bf16 where the hardware supports it), fp32, bf16 or "
        "fp16 (GPU only).",
    }

    def __post_init__(self) -> None:
        self.model = "" if self.model is None else self.model
        if isinstance(self.model, os.PathLike):
            self.model = str(self.model)
        if not isinstance(self.model, str):
            raise ValueError(
                f"model must be a string (got {self.model!r}); use '' for the packaged model, "
                "a folder path or a hub id."
            )
        self.learning_rate = _positive_float(
            "learning_rate", self.learning_rate, "a typical value is 2e-5 to 1e-4"
        )
        if self.learning_rate >= 1:
            raise ValueError(
                f"learning_rate must be < 1 (got {self.learning_rate}); "
                "a typical value is 2e-5 to 1e-4."
            )
        self.batch_size = _positive_int("batch_size", self.batch_size, "e.g. 16 or 32")
        self.epochs = _positive_float("epochs", self.epochs, "e.g. 1 to 4")
        self.max_length = _positive_int("max_length", self.max_length, "e.g. 64 to 512")
        if self.max_length < 8:
            raise ValueError(
                f"max_length must be at least 8 (got {self.max_length}); e.g. 64 to 512."
            )
        self.weight_decay = _fraction("weight_decay", self.weight_decay, upper_inclusive=True)
        self.warmup_ratio = _fraction("warmup_ratio", self.warmup_ratio, upper_inclusive=False)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0 (got {self.seed!r}).")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _positive_int(name, value, "or None to use all rows"))
        self.device = _choice("device", self.device, DEVICES)
        self.precision = _choice("precision", self.precision, PRECISIONS)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict of the settings (``from_dict`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        """Build a config from a dict, e.g. one read from JSON.

        Unknown keys raise ``ValueError`` listing the valid keys, so a typo such as
        ``"learning_rat"`` is not silently ignored.
        """
        if not isinstance(d, dict):
            raise ValueError(f"TrainingConfig.from_dict needs a dict (got {type(d).__name__}).")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(
                f"Unknown TrainingConfig key(s) {unknown}; valid keys are: {', '.join(valid)}."
            )
        return cls(**d)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_float(name: str, value: Any, hint: str) -> float:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a number > 0 (got {value!r}); {hint}.")
    return float(value)


def _positive_int(name: str, value: Any, hint: str) -> int:
    # Accept 32.0 from JSON/UI number widgets, but not 32.5.
    if _is_number(value) and math.isfinite(value) and float(value).is_integer() and value > 0:
        return int(value)
    raise ValueError(f"{name} must be a whole number > 0 (got {value!r}); {hint}.")


def _fraction(name: str, value: Any, *, upper_inclusive: bool) -> float:
    upper_ok = (lambda v: v <= 1) if upper_inclusive else (lambda v: v < 1)
    if _is_number(value) and math.isfinite(value) and value >= 0 and upper_ok(value):
        return float(value)
    bound = "[0, 1]" if upper_inclusive else "[0, 1)"
    raise ValueError(f"{name} must be a number in {bound} (got {value!r}).")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    normalised = value.strip().lower() if isinstance(value, str) else value
    if normalised not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)} (got {value!r}).")
    return normalised
