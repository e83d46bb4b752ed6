"""AppTest for every page: the UI reads the store and calls the core functions.

Workspaces live in a tmp SECOND_LOOK_HOME; analyses and runs are written straight into the
store so pages render without training anything, and ``jobs.launch`` is replaced by a
recorder so no background process starts.
"""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from data.store import Workspace
from tests.conftest import app


def test_data_page_opens_the_demo_in_one_click(home, launched):
    at = app()
    assert "Open the demo" in at.button(key="open_demo").label
    at.button(key="open_demo").click().run()
    assert not at.exception, at.exception
    [folder] = [p for p in home.iterdir()]
    ws = Workspace(folder)
    assert ws.counts()["n"] == 38158
    assert ws.label_names == ["negative", "neutral", "positive"]
    assert launched and launched[0][0] == "analyze"
    # The non-UTF-8 bytes of the corpus are reported, with the count of affected rows: an info
    # line pointing to the text repair proposals, not a warning.
    assert any("4,934" in i.value and "Text repair" in i.value for i in at.info)
    assert not any("UTF" in w.value for w in at.warning)
    assert ws.counts()["encoding_fixed"] == 4934  # the import still records which rows
    assert any("Rows" == m.label for m in at.metric)
    # The first screen says what the demo is and what to do next.
    said = " ".join(m.value for m in at.markdown)
    assert "This is the **demo**: 38,158 tweets" in said
    assert "The analysis is running" in said and "**Train**" in said


def test_data_page_imports_a_csv_from_a_path(home, launched, data_dir):
    path = data_dir / "tickets.csv"
    pd.DataFrame({"body": [f"ticket {i}" for i in range(20)], "queue": ["a", "b"] * 10}).to_csv(
        path, index=False
    )
    at = app()
    at.text_input(key="import_path").input("tickets.csv").run()
    at.selectbox(key="map_text").select("body")
    at.selectbox(key="map_label").select("queue")
    at.text_input(key="ws_name").input("tickets")
    at.button(key="do_import").click().run()
    assert not at.exception, at.exception
    ws = Workspace(home / "tickets")
    assert ws.counts()["n"] == 20 and ws.label_names == ["a", "b"]


def test_data_page_shows_a_clear_error_for_bad_input(home, data_dir):
    path = data_dir / "empty.csv"
    path.write_text("")
    at = app()
    at.text_input(key="import_path").input(str(path)).run()
    assert at.error and "empty" in at.error[0].value.lower()


def test_data_page_has_no_path_box_without_a_data_folder(home, monkeypatch):
    monkeypatch.delenv("SECOND_LOOK_DATA_DIR", raising=False)
    at = app()
    assert not [t for t in at.text_input if t.key == "import_path"]


def test_path_box_reads_only_inside_the_data_folder(home, data_dir, tmp_path):
    secret = tmp_path / "service-account.json"
    secret.write_text('[{"text": "private_key", "label": "-----BEGIN PRIVATE KEY-----"}]')
    (data_dir / "link.json").symlink_to(secret)
    (data_dir / "ok.csv").write_text("text,label\na,x\nb,y\n")
    at = app()
    messages = {}
    for attempt in ["../service-account.json", str(secret), "link.json", "no-such-file.json"]:
        at.text_input(key="import_path").input(attempt).run()
        assert not at.exception, at.exception
        assert len(at.error) == 1 and not at.dataframe, attempt
        # The same words as for a missing file, so the box tells nothing about elsewhere.
        messages[attempt] = re.sub(r"folder '.*' in the", "folder PATH in the", at.error[0].value)
        assert "private" not in at.error[0].value
    assert len(set(messages.values())) == 1, messages
    at.text_input(key="import_path").input("ok.csv").run()
    assert not at.error and at.dataframe


def test_flags_page_summarises_the_analysis(analysed, launched):
    at = app("app_pages/issues.py")
    labels = [m.label for m in at.metric]
    assert "Flagged as likely label errors" in labels
    flagged = next(m for m in at.metric if m.label.startswith("Flagged"))
    assert flagged.value == "5"
    at.button(key="run_analysis").click().run()
    assert launched[-1][0] == "analyze"


