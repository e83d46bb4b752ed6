"""Domain-adaptive pretraining (DAPT): more masked-language-model training on the data's texts.

An encoder pretrained on general text (the packaged all-MiniLM-L6-v2, or any BERT-like folder)
keeps learning to fill in masked words, now on the workspace's own texts: tweets, reviews,
tickets. Gururangan et al. (2020, "Don't Stop Pretraining") found this helps classifiers
fine-tuned afterwards on the same domain. Only the texts are used, never the labels, so every
split's texts may take part (test texts included: no label of theirs is seen).

:func:`adapt_encoder` trains and saves an ordinary encoder folder (``save_pretrained``: config,
weights, tokenizer) that loads with ``AutoModel`` (embeddings for an analysis) and with
``AutoModelForSequenceClassification`` (fine-tuning, a new classifier head as for any plain
encoder), plus ``adaptation.json`` beside the weights: the base model, rows, steps, the
masked-LM loss on held-out texts before and after, and the time taken. In a workspace the
folders go to ``<workspace>/models/adapted-<timestamp>/`` (:func:`new_output_dir`);
:func:`adapted_encoders` lists the finished ones, which pages offer as model choices.

The masked-LM head: the packaged MiniLM is a sentence-transformers encoder saved without one,
so ``AutoModelForMaskedLM`` creates a new head. Its decoder is tied to the word embeddings as
in BERT (``tie_word_embeddings``), so only the small transform (a dense layer and a LayerNorm)
and the output bias start untrained; early steps mostly train them, and the "loss before"
is that of the untrained head (``new_head`` in the result says so). The head is not saved: the
folder holds the encoder alone (with the base model's pooler, which MLM training does not touch),
so a classifier built on it gets the same start as one built on the base model.

Nothing half-written is left as a choice: the folder is written under a hidden ``.partial``
name and renamed when complete (``adaptation.json`` last); a cancel or a failure removes it.

Speed, measured on a 2-core AMD EPYC without native bf16 (so fp32), packaged MiniLM, batch 32,
max length 64, 2,000 demo tweets, with other jobs sharing the CPU (load 3-4): 30 steps (960
texts) took 161 s, 6.0 texts/s, so one epoch (60 steps over the 1,900 texts not held out) is
about 5.5 min of training plus ~30 s for loading, the two held-out loss passes and saving. The
head's projection onto the 30,522-piece vocabulary is applied to the masked pieces only
(``_masked_positions_only``): over every position, a forward pass of 64 tweets took 2.5 s
against 1.1-1.3 s for the encoder alone.

torch and transformers are imported lazily so that importing this module stays fast.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from runtime.device import (
    DEVICES,
    PRECISIONS,
    autocast_dtype,
    is_main_process,
    resolve_device,
    resolve_precision,
)
from runtime.estimates import estimate_seconds, record_speed
from runtime.models import load_error_message, resolve_model
from runtime.progress import Cancelled, RateMeter, poller
from runtime.validation import check_texts, choice, fraction, positive_float, positive_int
from runtime.validation import learning_rate as check_learning_rate
from runtime.validation import max_length as check_max_length
from runtime.validation import seed as check_seed

__all__ = [
    "ADAPTATION_FILE",
    "AdaptConfig",
    "AdaptResult",
    "adapt_encoder",
    "adapt_seconds",
    "adapt_workspace",
    "adapted_encoders",
    "new_output_dir",
    "workspace_texts",
]

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ADAPTATION_FILE = "adaptation.json"
MODELS_SUBDIR = "models"  # <workspace>/models/adapted-<timestamp>/
ADAPTED_PREFIX = "adapted-"
PARTIAL_SUFFIX = ".partial"
TRAINER_SUBDIR = "trainer"
# Texts held out of training to measure the masked-LM loss before and after (at least one;
# capped so a 1M-row workspace does not spend minutes on it).
HOLDOUT_FRACTION = 0.05
HOLDOUT_CAP = 2000
# Held-out texts are masked this many times over (different positions) when they are few, so
# that the loss of a small workspace rests on a few hundred masked words rather than a dozen.
HOLDOUT_MIN_ROWS = 256
HOLDOUT_MAX_REPEATS = 8
# Training speed (texts/s) assumed until this machine has measured its own (runtime.estimates).
# Measured through adapt_encoder (packaged MiniLM, batch 32, max length 64, fp32, demo tweets):
# 6.0 texts/s on 2 cores shared with other jobs (module docstring); a free CPU does better.
CPU_ADAPT_ROWS_PER_SECOND = 8.0
GPU_SPEEDUP = 20.0
# Share of the steps spent ramping the learning rate up (RoBERTa's pretraining used 6%).
WARMUP_RATIO = 0.06
ADAPT_OVERHEAD_SECONDS = 15.0  # load the model twice, tokenize, save


@dataclass
class AdaptConfig:
    """Settings of one adaptation run, checked before any model loads.

    Examples
    --------
    >>> AdaptConfig(epochs=2).epochs
    2.0
    >>> AdaptConfig(mlm_probability=0.9)
    Traceback (most recent call last):
    ...
    ValueError: mlm_probability must be a number in (0, 0.5] (got 0.9); BERT masks 0.15.
    """

    # One pass over the texts: enough to move a small encoder towards the domain's words.
    epochs: float = 1.0
    # Stop after at most this many optimiser steps (None: the epochs decide).
    max_steps: int | None = None
    # Continued pretraining moves an already trained encoder: the low end of the fine-tuning
    # range. The new masked-LM head learns at the same rate (its decoder is the embeddings).
    learning_rate: float = 5e-5
    batch_size: int = 32
    max_length: int = 64
    # Share of word pieces chosen for prediction (of which 80% become [MASK], 10% a random
    # token, 10% stay): BERT's recipe.
    mlm_probability: float = 0.15
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    FIELD_HELP: ClassVar[dict[str, str]] = {
        "epochs": "Passes over the texts (fractions allowed, e.g. 0.5).",
        "max_steps": "Stop after at most this many optimiser steps; empty = the epochs decide.",
        "learning_rate": "Peak learning rate of AdamW (short warm-up, then linear decay).",
        "batch_size": "Texts per optimiser step.",
        "max_length": "Longest text in word pieces; longer texts are truncated.",
        "mlm_probability": "Share of word pieces masked for the model to predict (BERT: 0.15).",
        "seed": "Random seed for the held-out texts, the masks, shuffling and the new head.",
        "device": "Where to train: auto (GPU if available, else CPU), cpu or cuda.",
        "precision": "Number format: auto (bf16 where the hardware supports it), fp32, bf16 or "
        "fp16 (GPU only).",
    }

    def __post_init__(self) -> None:
        self.epochs = positive_float("epochs", self.epochs, "e.g. 1")
        if isinstance(self.max_steps, str) and self.max_steps.strip().lower() in ("", "none"):
            self.max_steps = None
        if self.max_steps is not None:
            self.max_steps = positive_int("max_steps", self.max_steps, "or None for the epochs")
        self.learning_rate = check_learning_rate(self.learning_rate)
        self.batch_size = positive_int("batch_size", self.batch_size, "e.g. 16 or 32")
        self.max_length = check_max_length(self.max_length)
        probability = fraction("mlm_probability", self.mlm_probability)
        if not 0 < probability <= 0.5:
            raise ValueError(
                f"mlm_probability must be a number in (0, 0.5] (got {self.mlm_probability!r}); "
                "BERT masks 0.15."
            )
        self.mlm_probability = probability
        self.seed = check_seed(self.seed)
        self.device = choice("device", self.device, DEVICES)
        self.precision = choice("precision", self.precision, PRECISIONS)

    def steps(self, n_texts: int) -> int:
        """Optimiser steps for ``n_texts`` training texts: the epochs', capped by max_steps."""
        steps = max(1, math.ceil(self.epochs * math.ceil(max(n_texts, 1) / self.batch_size)))
        return min(steps, self.max_steps) if self.max_steps else steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdaptConfig:
        """A config from a dict (a job's params, JSON); unknown keys are an error."""
        if not isinstance(d, dict):
            raise ValueError(f"AdaptConfig.from_dict needs a dict (got {type(d).__name__}).")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(
                f"Unknown AdaptConfig key(s) {unknown}; valid keys are: {', '.join(valid)}."
            )
        return cls(**d)


