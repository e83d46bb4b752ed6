"""Training core: config validation, metrics, and tiny real fine-tunes of the packaged model
(each technique, early stopping with validation rows, cancel)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from runtime.device import resolve_device, resolve_precision
from training.config import DEFAULT_LEARNING_RATES, TrainingConfig
from training.finetune import fine_tune, stratified_sample
from training.inference import predict_proba
from training.metrics import classification_metrics
from training.sampling import stratified_holdout, validation_cap

# transformers is imported lazily (at the first fine_tune), so this still takes effect.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

POSITIVE = [
    "I love this, it is wonderful",
    "great movie, I really enjoyed it",
    "what a fantastic, happy day",
    "this is excellent and delightful",
    "so happy with the result, superb",
    "amazing service, very good",
    "best purchase ever, I love it",
    "brilliant and beautiful work",
]
NEGATIVE = [
    "I hate this, it is awful",
    "terrible movie, really boring",
    "what a horrible, sad day",
    "this is bad and disgusting",
    "so angry with the result, awful",
    "worst service, very bad",
    "worst purchase ever, I hate it",
    "ugly and stupid work",
]
TEXTS = POSITIVE + NEGATIVE
LABELS = np.array([1] * len(POSITIVE) + [0] * len(NEGATIVE))
NAMES = ["negative", "positive"]
METRIC_KEYS = {
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "confusion_matrix",
    "labels",
    "n",
}


def tiny_config(**overrides) -> TrainingConfig:
    # Two optimiser steps at max_length 32: enough to exercise the whole path in seconds.
    settings = dict(epochs=1, batch_size=8, max_length=32)
    return TrainingConfig(**{**settings, **overrides})


# --------------------------------------------------------------------------- config


def test_config_defaults_round_trip_through_a_dict():
    config = TrainingConfig()
    assert TrainingConfig.from_dict(config.to_dict()) == config
    assert json.loads(json.dumps(config.to_dict()))["max_train_samples"] == 2000
    assert set(TrainingConfig.FIELD_HELP) == set(config.to_dict())
    # argparse formats help with %: a bare % in a help text breaks `cli.py train --help`.
    assert not any("%" in text for text in TrainingConfig.FIELD_HELP.values())


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("learning_rate", -1, "> 0"),
        ("precision", "int3", "auto, fp32, bf16, fp16"),
        ("device", "tpu", "auto, cpu, cuda"),
        ("batch_size", 0, "> 0"),
        ("epochs", float("nan"), "> 0"),
        ("warmup_ratio", 1.5, "[0, 1)"),
        ("max_train_samples", 2.5, "None"),
        ("technique", "adapter", "full, head, lora"),
        ("dropout", 1.0, "[0, 1)"),
        ("gradient_accumulation_steps", 0, "> 0"),
        ("validation_fraction", 0.7, "at most 0.5"),
        ("early_stopping_patience", -1, ">= 0"),
        ("eval_steps", 0, "> 0"),
        ("lora_r", 0, "> 0"),
        ("lora_alpha", 2.5, "> 0"),
        ("lora_dropout", -0.1, "[0, 1)"),
        ("report_to", "tensorboard", "none, mlflow, wandb"),
    ],
)
def test_config_bad_value_names_field_value_and_what_is_allowed(field, value, allowed):
    with pytest.raises(ValueError) as info:
        TrainingConfig(**{field: value})
    message = str(info.value)
    assert field in message
    assert repr(value) in message or str(value) in message
    assert allowed in message


def test_config_from_dict_rejects_unknown_keys_and_lists_valid_ones():
    with pytest.raises(ValueError, match="learning_rat") as info:
        TrainingConfig.from_dict({"learning_rat": 1e-4})
    assert "learning_rate" in str(info.value)


def test_config_accepts_whole_floats_and_normalises_choices():
    config = TrainingConfig(batch_size=16.0, precision="BF16", max_eval_samples=None)
    assert config.batch_size == 16 and isinstance(config.batch_size, int)
    assert config.precision == "bf16"
    assert config.max_eval_samples is None


def test_config_reads_numbers_given_as_text():
    # The CLI and text widgets pass text; "" means None for the optional fields.
    config = TrainingConfig(learning_rate="3e-4", seed="2", dropout="", technique=" LoRA ")
    assert config.learning_rate == 3e-4 and config.seed == 2 and config.dropout is None
    assert config.technique == "lora"


def test_learning_rate_defaults_per_technique():
    for technique, rate in DEFAULT_LEARNING_RATES.items():
        assert TrainingConfig(technique=technique).effective_learning_rate == rate
    assert TrainingConfig(technique="head", learning_rate=1e-3).effective_learning_rate == 1e-3


# --------------------------------------------------------------------------- metrics


def test_metrics_perfect_predictions_are_all_ones():
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]])
    m = classification_metrics(np.array([0, 1, 2, 0]), probs, label_names=["a", "b", "c"])
    assert set(m) == METRIC_KEYS
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert m[key] == 1.0
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert m["labels"] == ["a", "b", "c"] and m["n"] == 4
    json.dumps(m)  # plain Python values only


def test_metrics_confusion_matrix_rows_are_true_columns_are_predicted():
    # Two true "neg" rows, both predicted "pos": the count sits in row neg, column pos.
    y = np.array([0, 0, 1])
    probs = np.array([[0.3, 0.7], [0.4, 0.6], [0.1, 0.9]])
    m = classification_metrics(y, probs, label_names=["neg", "pos"])
    assert m["confusion_matrix"] == [[0, 2], [0, 1]]
    assert m["accuracy"] == pytest.approx(1 / 3)
    # recall: neg 0/2, pos 1/1 -> 0.5; precision: neg 0 (never predicted), pos 1/3.
    assert m["recall"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx((0 + 1 / 3) / 2)
    # Scores still rank the positive row first: binary AUC is perfect.
    assert m["roc_auc"] == pytest.approx(1.0)


def test_metrics_roc_auc_with_a_missing_class():
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    # Class "c" never occurs: AUC is averaged over the present classes a and b.
    m = classification_metrics(np.array([0, 0, 1, 1]), probs, label_names=["a", "b", "c"])
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["confusion_matrix"][2] == [0, 0, 0]
    # A single present class: AUC is undefined.
    only_a = classification_metrics(np.array([0, 0]), probs[:2], label_names=["a", "b", "c"])
    assert only_a["roc_auc"] is None


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(np.array([0, 1]), np.ones((2, 3)) / 3, label_names=["a", "b"])
    with pytest.raises(ValueError, match="0..1"):
        classification_metrics(np.array([0, 2]), np.ones((2, 2)) / 2, label_names=["a", "b"])


# --------------------------------------------------------------------------- helpers


def test_stratified_sample_keeps_proportions_and_rare_classes():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    picked = stratified_sample(labels, 20, seed=0)
    assert len(picked) == 20 and len(set(picked)) == 20
    counts = np.bincount(labels[picked], minlength=3)
    assert counts[2] == 1 and counts[1] in (1, 2) and counts[0] >= 17
    assert np.array_equal(picked, stratified_sample(labels, 20, seed=0))
    assert len(stratified_sample(labels, None, seed=0)) == 100


def test_stratified_holdout_keeps_a_training_row_per_class():
    labels = np.array([0] * 20 + [1] * 10 + [2] * 1)
    kept, held = stratified_holdout(labels, 0.2, seed=0)
    assert np.bincount(labels[held], minlength=3).tolist() == [4, 2, 0]
    assert sorted([*kept, *held]) == list(range(31))
    assert np.array_equal(held, stratified_holdout(labels, 0.2, seed=0)[1])
    assert len(stratified_holdout(labels, 0.0, seed=0)[1]) == 0
    assert validation_cap(2000, 0.176) == 427 and validation_cap(None, 0.2) is None


def test_resolve_device_and_precision_on_cpu():
    assert resolve_device("cpu") == "cpu"
    assert resolve_precision("auto", "cpu") in ("fp32", "bf16")
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("gpu")


# --------------------------------------------------------------------------- fine-tuning


@pytest.mark.slow
@pytest.mark.parametrize(("technique", "accumulate"), [("full", 1), ("head", 2), ("lora", 1)])
def test_tiny_fine_tune_each_technique_evaluates_saves_and_reloads(tmp_path, technique, accumulate):
    updates = []
    result = fine_tune(
        TEXTS,
        LABELS,
        label_names=NAMES,
        # Two optimiser steps either way: 14 rows in batches of 8, or of 4 x 2 accumulated.
        config=tiny_config(
            technique=technique,
            batch_size=8 // accumulate,
            gradient_accumulation_steps=accumulate,
        ),
        output_dir=tmp_path,
        eval_texts=TEXTS,
        eval_labels=LABELS,
        progress=updates.append,
        probe_texts=TEXTS[:3],
    )
    assert not result.cancelled and result.technique == technique
    # 17.6% of each class (8 rows) held out for validation: 1 row each -> 14 train, 2 val.
    assert (result.train_samples, result.validation_samples) == (14, 2)
    # The device is whatever this machine has: the suite runs on CPU-only and GPU machines.
    assert result.device == resolve_device("auto") and result.precision in ("fp32", "bf16", "fp16")
    assert result.train_seconds > 0 and result.train_samples_per_second > 0
    assert result.learning_rate == DEFAULT_LEARNING_RATES[technique]
    if technique == "full":
        assert result.trainable_parameters == result.total_parameters
    else:
        assert 0 < result.trainable_parameters < result.total_parameters / 20

    m = result.metrics
    assert set(m) == METRIC_KEYS and m["n"] == len(TEXTS) and m["labels"] == NAMES
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert 0.0 <= m[key] <= 1.0
    assert np.sum(m["confusion_matrix"]) == len(TEXTS)
    assert json.loads((tmp_path / "metrics.json").read_text()) == m

    # One progress call per step, plus one after the validation pass at the end of the epoch.
    assert [u["step"] for u in updates] == [1, 2, 2]
    assert updates[-1]["total_steps"] == 2 and np.isfinite(updates[-1]["loss"])
    # Steps/s and this run's time left from the second step on (none after only one).
    assert updates[0]["rate"] is None and updates[0]["eta_seconds"] is None
    assert updates[1]["rate"] > 0 and updates[1]["eta_seconds"] == 0.0
    # The first loss is that of the untrained head, ~ln 2, with or without accumulation (the
    # Trainer would report it N times too large if it trusted num_items_in_batch here).
    assert result.history[0]["loss"] == pytest.approx(np.log(2), abs=0.05)
    assert np.isfinite(updates[-1]["eval_loss"])
    assert [("loss" in h, "eval_loss" in h) for h in result.history][-1] == (False, True)
    assert result.best_validation_loss == result.history[-1]["eval_loss"]

    # A plain transformers folder (LoRA merged): predict_proba reproduces the final model.
    assert not (tmp_path / "trainer").exists()
    assert not (tmp_path / "model" / "adapter_config.json").exists()
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    probs = predict_proba(result.model_dir, TEXTS[:3] + [""], max_length=32, device="cpu")
    assert probs.shape == (4, 2)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    if result.precision == "fp32":
        assert np.allclose(probs[:3], result.probe_after, atol=1e-4)
    # The head was new: before training it predicts ~50/50.
    assert result.new_head and np.allclose(result.probe_before, 0.5, atol=0.1)
    run = json.loads((tmp_path / "training_run.json").read_text())
    assert run["config"]["technique"] == technique and run["technique"] == technique


@pytest.mark.slow
def test_early_stopping_restores_the_best_validation_loss(tmp_path):
    # A learning rate far too high makes the validation loss jump after the first step, so
    # patience 1 stops the run early and the best step's weights are kept. One step per epoch
    # (12 training rows, batch 16), a validation pass every step.
    config = tiny_config(
        epochs=4,
        batch_size=16,
        learning_rate=0.5,
        early_stopping_patience=1,
        validation_fraction=0.25,
        eval_steps=1,
    )
    result = fine_tune(
        TEXTS,
        LABELS,
        label_names=NAMES,
        config=config,
        output_dir=tmp_path,
        eval_texts=TEXTS,
        eval_labels=LABELS,
    )
    eval_losses = [h["eval_loss"] for h in result.history if "eval_loss" in h]
    assert result.validation_samples == 4 and len(eval_losses) >= 2
    assert result.stopped_early and result.epochs_completed < 4
    assert result.best_validation_loss == pytest.approx(min(eval_losses))
    assert result.metrics is not None and (tmp_path / "model" / "config.json").exists()
    assert not (tmp_path / "trainer").exists()  # checkpoints only lived during the run


def test_early_stopping_without_validation_rows_is_refused_before_any_model_loads():
    with pytest.raises(ValueError, match="early_stopping_patience needs validation rows"):
        tiny_config(early_stopping_patience=2, validation_fraction=0)


def test_dropout_override_reaches_every_dropout_setting():
    from training.techniques import load_classifier

    model, _, new_head = load_classifier("", NAMES, dropout=0.25)
    config = model.config
    assert new_head
    assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == 0.25
    assert config.classifier_dropout == 0.25


@pytest.mark.slow
def test_should_stop_cancels_without_saving(tmp_path):
    result = fine_tune(
        TEXTS,
        LABELS,
        label_names=NAMES,
        config=tiny_config(batch_size=4, validation_fraction=0),
        output_dir=tmp_path,
        eval_texts=TEXTS,
        eval_labels=LABELS,
        should_stop=lambda: True,
    )
    assert result.cancelled
    assert result.metrics is None and result.model_dir == ""
    assert result.history[-1]["step"] == 1  # stopped after the first of four steps
    assert not (tmp_path / "model").exists() and not (tmp_path / "metrics.json").exists()


def test_missing_model_error_names_what_was_tried(tmp_path):
    with pytest.raises(OSError, match="no-such-org/no-such-model"):
        fine_tune(
            TEXTS,
            LABELS,
            label_names=NAMES,
            config=tiny_config(model="no-such-org/no-such-model"),
            output_dir=tmp_path,
        )


def test_fine_tune_rejects_bad_rows_before_loading_a_model(tmp_path):
    with pytest.raises(ValueError, match="train_labels"):
        fine_tune(TEXTS, LABELS[:-1], label_names=NAMES, config=tiny_config(), output_dir=tmp_path)
    with pytest.raises(ValueError, match="two classes"):
        fine_tune(
            TEXTS,
            np.zeros(len(TEXTS), int),
            label_names=NAMES,
            config=tiny_config(),
            output_dir=tmp_path,
        )
    # The one texts check (runtime.validation) names the argument and the row, as a TypeError.
    with pytest.raises(TypeError, match=r"train_texts\[1\] is NoneType"):
        fine_tune(
            ["ok", None], [0, 1], label_names=NAMES, config=tiny_config(), output_dir=tmp_path
        )
