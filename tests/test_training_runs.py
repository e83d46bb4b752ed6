"""Workspace runs: validation rows, honest evaluation (test + verified subset), the before/after
table, injected noise and the data version in every run record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data.artifacts import artifact_problems
from tests.conftest import NEGATIVE, POSITIVE, TINY, make_prepared
from training.config import TrainingConfig
from training.experiments import eval_ids, ids_hash, plan_label_quality
from training.reporting import history_frame, runs_frame
from training.runs import (
    EVALUATION_FILE,
    empty_metrics,
    execute_run,
    plan,
    split_ids,
    validation_split,
    verified_ids,
)

METRIC_KEYS = {"accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix", "n"}


def review_some_test_rows(ws) -> None:
    # Test rows are the ids divisible by 4: 0, 4, 8 (positive) and 12, 16, 20 (negative).
    ws.relabel(0, "positive", reviewer="ana", action="confirm")
    ws.relabel(12, "positive", reviewer="ana")  # corrected: verified with the new label
    ws.set_excluded(4, reviewer="ana")  # excluded: neither tested nor verified


def test_verified_rows_are_reviewed_test_rows_that_are_not_excluded(workspace):
    review_some_test_rows(workspace)
    workspace.relabel(1, "positive", reviewer="ana", action="confirm")  # a train row
    _, test = split_ids(workspace)
    assert verified_ids(workspace, test) == [0, 12]
    assert 4 not in test
    empty = empty_metrics(["a", "b"])
    assert empty["n"] == 0 and empty["accuracy"] is None and empty["labels"] == ["a", "b"]


def test_validation_rows_are_held_out_stratified_or_taken_from_the_split(workspace, tmp_path):
    train, _ = split_ids(workspace)
    kept, validation, source = validation_split(workspace, train, config=TINY)
    assert source == "held out" and len(validation) == 4 and not set(kept) & set(validation)
    labels = workspace.samples(ids=validation)["label"].value_counts().to_dict()
    assert labels == {"positive": 2, "negative": 2}
    none = TrainingConfig.from_dict({**TINY.to_dict(), "validation_fraction": 0})
    assert validation_split(workspace, train, config=none) == (train, [], "none")

    from data.store import Workspace

    texts = POSITIVE + NEGATIVE
    splits = [
        "validation" if i % 6 == 1 else ("test" if i % 4 == 0 else "train") for i in range(24)
    ]
    prepared = make_prepared(texts, ["positive"] * 12 + ["negative"] * 12, splits=splits)
    own = Workspace.create(tmp_path / "own", prepared, name="own")
    try:
        train, _ = split_ids(own)
        kept, validation, source = validation_split(own, train, config=TINY)
        assert source == "split" and kept == train and validation == [1, 7, 13, 19]
    finally:
        own.close()


def test_plans_use_seeds_and_leave_validation_rows_out(workspace):
    train, _ = split_ids(workspace)
    pool, validation, _ = validation_split(workspace, train, config=TINY)
    specs = plan(workspace, "data_size", config=TINY)
    assert len(specs) == 12 and sorted({s.seed for s in specs}) == [0, 1, 2]
    assert all(not set(s.train_ids) & set(validation) for s in specs)
    quality = plan(workspace, "label_quality", config=TINY)
    assert [s.noise_rate for s in quality] == [0.0, 0.0, 0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match="noise_rates"):
        plan(workspace, "data_size", config=TINY, noise_rate=[0.1])


@pytest.mark.slow
def test_a_noisy_run_records_test_and_verified_metrics_examples_and_data_version(workspace):
    review_some_test_rows(workspace)
    train, test = split_ids(workspace)
    train, validation, source = validation_split(workspace, train, config=TINY)
    spec = plan_label_quality(train, noise_rates=(0.25,), seed=0)[-1]
    rows = eval_ids(test)
    run_id = execute_run(
        workspace,
        spec,
        config=TINY,
        eval_rows=rows,
        validation_rows=validation,
        validation_source=source,
    )
    run = workspace.run(run_id)
    assert run.status == "done"
    data = run.data

    # Test metrics and the verified subset beside them, each stored once.
    assert METRIC_KEYS <= set(run.test) and run.test["n"] == len(rows) == 5
    assert run.verified["n"] == 2 and run.verified["accuracy"] is not None
    stored = json.loads((workspace.run_dir(run_id) / EVALUATION_FILE).read_text())
    assert stored == run.metrics() and "accuracy" not in stored  # not at the top level too

    # Before/after table: every test row (5 <= 8), the new head's chance-level note.
    examples = run.examples
    assert examples["new_head"] and "chance" in examples["note"]
    assert [r["id"] for r in examples["rows"]] == rows
    for row in examples["rows"]:
        for side in ("before", "after"):
            assert sum(row[side]["probs"].values()) == pytest.approx(1.0, abs=1e-3)
            assert row[side]["label"] in ("negative", "positive")

    # The data version: noise flips counted, the ids fingerprinted, the label version.
    flipped = json.loads((workspace.run_dir(run_id) / "noise.json").read_text())["flipped_ids"]
    assert data["noise_rate"] == 0.25 and data["noise_flipped"] == len(flipped) == 4
    assert set(flipped) <= set(spec.train_ids)
    assert data["train_ids_hash"] == ids_hash(spec.train_ids)
    assert data["eval_ids_hash"] == ids_hash(rows)
    assert data["label_version"] == workspace.label_version()
    assert (data["validation_source"], data["validation_rows"]) == ("held out", 4)
    assert data["series"] == "noise" and data["x"] == 0.25 and data["seed"] == 0
    assert run.config["technique"] == "full" and data["learning_rate"] == 1e-4
    # The saved model's files, checksummed: Export and serving check them before use.
    assert {"config.json", "model.safetensors"} <= set(data["model_files"])
    assert artifact_problems(run.model_dir, data["model_files"]) == []

    # Loss curve: training loss per logging step, validation loss per evaluation.
    losses = history_frame(run.history)
    assert set(losses["split"]) == {"train", "validation"}
    assert np.isfinite(losses["loss"]).all()
    point = runs_frame(workspace.runs()).iloc[0]
    assert (point["series"], point["x"], point["verified_n"]) == ("noise", 0.25, 2)