@dataclass
class AdaptResult:
    """What :func:`adapt_encoder` did; ``summary()`` is what ``adaptation.json`` holds.

    ``loss_before`` / ``loss_after`` are the masked-LM loss (mean cross-entropy per masked
    word piece) on the held-out texts, with the same masks both times. ``new_head`` says the
    masked-LM head was created for this run (the packaged encoder has none), so the loss before
    is that of an untrained head.
    """

    model_dir: str
    base_model: str
    rows: int
    heldout_rows: int
    steps: int
    epochs_completed: float
    loss_before: float | None
    loss_after: float | None
    seconds: float
    train_seconds: float
    samples_per_second: float
    device: str
    precision: str
    new_head: bool
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""

    def summary(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- adapting


def adapt_encoder(
    texts: Sequence[str],
    *,
    model: str = "",
    output_dir: str | Path,
    config: AdaptConfig,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AdaptResult:
    """Continue masked-LM training of ``model`` on ``texts`` and save it to ``output_dir``.

    Parameters
    ----------
    texts
        Unlabelled texts (empty ones are skipped); ``HOLDOUT_FRACTION`` of them (seeded, at
        least one, at most ``HOLDOUT_CAP``) is held out to measure the loss before and after.
    model
        ``""`` for the packaged all-MiniLM-L6-v2, a local folder (BERT-like: anything
        ``AutoModelForMaskedLM`` can load), or a hub id (needs a network).
    output_dir
        Must not exist yet (or be empty). Holds the encoder, its tokenizer and
        ``adaptation.json`` once the run is complete; nothing at all when it is not.
    config
        An :class:`AdaptConfig`.
    progress
        Gets ``{"stage", ...}`` events; while training ``{"stage": "adapting ...", "step",
        "total_steps", "loss", "done", "total", "unit": "texts", "rate", "eta_seconds"}``
        (``done``/``total`` count texts: steps x batch size).
    should_stop
        Polled between batches and steps; True removes the partial folder and raises
        :class:`runtime.progress.Cancelled`.

    Raises
    ------
    ValueError
        Bad inputs: no config, fewer than two non-empty texts, an output folder in use.
    OSError
        The model could not be loaded; the message names what was tried.
    Cancelled
        ``should_stop()`` returned True.
    """
    if not isinstance(config, AdaptConfig):
        raise ValueError(
            f"config must be an AdaptConfig (got {type(config).__name__}); build one with "
            "AdaptConfig(...) or AdaptConfig.from_dict(d)."
        )
    texts = [t for t in check_texts(texts) if t.strip()]
    if len(texts) < 2:
        raise ValueError(
            f"adapting needs at least two non-empty texts (got {len(texts)}): one or more to "
            "train on and one held out to measure the loss."
        )
    output_dir = Path(output_dir).expanduser().resolve()
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ValueError(
            f"output_dir {output_dir} already exists and is not empty; choose a new folder "
            "(an adapted encoder is never overwritten)."
        )
    partial = output_dir.parent / f".{output_dir.name}{PARTIAL_SUFFIX}"
    shutil.rmtree(partial, ignore_errors=True)  # a leftover of a killed run
    partial.mkdir(parents=True)
    try:
        result = _adapt_core(texts, model, partial, config, progress, should_stop)
        if output_dir.exists():
            output_dir.rmdir()  # empty (checked above)
        os.replace(partial, output_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    result.model_dir = str(output_dir)
    return result


def _adapt_core(
    texts: list[str],
    model_name: str,
    folder: Path,
    config: AdaptConfig,
    progress: Callable[[dict[str, Any]], None] | None,
    should_stop: Callable[[], bool] | None,
) -> AdaptResult:
    from transformers import set_seed

    from training.finetune import _progress_callback
    from training.inference import quiet_transformers

    started = time.perf_counter()
    say = progress or (lambda info: None)
    stop = poller(should_stop)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    train_texts, heldout = _holdout(texts, config.seed)

    say({"stage": "loading the model"})
    set_seed(config.seed)  # the new head is initialised at load time
    source = resolve_model(model_name)
    mlm, tokenizer, new_head = _load_masked_lm(source)
    _check_stop(stop)

    say({"stage": "tokenizing"})
    train_set = _TokenDataset(tokenizer, train_texts, config.max_length, stop)
    eval_batches = _eval_batches(tokenizer, heldout, config)
    _check_stop(stop)

    import torch

    mlm.to(torch.device(device))
    scorer = _masked_positions_only(mlm)
    loss_before = _masked_lm_loss(scorer, eval_batches, device, precision, stop, say, "before")
    trainer = _build_trainer(scorer, tokenizer, train_set, config, folder, device, precision)
    meter = RateMeter()

    def step_progress(info: dict[str, Any]) -> None:
        # Texts per second and time left over the whole stage (the meter restarts when the
        # stage changes, so the loss joins the stage's name only afterwards).
        done, total = info["step"] * config.batch_size, info["total_steps"] * config.batch_size
        event = meter({**info, "stage": "adapting", "done": done, "total": total})
        if info.get("loss") is not None:
            event["stage"] = f"adapting · masked-LM loss {info['loss']:.3f}"
        say({**event, "unit": "texts"})

    # The fine-tuning callback: a progress event per step, the loss history, cancel between
    # steps (agreed across processes).
    callback = _progress_callback(step_progress, stop)
    trainer.add_callback(callback)
    with quiet_transformers():
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
    shutil.rmtree(folder / TRAINER_SUBDIR, ignore_errors=True)
    if callback.cancelled:
        raise Cancelled()
    state = trainer.state
    epochs_done = float(state.epoch or 0.0)
    if is_main_process():
        record_speed(
            "train",
            len(train_texts) * epochs_done,
            train_seconds,
            **speed_identity(config, model_name),
        )
    loss_after = _masked_lm_loss(scorer, eval_batches, device, precision, stop, say, "after")

    say({"stage": "saving"})
    _save_encoder(mlm, source, tokenizer, folder)
    result = AdaptResult(
        model_dir="",
        base_model=model_name or "",
        rows=len(train_texts),
        heldout_rows=len(heldout),
        steps=int(state.global_step),
        epochs_completed=round(epochs_done, 4),
        loss_before=loss_before,
        loss_after=loss_after,
        seconds=0.0,
        train_seconds=round(train_seconds, 3),
        samples_per_second=round(
            int(state.global_step) * config.batch_size / max(train_seconds, 1e-9), 3
        ),
        device=device,
        precision=precision,
        new_head=new_head,
        config=config.to_dict(),
        history=callback.history,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    result.seconds = round(time.perf_counter() - started, 3)
    # Written last: a folder without it is not a finished adaptation (adapted_encoders).
    (folder / ADAPTATION_FILE).write_text(json.dumps(result.summary(), indent=2))
    return result


def _check_stop(stop: Callable[[], bool]) -> None:
    if stop():
        raise Cancelled()


def _holdout(texts: list[str], seed: int) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): a seeded ``HOLDOUT_FRACTION``, at least one."""
    n = len(texts)
    k = min(HOLDOUT_CAP, max(1, round(n * HOLDOUT_FRACTION)), n - 1)
    held = set(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())
    train = [t for i, t in enumerate(texts) if i not in held]
    return train, [texts[i] for i in sorted(held)]


def _load_masked_lm(source: str) -> tuple[Any, Any, bool]:
    """``(model, tokenizer, new_head)`` for masked-LM training of ``source``.

    A plain encoder such as the packaged MiniLM (saved from sentence-transformers as
    ``BertModel``) has no masked-LM head: ``AutoModelForMaskedLM`` creates one and warns that
    its weights are new, which is expected here and silenced. The decoder is tied to the word
    embeddings (``tie_word_embeddings``, BERT's default and how BERT was pretrained), so it
    starts as the embedding matrix; only the transform and the output bias are fresh.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from training.inference import quiet_transformers

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source)
            model, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise OSError(load_error_message(source, exc)) from exc
    if tokenizer.mask_token is None:
        raise ValueError(
            f"The tokenizer of {source} has no mask token, so it cannot be trained as a masked "
            "language model; choose a BERT-like encoder (BERT, RoBERTa, MiniLM, DistilBERT)."
        )
    new_head = any(not name.startswith(_base_prefix(model)) for name in info["missing_keys"])
    # The decoder shares the embeddings' weights unless the config unties them; say so loudly
    # if it did not, as a new untied 30k x d decoder would need far more than a few epochs.
    embeddings = model.get_input_embeddings().weight
    decoder = model.get_output_embeddings()
    if decoder is not None and decoder.weight.data_ptr() != embeddings.data_ptr():
        if any("decoder.weight" in name for name in info["missing_keys"]):
            decoder.weight.data.copy_(embeddings.data)
    return model, tokenizer, new_head


def _base_prefix(model: Any) -> str:
    return f"{model.base_model_prefix}."


class _TokenDataset:
    """Token ids without padding, kept in one flat int32 array (not lists of Python ints: a
    million texts of 40 word pieces would otherwise take gigabytes)."""

    CHUNK = 4096

    def __init__(self, tokenizer: Any, texts: list[str], max_length: int, stop=None):
        ids: list[np.ndarray] = []
        lengths: list[int] = []
        for start in range(0, len(texts), self.CHUNK):
            if stop is not None:
                _check_stop(stop)
            chunk = texts[start : start + self.CHUNK]
            encoded = tokenizer(chunk, truncation=True, max_length=max_length)["input_ids"]
            ids += [np.asarray(row, dtype=np.int32) for row in encoded]
            lengths += [len(row) for row in encoded]
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.ids[self.offsets[i] : self.offsets[i + 1]].tolist()}


def _collator(tokenizer: Any, config: AdaptConfig, *, seed: int | None = None) -> Any:
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=config.mlm_probability, seed=seed
    )


def _eval_batches(tokenizer: Any, heldout: list[str], config: AdaptConfig) -> list[dict]:
    """The held-out texts, masked once with a seeded generator: the same masks before and
    after training, so the two losses differ only by the model."""
    repeats = min(HOLDOUT_MAX_REPEATS, max(1, math.ceil(HOLDOUT_MIN_ROWS / len(heldout))))
    data = _TokenDataset(tokenizer, heldout * repeats, config.max_length)
    collate = _collator(tokenizer, config, seed=config.seed)
    size = config.batch_size * 2
    order = np.argsort(data.lengths, kind="stable")  # similar lengths pad little
    return [
        collate([data[int(i)] for i in order[start : start + size]])
        for start in range(0, len(order), size)
    ]


def _masked_positions_only(mlm: Any) -> Any:
    """``mlm`` computing its loss from the masked positions only, where its head allows.

    A masked-LM forward projects every position onto the whole vocabulary (30,522 word pieces
    for MiniLM) although only the ~15% masked ones count: measured on 2 CPU cores (64 tweets,
    fp32), the projection took as long as the 6 encoder layers. BERT's head (``cls``) and
    RoBERTa's (``lm_head``) map hidden states to scores position by position, so they are
    applied to the masked positions alone: the same loss for about half the work. Other
    architectures keep their own forward (``mlm`` itself is returned).
    """
    import torch

    head = getattr(mlm, "cls", None) or getattr(mlm, "lm_head", None)
    if not isinstance(head, torch.nn.Module):
        return mlm

    class MaskedPositionsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlm = mlm
            self.config = mlm.config  # the Trainer reads a few settings from it

        def forward(self, labels=None, **inputs):
            from transformers.modeling_outputs import MaskedLMOutput

            hidden = self.mlm.base_model(**inputs)[0]
            picked = labels != -100
            if not bool(picked.any()):  # nothing masked: a zero that keeps the graph
                return MaskedLMOutput(loss=hidden.sum() * 0.0)
            scores = head(hidden[picked])
            loss = torch.nn.functional.cross_entropy(scores.float(), labels[picked])
            return MaskedLMOutput(loss=loss)

    return MaskedPositionsOnly()


def _masked_lm_loss(model, batches, device, precision, stop, say, when: str) -> float | None:
    """Mean cross-entropy per masked word piece over ``batches`` (None when none is masked)."""
    import contextlib

    import torch

    model.eval()
    dtype = autocast_dtype(precision)
    total, count = 0.0, 0
    say({"stage": f"masked-LM loss {when}", "done": 0, "total": len(batches), "unit": "batches"})
    with torch.no_grad():
        for i, batch in enumerate(batches):
            _check_stop(stop)
            n = int((batch["labels"] != -100).sum())
            if n:
                batch = {k: v.to(device) for k, v in batch.items()}
                cast = (
                    torch.autocast(device_type=device, dtype=dtype)
                    if dtype is not None
                    else contextlib.nullcontext()
                )
                with cast:
                    loss = model(**batch).loss
                total += float(loss) * n
                count += n
            say(
                {
                    "stage": f"masked-LM loss {when}",
                    "done": i + 1,
                    "total": len(batches),
                    "unit": "batches",
                }
            )
    model.train()
    return round(total / count, 5) if count else None


def _build_trainer(model, tokenizer, dataset, config, folder, device, precision):
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from training.inference import quiet_transformers

    steps = config.steps(len(dataset))
    args = TrainingArguments(
        output_dir=str(folder / TRAINER_SUBDIR),
        per_device_train_batch_size=config.batch_size,
        max_steps=steps,
        learning_rate=config.learning_rate,
        weight_decay=0.01,
        # Whole steps, rounded down: a run of a few steps has no warm-up rather than a first
        # step at learning rate 0 (which would leave a one-step run untrained).
        warmup_steps=int(WARMUP_RATIO * steps),
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        train_sampling_strategy="group_by_length",
        logging_strategy="steps",
        logging_steps=max(5, steps // 200),
        logging_first_step=True,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_level="error",
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_pin_memory=device == "cuda",
        remove_unused_columns=False,
    )
    with quiet_transformers():
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=_collator(tokenizer, config),
            processing_class=tokenizer,
        )
    trainer.remove_callback(PrinterCallback)
    # The masked-LM loss is a mean over the batch's masked pieces (see finetune._build_trainer).
    trainer.model_accepts_loss_kwargs = False
    return trainer


def _save_encoder(mlm: Any, source: str, tokenizer: Any, folder: Path) -> None:
    """Save the trained encoder without the masked-LM head, as a plain ``AutoModel`` folder.

    The base model's own pooler (BERT's, which a sequence classifier feeds on) is kept: MLM
    models are built without it, so the trained encoder weights are copied into the base
    architecture as loaded from ``source``.
    """
    from transformers import AutoModel

    from training.inference import quiet_transformers

    with quiet_transformers():
        encoder = AutoModel.from_pretrained(source)
    trained = {k: v.detach().to("cpu") for k, v in mlm.base_model.state_dict().items()}
    missing, unexpected = encoder.load_state_dict(trained, strict=False)
    untouched = [name for name in missing if not name.startswith("pooler.")]
    if unexpected or untouched:
        raise RuntimeError(
            f"The adapted weights do not fit {source}'s encoder (unexpected {unexpected[:5]}, "
            f"missing {untouched[:5]}); please report this model."
        )
    with quiet_transformers():
        encoder.save_pretrained(folder)
        tokenizer.save_pretrained(folder)


# --------------------------------------------------------------------------- workspaces


def workspace_texts(ws: Any) -> list[str]:
    """Every text of a workspace, all splits, in row order; rows a reviewer excluded are left
    out. Labels play no part (only the ``text`` and ``excluded`` columns are used)."""
    rows = ws.samples()
    return rows.loc[~rows["excluded"].astype(bool), "text"].astype(str).tolist()


def models_dir(folder: str | Path) -> Path:
    """Where a workspace's adapted encoders live: ``<workspace>/models``."""
    return Path(folder) / MODELS_SUBDIR


def new_output_dir(folder: str | Path, *, now: datetime | None = None) -> Path:
    """A fresh ``<workspace>/models/adapted-<UTC timestamp>`` folder name (not created)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    base = models_dir(folder) / f"{ADAPTED_PREFIX}{stamp}"
    candidate, n = base, 1
    while candidate.exists() or (candidate.parent / f".{candidate.name}{PARTIAL_SUFFIX}").exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def adapted_encoders(folder: str | Path) -> list[dict[str, Any]]:
    """The finished adapted encoders of a workspace, newest first.

    Each is ``adaptation.json`` plus ``path`` (the folder to give as a model) and ``name``.
    A folder without ``adaptation.json`` or ``config.json`` (a run still writing, or damaged)
    is not listed.
    """
    found = []
    root = models_dir(folder)
    if not root.is_dir():
        return []
    for path in root.iterdir():
        if path.name.startswith(".") or not (path / "config.json").is_file():
            continue
        try:
            info = json.loads((path / ADAPTATION_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(info, dict):
            found.append({**info, "path": str(path.resolve()), "name": path.name})
    return sorted(found, key=lambda e: (str(e.get("created_at") or ""), e["name"]), reverse=True)


def is_adapted(model: str, folder: str | Path) -> dict[str, Any] | None:
    """The adapted encoder of this workspace that ``model`` (a path) names, else None."""
    if not model:
        return None
    try:
        wanted = Path(model).expanduser().resolve()
    except (OSError, RuntimeError):
        return None
    return next((e for e in adapted_encoders(folder) if Path(e["path"]) == wanted), None)


def adapt_workspace(
    ws: Any,
    config: AdaptConfig,
    *,
    model: str = "",
    output_dir: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AdaptResult:
    """Adapt ``model`` to a workspace's texts (:func:`workspace_texts`); the encoder goes to
    ``output_dir`` or a new ``<workspace>/models/adapted-<timestamp>/``."""
    texts = workspace_texts(ws)
    out = Path(output_dir) if output_dir else new_output_dir(ws.folder)
    return adapt_encoder(
        texts,
        model=model,
        output_dir=out,
        config=config,
        progress=progress,
        should_stop=should_stop,
    )


# --------------------------------------------------------------------------- estimates


def speed_identity(config: AdaptConfig, model: str = "") -> dict[str, str]:
    """The model/device/precision under which adaptation speeds are recorded and looked up."""
    device = resolve_device(config.device)
    return {
        "model": f"mlm:{model or 'packaged'}|max_length={config.max_length}"
        f"|batch={config.batch_size}",
        "device": device,
        "precision": resolve_precision(config.precision, device),
    }


def adapt_seconds(n_texts: int, config: AdaptConfig, model: str = "") -> float:
    """Roughly how long adapting to ``n_texts`` texts takes here: the training steps at this
    machine's measured speed (else ``CPU_ADAPT_ROWS_PER_SECOND``), two held-out loss passes
    (about a third of a training step's cost per text) and loading/saving."""
    identity = speed_identity(config, model)
    default = CPU_ADAPT_ROWS_PER_SECOND * (GPU_SPEEDUP if identity["device"] == "cuda" else 1.0)
    held = min(HOLDOUT_CAP, max(1, round(n_texts * HOLDOUT_FRACTION)))
    held_rows = held * min(HOLDOUT_MAX_REPEATS, max(1, math.ceil(HOLDOUT_MIN_ROWS / held)))
    rows = config.steps(max(n_texts - held, 1)) * config.batch_size
    rows = min(rows, math.ceil(config.epochs * max(n_texts - held, 1)))
    return estimate_seconds(
        "train",
        rows + 2 * held_rows / 3,
        **identity,
        default_rate=default,
        overhead_seconds=ADAPT_OVERHEAD_SECONDS,
    )