def test_review_relabel_and_undo_through_the_card(analysed):
    at = app("app_pages/review.py")
    # Without a reviewer name the actions are disabled.
    assert at.button(key="rv_keep").disabled
    at.sidebar.text_input(key="reviewer").input("ana").run()
    first = analysed.review_queue(flagged=True, limit=1)[0].iloc[0]
    assert first["label_quality"] == pytest.approx(0.01)
    # The card's words are the store's, on one line (no big metric numbers).
    line = next(m.value for m in at.markdown if m.value.startswith("Given label"))
    assert f"Given label **{first['given_label']}**" in line
    assert f"current label **{first['label']}**" in line
    at.button(key="rv_accept").click().run()
    assert not at.exception, at.exception
    state = analysed.sample(int(first["sample_id"]))
    assert state["label"] == first["predicted_label"] and state["reviewer"] == "ana"
    at.button(key="rv_undo").click().run()
    assert analysed.sample(int(first["sample_id"]))["label"] == first["label"]
    events = analysed.events()
    assert list(events["action"]) == ["undo", "accept"]


def test_the_flag_is_explained_against_the_label_the_analysis_scored(analysed):
    at = app("app_pages/review.py")
    at.sidebar.text_input(key="reviewer").input("ana").run()
    first = analysed.review_queue(flagged=True, limit=1)[0].iloc[0]

    def why() -> str:
        return next(m.value for m in at.markdown if m.value.startswith("**Why it is here:**"))

    assert "when analysed" not in why()
    assert f"the model gives '{first['label']}' only" in why()
    at.button(key="rv_accept").click().run()  # relabelled to the prediction, still flagged
    at.button(key="rv_prev").click().run()
    assert not at.exception, at.exception
    text = why()
    assert (
        f"when analysed the label was '{first['label']}' (now '{first['predicted_label']}')" in text
    ), text
    assert "flags that label as a likely error" in text


def test_review_exclude_and_text_is_plain(analysed):
    at = app("app_pages/review.py")
    at.sidebar.text_input(key="reviewer").input("bo").run()
    shown = at.text[0].value
    at.button(key="rv_exclude").click().run()
    excluded = analysed.samples().query("excluded")
    assert excluded["text"].tolist() == [shown]


def test_train_page_launches_a_background_job(analysed, launched):
    at = app("app_pages/train.py")
    at.button(key="start_training").click().run()
    assert not at.exception, at.exception
    kind, params = launched[-1]
    assert kind == "train" and params["config"]["max_train_samples"] == 2000


def test_train_page_rejects_a_bad_hyperparameter(analysed, launched):
    at = app("app_pages/train.py")
    at.number_input(key="tr_learning_rate").set_value(-1.0).run()
    assert any("learning_rate" in e.value for e in at.error)
    assert at.button(key="start_training").disabled


def fake_runs(ws: Workspace) -> None:
    job = ws.create_job("experiment", {})
    metrics = {
        "accuracy": 0.8,
        "precision": 0.8,
        "recall": 0.8,
        "f1": 0.8,
        "roc_auc": 0.9,
        "confusion_matrix": [[5, 1], [1, 5]],
        "labels": ["negative", "positive"],
        "n": 12,
    }
    for frac, rows in ((0.5, 9), (1.0, 18)):
        run = ws.create_run(
            name=f"size {frac}",
            config={},
            job_id=job,
            data={
                "experiment": "data_size",
                "x": frac,
                "train_rows": rows,
                "label_source": "curated",
            },
        )
        ws.update_run(run, status="done", metrics=metrics, history=[{"step": 1, "loss": 0.6}])
    for source in ("original", "curated"):
        run = ws.create_run(
            name=source,
            config={},
            job_id=job,
            data={
                "experiment": "label_quality",
                "x": source,
                "train_rows": 18,
                "label_source": source,
            },
        )
        ws.update_run(run, status="done", metrics=metrics)
    ws.update_job(job, status="done")


