"""The analysis pipeline end to end on a real (tiny) workspace: the packaged encoder, cleanlab,
Datalab's checks on the stored neighbour graph, CROWDLAB, and the store."""

from __future__ import annotations

import pandas as pd
import pytest

from curation import pipeline
from data.store import Workspace
from tests.conftest import NEGATIVE, POSITIVE, make_prepared

DUPLICATE = "The hotel room was clean and the bed was comfortable"
OUTLIER = "zxqv 7781 kkkk ### 0x3f9a lorem ipsum qwerty"


@pytest.fixture
def ws(tmp_path):
    texts = POSITIVE + NEGATIVE + [DUPLICATE, DUPLICATE + "!", OUTLIER]
    labels = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    labels += ["positive", "negative", "negative"]  # the duplicates disagree
    labels[0] = "negative"  # a planted flip
    workspace = Workspace.create(tmp_path / "ws", make_prepared(texts, labels), name="t")
    yield workspace
    workspace.close()


def test_an_analysis_scores_labels_finds_duplicates_and_outliers_and_reuses_the_graph(
    ws, monkeypatch
):
    aid = pipeline.analyze_workspace(ws, method="embedding")
    results = ws.analysis_results(aid)
    n = len(results)
    # The conflicting near-duplicate pair is one group, called out as conflicting.
    members, groups = ws.duplicate_groups(conflicting_only=True)
    assert groups >= 1
    dup_ids = {n - 3, n - 2}
    assert dup_ids <= set(members["sample_id"])
    assert results.loc[results["sample_id"].isin(dup_ids), "dup_conflict"].all()
    # Every row is scored (ranking quality is tests/test_methods.py's subject).
    assert results["label_quality"].between(0, 1).all()
    summary = ws.latest_analysis().summary
    assert summary.method == "embedding"
    assert summary.health["num_label_issues"] >= 0
    assert summary.near_duplicate is not None and summary.outlier is not None
    # The neighbour graph is stored and explains a row with current labels.
    near = ws.neighbors(n - 3, k=3)
    assert near.loc[0, "sample_id"] == n - 2 and near.loc[0, "label"] == "negative"
    # A re-analysis after a relabel reuses the stored graph (never rebuilds it).
    ws.relabel(0, "positive", reviewer="r")

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the neighbour graph was rebuilt")

    monkeypatch.setattr(pipeline, "nearest_neighbors", no_rebuild)
    again = pipeline.analyze_workspace(ws, method="embedding")
    assert ws.latest_analysis().label_version == ws.label_version()
    assert ws.analysis_results(again).query("sample_id == 0")["analyzed_label"].item() == "positive"


def test_annotator_columns_get_a_crowdlab_consensus(tmp_path):
    texts = POSITIVE + NEGATIVE
    truth = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    other = {"positive": "negative", "negative": "positive"}
    metas = [
        {"ann_a": t, "ann_b": t, "ann_c": other[t] if i % 2 else t} for i, t in enumerate(truth)
    ]
    prepared = make_prepared(texts, truth, metas=metas)
    prepared.annotator_columns = ["ann_a", "ann_b", "ann_c"]
    ws = Workspace.create(tmp_path / "crowd", prepared, name="crowd")
    aid = pipeline.analyze_workspace(ws, method="embedding")
    results = ws.analysis_results(aid)
    # CROWDLAB weighs the model in too, so on 24 rows it may overrule the crowd once or twice.
    assert (results["consensus_label"] == pd.Series(truth)).mean() >= 0.9
    annotators = {a["annotator"]: a for a in ws.latest_analysis().summary.annotators}
    assert annotators["ann_c"]["quality"] < annotators["ann_a"]["quality"]
    ws.close()
