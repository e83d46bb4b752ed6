"""Review at scale in the store: orders, bulk actions, double review, conflicts, audit."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import data.store.labels
from tests.conftest import add_analysis, scramble_derived_state


@pytest.fixture
def analysed(workspace):
    add_analysis(workspace)
    return workspace


def test_derive_state_doctest():
    assert doctest.testmod(data.store.labels).failed == 0


def test_orders(analysed):
    n = analysed.counts()["n"]
    quality, _ = analysed.review_queue(order="quality", limit=n)
    assert quality["label_quality"].is_monotonic_increasing
    uncertain, _ = analysed.review_queue(order="uncertainty", limit=n)
    assert uncertain["predicted_prob"].is_monotonic_increasing
    shuffled, _ = analysed.review_queue(order="random", limit=n)
    assert sorted(shuffled["sample_id"]) == list(range(n))
    assert list(shuffled["sample_id"]) != list(range(n))
    again, _ = analysed.review_queue(order="random", limit=n)
    assert list(again["sample_id"]) == list(shuffled["sample_id"])  # a fixed order


def test_bulk_accept_is_one_undoable_batch(analysed):
    flagged = analysed.review_ids(flagged=True, min_prob=0.5)
    assert len(flagged) == 5
    events = analysed.bulk_apply(action="accept", reviewer="ana", flagged=True, min_prob=0.5)
    assert len(events) == 5
    rows = analysed.samples(ids=flagged)
    assert (rows["label"] != rows["given_label"]).all()
    _, disagree = analysed.review_queue(disagrees=True)
    assert disagree == 0  # every accepted row now matches the model
    analysed.undo(reviewer="ana")
    rows = analysed.samples(ids=flagged)
    assert (rows["label"] == rows["given_label"]).all() and not rows["reviewed"].any()


def test_bulk_relabel_by_search_and_validation(analysed):
    analysed.bulk_apply(action="relabel", new_label="negative", reviewer="ana", search="phone")
    changed = analysed.samples().query("label != given_label")
    assert changed["text"].str.contains("phone").all() and len(changed) == 1
    with pytest.raises(ValueError, match="valid"):
        analysed.bulk_apply(action="explode", reviewer="ana")
    with pytest.raises(ValueError, match="new label"):
        analysed.bulk_apply(action="relabel", reviewer="ana")


def test_search_uses_substrings_case_insensitively(analysed):
    _, n = analysed.review_queue(search="BATTER")
    assert n == 2
    _, n = analysed.review_queue(search='"quoted"')
    assert n == 0
    _, n = analysed.review_queue(search="ph")  # shorter than a trigram: LIKE fallback
    assert n >= 2


def test_two_reviewers_conflict_later_wins_and_resolve_clears(analysed):
    analysed.relabel(3, "negative", reviewer="ana")
    analysed.relabel(3, "positive", reviewer="bo", action="confirm")
    state = analysed.sample(3)
    assert state["label"] == "positive" and state["conflict"] and state["n_reviewers"] == 2
    assert len(analysed.events(sample_id=3)) == 2  # both events kept
    _, n = analysed.review_queue(conflict=True)
    assert n == 1
    analysed.relabel(3, "negative", reviewer="cy", action="resolve")
    state = analysed.sample(3)
    assert state["label"] == "negative" and not state["conflict"]


def test_overlap_queue_shows_double_review_rows_to_a_second_reviewer(analysed):
    n_overlap = analysed.set_overlap(0.5)
    n = analysed.counts()["n"]
    assert 0 < n_overlap < n
    overlap_ids = set(analysed.review_queue(limit=n)[0].query("overlap")["sample_id"])
    plain_id = next(i for i in range(n) if i not in overlap_ids)
    double_id = next(iter(overlap_ids))
    analysed.relabel(plain_id, "negative", reviewer="ana")
    analysed.relabel(double_id, "negative", reviewer="ana")
    ana = set(analysed.review_ids(for_reviewer="ana"))
    bo = set(analysed.review_ids(for_reviewer="bo"))
    assert plain_id not in ana and double_id not in ana
    assert plain_id not in bo and double_id in bo  # bo still owes the second look
    analysed.relabel(double_id, "positive", reviewer="bo")
    assert double_id not in set(analysed.review_ids(for_reviewer="cy"))
    labels = analysed.reviewer_labels()
    assert set(labels.query("sample_id == @double_id")["reviewer"]) == {"ana", "bo"}


def test_reviewer_progress_and_audit(analysed):
    analysed.relabel(0, "negative", reviewer="ana")
    analysed.set_excluded(1, reviewer="ana")
    analysed.relabel(2, "positive", reviewer="bo", action="confirm")
    analysed.undo(reviewer="ana")
    progress = analysed.reviewer_progress().set_index("reviewer")
    assert progress.loc["ana", "actions"] == 3 and progress.loc["ana", "undos"] == 1
    assert progress.loc["bo", "confirmed"] == 1
    log = analysed.audit_log(reviewer="ana", action="relabel")
    assert len(log) == 1 and log.iloc[0]["new_label"] == "negative"
    assert len(analysed.audit_log(since="2999-01-01")) == 0
    assert len(analysed.audit_log()) == 4


def test_flag_review_counts(analysed):
    flagged = analysed.review_ids(flagged=True)
    analysed.relabel(flagged[0], "negative", reviewer="ana")
    analysed.relabel(
        flagged[1], analysed.sample(flagged[1])["label"], reviewer="ana", action="confirm"
    )
    counts = analysed.flag_review_counts()
    assert counts["reviewed"] == 2 and counts["unreviewed"] == len(flagged) - 2
    assert counts["errors"] == int(analysed.sample(flagged[0])["given_label"] != "negative")


def test_rebuild_state_keeps_conflicts(analysed):
    analysed.relabel(5, "negative", reviewer="ana")
    analysed.relabel(5, "positive", reviewer="bo")
    before = analysed.samples()
    scramble_derived_state(analysed)
    assert not analysed.samples().equals(before)
    analysed.rebuild_state()
    pd.testing.assert_frame_equal(before, analysed.samples())
    assert np.asarray(before["conflict"]).sum() == 1


def test_bulk_skips_rows_it_would_not_change(analysed):
    first = analysed.bulk_apply(action="accept", reviewer="ana", flagged=True)
    assert len(first) == 5
    assert analysed.bulk_plan(action="accept", flagged=True) == []
    assert analysed.bulk_apply(action="accept", reviewer="ana", flagged=True) == []
    assert len(analysed.bulk_plan(action="confirm", flagged=True)) == 5  # a statement each time
    excluded = analysed.bulk_apply(action="exclude", reviewer="ana", search="phone")
    assert analysed.bulk_plan(action="exclude", search="phone") == []
    assert len(analysed.bulk_plan(action="include", search="phone")) == len(excluded)
