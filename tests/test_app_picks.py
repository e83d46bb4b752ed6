"""The app picks what a user would pick: the best real model on Export, not the newest run, and
the reviewer name typed last time."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from app_pages.progress import estimate_left, time_left
from app_pages.words import COLUMN_WORDS, blank_empty
from data.preferences import load_preferences, save_preference
from data.records import JobRecord, RunRecord
from data.store import Workspace
from tests.conftest import app
from training.reporting import model_choices


def add_run(ws: Workspace, name: str, accuracy: float | None, *, experiment: str | None) -> int:
    data = {"experiment": experiment, "x": 0.1} if experiment else {"experiment": "single"}
    run = ws.create_run(name=name, config={}, data=data, job_id=None)
    folder = ws.run_dir(run) / "model"
    folder.mkdir(parents=True)
    metrics = {} if accuracy is None else {"accuracy": accuracy, "n": 10}
    ws.update_run(run, status="done", metrics=metrics, model_dir=str(folder))
    return run


def test_export_offers_the_best_full_run_and_keeps_experiment_runs_apart(analysed):
    real = add_run(analysed, "full fine-tune", 0.733, experiment=None)
    weaker = add_run(analysed, "head only", 0.701, experiment=None)
    tiny = add_run(analysed, "seed 0, 10% of train", 0.403, experiment="data_size")
    at = app("app_pages/export.py")
    model = at.selectbox(key="export_run")
    assert model.value == real  # the best full run, although the tiny one is newer
    assert list(model.options) == [
        f"run {real}: full fine-tune (test accuracy 0.733) · best",
        f"run {weaker}: head only (test accuracy 0.701)",
    ]
    at.checkbox(key="export_experiments").check().run()
    assert not at.exception
    labels = list(at.selectbox(key="export_run").options)
    assert len(labels) == 3 and "data size experiment" in labels[2] and str(tiny) in labels[2]
    assert at.selectbox(key="export_run").value == real


def test_model_choices_rank_best_first_and_unmeasured_last(analysed):
    low = add_run(analysed, "low", 0.5, experiment=None)
    high = add_run(analysed, "high", 0.9, experiment=None)
    unmeasured = add_run(analysed, "no metrics", None, experiment=None)
    tied_newer = add_run(analysed, "tied", 0.9, experiment=None)
    sweep = add_run(analysed, "lr 1e-3", 0.95, experiment="learning_rate")
    assert [r.id for r in model_choices(analysed.runs())] == [tied_newer, high, low, unmeasured]
    assert [r.id for r in model_choices(analysed.runs(), experiments=True)][-1] == sweep


def test_the_reviewer_name_survives_a_restart(analysed, home):
    first = app("app_pages/review.py")
    first.sidebar.text_input(key="reviewer").input("ana").run()
    assert not first.exception
    # A new session on a restarted server starts from an empty session state.
    again = app("app_pages/review.py")
    assert again.sidebar.text_input(key="reviewer").value == "ana"
    assert load_preferences(home) == {"reviewer": "ana"}


def test_damaged_preferences_read_as_none_and_unknown_keys_are_refused(home):
    home.mkdir(parents=True)
    (home / "preferences.json").write_text("{not json", encoding="utf-8")
    assert load_preferences(home) == {}
    (home / "preferences.json").write_text('["ana"]', encoding="utf-8")
    assert load_preferences(home) == {}
    save_preference("reviewer", "bo", root=home)
    assert load_preferences(home) == {"reviewer": "bo"}
    with pytest.raises(ValueError, match="valid: reviewer"):
        save_preference("password", "x", root=home)


def test_time_left_before_and_during_a_multi_run_job():
    start = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    at = start.isoformat
    job = JobRecord(
        id=1,
        kind="experiment",
        status="running",
        params={"estimate_seconds": 600.0},
        progress={"run": 1, "runs": 3},
        started_at=at(),
    )
    # Nothing measured yet: the launch estimate minus the time elapsed, said as such.
    said = time_left(job, [], start + timedelta(seconds=60))
    assert said == "about 9 min left (estimated at the start)"
    assert "taking longer than" in time_left(job, [], start + timedelta(seconds=700))
    # Run 2 of 3 measures 30 s left; run 1 took 100 s, so run 3 should too: 130 s in all.
    done = RunRecord(id=1, status="done", created_at=at(), finished_at=at_plus(start, 100))
    running = RunRecord(
        id=2, status="running", created_at=at_plus(start, 100), progress={"eta_seconds": 30.0}
    )
    job.progress = {"run": 2, "runs": 3}
    assert time_left(job, [done, running], start + timedelta(seconds=150)) == (
        "about 2 min 10 s left"
    )


def at_plus(start: datetime, seconds: float) -> str:
    return (start + timedelta(seconds=seconds)).isoformat()


def test_charts_buttons_say_what_an_experiment_costs_before_it_starts(analysed, launched):
    at = app("app_pages/charts.py")
    labels = {b.key: b.label for b in at.button if b.key and b.key.startswith("run_")}
    assert re.fullmatch(
        r"Run the data-size experiment \(12 runs, roughly .+\)", labels["run_data_size"]
    )
    assert re.search(
        r"label-quality experiment \(\d+ runs, roughly .+\)", labels["run_label_quality"]
    )
    at.button(key="run_data_size").click().run()
    [(kind, params)] = launched
    assert kind == "experiment" and params["estimate_seconds"] > 0


def test_every_page_says_what_runs_in_the_background(analysed):
    job = analysed.create_job("analyze", {})
    progress = {"stage": "embedding", "done": 900, "total": 3600, "unit": "texts"}
    analysed.update_job(job, status="running", progress={**progress, "eta_seconds": 90.0})
    for page in ("app_pages/review.py", "app_pages/export.py"):
        at = app(page)
        said = " ".join(c.value for c in at.sidebar.caption)
        assert "Running: Analysis · embedding · 900 / 3,600 texts · about 1 min 30 s left" in said
    analysed.update_job(job, status="done")
    at = app("app_pages/review.py")
    assert not any("Running:" in c.value for c in at.sidebar.caption)


def test_an_unmeasured_estimate_offers_to_measure_this_machine(analysed, launched):
    at = app("app_pages/issues.py")
    said = " ".join(c.value for c in at.caption)
    assert "embedding speed behind this estimate is a typical machine's" in said
    [button] = [b for b in at.button if b.key == "calibrate_analysis"]
    assert re.fullmatch(r"Measure \(about \d+ s\)", button.label)
    button.click().run()
    assert launched and launched[0][0] == "calibrate"
    assert set(launched[0][1]) == {"config", "encoder"}


def test_measured_speeds_take_the_offer_away(analysed):
    from runtime.encoder import EncoderSettings
    from runtime.encoder import speed_identity as encoder_identity
    from runtime.estimates import record_speed

    record_speed("embed", 1000, 4.0, **encoder_identity(EncoderSettings()))
    at = app("app_pages/issues.py")
    assert not [b for b in at.button if b.key == "calibrate_analysis"]


def test_a_workspace_has_one_spelling_in_the_message_and_the_sidebar(home, launched, data_dir):
    path = data_dir / "formula_script.csv"
    frame = pd.DataFrame({"body": [f"ticket {i}" for i in range(20)], "queue": ["a", "b"] * 10})
    frame.to_csv(path, index=False)
    at = app()
    at.text_input(key="import_path").input("formula_script.csv").run()
    at.selectbox(key="map_text").select("body")
    at.selectbox(key="map_label").select("queue")
    at.button(key="do_import").click().run()
    assert not at.exception, at.exception
    said = " ".join(s.value for s in at.success) + " ".join(m.value for m in at.markdown)
    assert "formula_script" in said and "formula-script" not in said
    sidebar = at.sidebar.selectbox[0]
    assert sidebar.value.endswith("formula_script") and "formula_script" in sidebar.options


def test_tables_name_columns_in_plain_words(analysed):
    at = app("app_pages/issues.py")
    checked = 0
    for table in at.dataframe:
        config = json.loads(table.proto.columns or "{}")
        for column in table.value.columns:
            if column in COLUMN_WORDS:
                assert config.get(column, {}).get("label"), f"{column} shown by its code name"
                checked += 1
    assert checked >= 5  # id, given/current label, predicted, flagged, ...


def test_empty_cells_are_blank_not_none():
    frame = pd.DataFrame(
        {"job": [5.0, None], "accuracy": [0.81234, float("nan")], "name": ["a", None]}
    )
    styled = blank_empty(frame, accuracy="{:.3f}")
    html = styled.to_html()
    assert "None" not in html and "nan" not in html
    assert ">5<" in html and ">0.812<" in html


def test_review_says_the_analysis_is_running_instead_of_asking_for_one(home, sentiment_prepared):
    ws = Workspace.create(home / "fresh", sentiment_prepared, name="fresh")
    job = ws.create_job("analyze", {})
    progress = {"stage": "embedding", "done": 10, "total": 40, "unit": "texts", "eta_seconds": 6.0}
    ws.update_job(job, status="running", progress=progress)
    at = app("app_pages/review.py")
    said = " ".join(i.value for i in at.info)
    assert "The analysis is running" in said and "10 / 40 texts" in said
    assert "run the analysis" not in said


def test_an_analysis_says_its_stage_and_its_whole_time_left():
    start = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    job = JobRecord(
        id=1,
        kind="analyze",
        status="running",
        params={"estimate_seconds": 300.0},
        progress={"stage": "embedding", "done": 10, "total": 40, "eta_seconds": 30.0},
        started_at=start.isoformat(),
    )
    assert estimate_left(job, start + timedelta(seconds=60)) == (
        "about 4 min left in all (estimated at the start)"
    )
    assert estimate_left(job, start + timedelta(seconds=400)) is None  # ran out: stage only
