"""Experiment planning: nested subsets per seed, same rows for label-source comparisons,
noise injection, thresholds; and the tidy chart tables built from run records."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from data.records import RunRecord
from training.experiments import (
    eval_ids,
    ids_hash,
    inject_noise,
    plan_data_size,
    plan_label_quality,
    probe_ids,
)
from training.reporting import FRAME_COLUMNS, aggregate_runs, runs_frame


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


# --------------------------------------------------------------------------- seeds and noise


def test_data_size_seeds_draw_their_own_nested_subsets():
    ids = list(range(500, 700))
    specs = plan_data_size(ids, fractions=(0.1, 0.5, 1.0), seeds=[0, 1, 2], cap=100)
    assert len(specs) == 9 and [s.seed for s in specs] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    by_seed = {seed: [s for s in specs if s.seed == seed] for seed in (0, 1, 2)}
    for runs in by_seed.values():
        assert [len(s.train_ids) for s in runs] == [10, 50, 100]
        for small, big in zip(runs, runs[1:], strict=False):
            assert set(small.train_ids) < set(big.train_ids)
        assert all(s.notes["series"] == "data size" for s in runs)
    # Each seed draws different rows for the same fraction.
    firsts = {tuple(sorted(runs[0].train_ids)) for runs in by_seed.values()}
    assert len(firsts) == 3


def test_seeds_must_be_distinct_whole_numbers():
    with pytest.raises(ValueError, match="seeds"):
        plan_data_size(range(10), seeds=[1, 1])


def test_noise_flips_exact_counts_to_another_class_nested_across_rates():
    labels = np.arange(200) % 3
    flipped_by_rate = {}
    for rate, expected in ((0.0, 0), (0.1, 20), (0.2, 40), (0.3, 60)):
        noisy, flipped = inject_noise(labels, rate, n_classes=3, seed=5)
        assert len(flipped) == expected and int((noisy != labels).sum()) == expected
        assert np.array_equal(
            noisy[np.setdiff1d(np.arange(200), flipped)],
            labels[np.setdiff1d(np.arange(200), flipped)],
        )
        flipped_by_rate[rate] = (set(flipped.tolist()), noisy)
    assert flipped_by_rate[0.1][0] < flipped_by_rate[0.2][0] < flipped_by_rate[0.3][0]
    # A row flipped at 10% keeps the same wrong label at 30%.
    low, high = flipped_by_rate[0.1], flipped_by_rate[0.3]
    assert all(low[1][i] == high[1][i] for i in low[0])
    # Flips go to both other classes, not always the same one.
    noisy, flipped = inject_noise(labels, 0.3, n_classes=3, seed=5)
    assert len(set(((noisy[flipped] - labels[flipped]) % 3).tolist())) == 2
    again, _ = inject_noise(labels, 0.3, n_classes=3, seed=5)
    assert np.array_equal(noisy, again)
    with pytest.raises(ValueError, match="rate"):
        inject_noise(labels, 1.2, n_classes=3, seed=0)


def test_label_quality_plan_has_noise_runs_on_the_curated_rows_per_seed():
    ids = list(range(60))
    specs = plan_label_quality(ids, noise_rates=(0.1, 0.3), seeds=[0, 1], cap=40)
    assert len(specs) == 8
    for seed in (0, 1):
        original, curated, low, high = [s for s in specs if s.seed == seed]
        assert original.train_ids == curated.train_ids == low.train_ids == high.train_ids
        assert [s.noise_rate for s in (original, curated, low, high)] == [0, 0, 0.1, 0.3]
        assert [s.x for s in (low, high)] == [0.1, 0.3]
        assert curated.notes["also"] == [{"series": "noise", "x": 0.0}]
    assert specs[0].train_ids != specs[4].train_ids
    with pytest.raises(ValueError, match="noise_rates"):
        plan_label_quality(ids, noise_rates=(0.0,))


def test_ids_hash_is_order_free_and_probe_rows_are_fixed():
    assert ids_hash([5, 1, 3]) == ids_hash([1, 3, 5]) != ids_hash([1, 3])
    assert probe_ids(range(100), seed=0) == probe_ids(range(100), seed=0)
    assert len(probe_ids(range(100))) == 20 and probe_ids(range(5)) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- chart data


def fake_run(run_id, experiment, series, x, seed, acc, verified=None, **data):
    verified_metrics = {"accuracy": verified, "n": 0 if verified is None else 5}
    return RunRecord(
        id=run_id,
        job_id=1,
        status="done",
        config={"seed": seed},
        data={"experiment": experiment, "series": series, "x": x, "seed": seed, "train_rows": 10}
        | data,
        test={"accuracy": acc},
        verified=verified_metrics,
    )


def test_runs_frame_and_aggregate_give_mean_std_per_point():
    runs = [
        fake_run(1, "data_size", "data size", 0.5, 0, 0.6, 0.5),
        fake_run(2, "data_size", "data size", 0.5, 1, 0.8, 0.7),
        fake_run(3, "data_size", "data size", 1.0, 0, 0.9),
        fake_run(
            4, "label_quality", "labels", "curated", 0, 0.7, also=[{"series": "noise", "x": 0.0}]
        ),
        dataclasses.replace(fake_run(5, "data_size", "data size", 1.0, 1, 0.1), status="failed"),
    ]
    frame = runs_frame(runs)
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert frame["run"].tolist() == [1, 2, 3, 4, 4]  # failed run left out; curated twice
    assert frame.iloc[-1][["series", "x"]].tolist() == ["noise", 0.0]
    assert np.isnan(frame.loc[frame["run"] == 3, "verified_value"]).all()
    agg = aggregate_runs(frame)
    half = agg[(agg["series"] == "data size") & (agg["x"] == 0.5)].iloc[0]
    assert half["mean"] == pytest.approx(0.7) and half["n"] == 2
    assert half["std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert half["verified_mean"] == pytest.approx(0.6) and half["verified_runs"] == 2
    assert half["verified_n"] == 5
    assert aggregate_runs(runs_frame([])).empty
    with pytest.raises(ValueError, match="accuracy"):
        runs_frame(runs, metric="speed")
