"""Fine-tune a transformer encoder for text classification (predicting: :mod:`training.inference`).

Built on the Hugging Face ``Trainer``: dynamic padding, length-grouped batches, the GPU with
bf16 (fp16 where bf16 is unsupported) when one is visible, otherwise the CPU with bf16
autocast where the CPU has native bf16 instructions. Three techniques share this one path
(:mod:`training.techniques`): full fine-tuning, a frozen encoder with a trained head, and LoRA
adapters merged into the weights on save.

Validation: rows held out from the training data (``config.validation_fraction``, stratified
and seeded) or passed in as ``validation_texts``; their loss is logged after every epoch (or
every ``config.eval_steps``) and, with ``config.early_stopping_patience``, drives
``EarlyStoppingCallback`` with the best model (lowest validation loss) restored at the end.
The evaluation rows (``eval_texts``) are only scored after training: they never choose a
model. Checkpoints exist only while early stopping needs them (``output_dir/trainer``, removed
after the run). Trackers are off unless ``config.report_to`` names one
(:mod:`training.tracking`), and a tracker that fails only adds to ``result.warnings``; no
progress bars are printed: progress goes to the ``progress``
callback instead, so a UI or a CLI decides how to show it.

Under a distributed launch (``accelerate launch`` / ``torchrun``, see :mod:`jobs.runner`)
every process trains its share of each batch; only the main process evaluates and saves.

torch and transformers are imported lazily so that importing this module (e.g. from the app
at start-up) stays fast.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.device import is_main_process, resolve_device, resolve_precision
from runtime.estimates import record_speed
from runtime.progress import RateMeter
from runtime.validation import check_texts
from training.config import TrainingConfig
from training.inference import MODEL_SUBDIR, predict_core, quiet_transformers
from training.metrics import classification_metrics
from training.sampling import stratified_holdout, stratified_sample, validation_cap
from training.tracking import tracking

__all__ = ["FineTuneResult", "fine_tune", "speed_identity", "stratified_sample"]

# No hub access on most machines that run this; fail fast instead of retrying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

METRICS_FILE = "metrics.json"
RUN_FILE = "training_run.json"
TRAINER_SUBDIR = "trainer"
# Fields of FineTuneResult holding arrays: returned to the caller, not written to RUN_FILE.
ARRAY_FIELDS = ("eval_probs", "eval_indices", "probe_before", "probe_after")


@dataclass
class FineTuneResult:
    """What :func:`fine_tune` did.

    ``model_dir`` is ``""`` when the run was cancelled (nothing is saved then) and on the
    non-main processes of a distributed run. ``metrics`` is ``None`` when there was no
    evaluation set or the run was cancelled.

    ``history`` lists the training loss per logging step (``{"step", "loss", "epoch"}``) and
    the validation loss per evaluation (``{"step", "eval_loss", "epoch"}``), in step order.
    ``eval_probs`` holds the class probabilities of the evaluated rows, whose positions in
    ``eval_texts`` are ``eval_indices`` (all rows unless ``max_eval_samples`` capped them);
    ``probe_before`` / ``probe_after`` those of ``probe_texts`` before and after training.
    ``new_head`` says the classifier head was freshly initialised, so ``probe_before`` is
    chance level. ``warnings`` says what went wrong on the side without stopping the run
    (an experiment tracker that failed, see :mod:`training.tracking`).
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
    technique: str = "full"
    learning_rate: float = 0.0
    trainable_parameters: int = 0
    total_parameters: int = 0
    validation_samples: int = 0
    validation_seconds: float = 0.0
    best_validation_loss: float | None = None
    stopped_early: bool = False
    epochs_completed: float = 0.0
    new_head: bool = True
    warnings: list[str] = field(default_factory=list)
    eval_probs: np.ndarray | None = field(default=None, repr=False)
    eval_indices: np.ndarray | None = field(default=None, repr=False)
    probe_before: np.ndarray | None = field(default=None, repr=False)
    probe_after: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready fields (everything but the probability arrays and metrics)."""
        skip = {"metrics", "model_dir", *ARRAY_FIELDS}
        return {k: v for k, v in vars(self).items() if k not in skip}


def speed_identity(config: TrainingConfig, task: str = "train") -> dict[str, str]:
    """``model``, ``device`` and ``precision`` under which :func:`fine_tune` records (and pages
    look up, see :mod:`runtime.estimates`) its speed of ``task``: ``"train"`` (samples/s of the
    training steps, per technique) or ``"predict"`` (texts/s of scoring the evaluation rows)."""
    device = resolve_device(config.device)
    model = f"{config.model or 'packaged'}|max_length={config.max_length}"
    if task == "train":
        model += f"|batch={config.batch_size}|{config.technique}"
    return {
        "model": model,
        "device": device,
        "precision": resolve_precision(config.precision, device),
    }


@dataclass
class _Rows:
    """Texts with class ids, as fine_tune passes them around after checking."""

    texts: list[str]
    labels: np.ndarray

    def take(self, keep: np.ndarray) -> _Rows:
        return _Rows([self.texts[i] for i in keep], self.labels[keep])


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
    validation_texts: Sequence[str] | None = None,
    validation_labels: Sequence[int] | np.ndarray | None = None,
    probe_texts: Sequence[str] | None = None,
    tracking_dir: str | Path | None = None,
) -> FineTuneResult:
    """Fine-tune ``config.model`` on labelled texts, evaluate, and save the model.

    Parameters
    ----------
    train_texts, train_labels
        Training rows; labels are class ids indexing ``label_names``. Unless validation rows
        are passed, ``config.validation_fraction`` of them is held out first (stratified,
        seeded by ``config.seed``); then, when more than ``config.max_train_samples`` rows
        remain, a stratified sample is used (and validation is cut in the same proportion).
    label_names
        Class names in id order; saved as ``id2label`` / ``label2id`` in the model config.
    config
        Hyper-parameters, technique and device/precision choices.
    output_dir
        The model and tokenizer are saved to ``output_dir/"model"`` and the evaluation
        metrics to ``output_dir/"metrics.json"`` (plus the settings and timings in
        ``output_dir/"training_run.json"``). Nothing is saved when the run is cancelled.
    eval_texts, eval_labels
        Optional held-out rows (capped at ``config.max_eval_samples``, stratified) scored
        with :func:`training.metrics.classification_metrics` after training.
    progress
        Called once per optimiser step with ``{"step", "total_steps", "loss", "eval_loss",
        "epoch", "samples_per_second"}``, and once more after each validation pass; ``loss``
        is the mean training loss of the latest logging interval, ``eval_loss`` the latest
        validation loss (``None`` before the first) and ``samples_per_second`` the training
        throughput so far.
    should_stop
        Polled after every step; returning ``True`` ends training cleanly, and the result
        has ``cancelled=True``, ``metrics=None`` and ``model_dir=""``.
    validation_texts, validation_labels
        Validation rows to use instead of holding some out of the training rows (e.g. a
        dataset's own validation split); capped like the held-out ones.
    probe_texts
        A few texts to predict with the model as loaded (before training) and after training:
        ``result.probe_before`` / ``result.probe_after``.
    tracking_dir
        Where a local tracker store goes when ``config.report_to`` is not ``"none"``
        (default ``output_dir``): ``mlflow.db`` or ``wandb/``. A tracker that is not
        installed or fails (at start, while logging, at the end) does not stop the run: the
        result's ``warnings`` say what happened.

    Returns
    -------
    FineTuneResult

    Raises
    ------
    ValueError
        Bad inputs (lengths differ, label ids out of range, fewer than two classes, early
        stopping without validation rows, ...).
    OSError
        The model could not be loaded; the message names what was tried.
    """
    if not isinstance(config, TrainingConfig):
        raise ValueError(
            f"config must be a TrainingConfig (got {type(config).__name__}); build one with "
            "TrainingConfig(...) or TrainingConfig.from_dict(d)."
        )
    label_names = _check_label_names(label_names)
    train = _Rows(*_check_rows(train_texts, train_labels, label_names, "train"))
    if len(np.unique(train.labels)) < 2:
        raise ValueError(
            "train_labels contain a single class; fine-tuning a classifier needs rows of at "
            "least two classes."
        )
    evaluation = _optional_rows(eval_texts, eval_labels, label_names, "eval")
    validation = _optional_rows(validation_texts, validation_labels, label_names, "validation")
    probes = None if probe_texts is None else check_texts(probe_texts, "probe_texts")
    train, validation = _split_validation(train, validation, config)
    if config.early_stopping_patience and validation is None:
        raise ValueError(
            f"early_stopping_patience={config.early_stopping_patience} needs validation rows, "
            "but there are none: set validation_fraction > 0 (e.g. 0.15) with enough training "
            "rows, pass validation_texts, or set early_stopping_patience=0."
        )
    output_dir = Path(output_dir)
    warnings: list[str] = []
    with tracking(
        config.report_to, tracking_dir=tracking_dir or output_dir, warnings=warnings
    ) as tracker:
        return _fine_tune_core(
            train,
            label_names=label_names,
            config=config,
            output_dir=output_dir,
            evaluation=evaluation,
            validation=validation,
            probes=probes,
            progress=progress,
            should_stop=should_stop,
            tracker=tracker,
            warnings=warnings,
        )


def _optional_rows(texts, labels, label_names: list[str], what: str) -> _Rows | None:
    if (texts is None) != (labels is None):
        raise ValueError(f"Pass both {what}_texts and {what}_labels, or neither.")
    if texts is None:
        return None
    return _Rows(*_check_rows(texts, labels, label_names, what))


def _split_validation(
    train: _Rows, validation: _Rows | None, config: TrainingConfig
) -> tuple[_Rows, _Rows | None]:
    """Hold validation rows out of ``train`` (unless given), then apply the row caps."""
    fraction = config.validation_fraction
    if validation is None and fraction > 0:
        kept, held = stratified_holdout(train.labels, fraction, seed=config.seed)
        if len(held):
            train, validation = train.take(kept), train.take(held)
    train = train.take(stratified_sample(train.labels, config.max_train_samples, seed=config.seed))
    if validation is not None:
        cap = validation_cap(config.max_train_samples, fraction or 0.15)
        validation = validation.take(stratified_sample(validation.labels, cap, seed=config.seed))
    return train, validation


def _fine_tune_core(
    train: _Rows,
    *,
    label_names: list[str],
    config: TrainingConfig,
    output_dir: Path,
    evaluation: _Rows | None,
    validation: _Rows | None,
    probes: list[str] | None,
    progress: Callable[[dict], None] | None,
    should_stop: Callable[[], bool] | None,
    tracker: Any,
    warnings: list[str],
) -> FineTuneResult:
    from transformers import set_seed

    from training.techniques import apply_technique, count_parameters, load_classifier

    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    # Seed before loading: the new classifier head is initialised randomly at load time.
    set_seed(config.seed)
    model, tokenizer, new_head = load_classifier(config.model, label_names, dropout=config.dropout)
    result = FineTuneResult(
        metrics=None,
        model_dir="",
        device=device,
        precision=precision,
        train_samples=len(train.texts),
        technique=config.technique,
        learning_rate=config.effective_learning_rate,
        validation_samples=0 if validation is None else len(validation.texts),
        new_head=new_head,
        # The same list the tracker appends to while it trains.
        warnings=warnings,
    )
    if probes is not None:
        # fp32 on the model's current device: a handful of rows, before any device move.
        result.probe_before = predict_core(
            model.eval(),
            tokenizer,
            probes,
            batch_size=64,
            max_length=config.max_length,
            precision="fp32",
        )
    with quiet_transformers():
        model = apply_technique(model, config)
    result.trainable_parameters, result.total_parameters = count_parameters(model)
    # The Trainer creates its folder at once; only one this run created is removed after it.
    created = not (output_dir / TRAINER_SUBDIR).exists()
    trainer, callback = _build_trainer(
        model,
        tokenizer,
        train,
        validation,
        config,
        output_dir,
        device,
        precision,
        progress,
        should_stop,
        tracker,
    )
    try:
        with quiet_transformers():
            start = time.perf_counter()
            trainer.train()
            train_seconds = time.perf_counter() - start
    except BaseException:
        _remove_trainer_dir(output_dir / TRAINER_SUBDIR, created, sync=False)
        raise
    _remove_trainer_dir(output_dir / TRAINER_SUBDIR, created, sync=True)
    _record_training(result, trainer, callback, train_seconds, len(train.texts))
    if is_main_process():  # this machine's training speed, for the next estimate
        rows, seconds = callback.steady_rate() or (
            result.train_samples * result.epochs_completed,
            result.train_seconds - result.validation_seconds,
        )
        record_speed("train", rows, seconds, **speed_identity(config, "train"))
    if result.cancelled or not is_main_process():
        return result
    _evaluate(result, trainer.model, tokenizer, evaluation, probes, label_names, config)
    with quiet_transformers():
        result.model_dir = str(_save(trainer.model, tokenizer, result, config, output_dir))
    return result


def _build_trainer(
    model,
    tokenizer,
    train,
    validation,
    config,
    output_dir,
    device,
    precision,
    progress,
    should_stop,
    tracker,
) -> tuple[Any, Any]:
    from transformers import (
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        PrinterCallback,
        Trainer,
    )

    train_dataset = _TokenizedDataset(tokenizer, train.texts, train.labels, config.max_length)
    eval_dataset = (
        None
        if validation is None
        else _TokenizedDataset(tokenizer, validation.texts, validation.labels, config.max_length)
    )
    args = _training_arguments(
        config, output_dir, device, precision, len(train_dataset), eval_dataset is not None
    )
    callback = _progress_callback(progress, should_stop)
    callbacks = [callback]
    if config.early_stopping_patience and eval_dataset is not None:
        callbacks.append(EarlyStoppingCallback(config.early_stopping_patience))
    if tracker is not None:
        callbacks.append(tracker)
    with quiet_transformers():
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    # With tqdm off the Trainer prints every log dict to stdout; progress goes to the
    # callback instead.
    trainer.remove_callback(PrinterCallback)
    # Sequence classifiers take **kwargs but return a per-batch *mean* loss, ignoring
    # num_items_in_batch. Left True, the Trainer would neither divide the loss by
    # gradient_accumulation_steps nor undo its multiplication by the process count: losses
    # and gradients N times too large. False gives the plain mean-loss arithmetic.
    trainer.model_accepts_loss_kwargs = False
    return trainer, callback


def _record_training(result, trainer, callback, train_seconds: float, n_train: int) -> None:
    state = trainer.state
    samples_seen = (state.epoch or 0.0) * n_train
    result.history = callback.history
    result.cancelled = callback.cancelled
    result.train_seconds = round(train_seconds, 3)
    # Throughput of the training steps alone: validation passes are timed apart.
    result.validation_seconds = round(callback.eval_seconds, 3)
    stepping = max(train_seconds - callback.eval_seconds, 1e-9)
    result.train_samples_per_second = round(samples_seen / stepping, 3)
    result.epochs_completed = round(float(state.epoch or 0.0), 4)
    result.stopped_early = not callback.cancelled and state.global_step < state.max_steps
    if state.best_metric is not None:
        result.best_validation_loss = float(state.best_metric)
    else:
        losses = [h["eval_loss"] for h in callback.history if "eval_loss" in h]
        result.best_validation_loss = min(losses) if losses else None


def _evaluate(result, model, tokenizer, evaluation, probes, label_names, config) -> None:
    model = model.eval()
    batch = config.batch_size * 2
    if evaluation is not None:
        keep = stratified_sample(evaluation.labels, config.max_eval_samples, seed=config.seed)
        rows = evaluation.take(keep)
        started = time.perf_counter()
        probs = predict_core(
            model,
            tokenizer,
            rows.texts,
            batch_size=batch,
            max_length=config.max_length,
            precision=result.precision,
        )
        seconds = time.perf_counter() - started
        record_speed("predict", len(rows.texts), seconds, **speed_identity(config, "predict"))
        result.metrics = classification_metrics(rows.labels, probs, label_names=label_names)
        result.eval_probs, result.eval_indices = probs, keep
    if probes is not None:
        result.probe_after = predict_core(
            model,
            tokenizer,
            probes,
            batch_size=batch,
            max_length=config.max_length,
            precision=result.precision,
        )


def _remove_trainer_dir(folder: Path, created: bool, *, sync: bool) -> None:
    # Checkpoints written for early stopping are not kept: the final model is saved apart.
    # Every process waits until all have loaded the best checkpoint before it goes.
    if sync:
        _barrier()
    if created and is_main_process():
        shutil.rmtree(folder, ignore_errors=True)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _training_arguments(
    config: TrainingConfig,
    output_dir: Path,
    device: str,
    precision: str,
    n_train: int,
    has_validation: bool,
) -> Any:
    from transformers import TrainingArguments

    from runtime.device import world_size

    per_step = config.batch_size * world_size() * config.gradient_accumulation_steps
    steps = math.ceil(config.epochs * math.ceil(n_train / per_step))
    evaluate = "no" if not has_validation else ("steps" if config.eval_steps else "epoch")
    stop_early = bool(config.early_stopping_patience) and has_validation
    return TrainingArguments(
        # Only early stopping writes here (checkpoints to restore the best model); removed
        # after the run.
        output_dir=str(output_dir / TRAINER_SUBDIR),
        run_name=output_dir.name or None,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size * 2,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        learning_rate=config.effective_learning_rate,
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
        eval_strategy=evaluate,
        eval_steps=config.eval_steps,
        prediction_loss_only=True,
        save_strategy=evaluate if stop_early else "no",
        save_steps=config.eval_steps,
        save_total_limit=1 if stop_early else None,
        save_only_model=True,
        load_best_model_at_end=stop_early,
        metric_for_best_model="eval_loss" if stop_early else None,
        greater_is_better=False if stop_early else None,
        # The tracker, if any, comes as a callback of its own (training.tracking), wrapped so
        # that its failures cannot end the run.
        report_to="none",
        disable_tqdm=True,
        log_level="error",
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_pin_memory=device == "cuda",
        remove_unused_columns=False,
        # No token-count averaging across processes: the losses here are per-batch means.
        average_tokens_across_devices=False,
        # Every trainable weight takes part in each forward pass (frozen ones are not
        # registered with DDP), so skip DDP's per-step search for unused parameters.
        ddp_find_unused_parameters=False,
    )


def _save(model: Any, tokenizer: Any, result: FineTuneResult, config: TrainingConfig, out: Path):
    from training.techniques import finalize

    model = finalize(model)
    model_dir = out / MODEL_SUBDIR
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (out / METRICS_FILE).write_text(json.dumps(result.metrics, indent=2))
    run = {
        "config": config.to_dict(),
        "label_names": list(model.config.id2label.values()),
        **result.summary(),
    }
    (out / RUN_FILE).write_text(json.dumps(run, indent=2))
    return model_dir


def _progress_callback(
    progress: Callable[[dict], None] | None,
    should_stop: Callable[[], bool] | None,
) -> Any:
    """A TrainerCallback forwarding progress to ``progress`` and polling ``should_stop``.

    One ``progress`` call per step: from ``on_log`` when the step logs a loss (so the call
    carries the fresh loss), otherwise from ``on_step_end``; plus one per validation pass. The
    class is built here so that transformers is imported only when training starts.
    """
    from transformers import TrainerCallback

    class _ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict] = []
            self.cancelled = False
            self._loss: float | None = None
            self._eval_loss: float | None = None
            self.eval_seconds = 0.0
            self._start = time.perf_counter()
            self._rows_per_step = 1
            # Steps/s over the last minute (validation passes included, so they count in the
            # time left), from the second step on: the first figure comes seconds after start.
            self._meter = RateMeter(window=60.0)
            self._first_step_end: float | None = None
            self._last_step_end: float | None = None
            self._last_step = 0
            self._eval_at_first = 0.0
            self._eval_at_last = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()
            self._rows_per_step = (
                args.per_device_train_batch_size
                * args.gradient_accumulation_steps
                * max(1, args.world_size)
            )

        def steady_rate(self) -> tuple[float, float] | None:
            """Rows trained and seconds taken from the end of the first step on, validation
            left out: the first step's one-off set-up (the optimizer's state, the first
            kernels) was a third of a 10-step calibration and made it read 19 rows/s where
            runs trained at 30 (bench/results/estimates-*). None under three steps."""
            if self._first_step_end is None or self._last_step_end is None:
                return None
            steps = self._last_step - 1
            # Validation passes between the two ends (at epoch ends) are not training.
            validation = self._eval_at_last - self._eval_at_first
            seconds = self._last_step_end - self._first_step_end - validation
            if steps < 2 or seconds <= 0:
                return None
            return steps * self._rows_per_step, seconds

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            if self._first_step_end is None:
                self._first_step_end, self._eval_at_first = now, self.eval_seconds
            self._last_step_end, self._last_step = now, int(state.global_step)
            self._eval_at_last = self.eval_seconds
            if _stop_everywhere(should_stop, args):
                self.cancelled = True
                control.should_training_stop = True
            if self.cancelled:
                # A cancelled run logs where it stopped. A finished run does not force a last
                # log: the loss averaged over the few steps since the previous log is one
                # noisy batch that reads as a spike or a dip at the end of the curve.
                control.should_log = True
            if not control.should_log:
                self._emit(state)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            epoch = round(float(state.epoch or 0.0), 4)
            step = int(state.global_step)
            if "loss" in logs:
                self._loss = float(logs["loss"])
                self.history.append({"step": step, "loss": self._loss, "epoch": epoch})
                self._emit(state)
            elif "eval_loss" in logs:
                self._eval_loss = float(logs["eval_loss"])
                self.eval_seconds += float(logs.get("eval_runtime") or 0.0)
                self.history.append({"step": step, "eval_loss": self._eval_loss, "epoch": epoch})
                self._emit(state)

        def _emit(self, state) -> None:
            if progress is None or not is_main_process():
                return
            elapsed = max(time.perf_counter() - self._start, 1e-9)
            timing = self._meter(
                {"stage": "training", "done": int(state.global_step), "total": state.max_steps}
            )
            progress(
                {
                    "rate": timing.get("rate"),  # steps/s
                    "eta_seconds": timing.get("eta_seconds"),  # this run's steps left
                    "step": int(state.global_step),
                    "total_steps": int(state.max_steps),
                    "loss": self._loss,
                    "eval_loss": self._eval_loss,
                    "epoch": round(float(state.epoch or 0.0), 4),
                    "samples_per_second": round(
                        state.global_step * self._rows_per_step / elapsed, 2
                    ),
                }
            )

    return _ProgressCallback()


def _stop_everywhere(should_stop: Callable[[], bool] | None, args: Any) -> bool:
    """``should_stop()``, agreed across processes so every rank stops at the same step."""
    flag = bool(should_stop()) if should_stop is not None else False
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    import torch

    tensor = torch.tensor([int(flag)], device=args.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


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


# --------------------------------------------------------------------------- input checks


def _check_label_names(label_names: list[str]) -> list[str]:
    names = [str(name) for name in label_names]
    if len(names) < 2:
        raise ValueError(f"label_names needs at least two classes (got {names!r}).")
    if len(set(names)) != len(names):
        raise ValueError(f"label_names must be unique (got {names!r}).")
    return names


def _check_rows(
    texts: Sequence[str], labels: Sequence[int] | np.ndarray, label_names: list[str], what: str
) -> tuple[list[str], np.ndarray]:
    texts = check_texts(texts, f"{what}_texts")
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
