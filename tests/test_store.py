"""The workspace store: durable, append-only label history, undo, paging."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from data.store import StoreError, Workspace
from tests.conftest import scramble_derived_state


def test_create_and_reopen_keeps_everything(tmp_path, sentiment_prepared):
    ws = Workspace.create(tmp_path / "w", sentiment_prepared, name="reviews")
    ws.relabel(0, "negative", reviewer="ana")
    ws.close()
    again = Workspace(tmp_path / "w")
    assert again.name == "reviews"
    assert again.label_names == ["negative", "positive"]
    row = again.sample(0)
    assert row["label"] == "negative" and row["given_label"] == "positive"
    assert row["reviewed"] and row["reviewer"] == "ana"
    assert again.counts()["changed"] == 1


def test_create_refuses_to_overwrite(tmp_path, sentiment_prepared):
    Workspace.create(tmp_path / "w", sentiment_prepared).close()
    with pytest.raises(StoreError, match="already exists"):
        Workspace.create(tmp_path / "w", sentiment_prepared)


def test_failed_import_leaves_no_workspace(tmp_path, sentiment_prepared):
    bad = sentiment_prepared
    bad.frame.loc[3, "ext_id"] = bad.frame.loc[2, "ext_id"]  # duplicate id violates UNIQUE
    with pytest.raises(sqlite3.IntegrityError):
        Workspace.create(tmp_path / "w", bad)
    with pytest.raises(StoreError, match="No workspace"):
        Workspace(tmp_path / "w")


def test_undo_restores_label_and_appends(workspace):
    workspace.relabel(1, "negative", reviewer="ana")
    workspace.relabel(1, "positive", reviewer="ana", action="confirm")
    assert workspace.sample(1)["label"] == "positive"
    workspace.undo(reviewer="ana")
    assert workspace.sample(1)["label"] == "negative"
    workspace.undo(reviewer="ana")
    state = workspace.sample(1)
    assert state["label"] == "positive" and not state["reviewed"]
    events = workspace.events(sample_id=1)
    assert list(events["action"]) == ["undo", "undo", "confirm", "relabel"]  # newest first
    assert workspace.undo(reviewer="ana") == []


def test_undo_is_per_reviewer(workspace):
    workspace.relabel(2, "negative", reviewer="ana")
    workspace.relabel(3, "negative", reviewer="bo")
    workspace.undo(reviewer="ana")
    assert workspace.sample(2)["label"] == "positive"
    assert workspace.sample(3)["label"] == "negative"


def test_exclude_and_batch_undo(workspace):
    workspace.set_excluded(4, reviewer="ana")
    assert workspace.sample(4)["excluded"]
    workspace.apply_actions(
        [(5, "relabel", "negative"), (6, "relabel", "negative")], reviewer="ana"
    )
    assert workspace.counts()["changed"] == 2
    workspace.undo(reviewer="ana")  # the whole batch at once
    assert workspace.counts()["changed"] == 0
    assert workspace.sample(4)["excluded"]


def test_rebuild_state_from_log_matches(workspace):
    workspace.relabel(0, "negative", reviewer="ana")
    workspace.set_excluded(7, reviewer="bo")
    workspace.undo(reviewer="bo")
    before = workspace.samples()
    scramble_derived_state(workspace)
    assert not workspace.samples().equals(before)
    workspace.rebuild_state()
    pd.testing.assert_frame_equal(before, workspace.samples())


def test_bad_label_and_reviewer_change_nothing(workspace):
    with pytest.raises(ValueError, match="Unknown label"):
        workspace.relabel(0, "neutral", reviewer="ana")
    with pytest.raises(ValueError, match="reviewer name"):
        workspace.relabel(0, "negative", reviewer=" ")
    with pytest.raises(StoreError, match="No sample"):
        workspace.apply_actions(
            [(0, "relabel", "negative"), (999, "relabel", "negative")], reviewer="ana"
        )
    assert workspace.label_version() == 0
    assert workspace.sample(0)["label"] == "positive"


def test_review_queue_orders_and_filters(workspace):
    n = len(workspace.samples())
    quality = np.linspace(1.0, 0.0, n)
    results = pd.DataFrame(
        {
            "sample_id": range(n),
            "analyzed_label": workspace.samples()["label"],
            "predicted_label": ["negative"] * n,
            "predicted_prob": 0.9,
            "analyzed_prob": quality,
            "label_quality": quality,
            "is_label_issue": quality < 0.2,
        }
    )
    workspace.save_analysis(results, method="test", settings={}, label_version=0)
    page, total = workspace.review_queue(limit=5)
    assert total == n and list(page["sample_id"]) == [n - 1, n - 2, n - 3, n - 4, n - 5]
    page, total = workspace.review_queue(flagged=True)
    assert total == int((quality < 0.2).sum())
    page, total = workspace.review_queue(disagrees=True)
    assert set(page["label"]) == {"positive"}
    page, total = workspace.review_queue(search="BATTERY")
    assert total == 2
    page, total = workspace.review_queue(search="100%")
    assert total == 0
    workspace.relabel(int(page.shape[0]), "negative", reviewer="ana")
    _, reviewed = workspace.review_queue(reviewed=True)
    assert reviewed == 1
    with pytest.raises(ValueError, match="valid"):
        workspace.review_queue(order="random-ish")


def test_embedding_cache_roundtrip(workspace):
    vecs = {f"h{i}": np.random.default_rng(i).normal(size=8).astype(np.float32) for i in range(3)}
    workspace.put_embeddings("m", vecs)
    got = workspace.get_embeddings("m", ["h0", "h2", "missing"])
    assert set(got) == {"h0", "h2"}
    np.testing.assert_array_equal(got["h2"], vecs["h2"])
    assert workspace.get_embeddings("other-model", ["h0"]) == {}


def test_jobs_and_runs(workspace):
    job = workspace.create_job("train", {"epochs": 1})
    workspace.update_job(job, status="running", pid=123, progress={"step": 1})
    workspace.request_cancel(job)
    assert workspace.cancel_requested(job)
    run = workspace.create_run(name="r", config={"a": 1}, data={"rows": 3}, job_id=job)
    workspace.update_run(run, status="done", metrics={"accuracy": 0.5})
    workspace.update_job(job, status="cancelled")
    assert workspace.job(job).finished_at
    # Metrics stored the way runs before the verified subset were: upgraded when read.
    [record] = workspace.runs(job_id=job)
    assert record.test == {"accuracy": 0.5} and record.verified is None
    with pytest.raises(ValueError, match="valid"):
        workspace.update_job(job, status="exploded")


def test_a_workspace_of_another_schema_version_is_refused_clearly(workspace):
    workspace.set_info("schema_version", 1)
    with pytest.raises(StoreError, match="schema version 1"):
        Workspace(workspace.folder)
