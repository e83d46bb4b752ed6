"""Seeded, stratified row sampling shared by fine-tuning and the experiment planner.

Pure numpy: no torch, no store. Every function returns sorted row *positions* so callers can
index texts, labels or sample ids with the result.
"""

from __future__ import annotations

import numpy as np


def stratified_sample(labels: np.ndarray, cap: int | None, *, seed: int) -> np.ndarray:
    """Sorted indices of at most ``cap`` rows keeping the class proportions of ``labels``.

    Every class keeps at least one row when ``cap`` allows it. ``cap=None`` or a cap at least
    the number of rows returns all indices.

    Examples
    --------
    >>> stratified_sample(np.array([0] * 8 + [1] * 2), 5, seed=0).size
    5
    """
    labels = np.asarray(labels)
    n = len(labels)
    if cap is None or cap >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = _class_quotas(counts, cap)
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
        for c, q in zip(classes, quotas, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def stratified_holdout(
    labels: np.ndarray, fraction: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split row positions into (kept, held out) with ``fraction`` of each class held out.

    Each class holds out ``round(fraction * count)`` rows but always keeps at least one row for
    training, so a rare class is never lost to the validation set. ``fraction=0`` holds out
    nothing.

    Examples
    --------
    >>> kept, held = stratified_holdout(np.array([0] * 10 + [1] * 10), 0.2, seed=0)
    >>> len(kept), len(held)
    (16, 4)
    """
    labels = np.asarray(labels)
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1) (got {fraction!r}).")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        k = min(int(round(fraction * len(rows))), len(rows) - 1)
        if k > 0:
            held.append(rng.choice(rows, size=k, replace=False))
    held_out = np.sort(np.concatenate(held)) if held else np.array([], dtype=int)
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


def validation_cap(train_cap: int | None, fraction: float) -> int | None:
    """Validation rows to keep when training is capped at ``train_cap`` rows.

    The same proportion as the uncapped split, so a 2,000-row CPU run with a 15% validation
    share evaluates ~350 rows per epoch rather than thousands.

    Examples
    --------
    >>> validation_cap(2000, 0.15)
    353
    >>> validation_cap(None, 0.15) is None
    True
    """
    if train_cap is None or fraction <= 0:
        return None
    return max(1, round(train_cap * fraction / (1 - fraction)))


def _class_quotas(counts: np.ndarray, cap: int) -> np.ndarray:
    exact = counts * cap / counts.sum()
    quotas = np.floor(exact).astype(int)
    if cap >= len(counts):
        # A rare class could round down to zero; keep one row of it so it is still learned.
        quotas = np.maximum(quotas, 1)
    # Hand out (or take back) the rounding difference by largest (smallest) remainder.
    by_remainder = np.argsort(-(exact - quotas), kind="stable")
    i = 0
    while quotas.sum() < cap:
        j = by_remainder[i % len(counts)]
        if quotas[j] < counts[j]:
            quotas[j] += 1
        i += 1
    while quotas.sum() > cap:
        j = int(np.argmax(quotas))
        quotas[j] -= 1
    return quotas
