"""The CLI: same functions as the UI, clear errors, non-zero exits on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import NEGATIVE, POSITIVE

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def write_reviews(path: Path, flip: tuple[int, ...] = ()) -> pd.DataFrame:
    texts = POSITIVE + NEGATIVE
    labels = ["pos"] * len(POSITIVE) + ["neg"] * len(NEGATIVE)
    for i in flip:
        labels[i] = "neg" if labels[i] == "pos" else "pos"
    frame = pd.DataFrame({"review": texts, "stars": labels})
    frame.to_json(path, orient="records", lines=True)
    return frame


def test_analyze_writes_rows_in_input_order(tmp_path):
    data = write_reviews(tmp_path / "reviews.jsonl", flip=(2, 15))
    out = tmp_path / "scores.csv"
    proc = cli(
        "analyze",
        str(tmp_path / "reviews.jsonl"),
        "--text-column",
        "review",
        "--label-column",
        "stars",
        "--out",
        str(out),
        "--folds",
        "3",
    )
    assert proc.returncode == 0, proc.stderr
    assert "analyze" in proc.stderr  # progress goes to stderr
    scores = pd.read_csv(out, encoding="utf-8-sig")
    assert scores["text"].tolist() == data["review"].tolist()
    for col in ("analyzed_label", "predicted_label", "label_quality", "is_label_issue"):
        assert col in scores.columns
    # The curation tests check ranking quality on a larger fixture; here, on 24 rows, the
    # single worst-scored row is one of the two the test flipped.
    assert scores["label_quality"].idxmin() in {2, 15}


def test_train_writes_metrics_and_model(tmp_path):
    write_reviews(tmp_path / "train.jsonl")
    write_reviews(tmp_path / "eval.jsonl")
    out = tmp_path / "run"
    proc = cli(
        "train",
        str(tmp_path / "train.jsonl"),
        "--text-column",
        "review",
        "--label-column",
        "stars",
        "--eval",
        str(tmp_path / "eval.jsonl"),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-length",
        "32",
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix"} <= set(metrics)
    assert (out / "model" / "config.json").exists()


def test_bad_arguments_exit_non_zero_with_a_message(tmp_path):
    write_reviews(tmp_path / "r.jsonl")
    proc = cli(
        "analyze",
        str(tmp_path / "r.jsonl"),
        "--text-column",
        "body",
        "--label-column",
        "stars",
        "--out",
        str(tmp_path / "o.csv"),
    )
    assert proc.returncode == 2 and "body" in proc.stderr and "review" in proc.stderr
    proc = cli(
        "train",
        str(tmp_path / "r.jsonl"),
        "--text-column",
        "review",
        "--label-column",
        "stars",
        "--out",
        str(tmp_path / "x"),
        "--learning-rate",
        "-1",
    )
    assert proc.returncode == 2 and "learning_rate" in proc.stderr
    proc = cli(
        "analyze",
        str(tmp_path / "missing.csv"),
        "--text-column",
        "a",
        "--label-column",
        "b",
        "--out",
        str(tmp_path / "o.csv"),
    )
    assert proc.returncode == 2 and "missing.csv" in proc.stderr
    proc = cli("export", str(tmp_path / "nowhere"), "--format", "csv", "--out", "x.csv")
    assert proc.returncode == 2 and "No workspace" in proc.stderr


def test_export_from_a_workspace(tmp_path, workspace):
    workspace.relabel(0, "negative", reviewer="ana")
    out = tmp_path / "curated.parquet"
    proc = cli("export", str(workspace.folder), "--format", "parquet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(out)
    assert frame.loc[0, "label"] == "negative" and frame.loc[0, "changed"]


# --------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny classifier (24 rows, 1 epoch, max_length 32) saved as `cli.py train` saves it."""
    import numpy as np

    from training.config import TrainingConfig
    from training.finetune import fine_tune

    run = tmp_path_factory.mktemp("run")
    fine_tune(
        POSITIVE + NEGATIVE,
        np.array([1] * len(POSITIVE) + [0] * len(NEGATIVE)),
        label_names=["neg", "pos"],
        config=TrainingConfig(epochs=1, batch_size=8, max_length=32, max_train_samples=None),
        output_dir=run,
    )
    return run


