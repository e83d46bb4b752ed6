"""Fine-tune a transformer encoder for text classification, and predict with the result.

Built on the Hugging Face ``Trainer``: dynamic padding, length-grouped batches, the GPU with
bf16 (fp16 where bf16 is unsupported) when one is visible, otherwise the CPU with bf16
autocast where the CPU has native bf16 instructions. Nothing is checkpointed mid-run, nothing
is reported to external trackers, and no progress bars are printed: progress goes to the
``progress`` callback instead, so a UI or a CLI decides how to show it.

torch and transformers are imported lazily so that importing this module (e.g. from the app
at start-up) stays fast.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from data.demo import load_error_message, resolve_model
from training.config import TrainingConfig
from training.device import resolve_device, resolve_precision
from training.metrics import classification_metrics

if TYPE_CHECKING:
    import torch

# No hub access on most machines that run this; fail fast instead of retrying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL_SUBDIR = "model"
METRICS_FILE = "metrics.json"
RUN_FILE = "training_run.json"


@dataclass
class FineTuneResult:
    """What :func:`fine_tune` did.

    ``model_dir`` is ``""`` when the run was cancelled: nothing is saved then.
    ``metrics`` is ``None`` when there was no evaluation set or the run was cancelled.
    """

    metrics: dict | None
    model_dir: str
    history: list[dict] = field(default_factory=list)
    device: str = "cpu"
    precision: str = "fp32"
    train_samples: int = 0
    train_seconds: float = 0.0
    train_samples_per_second: float = 0.0
    cancelled: bool = False


# --------------------------------------------------------------------------- fine-tuning


def fine_tune(
    train_texts: Sequence[str],
    train_labels: Sequence[int] | np.ndarray,
    *,
    label_names: list[str],
    config: TrainingConfig,
    output_dir: str | Path,
    eval_texts: Sequence[str] | None = None,
    eval_labels: Sequence[int] | np.ndarray | None = None,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FineTuneResult:
    """Fine-tune ``config.model`` on labelled texts, evaluate, and save the model.

    Parameters
    ----------
    train_texts, train_labels
        Training rows; labels are class ids indexing ``label_names``. When there are more
        than ``config.max_train_samples`` rows, a stratified sample (seeded by
        ``config.seed``) is used.
    label_names
        Class names in id order; saved as ``id2label`` / ``label2id`` in the model config.
    config
        Hyper-parameters and device/precision choices.
    output_dir
        The model and tokenizer are saved to ``output_dir/"model"`` and the evaluation
        metrics to ``output_dir/"metrics.json"`` (plus the settings and timings in
        ``output_dir/"training_run.json"``). Nothing is saved when the run is cancelled.
    eval_texts, eval_labels
        Optional held-out rows (capped at ``config.max_eval_samples``, stratified) scored
        with :func:`training.metrics.classification_metrics` after training.
    progress
        Called once per optimiser step with ``{"step", "total_steps", "loss", "epoch",
        "samples_per_second"}``; ``loss`` is the mean training loss of the latest logging
        interval (every few steps) and ``samples_per_second`` the training throughput so far.
    should_stop
        Polled after every step; returning ``True`` ends training cleanly, and the result
        has ``cancelled=True``, ``metrics=None`` and ``model_dir=""``.

    Returns
    -------
    FineTuneResult

    Raises
    ------
    ValueError
        Bad inputs (lengths differ, label ids out of range, fewer than two classes, ...).
    OSError
        The model could not be loaded; the message names what was tried.
    """
    if not isinstance(config, TrainingConfig):
        raise ValueError(
            f"config must be a TrainingConfig (got {type(config).__name__}); build one with "
            "TrainingConfig(...) or TrainingConfig.from_dict(d)."
        )
    label_names = _check_label_names(label_names)
    train_texts, train_labels = _check_rows(train_texts, train_labels, label_names, "train")
    if len(np.unique(train_labels)) < 2:
        raise ValueError(
            "train_labels contain a single class; fine-tuning a classifier needs rows of at "
            "least two classes."
        )
    if (eval_texts is None) != (eval_labels is None):
        raise ValueError("Pass both eval_texts and eval_labels, or neither.")
    if eval_texts is not None:
        eval_texts, eval_labels = _check_rows(eval_texts, eval_labels, label_names, "eval")
    return _fine_tune_core(
        train_texts,
        train_labels,
        label_names=label_names,
        config=config,
        output_dir=Path(output_dir),
        eval_texts=eval_texts,
        eval_labels=eval_labels,
        progress=progress,
        should_stop=should_stop,
    )


def _fine_tune_core(
    train_texts: list[str],
    train_labels: np.ndarray,
    *,
    label_names: list[str],
    config: TrainingConfig,
    output_dir: Path,
    eval_texts: list[str] | None,
    eval_labels: np.ndarray | None,
    progress: Callable[[dict], None] | None,
    should_stop: Callable[[], bool] | None,
) -> FineTuneResult:
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, set_seed

    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    keep = stratified_sample(train_labels, config.max_train_samples, seed=config.seed)
    train_texts = [train_texts[i] for i in keep]
    train_labels = train_labels[keep]

    # Seed before loading: the new classifier head is initialised randomly at load time.
    set_seed(config.seed)
    model, tokenizer = _load_classifier(config.model, label_names)
    train_dataset = _TokenizedDataset(tokenizer, train_texts, train_labels, config.max_length)
    args = _training_arguments(config, output_dir, device, precision, len(train_dataset))
    callback = _progress_callback(config.batch_size, progress, should_stop)
    with _quiet_transformers():
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            callbacks=[callback],
        )
        # With tqdm off the Trainer prints every log dict to stdout; progress goes to the
        # callback instead.
        trainer.remove_callback(PrinterCallback)
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
    _remove_if_empty(args.output_dir)

    samples_seen = (trainer.state.epoch or 0.0) * len(train_dataset)
    result = FineTuneResult(
        metrics=None,
        model_dir="",
        history=callback.history,
        device=device,
        precision=precision,
        train_samples=len(train_dataset),
        train_seconds=round(train_seconds, 3),
        train_samples_per_second=round(samples_seen / max(train_seconds, 1e-9), 3),
        cancelled=callback.cancelled,
    )
    if result.cancelled:
        return result

    model = trainer.model.eval()
    if eval_texts is not None:
        keep = stratified_sample(eval_labels, config.max_eval_samples, seed=config.seed)
        probs = _predict_core(
            model,
            tokenizer,
            [eval_texts[i] for i in keep],
            batch_size=config.batch_size * 2,
            max_length=config.max_length,
            precision=precision,
        )
        result.metrics = classification_metrics(eval_labels[keep], probs, label_names=label_names)
    with _quiet_transformers():
        result.model_dir = str(_save(model, tokenizer, result, config, output_dir))
    return result


def _remove_if_empty(folder: str) -> None:
    # The Trainer may create its output_dir although nothing is saved there.
    with contextlib.suppress(OSError):
        Path(folder).rmdir()


def _training_arguments(
    config: TrainingConfig, output_dir: Path, device: str, precision: str, n_train: int
) -> Any:
    from transformers import TrainingArguments

    steps = math.ceil(config.epochs * math.ceil(n_train / config.batch_size))
    return TrainingArguments(
        # Required by the Trainer, but nothing is written there: no checkpoints, no reports.
        output_dir=str(output_dir / "trainer"),
        per_device_train_batch_size=config.batch_size,
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        # A float below 1 is read as a fraction of the total steps.
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        # Batches of similar lengths waste less compute on padding (dynamic padding).
        train_sampling_strategy="group_by_length",
        logging_strategy="steps",
        # Every few steps; at most ~200 history points on long GPU runs.
        logging_steps=max(5, steps // 200),
        logging_first_step=True,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_level="error",
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_pin_memory=device == "cuda",
        remove_unused_columns=False,
    )


def _load_classifier(model_name: str, label_names: list[str]) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = resolve_model(model_name)
    id2label = dict(enumerate(label_names))
    label2id = {name: i for i, name in id2label.items()}
    try:
        # The packaged encoder is a plain BertModel, so the classifier head is new; the load
        # report saying so is expected and silenced. ignore_mismatched_sizes lets a model
        # fine-tuned earlier on a different number of classes be fine-tuned again.
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForSequenceClassification.from_pretrained(
                source,
                num_labels=len(label_names),
                id2label=id2label,
                label2id=label2id,
                ignore_mismatched_sizes=True,
            )
    except (OSError, ValueError) as exc:
        raise OSError(load_error_message(source, exc)) from exc
    return model, tokenizer


def _save(model: Any, tokenizer: Any, result: FineTuneResult, config: TrainingConfig, out: Path):
    model_dir = out / MODEL_SUBDIR
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (out / METRICS_FILE).write_text(json.dumps(result.metrics, indent=2))
    run = {
        "config": config.to_dict(),
        "label_names": list(model.config.id2label.values()),
        **{k: v for k, v in vars(result).items() if k not in ("metrics", "model_dir")},
    }
    (out / RUN_FILE).write_text(json.dumps(run, indent=2))
    return model_dir


def _progress_callback(
    batch_size: int,
    progress: Callable[[dict], None] | None,
    should_stop: Callable[[], bool] | None,
) -> Any:
    """A TrainerCallback forwarding progress to ``progress`` and polling ``should_stop``.

    Exactly one ``progress`` call per step: from ``on_log`` when the step logs a loss (so the
    call carries the fresh loss), otherwise from ``on_step_end``. The class is built here so
    that transformers is imported only when training starts.
    """
    from transformers import TrainerCallback

    class _ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict] = []
            self.cancelled = False
            self._loss: float | None = None
            self._start = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if should_stop is not None and should_stop():
                self.cancelled = True
                control.should_training_stop = True
            if control.should_training_stop:
                # Log the last step too, so history and progress end with the final loss.
                control.should_log = True
            if not control.should_log:
                self._emit(state)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            self._loss = float(logs["loss"])
            epoch = round(float(state.epoch or 0.0), 4)
            self.history.append(
                {"step": int(state.global_step), "loss": self._loss, "epoch": epoch}
            )
            self._emit(state)

        def _emit(self, state) -> None:
            if progress is None:
                return
            elapsed = max(time.perf_counter() - self._start, 1e-9)
            progress(
                {
                    "step": int(state.global_step),
                    "total_steps": int(state.max_steps),
                    "loss": self._loss,
                    "epoch": round(float(state.epoch or 0.0), 4),
                    "samples_per_second": round(state.global_step * batch_size / elapsed, 2),
                }
            )

    return _ProgressCallback()


class _TokenizedDataset:
    """Token ids without padding (the collator pads each batch to its longest row)."""

    def __init__(self, tokenizer: Any, texts: list[str], labels: np.ndarray, max_length: int):
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        self.features = [
            {**{key: encoded[key][i] for key in encoded}, "labels": int(labels[i])}
            for i in range(len(texts))
        ]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


# --------------------------------------------------------------------------- prediction


def predict_proba(
    model_dir: str | Path,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 64,
    device: str = "auto",
    precision: str = "fp32",
) -> np.ndarray:
    """Class probabilities (softmax) of a saved classifier for each text.

    Parameters
    ----------
    model_dir
        A folder written by :func:`fine_tune` (``result.model_dir``) or any sequence
        classification model saved with ``save_pretrained``.
    texts
        Texts to score.
    batch_size, max_length
        Rows per forward pass and truncation length in word pieces.
    device
        ``auto``, ``cpu`` or ``cuda``.
    precision
        ``fp32`` (default: reproducible probabilities for label-error detection), or
        ``auto``/``bf16``/``fp16`` as in :func:`resolve_precision` (autocast; on a CPU with
        native bf16 about 1.7x faster; probabilities differ by < 0.01).

    Returns
    -------
    np.ndarray of float32, shape (len(texts), num_labels)
        Rows sum to 1; column ``j`` is the class ``model.config.id2label[j]``.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = _check_texts(texts, "texts")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number > 0 (got {batch_size!r}).")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
        raise ValueError(f"max_length must be a whole number >= 8 (got {max_length!r}).")
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    source = str(model_dir)
    if not (Path(source) / "config.json").exists():
        raise FileNotFoundError(
            f"{source} is not a saved model folder (no config.json); pass the model_dir of a "
            "FineTuneResult or a folder written by save_pretrained."
        )
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source)
    model = model.to(device).eval()
    return _predict_core(
        model, tokenizer, texts, batch_size=batch_size, max_length=max_length, precision=precision
    )


