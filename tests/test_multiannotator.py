"""Consensus labels and annotator quality (curation.multiannotator) with real cleanlab CROWDLAB.

Three careful annotators (a few mistakes each, on different rows) and one who labels at random,
on the shared sentiment fixture; model probabilities from the packaged encoder.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curation.multiannotator import annotator_consensus  # noqa: E402
from curation.probs import out_of_sample_probs  # noqa: E402
from runtime.encoder import EncoderSettings, embed_texts  # noqa: E402
from tests.conftest import NEGATIVE, POSITIVE  # noqa: E402

NAMES = ["negative", "positive"]
TRUTH = np.array([1] * len(POSITIVE) + [0] * len(NEGATIVE))
MISTAKES = {"alice": [2, 15], "bob": [5, 20], "carol": [9]}  # rows each careful one gets wrong


def _annotations() -> pd.DataFrame:
    names = np.asarray(NAMES, dtype=object)
    columns = {}
    for who, rows in MISTAKES.items():
        y = TRUTH.copy()
        y[rows] = 1 - y[rows]
        columns[who] = names[y]
    columns["random"] = names[np.random.default_rng(7).integers(0, 2, len(TRUTH))]
    frame = pd.DataFrame(columns)
    frame.loc[3, "bob"] = None  # missing annotations are allowed
    frame.loc[11, "random"] = np.nan
    return frame


def _strict_majority(frame: pd.DataFrame) -> pd.Series:
    def vote(row):
        counts = row.dropna().value_counts()
        return counts.index[0] if len(counts) and counts.iloc[0] * 2 > counts.sum() else None

    return frame.apply(vote, axis=1)


@pytest.fixture(scope="module")
def model_probs():
    """Out-of-sample probabilities fitted on the majority vote (cleanlab's CROWDLAB recipe)."""
    x = embed_texts(POSITIVE + NEGATIVE, settings=EncoderSettings(precision="fp32"))
    majority = _strict_majority(_annotations()).fillna("positive")
    y = np.array([NAMES.index(v) for v in majority])
    return out_of_sample_probs(x, y, n_folds=4, seed=0, C=1.0)


def test_random_annotator_is_found_without_a_model():
    frame = _annotations()
    rows, annotators = annotator_consensus(frame, label_names=NAMES)
    majority = _strict_majority(frame)
    decided = majority.notna()
    assert (rows.loc[decided, "consensus_label"] == majority[decided]).all()
    assert annotators.iloc[0]["annotator"] == "random"  # worst quality first
    assert annotators.set_index("annotator").loc["alice", "num_labeled"] == len(TRUTH)
    assert rows.attrs["method"] == "majority_vote+agreement"
    assert list(rows.columns) == [
        "consensus_label",
        "consensus_quality",
        "annotator_agreement",
        "num_annotations",
    ]


def test_crowdlab_recovers_truth_and_ranks_annotators(model_probs):
    frame = _annotations()
    rows, annotators = annotator_consensus(frame, label_names=NAMES, pred_probs=model_probs)
    assert (rows["consensus_label"] == np.asarray(NAMES, dtype=object)[TRUTH]).all()
    assert annotators.iloc[0]["annotator"] == "random"
    quality = annotators.set_index("annotator")["quality"]
    assert quality["random"] < quality.drop("random").min() - 0.1
    assert rows.attrs["method"] == "crowdlab"
    # Rows where a careful annotator slipped are less certain than the rest, on average.
    slipped = sorted(r for rs in MISTAKES.values() for r in rs)
    quality_rows = rows["consensus_quality"]
    assert quality_rows[slipped].mean() < quality_rows.drop(index=slipped).mean()


def test_rows_nobody_labeled_are_kept_but_left_blank(model_probs):
    frame = _annotations()
    frame.loc[4, :] = None
    rows, _ = annotator_consensus(frame, label_names=NAMES, pred_probs=model_probs)
    assert len(rows) == len(frame)
    assert rows.loc[4, "num_annotations"] == 0 and pd.isna(rows.loc[4, "consensus_label"])
    assert np.isnan(rows.loc[4, "consensus_quality"])
    assert rows.drop(index=4)["consensus_label"].notna().all()


def test_inputs_are_checked():
    frame = _annotations()
    with pytest.raises(ValueError, match="at least two annotator columns"):
        annotator_consensus(frame[["alice"]], label_names=NAMES)
    bad = frame.copy()
    bad.loc[0, "bob"] = "maybe"
    with pytest.raises(ValueError, match="column 'bob': 'maybe'"):
        annotator_consensus(bad, label_names=NAMES)
    empty = frame.assign(dave=None)
    with pytest.raises(ValueError, match=r"\['dave'\] hold no labels"):
        annotator_consensus(empty, label_names=NAMES)
    with pytest.raises(ValueError, match="one column per label name"):
        annotator_consensus(frame, label_names=NAMES, pred_probs=np.full((len(frame), 3), 1 / 3))
    lone = pd.DataFrame({"a": ["positive", None], "b": [None, "negative"]})
    with pytest.raises(ValueError, match="two or more annotators"):
        annotator_consensus(lone, label_names=NAMES)
