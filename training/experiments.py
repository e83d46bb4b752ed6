"""Experiments as lists of run specs: which rows, which labels, one config.

Planning is pure (ids in, specs out) so it is tested without training anything; the runner in
:mod:`training.runs` executes the specs one by one.

Example
-------
>>> specs = plan_data_size(list(range(100)), fractions=(0.1, 0.5, 1.0), seed=0)
>>> [len(s.train_ids) for s in specs]
[10, 50, 100]
>>> set(specs[0].train_ids) <= set(specs[1].train_ids)  # nested: each subset grows the last
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

LABEL_SOURCES = ("curated", "original")
EXPERIMENTS = ("data_size", "label_quality")
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
DEFAULT_THRESHOLDS = (0.5, 0.7, 0.9, 1.0)


@dataclass
class RunSpec:
    """One training run of an experiment: a name, the rows, and which labels to train on."""

    name: str
    experiment: str
    x: float | str  # the chart's x value: a fraction, a label source, a threshold
    train_ids: list[int]
    label_source: str = "curated"
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(
                f"Unknown label_source {self.label_source!r}; valid: {list(LABEL_SOURCES)}."
            )
        if self.experiment not in (*EXPERIMENTS, "single"):
            raise ValueError(f"Unknown experiment {self.experiment!r}; valid: {EXPERIMENTS}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pool(train_ids: Sequence[int], *, seed: int, cap: int | None) -> np.ndarray:
    """A seeded permutation of the training ids, cut to ``cap`` (the CPU budget)."""
    ids = np.asarray(list(train_ids), dtype=int)
    if len(ids) == 0:
        raise ValueError("No training rows: every training row is excluded or the split is empty.")
    order = np.random.default_rng(seed).permutation(len(ids))
    ids = ids[order]
    return ids if cap is None else ids[:cap]


def plan_data_size(
    train_ids: Sequence[int],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    cap: int | None = None,
    label_source: str = "curated",
) -> list[RunSpec]:
    """Nested subsets of the training rows: each fraction is a prefix of one seeded order.

    Nesting makes the curve about size alone: the 50% run sees every row the 25% run saw.
    ``cap`` first cuts the pool (e.g. the CPU sample cap), then fractions apply to the pool.
    """
    bad = [f for f in fractions if not 0 < f <= 1]
    if not fractions or bad:
        raise ValueError(f"fractions must be in (0, 1]; got {list(fractions)}.")
    pool = _pool(train_ids, seed=seed, cap=cap)
    specs = []
    for frac in sorted(set(fractions)):
        n = max(1, round(frac * len(pool)))
        specs.append(
            RunSpec(
                name=f"size {frac:.0%} ({n} rows)",
                experiment="data_size",
                x=float(frac),
                train_ids=pool[:n].tolist(),
                label_source=label_source,
                notes={"fraction": float(frac), "rows": n, "pool": len(pool)},
            )
        )
    return specs


def plan_label_quality(
    train_ids: Sequence[int],
    *,
    confidence: pd.Series | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    seed: int = 0,
    cap: int | None = None,
) -> list[RunSpec]:
    """Original vs curated labels on the same rows; and, with a crowd ``confidence`` per row
    (indexed by sample id), curated labels on rows with confidence >= each threshold.

    The original/curated pair differs only in labels, so the gap is the effect of curation.
    Threshold runs draw up to ``cap`` rows from those passing the threshold, so with enough rows
    every point trains on the same number of rows and only label quality varies.
    """
    pool = _pool(train_ids, seed=seed, cap=cap)
    specs = [
        RunSpec(
            name=f"{source} labels ({len(pool)} rows)",
            experiment="label_quality",
            x=source,
            train_ids=pool.tolist(),
            label_source=source,
            notes={"rows": len(pool)},
        )
        for source in ("original", "curated")
    ]
    if confidence is None:
        return specs
    conf = confidence.reindex(list(train_ids))
    for t in sorted(set(thresholds)):
        passing = conf.index[conf.to_numpy() >= t].to_numpy()
        if len(passing) < 2:
            continue
        chosen = _pool(passing, seed=seed, cap=cap)
        specs.append(
            RunSpec(
                name=f"confidence >= {t:g} ({len(chosen)} rows)",
                experiment="label_quality",
                x=float(t),
                train_ids=chosen.tolist(),
                label_source="curated",
                notes={"threshold": float(t), "rows": len(chosen), "available": len(passing)},
            )
        )
    return specs


def eval_ids(test_ids: Sequence[int], *, seed: int = 0, cap: int | None = None) -> list[int]:
    """The fixed evaluation rows: a seeded sample of the test split, the same for every run."""
    ids = np.asarray(sorted(test_ids), dtype=int)
    if cap is not None and len(ids) > cap:
        ids = np.sort(np.random.default_rng(seed + 1).choice(ids, size=cap, replace=False))
    return ids.tolist()
