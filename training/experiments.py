"""Experiments as lists of run specs: which rows, which labels, which seed, one config.

Planning is pure (ids in, specs out) so it is tested without training anything; the runner in
:mod:`training.runs` executes the specs one by one, every one on the same evaluation rows.

- Data size (:func:`plan_data_size`): nested fractions of the training rows, for each of
  several seeds; each seed draws its own nested subsets and trains with its own seed, so a
  chart shows mean +- std per size.
- Learning rate (:func:`plan_learning_rate`): the same rows trained at each of several learning
  rates, for each of several seeds; a chart shows mean +- std per rate on a log axis.
- Label quality (:func:`plan_label_quality`): original vs curated labels on the same rows;
  curated labels with injected noise (uniform flips to another class on the training rows,
  nested across rates: :func:`inject_noise`); curated labels on rows above crowd-confidence
  thresholds when the data has a confidence column.

Every spec carries a ``series`` (``"data size"``, ``"learning rate"``, ``"labels"``, ``"noise"``,
``"confidence"``)
and an ``x`` within it; the curated-labels run is also the 0% point of the noise series
(``notes["also"]``).

Example
-------
>>> specs = plan_data_size(list(range(100)), fractions=(0.1, 0.5, 1.0), seed=0)
>>> [len(s.train_ids) for s in specs]
[10, 50, 100]
>>> set(specs[0].train_ids) <= set(specs[1].train_ids)  # nested: each subset grows the last
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

LABEL_SOURCES = ("curated", "original")
EXPERIMENTS = ("data_size", "label_quality", "learning_rate")
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
DEFAULT_THRESHOLDS = (0.5, 0.7, 0.9, 1.0)
DEFAULT_NOISE_RATES = (0.1, 0.2, 0.3)
# Three seeds: the fewest that give a standard deviation worth drawing.
DEFAULT_SEED_COUNT = 3
SERIES = ("single", "data size", "learning rate", "labels", "noise", "confidence")
# The learning-rate sweep's default rates: 1e-5 to 1e-3 on a 1-3-10 log grid (even steps of
# about half a decade, with round numbers a person can type back).
DEFAULT_RATE_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)


@dataclass
class RunSpec:
    """One training run of an experiment: a name, the rows, and which labels to train on."""

    name: str
    experiment: str
    x: float | str  # the chart's x value: a fraction, a label source, a threshold
    train_ids: list[int]
    label_source: str = "curated"
    notes: dict[str, Any] = field(default_factory=dict)
    # The run's seed (row order, head initialisation, shuffling, noise); None = config.seed.
    seed: int | None = None
    # Share of training rows whose (curated or original) label is flipped to another class.
    noise_rate: float = 0.0
    # The run's learning rate; None = config.learning_rate (the learning-rate sweep sets it).
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1) (got {self.learning_rate!r}).")
        if not 0 <= self.noise_rate < 1:
            raise ValueError(f"noise_rate must be in [0, 1) (got {self.noise_rate!r}).")
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
    seeds: Sequence[int] | None = None,
) -> list[RunSpec]:
    """Nested subsets of the training rows: each fraction is a prefix of one seeded order.

    Nesting makes the curve about size alone: the 50% run sees every row the 25% run saw.
    ``cap`` first cuts the pool (e.g. the CPU sample cap), then fractions apply to the pool.
    With ``seeds``, every seed draws its own order (its own nested subsets) and its runs train
    with that seed; without, ``seed`` alone. Specs come seed by seed, smallest fraction first.
    """
    bad = [f for f in fractions if not 0 < f <= 1]
    if not fractions or bad:
        raise ValueError(f"fractions must be in (0, 1]; got {list(fractions)}.")
    specs = []
    for s in _check_seeds(seeds, seed):
        pool = _pool(train_ids, seed=s, cap=cap)
        for frac in sorted(set(fractions)):
            n = max(1, round(frac * len(pool)))
            specs.append(
                RunSpec(
                    name=f"size {frac:.0%} ({n} rows, seed {s})",
                    experiment="data_size",
                    x=float(frac),
                    train_ids=pool[:n].tolist(),
                    label_source=label_source,
                    notes={
                        "series": "data size",
                        "fraction": float(frac),
                        "rows": n,
                        "pool": len(pool),
                    },
                    seed=s,
                )
            )
    return specs


def plan_learning_rate(
    train_ids: Sequence[int],
    *,
    rates: Sequence[float] = DEFAULT_RATE_GRID,
    seed: int = 0,
    cap: int | None = None,
    seeds: Sequence[int] | None = None,
    label_source: str = "curated",
) -> list[RunSpec]:
    """The same training rows at each learning rate, for each seed: rates x seeds runs.

    Within a seed every rate trains on the same rows (one seeded draw, cut to ``cap``) with the
    same seed, so the curve is about the rate alone; each seed draws its own rows. Specs come
    seed by seed, smallest rate first.

    Examples
    --------
    >>> specs = plan_learning_rate(range(10), rates=(1e-4, 1e-5), seeds=[0, 1])
    >>> [(s.learning_rate, s.seed) for s in specs]
    [(1e-05, 0), (0.0001, 0), (1e-05, 1), (0.0001, 1)]
    """
    chosen = sorted(set(float(r) for r in rates))
    if not chosen or any(not 0 < r < 1 for r in chosen):
        raise ValueError(
            f"learning rates must be in (0, 1) (got {list(rates)}); e.g. [1e-5, 1e-4, 1e-3]."
        )
    specs = []
    for s in _check_seeds(seeds, seed):
        pool = _pool(train_ids, seed=s, cap=cap)
        specs.extend(
            RunSpec(
                name=f"lr {rate_label(rate)} ({len(pool)} rows, seed {s})",
                experiment="learning_rate",
                x=rate,
                train_ids=pool.tolist(),
                label_source=label_source,
                notes={"series": "learning rate", "rows": len(pool)},
                seed=s,
                learning_rate=rate,
            )
            for rate in chosen
        )
    return specs


def rate_label(rate: float) -> str:
    """A learning rate as people write it: ``1e-5``, ``3e-5``, ``2.5e-4``, ``0.1``.

    Examples
    --------
    >>> [rate_label(r) for r in (1e-5, 3e-05, 0.00025, 0.1, 3.16e-5)]
    ['1e-5', '3e-5', '2.5e-4', '0.1', '3.2e-5']
    """
    rate = float(rate)
    if rate >= 0.01:
        return f"{rate:.2g}"
    mantissa, exponent = f"{rate:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _check_seeds(seeds: Sequence[int] | None, seed: int) -> list[int]:
    chosen = [seed] if seeds is None else list(seeds)
    bad = [s for s in chosen if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0]
    if not chosen or bad or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"seeds must be distinct whole numbers >= 0 (got {list(chosen)}); e.g. [0, 1, 2]."
        )
    return [int(s) for s in chosen]


def plan_label_quality(
    train_ids: Sequence[int],
    *,
    confidence: pd.Series | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    seed: int = 0,
    cap: int | None = None,
    noise_rates: Sequence[float] = (),
    seeds: Sequence[int] | None = None,
) -> list[RunSpec]:
    """Original vs curated labels on the same rows; curated labels with injected noise; and,
    with a crowd ``confidence`` per row (indexed by sample id), curated labels on rows with
    confidence >= each threshold.

    The original/curated pair differs only in labels, so the gap is the effect of curation.
    Noise runs train on the curated run's rows with ``noise_rate`` of their labels flipped
    (:func:`inject_noise`, applied by the runner); the curated run is their 0% point.
    Threshold runs draw up to ``cap`` rows from those passing the threshold, so with enough rows
    every point trains on the same number of rows and only label quality varies. With
    ``seeds``, the whole plan is repeated per seed (each seed its own rows).
    """
    rates = sorted(set(float(r) for r in noise_rates))
    if any(not 0 < r < 1 for r in rates):
        raise ValueError(
            f"noise_rates must be in (0, 1) (got {list(noise_rates)}); e.g. [0.1, 0.2, 0.3] "
            "(0% noise is the curated-labels run)."
        )
    specs: list[RunSpec] = []
    for s in _check_seeds(seeds, seed):
        pool = _pool(train_ids, seed=s, cap=cap)
        for source in ("original", "curated"):
            notes: dict[str, Any] = {"series": "labels", "rows": len(pool)}
            if source == "curated":
                notes["also"] = [{"series": "noise", "x": 0.0}]
            specs.append(
                RunSpec(
                    name=f"{source} labels ({len(pool)} rows, seed {s})",
                    experiment="label_quality",
                    x=source,
                    train_ids=pool.tolist(),
                    label_source=source,
                    notes=notes,
                    seed=s,
                )
            )
        specs.extend(
            RunSpec(
                name=f"curated labels + {rate:.0%} noise ({len(pool)} rows, seed {s})",
                experiment="label_quality",
                x=rate,
                train_ids=pool.tolist(),
                notes={"series": "noise", "rows": len(pool)},
                seed=s,
                noise_rate=rate,
            )
            for rate in rates
        )
        specs.extend(_threshold_specs(train_ids, confidence, thresholds, seed=s, cap=cap))
    return specs


def _threshold_specs(
    train_ids: Sequence[int],
    confidence: pd.Series | None,
    thresholds: Sequence[float],
    *,
    seed: int,
    cap: int | None,
) -> list[RunSpec]:
    if confidence is None:
        return []
    conf = confidence.reindex(list(train_ids))
    specs = []
    for t in sorted(set(thresholds)):
        passing = conf.index[conf.to_numpy() >= t].to_numpy()
        if len(passing) < 2:
            continue
        chosen = _pool(passing, seed=seed, cap=cap)
        specs.append(
            RunSpec(
                name=f"confidence >= {t:g} ({len(chosen)} rows, seed {seed})",
                experiment="label_quality",
                x=float(t),
                train_ids=chosen.tolist(),
                label_source="curated",
                notes={
                    "series": "confidence",
                    "threshold": float(t),
                    "rows": len(chosen),
                    "available": len(passing),
                },
                seed=seed,
            )
        )
    return specs


def inject_noise(
    labels: Sequence[int] | np.ndarray, rate: float, *, n_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``round(rate * n)`` labels, chosen at random, each to a uniformly drawn other class.

    The flips are nested across rates for a seed: the rows flipped at 10% are among those
    flipped at 20%, and a row flipped at both gets the same wrong label, so a noise curve
    differs only in how much noise there is.

    Parameters
    ----------
    labels
        Class ids in ``0 .. n_classes - 1`` (the training rows, in the run's order).
    rate
        Share of rows to flip, in [0, 1).
    n_classes
        Number of classes (at least 2).
    seed
        Seed of the flip draw.

    Returns
    -------
    (noisy, flipped)
        The labels after flipping, and the sorted positions of the flipped rows.

    Examples
    --------
    >>> labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    >>> noisy, flipped = inject_noise(labels, 0.3, n_classes=3, seed=0)
    >>> len(flipped), bool((noisy[flipped] != labels[flipped]).all())
    (3, True)
    """
    y = np.asarray(labels, dtype=np.int64)
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1) (got {rate!r}); e.g. 0.1 for 10% noise.")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2 (got {n_classes}).")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be class ids in 0..{n_classes - 1}.")
    # A stream of its own (not the row-order one) so changing the rate moves nothing else.
    rng = np.random.default_rng([seed, 7919])
    order = rng.permutation(len(y))
    shift = rng.integers(1, n_classes, size=len(y))
    flipped = np.sort(order[: int(round(rate * len(y)))])
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + shift[flipped]) % n_classes
    return noisy, flipped


