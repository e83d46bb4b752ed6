"""AppTest for the Reviewers and Audit log pages: they read the store and call through to it.

Workspaces live in a tmp SECOND_LOOK_HOME with a fake analysis (see tests/test_app.py); review
events are written straight into the store, as two reviewers would have done on the Review page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from data.store import Workspace
from tests.conftest import add_analysis, app

REVIEWERS = "app_pages/reviewers.py"
AUDIT = "app_pages/audit.py"


@pytest.fixture
def ws(tmp_path, monkeypatch, sentiment_prepared):
    monkeypatch.setenv("SECOND_LOOK_HOME", str(tmp_path / "home"))
    ws = Workspace.create(tmp_path / "home" / "reviews", sentiment_prepared, name="reviews")
    add_analysis(ws)
    return ws


def two_reviewers(ws: Workspace) -> None:
    """ana and bo label samples 0-5: they agree on 1-5 and disagree on sample 0."""
    for sid in range(6):
        label = ws.sample(sid)["given_label"]
        ws.relabel(sid, "negative" if sid == 0 else label, reviewer="ana", action="confirm")
        ws.relabel(sid, label, reviewer="bo", action="confirm")


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_progress_table_lists_each_reviewer(ws):
    two_reviewers(ws)
    ws.relabel(10, "negative", reviewer="cy")
    at = app(REVIEWERS)
    progress = at.dataframe[0].value
    assert set(progress["reviewer"]) == {"ana", "bo", "cy"}
    assert progress.set_index("reviewer").loc["ana", "actions"] == 6
    assert len(at.get("plotly_chart")) == 1


def test_empty_workspace_says_what_to_do(ws):
    at = app(REVIEWERS)
    assert any("No review actions yet" in i.value for i in at.info)
    assert any("No samples labeled by two reviewers" in i.value for i in at.info)
    assert any("Nothing reviewed yet" in i.value for i in at.info)


def test_overlap_share_is_applied_and_counted(ws):
    at = app(REVIEWERS)
    assert at.slider(key="overlap_share").value == 0
    at.slider(key="overlap_share").set_value(20)
    at.button(key="apply_overlap").click().run()
    assert not at.exception, at.exception
    assert ws.info()["overlap_share"] == pytest.approx(0.2)
    n = ws.counts()["n"]
    in_set = int(ws.review_queue(limit=n)[0]["overlap"].sum())
    assert 0 < in_set < n
    assert f"**{in_set:,}** samples (20%) are in the double-review set" in markdown(at)
    assert "my queue" in markdown(at)


def test_kappa_table_for_two_reviewers(ws):
    two_reviewers(ws)
    at = app(REVIEWERS)
    pairs = next(d.value for d in at.dataframe if "kappa" in d.value.columns)
    row = pairs.iloc[0]
    assert (row["reviewer_a"], row["reviewer_b"], row["n"]) == ("ana", "bo", 6)
    assert row["agreement"] == pytest.approx(5 / 6)
    assert -1 <= row["kappa"] < 1
    assert any("Cohen's kappa" in c.value for c in at.caption)


def test_disagreement_is_listed_and_resolved_by_a_named_reviewer(ws):
    two_reviewers(ws)
    assert ws.sample(0)["conflict"]
    at = app(REVIEWERS)
    # The conflicting sample is shown as plain text with both reviewers' labels.
    assert [t.value for t in at.text] == [ws.sample(0)["text"]]
    assert "ana → negative" in markdown(at) and "bo → positive" in markdown(at)
    positive = ws.label_names.index("positive")
    button = at.button(key=f"resolve_0_{positive}")
    assert button.disabled  # no reviewer name yet
    at.sidebar.text_input(key="reviewer").input("cy").run()
    at.button(key=f"resolve_0_{positive}").click().run()
    assert not at.exception, at.exception
    state = ws.sample(0)
    assert not state["conflict"] and state["label"] == "positive"
    resolved = ws.audit_log(action="resolve")
    assert list(resolved["reviewer"]) == ["cy"] and list(resolved["sample_id"]) == [0]
    # Settled: gone from the open list, back under "all disagreements".
    assert not at.text
    at.radio(key="adj_show").set_value("all disagreements").run()
    assert [t.value for t in at.text] == [state["text"]]


def test_remaining_errors_estimate(ws):
    flagged = ws.review_ids(flagged=True)
    ws.relabel(flagged[0], "negative", reviewer="ana", action="relabel")
    ws.relabel(flagged[1], ws.sample(flagged[1])["label"], reviewer="ana", action="confirm")
    at = app(REVIEWERS)
    text = markdown(at)
    unreviewed = len(flagged) - 2
    assert f"label errors remain among the **{unreviewed:,}** unreviewed flagged rows" in text
    assert "error rate 50%" in text
    assert any("Order = random" in c.value for c in at.caption)


def test_audit_log_filters_and_download(ws):
    two_reviewers(ws)
    ws.set_excluded(7, True, reviewer="ana")
    at = app(AUDIT)
    assert len(at.dataframe[0].value) == 13
    # What happened comes first (it fits at 1366 px); no repairs: their text columns are left out.
    columns = list(at.dataframe[0].value.columns)
    assert columns[:9] == [
        "created_at",
        "reviewer",
        "action",
        "ext_id",
        "old_label",
        "new_label",
        "old_excluded",
        "new_excluded",
        "text",
    ]
    assert "old_text" not in columns
    assert at.get("download_button")

    at.selectbox(key="audit_reviewer").select("ana").run()
    shown = at.dataframe[0].value
    assert len(shown) == 7 and set(shown["reviewer"]) == {"ana"}
    assert shown["text"].iloc[0] == ws.sample(7)["text"]  # newest first, text included

    at.selectbox(key="audit_action").select("exclude").run()
    shown = at.dataframe[0].value
    assert list(shown["action"]) == ["exclude"] and list(shown["ext_id"]) == ["7"]
    assert "Download 1 event (CSV)" in at.get("download_button")[0].proto.label

    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    at.date_input(key="audit_since").set_value(tomorrow).run()
    assert not at.dataframe and any("No events match" in i.value for i in at.info)