def test_charts_page_draws_both_curves(analysed, launched):
    fake_runs(analysed)
    at = app("app_pages/charts.py")
    assert len(at.get("plotly_chart")) == 2
    at.button(key="run_data_size").click().run()
    assert launched[-1][1]["experiment"] == "data_size"


def test_train_page_lists_runs_with_metrics(analysed):
    fake_runs(analysed)
    at = app("app_pages/train.py")
    assert any(m.label == "Accuracy" and m.value == "0.800" for m in at.metric)


def test_export_page_download_is_the_curated_dataset(analysed, downloads):
    analysed.relabel(0, "negative", reviewer="ana")
    analysed.set_excluded(1, reviewer="ana")
    at = app("app_pages/export.py")
    assert not at.exception
    button = next(b for b in at.get("download_button") if b.proto.id.endswith("download_dataset"))
    back = pd.read_csv(io.BytesIO(downloads(button)), dtype=str, keep_default_na=False)
    rows = analysed.samples()
    assert back["id"].tolist() == rows["ext_id"].tolist()
    assert back["text"].tolist() == rows["text"].tolist()
    assert back.loc[0, "label"] == "negative" and back.loc[0, "given_label"] != "negative"
    assert back.loc[1, "excluded"] == "True" and back["excluded"].tolist().count("True") == 1
    # The spreadsheet variant is chosen explicitly and says that it changes cells.
    at.radio(key="export_format").set_value("csv-spreadsheet").run()
    assert any("changes those cells" in w.value for w in at.warning)
    button = next(b for b in at.get("download_button") if b.proto.id.endswith("download_dataset"))
    assert downloads(button).startswith(b"\xef\xbb\xbf")


def test_review_bulk_action_previews_then_applies_as_one_undo(analysed):
    at = app("app_pages/review.py")
    at.sidebar.text_input(key="reviewer").input("ana").run()
    at.session_state["rv_bulk"] = True  # open the panel: a closed one runs no queries
    at.run()
    at.number_input(key="bulk_min_prob").set_value(0.5).run()
    assert any("5 rows" in m.value for m in at.markdown)  # the preview states the count
    assert analysed.label_version() == 0  # nothing happens before the click
    at.selectbox(key="bulk_action").select("accept the model's suggestion").run()
    at.button(key="bulk_apply").click().run()
    assert not at.exception, at.exception
    assert analysed.counts()["changed"] == 5
    at.button(key="rv_undo").click().run()
    assert analysed.counts()["changed"] == 0 and analysed.counts()["reviewed"] == 0


def test_review_orders_and_my_queue(analysed):
    at = app("app_pages/review.py")
    at.sidebar.text_input(key="reviewer").input("bo").run()
    at.selectbox(key="rv_flagged").select("any").run()
    at.selectbox(key="rv_order").select("least confident first").run()
    assert not at.exception, at.exception
    at.selectbox(key="rv_queue").select("my queue").run()
    first = at.text[0].value
    at.button(key="rv_keep").click().run()
    assert at.text[0].value != first  # the reviewed row left bo's queue
    assert analysed.counts()["reviewed"] == 1


def test_data_page_imports_under_long_non_latin_and_punctuation_names(home, launched, data_dir):
    (data_dir / "t.csv").write_text("text,label\ngood,a\nbad,b\nfine,a\nawful,b\n")
    at = app()
    at.text_input(key="import_path").input("t.csv").run()
    names = ["x" * 300, "Отзывы клиентов", "!!!", "???"]
    for name in names:
        at.text_input(key="ws_name").input(name)
        at.button(key="do_import").click().run()
        assert not at.exception and not at.error, (name, at.exception, at.error)
    folders = sorted(p for p in home.iterdir() if (p / "store.sqlite").exists())
    assert len(folders) == 4  # one each: no collision, no "file name too long"
    assert sorted(Workspace(f).name for f in folders) == sorted(names)