def test_predict_texts_prints_a_table(trained_run, capsys):
    import cli

    code = cli.main(
        ["predict", str(trained_run), "--text", "I love it", "--text", "Awful,\nterrible"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["label", "probability", "text"]
    assert [r.split()[0] in {"neg", "pos"} for r in rows] == [True, True]
    assert rows[0].endswith("I love it") and rows[1].endswith("Awful, terrible")
    assert "max length 32" in err  # the length the model was trained with


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_predict_data_keeps_input_columns_and_adds_probabilities(trained_run, tmp_path, suffix):
    import cli

    data = write_reviews(tmp_path / "r.jsonl")
    out = tmp_path / f"pred.{suffix}"
    model_dir = trained_run / "model"  # the run folder or its model/ folder both work
    code = cli.main(
        ["predict", str(model_dir), str(tmp_path / "r.jsonl"), "--text-column", "review"]
        + ["--out", str(out), "--batch-size", "5"]
    )
    assert code == 0
    pred = pd.read_csv(out, encoding="utf-8-sig") if suffix == "csv" else pd.read_parquet(out)
    assert pred.columns.tolist() == [
        "review",
        "stars",
        "prob_neg",
        "prob_pos",
        "predicted_label",
        "predicted_prob",
    ]
    assert pred["review"].tolist() == data["review"].tolist()
    total = pred["prob_neg"] + pred["prob_pos"]
    assert ((total - 1).abs() < 1e-5).all()
    assert (pred["predicted_prob"] == pred[["prob_neg", "prob_pos"]].max(axis=1)).all()
    assert set(pred["predicted_label"]) <= {"neg", "pos"}


def test_predict_errors_name_the_fix(trained_run, tmp_path, capsys):
    import cli
    from runtime.models import default_model_dir

    write_reviews(tmp_path / "r.jsonl")
    assert cli.main(["predict", str(tmp_path / "nowhere"), "--text", "x"]) == 2
    assert "cli.py train" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", str(tmp_path / "empty"), "--text", "x"]) == 2
    assert "config.json" in capsys.readouterr().err
    # The packaged encoder has no classification head: refuse rather than predict at random.
    assert cli.main(["predict", str(default_model_dir()), "--text", "x"]) == 2
    assert "classification head" in capsys.readouterr().err
    code = cli.main(["predict", str(trained_run), str(tmp_path / "r.jsonl"), "--text-column", "t"])
    err = capsys.readouterr().err
    assert code == 2 and "'t'" in err and "review, stars" in err
    assert cli.main(["predict", str(trained_run)]) == 2
    assert "--text" in capsys.readouterr().err


def test_analyze_takes_a_method_and_names_the_valid_ones(tmp_path):
    write_reviews(tmp_path / "reviews.jsonl", flip=(2, 15))
    args = ["analyze", str(tmp_path / "reviews.jsonl"), "--text-column", "review"]
    args += ["--label-column", "stars", "--folds", "3"]
    out = tmp_path / "scores.csv"
    proc = cli(*args, "--method", "embedding", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "3-fold embedding" in proc.stderr
    scores = pd.read_csv(out, encoding="utf-8-sig")
    assert {"is_outlier", "dup_group"} <= set(scores.columns)
    bad = cli(*args, "--method", "magic", "--out", str(out))
    assert bad.returncode == 2 and "valid: ensemble" in bad.stderr


def test_import_analyze_review_export_runs_headless(tmp_path):
    """The whole loop without a browser: ids as typed, the reviewer's change in the export."""
    texts = POSITIVE + NEGATIVE
    labels = ["pos"] * len(POSITIVE) + ["neg"] * len(NEGATIVE)
    labels[2] = "neg"  # a planted flip
    ids = [f"{i}.50" if i % 2 else f"+{i}" for i in range(len(texts))]  # numbers to the eye
    data = tmp_path / "reviews.csv"
    pd.DataFrame({"id": ids, "review": texts, "stars": labels, "note": "@keep"}).to_csv(
        data, index=False
    )
    home = tmp_path / "home"
    proc = cli(
        "import", str(data), "--name", "Reviews ✓", "--text-column", "review",
        "--label-column", "stars", "--id-column", "id", "--home", str(home),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    folder = Path(proc.stdout.strip())
    assert folder.parent == home and "24 rows" in proc.stderr

    proc = cli("analyze", str(folder), "--folds", "3")
    assert proc.returncode == 0, proc.stderr
    assert "likely label errors" in proc.stderr

    proc = cli("review", str(folder), "--all", "--limit", "3")
    assert proc.returncode == 0 and proc.stdout.count("\n") == 4, proc.stdout  # header + 3
    proc = cli("review", str(folder), "--id", "+2", "--label", "pos", "--reviewer", "ana")
    assert proc.returncode == 0, proc.stderr
    proc = cli("review", str(folder), "--id", "3.50", "--exclude", "--reviewer", "ana")
    assert proc.returncode == 0, proc.stderr
    proc = cli("review", str(folder), "--id", "2", "--keep", "--reviewer", "ana")
    assert proc.returncode == 2 and "No sample with id '2'" in proc.stderr  # typed, not parsed

    out = tmp_path / "curated.csv"
    proc = cli("export", str(folder), "--format", "csv", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert back["id"].tolist() == ids and back["text"].tolist() == texts
    assert back.loc[2, "label"] == "pos" and back.loc[2, "given_label"] == "neg"
    assert back.loc[3, "excluded"] == "True" and back.loc[3, "label"] == "pos"
    assert set(back["note"]) == {"@keep"}  # no formula prefix in the exact CSV


def test_import_refuses_bad_input_with_a_clear_message(tmp_path):
    data = tmp_path / "notes.txt"
    data.write_text("one\ntwo\n")
    proc = cli("import", str(data), "--text-column", "t", "--label-column", "y")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Save or rename the file" in proc.stderr
