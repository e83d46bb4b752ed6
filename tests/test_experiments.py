"""Experiment planning: nested subsets, same rows for label-source comparisons, thresholds."""

from __future__ import annotations

import pandas as pd
import pytest

from training.experiments import eval_ids, plan_data_size, plan_label_quality


def test_data_size_subsets_are_nested_and_seeded():
    ids = list(range(1000, 1200))
    specs = plan_data_size(ids, fractions=(0.5, 0.1, 0.25, 1.0), seed=3)
    sizes = [len(s.train_ids) for s in specs]
    assert sizes == [20, 50, 100, 200]
    for small, big in zip(specs, specs[1:], strict=False):
        assert set(small.train_ids) < set(big.train_ids)
    again = plan_data_size(ids, fractions=(0.1, 0.25, 0.5, 1.0), seed=3)
    assert [s.train_ids for s in again] == [s.train_ids for s in specs]
    other = plan_data_size(ids, fractions=(0.1,), seed=4)
    assert other[0].train_ids != specs[0].train_ids


def test_data_size_cap_applies_before_fractions():
    specs = plan_data_size(range(5000), fractions=(0.1, 1.0), seed=0, cap=300)
    assert [len(s.train_ids) for s in specs] == [30, 300]


def test_bad_fraction_is_named():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        plan_data_size(range(10), fractions=(0.0, 1.5))


def test_label_quality_compares_same_rows_and_thresholds():
    ids = list(range(100))
    confidence = pd.Series([1.0 if i % 2 else 0.6 for i in ids], index=ids)
    specs = plan_label_quality(ids, confidence=confidence, thresholds=(0.5, 0.9), seed=1, cap=40)
    original, curated, *thresholds = specs
    assert (original.label_source, curated.label_source) == ("original", "curated")
    assert original.train_ids == curated.train_ids and len(curated.train_ids) == 40
    assert [t.x for t in thresholds] == [0.5, 0.9]
    assert all(confidence[i] >= 0.9 for i in thresholds[1].train_ids)
    assert thresholds[1].notes["available"] == 50


def test_eval_rows_are_fixed_for_a_seed():
    assert eval_ids(range(50), seed=2, cap=10) == eval_ids(range(50), seed=2, cap=10)
    assert len(eval_ids(range(50), cap=None)) == 50