def _predict_core(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    batch_size: int,
    max_length: int,
    precision: str,
) -> np.ndarray:
    import torch

    num_labels = int(model.config.num_labels)
    out = np.zeros((len(texts), num_labels), dtype=np.float32)
    if not texts:
        return out
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    # Sorting by length means each batch pads only to its own longest row.
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    device = next(model.parameters()).device
    with torch.inference_mode(), _autocast(device, precision):
        for batch in _chunks(order, batch_size):
            padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in padded.items()}).logits
            out[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return out


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _chunks(order: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), size):
        yield order[start : start + size]


# --------------------------------------------------------------------------- input checks


def stratified_sample(labels: np.ndarray, cap: int | None, *, seed: int) -> np.ndarray:
    """Sorted indices of at most ``cap`` rows keeping the class proportions of ``labels``.

    Every class keeps at least one row when ``cap`` allows it. ``cap=None`` or a cap at least
    the number of rows returns all indices.

    Examples
    --------
    >>> stratified_sample(np.array([0] * 8 + [1] * 2), 5, seed=0).size
    5
    """
    labels = np.asarray(labels)
    n = len(labels)
    if cap is None or cap >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = _class_quotas(counts, cap)
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
        for c, q in zip(classes, quotas, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def _class_quotas(counts: np.ndarray, cap: int) -> np.ndarray:
    exact = counts * cap / counts.sum()
    quotas = np.floor(exact).astype(int)
    if cap >= len(counts):
        # A rare class could round down to zero; keep one row of it so it is still learned.
        quotas = np.maximum(quotas, 1)
    # Hand out (or take back) the rounding difference by largest (smallest) remainder.
    by_remainder = np.argsort(-(exact - quotas), kind="stable")
    i = 0
    while quotas.sum() < cap:
        j = by_remainder[i % len(counts)]
        if quotas[j] < counts[j]:
            quotas[j] += 1
        i += 1
    while quotas.sum() > cap:
        j = int(np.argmax(quotas))
        quotas[j] -= 1
    return quotas


def _check_label_names(label_names: list[str]) -> list[str]:
    names = [str(name) for name in label_names]
    if len(names) < 2:
        raise ValueError(f"label_names needs at least two classes (got {names!r}).")
    if len(set(names)) != len(names):
        raise ValueError(f"label_names must be unique (got {names!r}).")
    return names


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    texts = list(texts)
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise ValueError(
            f"{what} must all be strings; row {bad[0]} is {texts[bad[0]]!r} ({len(bad)} bad "
            "rows). Drop or fill missing texts first, e.g. df[col].fillna('')."
        )
    return texts


def _check_rows(
    texts: Sequence[str], labels: Sequence[int] | np.ndarray, label_names: list[str], what: str
) -> tuple[list[str], np.ndarray]:
    texts = _check_texts(texts, f"{what}_texts")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(texts):
        raise ValueError(
            f"{what}_labels must be 1-D with one id per text (got shape {labels.shape} for "
            f"{len(texts)} texts)."
        )
    if len(texts) == 0:
        raise ValueError(f"{what}_texts is empty; pass at least one row.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{what}_labels must be integer class ids (got dtype {labels.dtype}); map names to "
            "ids with label_names.index(name)."
        )
    k = len(label_names)
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(
            f"{what}_labels must be in 0..{k - 1} to index label_names (got min {labels.min()}, "
            f"max {labels.max()})."
        )
    return texts, labels.astype(np.int64)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' info/warning logs and progress bars, then restore them."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
