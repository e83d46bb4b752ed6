"""AppTest for training and experiments: Train (launch, validation, results, try it), Charts
(error bars over seeds) and Run history (compare).

Runs are written straight into the store in the record format ``training.runs`` writes, and
``jobs.launch`` is replaced by a recorder, so nothing trains here except one tiny
model for the "Try it" box.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app_pages.plain import plain
from data.records import run_metrics
from data.store import Workspace
from tests.conftest import NEGATIVE, POSITIVE, app
from training.config import TrainingConfig

TIMEOUT = 60
ROOT = Path(__file__).resolve().parent.parent
LABELS = ["negative", "positive"]


@pytest.fixture
def ws(home, sentiment_prepared):
    workspace = Workspace.create(home / "reviews", sentiment_prepared, name="reviews")
    yield workspace
    workspace.close()


def scores(accuracy: float, n: int) -> dict:
    right = round(accuracy * n)  # a confusion matrix that adds up to n
    return {
        "accuracy": accuracy,
        "precision": accuracy,
        "recall": accuracy,
        "f1": accuracy - 0.01,
        "roc_auc": min(1.0, accuracy + 0.05),
        "confusion_matrix": [[right, n - right], [0, 0]],
        "labels": LABELS,
        "n": n,
    }


def finished_job(ws: Workspace, kind: str) -> int:
    job = ws.create_job(kind, {})
    ws.update_job(job, status="done")
    return job


def add_run(
    ws: Workspace,
    job: int,
    *,
    accuracy: float,
    verified: float | None,
    technique: str = "full",
    data: dict | None = None,
    model_dir: str = "",
    learning_rate: float | None = None,
) -> int:
    """A finished run recorded as ``training.runs.execute_run`` records one."""
    config = TrainingConfig(
        technique=technique, learning_rate=learning_rate, max_train_samples=None
    ).to_dict()
    record = {
        "experiment": "single",
        "series": "single",
        "x": 1.0,
        "seed": 0,
        "label_source": "curated",
        "noise_rate": 0.0,
        "label_version": ws.label_version(),
        "train_rows": 14,
        "train_ids_hash": "abc123",
        "eval_rows": 6,
        "eval_ids_hash": "def456",
        "verified_rows": 4 if verified is not None else 0,
        "technique": technique,
        "learning_rate": learning_rate or 1e-4,
        "device": "cpu",
        "train_seconds": 3.0,
        **(data or {}),
    }
    test = scores(accuracy, 6)
    checked = scores(verified, 4) if verified is not None else {"n": 0, "labels": LABELS}
    example = {
        "id": 0,
        "text": POSITIVE[0],
        "label": "positive",
        "before": {
            "label": "negative",
            "prob": 0.52,
            "probs": {"negative": 0.52, "positive": 0.48},
        },
        "after": {"label": "positive", "prob": 0.91, "probs": {"negative": 0.09, "positive": 0.91}},
    }
    metrics = run_metrics(
        test=test,
        verified=checked,
        examples={"new_head": True, "note": "before = chance level", "rows": [example]},
    )
    run = ws.create_run(name=f"{technique} run", config=config, data=record, job_id=job)
    history = [
        {"step": 1, "loss": 0.70, "epoch": 0.5},
        {"step": 2, "loss": 0.60 - accuracy / 10, "epoch": 1.0},
        {"step": 2, "eval_loss": 0.65 - accuracy / 10, "epoch": 1.0},
    ]
    ws.update_run(run, status="done", metrics=metrics, history=history, model_dir=model_dir)
    return run


def test_train_page_launches_a_lora_run_with_its_settings(ws, launched):
    at = app("app_pages/train.py")
    at.selectbox(key="tr_technique").select("lora").run()
    at.number_input(key="tr_lora_r").set_value(4).run()
    at.number_input(key="tr_gradient_accumulation_steps").set_value(2).run()
    assert any("1 run" in m.value for m in at.markdown)  # the plan is shown before launching
    at.button(key="start_training").click().run()
    assert not at.exception, at.exception
    kind, params = launched[-1]
    config = params["config"]
    assert kind == "train"
    assert (config["technique"], config["lora_r"], config["gradient_accumulation_steps"]) == (
        "lora",
        4,
        2,
    )
    assert config["report_to"] == "none"


def frame_with(at: AppTest, column: str):
    """The first dataframe shown with ``column`` (AppTest does not expose dataframe keys)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _keys(at: AppTest) -> set[str]:
    return {w.key for w in at.number_input}


def test_lora_fields_show_only_for_lora(ws):
    at = app("app_pages/train.py")
    assert "tr_lora_r" not in _keys(at)
    at.selectbox(key="tr_technique").select("head").run()
    assert "tr_lora_r" not in _keys(at)
    at.selectbox(key="tr_technique").select("lora").run()
    assert {"tr_lora_r", "tr_lora_alpha", "tr_lora_dropout"} <= _keys(at)


def test_train_page_launches_a_data_size_experiment_with_three_seeds(ws, launched):
    at = app("app_pages/train.py")
    at.segmented_control(key="tr_mode").set_value("data_size").run()
    at.multiselect(key="tr_fractions").set_value([0.25, 0.5, 1.0]).run()
    assert at.number_input(key="tr_seeds").value == 3
    assert any("9 runs" in m.value and "roughly" in m.value for m in at.markdown)
    at.button(key="start_training").click().run()
    kind, params = launched[-1]
    assert kind == "experiment" and params["experiment"] == "data_size"
    assert params["options"] == {"fractions": [0.25, 0.5, 1.0], "seeds": [0, 1, 2]}


