"""Domain-adaptive pretraining: masked-LM training of the encoder on a workspace's texts.

A real (tiny) adaptation of the packaged MiniLM, the ``adapt`` job through ``jobs.run_job``,
cancelling, the config's checks, labels never playing a part, the CLI, and the pages (Train's
section, adapted encoders as model choices, the Charts comparison) with jobs recorded only.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import jobs
from data.store import Workspace
from runtime.progress import Cancelled
from tests.conftest import NEGATIVE, POSITIVE, app, make_prepared
from training.adapt import (
    ADAPTATION_FILE,
    AdaptConfig,
    adapt_encoder,
    adapted_encoders,
    models_dir,
    workspace_texts,
)
from training.reporting import adaptation_pairs

TEXTS = POSITIVE + NEGATIVE
# A handful of steps on 24 texts: seconds on the packaged model.
TINY = {"max_steps": 2, "max_length": 32, "batch_size": 8, "precision": "fp32", "device": "cpu"}


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """One real adaptation of the packaged MiniLM, shared by the tests that read its folder."""
    out = tmp_path_factory.mktemp("adapt") / "ws" / "models" / "adapted-test"
    events = []
    result = adapt_encoder(
        TEXTS, output_dir=out, config=AdaptConfig(**TINY), progress=events.append
    )
    return SimpleNamespace(result=result, out=out, events=events)


def test_the_adapted_folder_loads_for_embedding_and_for_classification(adapted):
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    from runtime.models import resolve_model

    out = adapted.out
    assert adapted.result.model_dir == str(out)
    encoder = AutoModel.from_pretrained(out)
    classifier = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2)
    base = AutoModel.from_pretrained(resolve_model(""))
    assert type(encoder).__name__ == "BertModel" and classifier.num_labels == 2
    # The encoder moved; BERT's pooler (not trained by masked-LM) is the base model's own.
    moved = encoder.encoder.layer[-1].output.dense.weight
    assert not torch.equal(moved, base.encoder.layer[-1].output.dense.weight)
    assert torch.equal(encoder.pooler.dense.weight, base.pooler.dense.weight)
    assert torch.equal(classifier.bert.pooler.dense.weight, base.pooler.dense.weight)
    # The training path loads it as it loads any plain encoder (a new classifier head).
    from training.techniques import load_classifier

    _, tokenizer, new_head = load_classifier(str(out), ["negative", "positive"])
    assert new_head and tokenizer.mask_token == "[MASK]"


def test_a_tiny_adaptation_lowers_the_masked_token_loss(tmp_path):
    # The same held-out texts and masks before and after: a few steps at a high rate are
    # enough for the new head and the encoder to predict masked words better than at start.
    config = AdaptConfig(**{**TINY, "max_steps": 6, "learning_rate": 1e-3})
    result = adapt_encoder(TEXTS * 2, output_dir=tmp_path / "adapted", config=config)
    info = json.loads((tmp_path / "adapted" / ADAPTATION_FILE).read_text())
    assert info["loss_after"] < info["loss_before"] - 1.0, info
    assert result.model_dir == str(tmp_path / "adapted")


def test_adaptation_json_records_the_run(adapted):
    info = json.loads((adapted.out / ADAPTATION_FILE).read_text())
    assert info["base_model"] == "" and info["new_head"] is True
    # 24 texts: 1 held out (5%, at least one), 23 trained on; max_steps caps the epoch's 3.
    assert (info["rows"], info["heldout_rows"], info["steps"]) == (23, 1, 2)
    assert info["loss_before"] > 0 and info["loss_after"] > 0 and info["seconds"] > 0
    assert info["loss_after"] != info["loss_before"]  # the same masks: the model changed
    assert info["config"]["max_length"] == 32
    stages = [e["stage"] for e in adapted.events]
    assert stages[0] == "loading the model" and stages[-1] == "saving"
    steps = [e for e in adapted.events if e["stage"].startswith("adapting")]
    assert steps and steps[-1]["step"] == steps[-1]["total_steps"] == 2
    assert steps[-1]["done"] == steps[-1]["total"] == 2 * 8 and steps[-1]["unit"] == "texts"
    # Nothing else beside it: no partial folder, no trainer checkpoints.
    assert sorted(p.name for p in adapted.out.parent.iterdir()) == ["adapted-test"]
    assert not (adapted.out / "trainer").exists()


def test_adapted_encoders_lists_finished_folders_only(adapted, tmp_path):
    workspace_folder = adapted.out.parent.parent
    [entry] = adapted_encoders(workspace_folder)
    assert entry["path"] == str(adapted.out) and entry["name"] == "adapted-test"
    half = models_dir(tmp_path) / "adapted-half"  # weights written, adaptation.json not yet
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")
    (models_dir(tmp_path) / ".adapted-x.partial").mkdir()
    assert adapted_encoders(tmp_path) == [] and adapted_encoders(tmp_path / "none") == []


def test_stop_raises_cancelled_and_leaves_no_folder(tmp_path):
    out = models_dir(tmp_path) / "adapted-stopped"
    state = {"training": False}

    def progress(info):
        state["training"] |= info["stage"].startswith("adapting")

    with pytest.raises(Cancelled):
        adapt_encoder(
            TEXTS,
            output_dir=out,
            config=AdaptConfig(**{**TINY, "max_steps": 50}),
            progress=progress,
            should_stop=lambda: state["training"],
        )
    assert state["training"]
    assert not out.exists() and list(models_dir(tmp_path).iterdir()) == []
    assert adapted_encoders(tmp_path) == []


def test_the_masked_lm_head_is_new_tied_and_scored_on_masked_pieces_only():
    import torch

    from runtime.models import resolve_model
    from training.adapt import _collator, _load_masked_lm, _masked_positions_only

    mlm, tokenizer, new_head = _load_masked_lm(resolve_model(""))
    assert new_head  # the packaged encoder has no masked-LM head
    decoder, embeddings = mlm.get_output_embeddings(), mlm.get_input_embeddings()
    assert decoder.weight.data_ptr() == embeddings.weight.data_ptr()  # tied, as in BERT
    rows = [{"input_ids": ids} for ids in tokenizer(TEXTS[:8])["input_ids"]]
    batch = _collator(tokenizer, AdaptConfig(mlm_probability=0.3), seed=0)(rows)
    mlm.eval()
    with torch.no_grad():
        full = float(mlm(**batch).loss)
        masked_only = float(_masked_positions_only(mlm)(**batch).loss)
    assert masked_only == pytest.approx(full, rel=1e-4)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("max_steps", 2.5),
        ("learning_rate", -1e-5),
        ("learning_rate", 3),
        ("batch_size", 0),
        ("max_length", 4),
        ("mlm_probability", 0),
        ("mlm_probability", 0.9),
        ("seed", -1),
        ("device", "tpu"),
        ("precision", "int8"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AdaptConfig(**{field: value})


def test_config_from_dict_rejects_unknown_keys_and_inputs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="mlm_probabilty"):
        AdaptConfig.from_dict({"mlm_probabilty": 0.2})
    assert AdaptConfig.from_dict({"max_steps": "", "epochs": 2}).max_steps is None
    with pytest.raises(ValueError, match="AdaptConfig"):
        adapt_encoder(TEXTS, output_dir=tmp_path / "x", config={"epochs": 1})
    with pytest.raises(ValueError, match="two non-empty texts"):
        adapt_encoder(["one", "  "], output_dir=tmp_path / "x", config=AdaptConfig())
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        adapt_encoder(TEXTS, output_dir=tmp_path / "taken", config=AdaptConfig())


def test_the_adapt_job_runs_through_run_job_and_records_its_result(workspace):
    job_id = workspace.create_job("adapt", {"config": TINY})
    jobs.run_job(workspace, job_id)
    job = workspace.job(job_id)
    assert job.status == "done", job.error
    [entry] = adapted_encoders(workspace.folder)
    assert job.result["model_dir"] == entry["path"]
    assert Path(entry["path"]).parent == models_dir(workspace.folder).resolve()
    # All 24 rows (train and test splits): 23 trained on, one held out.
    assert (job.result["rows"], job.result["heldout_rows"], job.result["steps"]) == (23, 1, 2)
    assert "history" not in job.result and job.progress["stage"] == "saving"
    assert jobs.job_kind("adapt").trains is False  # one process, whatever the GPUs


def test_a_cancelled_adapt_job_is_cancelled_and_keeps_nothing(workspace):
    job_id = workspace.create_job("adapt", {"config": {**TINY, "max_steps": 50}})
    workspace.request_cancel(job_id)
    jobs.run_job(workspace, job_id)
    assert workspace.job(job_id).status == "cancelled"
    assert adapted_encoders(workspace.folder) == []
    folder = models_dir(workspace.folder)
    assert not folder.exists() or list(folder.iterdir()) == []


class NoLabels:
    """A workspace whose rows come without any label column: reading one would fail."""

    def __init__(self, ws):
        self.ws, self.folder = ws, ws.folder

    def samples(self, **kwargs):
        rows = self.ws.samples(**kwargs)
        return rows.drop(columns=[c for c in rows.columns if "label" in c])


def test_labels_are_never_read(tmp_path, workspace, monkeypatch):
    splits = ["test" if i % 4 == 0 else "train" for i in range(len(TEXTS))]
    garbage = Workspace.create(
        tmp_path / "garbage",
        make_prepared(TEXTS, [f"junk-{i % 5}" for i in range(len(TEXTS))], splits=splits),
        name="garbage",
    )
    try:
        # Every text of every split, in row order, whatever the labels; none without labels.
        assert workspace_texts(workspace) == TEXTS
        assert workspace_texts(garbage) == TEXTS
        assert workspace_texts(NoLabels(workspace)) == TEXTS
        # Excluded rows are left out (a reviewer took them out of the data).
        workspace.set_excluded(3, True, reviewer="ana")
        assert workspace_texts(workspace) == TEXTS[:3] + TEXTS[4:]
        # The job hands exactly those texts to the adaptation.
        seen = []

        def fake_adapt(texts, **kwargs):
            seen.append(list(texts))
            raise Cancelled()

        monkeypatch.setattr("training.adapt.adapt_encoder", fake_adapt)
        for ws in (workspace, garbage):
            jobs.run_job(ws, ws.create_job("adapt", {"config": TINY}))
        assert seen == [TEXTS[:3] + TEXTS[4:], TEXTS]
    finally:
        garbage.close()


def fake_adapted(folder: Path, name: str = "adapted-1", base: str = "") -> str:
    out = models_dir(folder) / name
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    info = {"base_model": base, "rows": 23, "steps": 2, "loss_before": 11.5, "loss_after": 9.8}
    (out / ADAPTATION_FILE).write_text(json.dumps({**info, "created_at": "2026-01-01"}))
    return str(out.resolve())


def fake_run(run_id, model, accuracy, *, seed=0, eval_hash="e1", label_version=0):
    return SimpleNamespace(
        id=run_id,
        done=True,
        test={"accuracy": accuracy},
        config={"model": model, "seed": seed, "technique": "full"},
        data={
            "seed": seed,
            "eval_ids_hash": eval_hash,
            "train_ids_hash": "t1",
            "eval_rows": 6,
            "label_version": label_version,
        },
    )


def test_adaptation_pairs_match_runs_on_the_same_rows_seed_and_labels(tmp_path):
    path = fake_adapted(tmp_path)
    runs = [
        fake_run(1, "", 0.70),
        fake_run(2, path, 0.75),
        fake_run(3, "", 0.60, seed=1),  # no adapted run with seed 1
        fake_run(4, path, 0.90, eval_hash="other"),  # other test rows
        fake_run(5, path, 0.95, label_version=3),  # labels changed since
    ]
    pairs = adaptation_pairs(runs, tmp_path, "accuracy")
    assert pairs[["base_run", "adapted_run", "seed"]].values.tolist() == [[1, 2, 0]]
    assert pairs["difference"].iloc[0] == pytest.approx(0.05)
    assert adaptation_pairs(runs[:1], tmp_path).empty


def test_cli_adapt_reports_bad_settings_by_name(workspace, capsys):
    import cli

    assert cli.main(["adapt", str(workspace.folder), "--mlm-probability", "0.9"]) == 2
    assert "mlm_probability" in capsys.readouterr().err
    assert cli.main(["adapt", str(workspace.folder / "missing")]) == 2


def test_cli_adapt_runs_in_the_foreground(workspace, capsys):
    import cli

    out = workspace.folder / "models" / "by-cli"
    args = ["--max-steps", "1", "--max-length", "32", "--batch-size", "8", "--precision", "fp32"]
    assert cli.main(["adapt", str(workspace.folder), *args, "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and "adapt: adapting" in captured.err
    info = json.loads((out / ADAPTATION_FILE).read_text())
    assert info["steps"] == 1 and info["loss_after"] != info["loss_before"]  # one step moves it
    assert (out / ADAPTATION_FILE).exists() and adapted_encoders(workspace.folder)[0][
        "path"
    ] == str(out)


# --------------------------------------------------------------------------- pages


@pytest.fixture
def ws(home, sentiment_prepared):
    workspace = Workspace.create(home / "reviews", sentiment_prepared, name="reviews")
    yield workspace
    workspace.close()


def test_train_page_launches_an_adapt_job_and_says_labels_are_not_used(ws, launched):
    at = app("app_pages/train.py")
    assert any("never the labels" in m.value for m in at.markdown)
    assert any("Roughly" in c.value for c in at.caption)
    at.number_input(key="ad_epochs").set_value(0.0).run()
    assert any("epochs" in e.value for e in at.error)
    assert at.button(key="start_adapt").disabled
    at.number_input(key="ad_epochs").set_value(1.0).run()
    at.number_input(key="ad_max_steps").set_value(3).run()
    at.button(key="start_adapt").click().run()
    assert not at.exception, at.exception
    kind, params = launched[-1]
    assert kind == "adapt" and params["config"]["max_steps"] == 3 and params["model"] == ""
    # The queued job now shows its status and a Cancel button instead of the start button.
    assert at.button(key="cancel_adapt")
    # and training waits for it: the two would share the cores.
    assert at.button(key="start_training").disabled
    assert any("adaptation is running" in c.value for c in at.caption)


def test_adapted_encoders_are_model_choices_for_training_and_analysis(ws, launched):
    path = fake_adapted(ws.folder)
    at = app("app_pages/train.py")
    at.selectbox(key="tr_model_adapted").select(path).run()
    at.button(key="start_training").click().run()
    kind, params = launched[-1]
    assert kind == "train" and params["config"]["model"] == path
    at = app("app_pages/issues.py")
    at.selectbox(key="enc_adapted").select(path).run()
    assert not at.exception, at.exception
    # The settings line names the encoder the analysis will use.
    assert any("models/adapted" in c.value for c in at.caption)


def test_charts_compare_adapted_and_base_runs_or_say_how(ws):
    at = app("app_pages/charts.py")
    assert any("Adapt the encoder on the Train page" in c.value for c in at.caption)
    from tests.test_app_training import add_run, finished_job

    path = fake_adapted(ws.folder)
    job = finished_job(ws, "train")
    add_run(ws, job, accuracy=0.70, verified=None)
    base = ws.runs()[-1]
    config = {**base.config, "model": path}
    run = ws.create_run(name="adapted", config=config, data=base.data, job_id=job)
    metrics = base.metrics() | {"test": {**base.test, "accuracy": 0.8}}
    ws.update_run(run, status="done", metrics=metrics)
    at = app("app_pages/charts.py")
    assert not at.exception, at.exception
    assert any("Mean difference (adapted - base): +0.100" in c.value for c in at.caption)
