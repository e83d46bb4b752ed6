"""AppTest of issue-type UI on a real analysis: Dataset health (noise, duplicate groups,
outliers, annotators) and the review card's explanation (neighbours, issue badges)."""

from __future__ import annotations

import pytest

from curation import pipeline
from data.store import Workspace
from tests.conftest import NEGATIVE, POSITIVE, app, make_prepared

DUPLICATE = "The hotel room was clean and the bed was comfortable"


@pytest.fixture
def real(home):
    texts = POSITIVE + NEGATIVE + [DUPLICATE, DUPLICATE + "!"]
    labels = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    labels += ["positive", "negative"]
    other = {"positive": "negative", "negative": "positive"}
    metas = [
        {"a": lab, "b": lab, "c": other[lab] if i % 3 else lab} for i, lab in enumerate(labels)
    ]
    prepared = make_prepared(texts, labels, metas=metas)
    prepared.annotator_columns = ["a", "b", "c"]
    ws = Workspace.create(home / "real", prepared, name="real")
    pipeline.analyze_workspace(ws, method="embedding")
    return ws


def test_health_page_shows_noise_duplicates_and_annotators(real, launched):
    at = app("app_pages/health.py")
    labels = [m.label for m in at.metric]
    assert "Estimated label errors" in labels and "Near-duplicate groups" in labels
    dup_metric = next(m for m in at.metric if m.label == "Near-duplicate groups")
    assert int(dup_metric.value) >= 1
    assert any("conflicting labels" in md.value for md in at.markdown)
    # The annotator table ranks the random annotator "c" lowest.
    tables = [df.value for df in at.dataframe]
    annot = next(t for t in tables if "annotator" in t.columns)
    assert annot.sort_values("quality")["annotator"].iloc[0] == "c"


def test_review_card_explains_a_row_with_its_neighbors(real, launched):
    at = app("app_pages/review.py")
    at.selectbox(key="rv_issue").select("conflicting duplicates").run()
    assert not at.exception, at.exception
    assert any("near-duplicate group" in md.value for md in at.markdown)
    near = next(df.value for df in at.dataframe if "similarity" in df.value.columns)
    assert DUPLICATE in " ".join(near["text"]) and len(near) == 5
    assert any(t.value.startswith("Annotators:") for t in at.text)


def test_data_page_maps_annotator_columns_and_can_vote_the_label(home, launched, data_dir):
    import pandas as pd

    path = data_dir / "crowd.csv"
    pd.DataFrame(
        {
            "body": [f"text number {i}" for i in range(12)],
            "ann1": ["a", "b"] * 6,
            "ann2": ["a", "b"] * 6,
            "ann3": ["b", "b"] * 6,
        }
    ).to_csv(path, index=False)
    at = app()
    at.text_input(key="import_path").input(str(path)).run()
    at.selectbox(key="map_text").select("body")
    at.selectbox(key="map_label").select("(none)").run()
    at.multiselect(key="map_annotators").select("ann1").select("ann2").select("ann3")
    at.text_input(key="ws_name").input("crowd")
    at.button(key="do_import").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    ws = Workspace(home / "crowd")
    assert ws.info()["annotator_columns"] == ["ann1", "ann2", "ann3"]
    assert ws.samples()["label"].tolist() == ["a", "b"] * 6  # the majority vote
    assert launched and launched[0][0] == "analyze"