def test_a_bad_value_names_the_field_and_launches_nothing(ws, launched, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed (an optional extra)
    at = app("app_pages/train.py")
    at.number_input(key="tr_validation_fraction").set_value(0.9).run()
    # The page's words first, the setting's own name in brackets.
    said = [e.value.replace("\\", "") for e in at.error]  # shown as plain text: escaped
    assert any(e.startswith("Validation share of train (validation_fraction) must") for e in said)
    assert at.number_input(key="tr_validation_fraction").label == "Validation share of train"
    assert at.button(key="start_training").disabled
    at.number_input(key="tr_validation_fraction").set_value(0.1).run()
    at.toggle(key="tr_track").set_value(True).run()
    assert any("pip install mlflow" in e.value for e in at.error)
    assert at.button(key="start_training").disabled
    assert launched == []


def test_a_finished_run_shows_test_and_verified_scores_and_before_after(ws):
    job = finished_job(ws, "train")
    add_run(ws, job, accuracy=0.5, verified=0.75)
    at = app("app_pages/train.py")
    assert "n = 6" in " ".join(m.value for m in at.markdown)
    assert "n = 4" in " ".join(m.value for m in at.markdown)
    accuracy = [m.value for m in at.metric if m.label == "Accuracy"]
    assert accuracy == ["0.500", "0.750"]  # test split, verified subset
    table = frame_with(at, "fine-tuned")
    assert table.loc[0, "base model"] == "negative (0.52)"
    assert table.loc[0, "fine-tuned"] == "positive (0.91)"
    # The sample's own score sits beside the run's, so a lucky sample reads as one.
    said = " ".join(m.value for m in at.markdown)
    assert "base model 0 of 1 correct, fine-tuned 1 of 1 (100%; on all 6 test rows: 50%)" in said
    assert len(at.get("plotly_chart")) == 2  # confusion matrix and loss curves
    assert not at.warning


def test_a_run_whose_tracker_failed_shows_the_warning(ws):
    job = finished_job(ws, "train")
    failed = (
        "MLflow tracking failed at the start (MlflowException: no); the run went on without it."
    )
    add_run(ws, job, accuracy=0.5, verified=0.75, data={"warnings": [failed]})
    at = app("app_pages/train.py")
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == [plain(failed)]  # shown literally
    assert [m.value for m in at.metric if m.label == "Accuracy"] == ["0.500", "0.750"]


def test_charts_page_draws_error_bars_over_three_seeds(ws, launched):
    job = finished_job(ws, "experiment")
    for seed, shift in enumerate((0.0, 0.02, 0.04)):
        for fraction, rows in ((0.5, 7), (1.0, 14)):
            data = {
                "experiment": "data_size",
                "series": "data size",
                "x": fraction,
                "seed": seed,
                "train_rows": rows,
            }
            add_run(ws, job, accuracy=0.6 + fraction / 5 + shift, verified=0.7, data=data)
    at = app("app_pages/charts.py")
    assert not at.exception, at.exception
    chart = at.get("plotly_chart")[0]
    import json

    figure = json.loads(chart.proto.spec)
    test, verified = figure["data"][:2]
    assert test["name"] == "full test split" and verified["name"] == "verified subset"
    assert test["error_y"]["array"] == pytest.approx([0.02, 0.02])  # std over 3 seeds
    assert test["y"] == pytest.approx([0.72, 0.82])
    assert [c[0] for c in test["customdata"]] == [3, 3]  # n runs in the hover
    at.button(key="run_data_size").click().run()
    assert launched[-1][1]["experiment"] == "data_size"


def test_run_history_compares_two_runs(ws):
    job = finished_job(ws, "train")
    first = add_run(ws, job, accuracy=0.5, verified=None, technique="head", learning_rate=2e-3)
    second = add_run(ws, job, accuracy=0.75, verified=None, technique="lora")
    at = app("app_pages/history.py")
    assert not at.exception, at.exception
    assert at.multiselect(key="compare_runs").value == [first, second]
    metrics = frame_with(at, "metric")
    delta = metrics.set_index("metric")[f"Δ run {second} − run {first}"]
    assert delta["Accuracy · test"] == pytest.approx(0.25)
    settings = frame_with(at, "setting").set_index("setting")
    assert settings.loc["Technique", "differs"] and settings.loc["Learning rate", "differs"]
    assert not settings.loc["Epochs", "differs"]
    assert "Accumulate gradients over (batches) (gradient_accumulation_steps)" in settings.index
    assert at.get("plotly_chart")  # overlaid loss curves


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real classifier: 24 rows, 1 epoch, max_length 32 (a few seconds on a CPU)."""
    from training.finetune import fine_tune

    out = tmp_path_factory.mktemp("tiny")
    result = fine_tune(
        POSITIVE + NEGATIVE,
        np.array([1] * len(POSITIVE) + [0] * len(NEGATIVE)),
        label_names=LABELS,
        config=TrainingConfig(
            epochs=1, batch_size=8, max_length=32, max_train_samples=None, precision="fp32"
        ),
        output_dir=out,
    )
    return result.model_dir


@pytest.mark.slow
def test_try_it_predicts_a_label_with_probabilities(ws, tiny_model):
    job = finished_job(ws, "train")
    add_run(ws, job, accuracy=0.9, verified=None, model_dir=tiny_model)
    at = app("app_pages/train.py")
    at.text_area(key="try_text").input("I love this, what a wonderful day").run()
    assert not at.exception, at.exception
    [label] = [m for m in at.metric if m.label == "Predicted label"]
    assert label.value in LABELS
    probs = frame_with(at, "probability")
    assert list(probs["label"]) == LABELS
    assert probs["probability"].sum() == pytest.approx(1.0, abs=1e-4)
