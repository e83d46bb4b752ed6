"""Review statistics: inter-reviewer agreement, disagreements, remaining-error estimate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from curation.reviewing import agreement, disagreements, remaining_errors

NAMES = ["negative", "neutral", "positive"]


def _long(**by_reviewer: list[str]) -> pd.DataFrame:
    """Long table from reviewer -> labels of samples 0..n-1."""
    rows = [
        (i, reviewer, label)
        for reviewer, given in by_reviewer.items()
        for i, label in enumerate(given)
    ]
    return pd.DataFrame(rows, columns=["sample_id", "reviewer", "label"])


def test_perfect_agreement_gives_kappa_one():
    given = ["negative", "neutral", "positive", "positive", "negative", "neutral"]
    pairs = agreement(_long(ann=given, bob=given), label_names=NAMES)["pairs"]
    assert pairs[["reviewer_a", "reviewer_b", "n"]].values.tolist() == [["ann", "bob", 6]]
    assert pairs.loc[0, "agreement"] == 1.0
    assert pairs.loc[0, "kappa"] == pytest.approx(1.0)


def test_random_reviewer_against_fixed_one_has_kappa_near_zero():
    rng = np.random.default_rng(0)
    fixed = rng.choice(NAMES, size=400).tolist()
    random = rng.choice(NAMES, size=400).tolist()
    pairs = agreement(_long(fixed=fixed, random=random), label_names=NAMES)["pairs"]
    assert abs(pairs.loc[0, "kappa"]) < 0.15
    # Raw agreement of independent guessing among 3 classes is about a third, not 0.
    assert 0.2 < pairs.loc[0, "agreement"] < 0.45


def test_per_class_kappa_matches_one_vs_rest_by_hand():
    ann = ["negative", "negative", "neutral", "positive", "positive", "neutral"]
    bob = ["negative", "neutral", "neutral", "positive", "negative", "positive"]
    per_class = agreement(_long(ann=ann, bob=bob), label_names=NAMES + ["mixed"])["per_class"]
    got = dict(zip(per_class["label"], per_class["kappa"], strict=True))
    assert list(per_class["label"]) == NAMES + ["mixed"]
    assert (per_class["n"] == 6).all()
    # negative: ann [1,1,0,0,0,0], bob [1,0,0,0,1,0] -> po 4/6, pe (2*2 + 4*4)/36 = 5/9,
    # kappa (2/3 - 5/9) / (4/9) = 1/4.
    assert got["negative"] == pytest.approx(0.25)
    for name in NAMES:
        expected = cohen_kappa_score([a == name for a in ann], [b == name for b in bob])
        assert got[name] == pytest.approx(expected)
    assert math.isnan(got["mixed"])  # nobody used it: kappa is undefined, not 0 or 1


def test_three_reviewers_give_three_pairs_with_their_overlap():
    labels = pd.concat(
        [
            _long(ann=["negative", "neutral", "positive"], bob=["negative", "neutral", "neutral"]),
            pd.DataFrame({"sample_id": [1, 2], "reviewer": "cy", "label": ["neutral", "positive"]}),
        ]
    )
    result = agreement(labels, label_names=NAMES)
    pairs = result["pairs"]
    assert pairs[["reviewer_a", "reviewer_b", "n"]].values.tolist() == [
        ["ann", "bob", 3],
        ["ann", "cy", 2],
        ["bob", "cy", 2],
    ]
    assert pairs["agreement"].tolist() == pytest.approx([2 / 3, 1.0, 0.5])
    assert len(result["per_class"]) == 3 * len(NAMES)


def test_undefined_kappa_is_nan():
    # Both always say "neutral": they agree, but there was no variation to agree on.
    same = agreement(_long(ann=["neutral"] * 4, bob=["neutral"] * 4), label_names=NAMES)
    assert same["pairs"].loc[0, "agreement"] == 1.0
    assert math.isnan(same["pairs"].loc[0, "kappa"])
    single = agreement(_long(ann=["neutral"], bob=["positive"]), label_names=NAMES)
    assert single["pairs"].loc[0, "n"] == 1
    assert math.isnan(single["pairs"].loc[0, "kappa"])


def test_empty_input_gives_empty_frames_with_columns():
    empty = pd.DataFrame(columns=["sample_id", "reviewer", "label"])
    result = agreement(empty, label_names=NAMES)
    assert result["pairs"].empty and result["per_class"].empty
    assert list(result["pairs"].columns) == ["reviewer_a", "reviewer_b", "n", "agreement", "kappa"]
    assert list(result["per_class"].columns) == ["reviewer_a", "reviewer_b", "label", "n", "kappa"]
    assert list(disagreements(empty).columns) == ["sample_id", "labels", "n_reviewers"]


def test_disagreements_lists_exactly_the_differing_samples():
    labels = pd.concat(
        [
            _long(
                bob=["negative", "neutral", "positive", "neutral"],
                ann=["negative", "positive", "positive", "negative"],
            ),
            pd.DataFrame({"sample_id": [2, 9], "reviewer": "cy", "label": ["neutral", "positive"]}),
        ]
    )
    out = disagreements(labels.sample(frac=1, random_state=0))
    assert out["sample_id"].tolist() == [1, 2, 3]  # 0 agrees; 9 has a single reviewer
    assert out["labels"].tolist() == [
        {"ann": "positive", "bob": "neutral"},
        {"ann": "positive", "bob": "positive", "cy": "neutral"},
        {"ann": "negative", "bob": "neutral"},
    ]
    assert out["n_reviewers"].tolist() == [2, 3, 2]


def test_bad_label_tables_raise_with_the_fix():
    with pytest.raises(ValueError, match="lacks column"):
        agreement(pd.DataFrame({"sample_id": [1], "label": ["neutral"]}), label_names=NAMES)
    with pytest.raises(ValueError, match="not among label_names"):
        agreement(_long(ann=["neutral"], bob=["angry"]), label_names=NAMES)
    repeated = pd.concat([_long(ann=["neutral"]), _long(ann=["positive"])])
    with pytest.raises(ValueError, match="latest label"):
        disagreements(repeated)


def test_remaining_errors_extrapolates_with_wilson_interval():
    r = remaining_errors(reviewed=100, errors=10, unreviewed=900)
    assert r["rate"] == pytest.approx(0.1)
    assert r["remaining"] == pytest.approx(90)
    assert r["rate_low"] < 0.1 < r["rate_high"]
    assert 0 < r["remaining_low"] < 90 < r["remaining_high"] < 900
    # Known Wilson 95% bounds for 10/100.
    assert (r["rate_low"], r["rate_high"]) == pytest.approx((0.0552, 0.1744), abs=1e-4)
    assert (r["reviewed"], r["errors"], r["unreviewed"]) == (100, 10, 900)
    assert "note" not in r
    wider = remaining_errors(reviewed=100, errors=10, unreviewed=900, confidence=0.99)
    assert (
        wider["remaining_low"] < r["remaining_low"]
        and wider["remaining_high"] > r["remaining_high"]
    )


def test_remaining_errors_with_no_errors_found_keeps_a_positive_upper_bound():
    r = remaining_errors(reviewed=20, errors=0, unreviewed=500)
    assert r["rate"] == 0 and r["rate_low"] == 0 and r["remaining"] == 0
    assert 0 < r["remaining_high"] < 500  # 0 of 20 does not prove there are none


def test_remaining_errors_before_any_review():
    r = remaining_errors(reviewed=0, errors=0, unreviewed=50)
    for key in ("rate", "rate_low", "rate_high", "remaining", "remaining_low", "remaining_high"):
        assert r[key] is None
    assert "nothing reviewed" in r["note"].lower()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reviewed": -1, "errors": 0, "unreviewed": 5}, "reviewed must be 0 or more"),
        ({"reviewed": 5, "errors": 0, "unreviewed": -3}, "unreviewed must be 0 or more"),
        ({"reviewed": 5, "errors": 6, "unreviewed": 5}, r"errors \(6\) exceeds reviewed \(5\)"),
        ({"reviewed": 5, "errors": 1, "unreviewed": 5, "confidence": 1.0}, "between 0 and 1"),
        ({"reviewed": 5, "errors": 1, "unreviewed": 5, "confidence": 0}, "between 0 and 1"),
        ({"reviewed": 5.5, "errors": 1, "unreviewed": 5}, "whole number"),
    ],
)
def test_remaining_errors_rejects_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        remaining_errors(**kwargs)