def ids_hash(ids: Sequence[int]) -> str:
    """A short, order-independent fingerprint of a set of sample ids (the data version).

    Examples
    --------
    >>> ids_hash([3, 1, 2]) == ids_hash([1, 2, 3])
    True
    """
    text = ",".join(str(int(i)) for i in sorted(ids))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def probe_ids(test_ids: Sequence[int], *, seed: int = 0, n: int = 20) -> list[int]:
    """A fixed, seeded sample of test rows for the before/after prediction table.

    Drawn from the seed before training, never by outcome. Twenty rows, not eight: with eight,
    a 73% model shows 8 of 8 correct in one run out of twelve, which reads as cherry-picked.
    """
    ids = np.asarray(sorted(test_ids), dtype=int)
    if len(ids) <= n:
        return ids.tolist()
    return np.sort(np.random.default_rng(seed + 2).choice(ids, size=n, replace=False)).tolist()


def eval_ids(test_ids: Sequence[int], *, seed: int = 0, cap: int | None = None) -> list[int]:
    """The fixed evaluation rows: a seeded sample of the test split, the same for every run."""
    ids = np.asarray(sorted(test_ids), dtype=int)
    if cap is not None and len(ids) > cap:
        ids = np.sort(np.random.default_rng(seed + 1).choice(ids, size=cap, replace=False))
    return ids.tolist()
