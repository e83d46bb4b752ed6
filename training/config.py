"""Settings for one fine-tuning run, validated up front.

One dataclass with defaults and a ``__post_init__`` that rejects bad values before any model
loads, so the UI and the CLI can show the problem at once instead of minutes into a run.

The defaults are sized for the packaged all-MiniLM-L6-v2 on a laptop CPU. Measured through
``fine_tune`` on a 2-core AMD EPYC with AVX512-BF16 (batch 32, max_length 64, demo tweets;
other jobs shared the CPU, so these are noisy): ~40 train samples/s in fp32 and 60-80 in bf16
autocast when the CPU was mostly free, and prediction ~220 (fp32) / ~370 (bf16) rows/s. A default
run on the demo (2,000 rows x 3 epochs = 189 steps, then 1,000 evaluation rows) took 79 s on a
free CPU and reached accuracy 0.746; on a GPU lift the caps (``None``).

Techniques, measured the same way on 1,000 stratified demo rows x 1 epoch, 600 test rows, no
validation rows (3 classes; the CPU was shared with other jobs, load 7-9 on 2 cores, so the
throughputs are only comparable with each other; accuracy on 600 rows has a standard error of
~0.02):

=========  ==========  ========  ==========  =========  ==================
technique  lr          accuracy  macro F1    samples/s  trainable weights
=========  ==========  ========  ==========  =========  ==================
full       1e-4        0.665     0.592       4.8        22.7 M
head       2e-3        0.660     0.615       11.4       149 k
head       5e-3        0.663     0.615       8.2        149 k
lora       1e-3        0.668     0.622       4.0        223 k
lora       2e-3        0.668     0.623       5.6        223 k
=========  ==========  ========  ==========  =========  ==================

After one epoch the three are within noise of each other; the head trains ~2x faster per row
(no backward pass through the encoder) and LoRA is no faster on a CPU (gradients still flow
through every layer; its gains are optimiser memory and checkpoint size on big models). The
per-technique default learning rates are the lower of each equally good pair; full stays the
default technique (0.746 at the default 2,000 rows x 3 epochs).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from runtime.device import DEVICES, PRECISIONS
from runtime.validation import choice, fraction, is_number, positive_float, positive_int
from runtime.validation import learning_rate as check_learning_rate
from runtime.validation import max_length as check_max_length
from runtime.validation import seed as check_seed

TECHNIQUES = ("full", "head", "lora")
TRACKERS = ("none", "mlflow", "wandb")
# The learning rate a technique uses when ``learning_rate`` is None. Measured on 1,000 demo
# rows x 1 epoch (see the module docstring): a frozen encoder leaves only ~150k-220k weights
# to move, so the head and LoRA want 10-20x larger steps than full fine-tuning.
DEFAULT_LEARNING_RATES = {"full": 1e-4, "head": 2e-3, "lora": 1e-3}
# 15/85: with a 15% test split the rows divide 70/15/15 into train/validation/test.
DEFAULT_VALIDATION_FRACTION = 0.176


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
    # None = the technique's default (DEFAULT_LEARNING_RATES). For full fine-tuning, measured
    # on the demo (2,000 rows, 1,000 test rows): 5e-5 x 2 epochs reached accuracy 0.668, 1e-4
    # x 2 reached 0.731 and 1e-4 x 3 reached 0.746. A small 6-layer model with a new head
    # wants a higher rate than the BERT-base folklore of 2e-5 to 5e-5.
    learning_rate: float | None = None
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
    # full = every weight; head = frozen encoder, only the pooler + classifier learn (fast,
    # weaker); lora = low-rank adapters on the attention query/value projections + the head.
    technique: str = "full"
    # None keeps the checkpoint's dropout (0.1 for MiniLM); a number sets hidden, attention and
    # classifier dropout alike.
    dropout: float | None = None
    # Sum gradients over this many batches per optimiser step: the effective batch is
    # batch_size x gradient_accumulation_steps without the memory of the large batch.
    gradient_accumulation_steps: int = 1
    # Share of the training rows held out (stratified, seeded) to track validation loss and
    # drive early stopping; a workspace's own "validation" split is used instead when it has
    # one. 0 = no validation rows.
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    # Stop after this many evaluations without a lower validation loss and keep the best
    # model; 0 = off (train for all epochs).
    early_stopping_patience: int = 0
    # Evaluate on the validation rows every N optimiser steps; None = once per epoch.
    eval_steps: int | None = None
    # LoRA rank / scaling / dropout (technique "lora" only). r=8, alpha=16 is the common
    # starting point; alpha/r scales the adapter's update.
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    # Experiment tracker: none, mlflow (local SQLite store, mlflow.db, unless
    # MLFLOW_TRACKING_URI is set) or wandb (offline mode unless WANDB_MODE is set). A tracker
    # that fails is a warning on the run, never the end of it (training/tracking.py).
    report_to: str = "none"

    FIELD_HELP: ClassVar[dict[str, str]] = {
        "model": "Encoder to fine-tune: empty for the packaged all-MiniLM-L6-v2, a local folder "
        "saved with save_pretrained, or a Hugging Face hub id (needs a network).",
        "learning_rate": "Peak learning rate of AdamW (linear warm-up, then linear decay); "
        "empty = the technique's default (full 1e-4, head 2e-3, lora 1e-3).",
        "batch_size": "Rows per batch on each device (and per prediction batch); with "
        "several GPUs each GPU takes this many rows.",
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
        "technique": "What to train: full (every weight), head (frozen encoder, only the "
        "pooler and classifier: about twice as fast on a CPU) or lora (low-rank adapters on the "
        "attention query/value projections plus the head; merged into a plain model on save).",
        "dropout": "Dropout for hidden states, attention and the classifier; empty = the "
        "model's own (0.1 for MiniLM).",
        "gradient_accumulation_steps": "Batches whose gradients are summed per optimiser "
        "step; the effective batch is batch_size x this.",
        "validation_fraction": "Share of the training rows held out (stratified, seeded) for "
        "validation loss and early stopping; 0 = none. The default 0.176 (15/85) makes a "
        "70/15/15 train/validation/test split when 15 of 100 rows are test rows. A workspace's own "
        "validation split is used instead when it has one.",
        "early_stopping_patience": "Stop after this many evaluations without a lower "
        "validation loss and keep the best model; 0 = off.",
        "eval_steps": "Evaluate the validation loss every N optimiser steps; empty = once "
        "per epoch.",
        "lora_r": "LoRA rank (technique lora): size of the low-rank update; 4 to 16 is usual.",
        "lora_alpha": "LoRA scaling (technique lora): the update is scaled by alpha / r.",
        "lora_dropout": "Dropout on the LoRA adapters' input (technique lora).",
        "report_to": "Experiment tracker: none, mlflow (local SQLite store mlflow.db unless "
        "MLFLOW_TRACKING_URI is set; needs pip install mlflow-skinny sqlalchemy alembic) or "
        "wandb (offline unless WANDB_MODE is set; needs pip install wandb). A tracker that "
        "fails is reported as a warning; the run goes on.",
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
        self._coerce_text_numbers()
        self.technique = choice("technique", self.technique, TECHNIQUES)
        if self.learning_rate is not None:
            self.learning_rate = check_learning_rate(self.learning_rate)
        self.batch_size = positive_int("batch_size", self.batch_size, "e.g. 16 or 32")
        self.epochs = positive_float("epochs", self.epochs, "e.g. 1 to 4")
        self.max_length = check_max_length(self.max_length)
        self.weight_decay = fraction("weight_decay", self.weight_decay, upper_inclusive=True)
        self.warmup_ratio = fraction("warmup_ratio", self.warmup_ratio, upper_inclusive=False)
        self.seed = check_seed(self.seed)
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, positive_int(name, value, "or None to use all rows"))
        self.device = choice("device", self.device, DEVICES)
        self.precision = choice("precision", self.precision, PRECISIONS)
        self._check_new_fields()

    def _check_new_fields(self) -> None:
        if self.dropout is not None:
            self.dropout = fraction("dropout", self.dropout, upper_inclusive=False)
        self.gradient_accumulation_steps = positive_int(
            "gradient_accumulation_steps", self.gradient_accumulation_steps, "e.g. 1, 2 or 4"
        )
        self.validation_fraction = fraction(
            "validation_fraction", self.validation_fraction, upper_inclusive=False
        )
        if self.validation_fraction > 0.5:
            raise ValueError(
                f"validation_fraction must be at most 0.5 (got {self.validation_fraction}); "
                "use 0.1 to 0.2, or 0 for no validation rows."
            )
        patience = 0 if self.early_stopping_patience is None else self.early_stopping_patience
        if not (is_number(patience) and float(patience).is_integer() and patience >= 0):
            raise ValueError(
                f"early_stopping_patience must be a whole number >= 0 (got "
                f"{self.early_stopping_patience!r}); e.g. 2, or 0 to turn early stopping off."
            )
        self.early_stopping_patience = int(patience)
        if self.early_stopping_patience and self.validation_fraction == 0:
            raise ValueError(
                "early_stopping_patience needs validation rows: set validation_fraction > 0 "
                "(e.g. 0.15), or early_stopping_patience to 0."
            )
        if self.eval_steps is not None:
            self.eval_steps = positive_int(
                "eval_steps", self.eval_steps, "or None to evaluate once per epoch"
            )
        self.lora_r = positive_int("lora_r", self.lora_r, "e.g. 4, 8 or 16")
        self.lora_alpha = positive_int("lora_alpha", self.lora_alpha, "e.g. 2 x lora_r")
        self.lora_dropout = fraction("lora_dropout", self.lora_dropout, upper_inclusive=False)
        self.report_to = choice("report_to", self.report_to, TRACKERS)

    def _coerce_text_numbers(self) -> None:
        # The CLI and text widgets hand numbers over as text ("3e-4", "" for None): read them
        # here so every face gets the same validation and messages.
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _TEXT_FIELDS or not isinstance(value, str):
                continue
            text = value.strip()
            if text.lower() in ("", "none") and f.name in _NONE_FROM_TEXT:
                setattr(self, f.name, None)
                continue
            try:
                number = float(text)
            except ValueError:
                continue  # left as text: the field's own check names it
            setattr(self, f.name, int(number) if number.is_integer() else number)

    @property
    def effective_learning_rate(self) -> float:
        """``learning_rate``, or the technique's default when it is ``None``."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LEARNING_RATES[self.technique]

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


# For generic faces (CLI flags, UI widgets): fields with a fixed set of values, and numeric
# fields where None (empty) means something ("use all rows", "the technique's default", ...).
CHOICES: dict[str, tuple[str, ...]] = {
    "device": DEVICES,
    "precision": PRECISIONS,
    "technique": TECHNIQUES,
    "report_to": TRACKERS,
}
OPTIONAL_FIELDS = (
    "learning_rate",
    "max_train_samples",
    "max_eval_samples",
    "dropout",
    "eval_steps",
)
_TEXT_FIELDS = {"model", *CHOICES}
# Empty text also reads as None here (early_stopping_patience None = 0 = off).
_NONE_FROM_TEXT = {*OPTIONAL_FIELDS, "early_stopping_patience"}
