"""Typed records that cross layer boundaries, each with one versioned serialisation.

A record is written by one layer (a training run by :mod:`training.runs`) and read by others
(the store, the charts, the pages, the CLI). Its shape is defined here, once: readers use its
fields and never guess between an old and a new shape. Records stored by an earlier version are
upgraded by ``from_dict`` when they are read, in this one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

__all__ = ["METRIC_KEYS", "RunRecord", "run_metrics"]

# What a metrics dict of one subset (the test rows, or the verified ones) holds.
METRIC_KEYS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "confusion_matrix",
    "labels",
    "n",
)
_METRICS_VERSION = 2


def run_metrics(
    *, test: dict[str, Any], verified: dict[str, Any] | None, examples: dict[str, Any] | None
) -> dict[str, Any]:
    """A run's evaluation as stored (version 2): each part once, under its own name.

    Version 1 kept the test metrics twice, at the top level and under ``"test"``.
    """
    return {"version": _METRICS_VERSION, "test": test, "verified": verified, "examples": examples}


def _upgrade_metrics(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Any stored shape of a run's metrics as version 2."""
    if not stored:
        return run_metrics(test={}, verified=None, examples=None)
    if stored.get("version") == _METRICS_VERSION:
        return dict(stored)
    if "test" in stored:  # version 1: test metrics at the top level and under "test"
        return run_metrics(
            test=stored["test"], verified=stored.get("verified"), examples=stored.get("examples")
        )
    # Runs recorded before the verified subset existed: the metrics were the test metrics.
    test = {k: v for k, v in stored.items() if k not in ("verified", "examples")}
    return run_metrics(test=test, verified=stored.get("verified"), examples=stored.get("examples"))


def _json(value: Any, default: Any) -> Any:
    if value is None:
        return default
    return json.loads(value) if isinstance(value, str | bytes) else value


@dataclass
class RunRecord:
    """One training run: what it was asked to do, what it saw, and how it did.

    Attributes
    ----------
    id, name, status, job_id
        The run's id, its name ("seed 0, 50% of train"), ``running`` / ``done`` / ``failed`` /
        ``cancelled``, and the job that ran it.
    config
        The whole training config (``TrainingConfig.to_dict()``), with the run's own seed.
    data
        The data version: label source, noise, rows, label version, hashes of the row ids, and
        training facts (device, precision, speed); see :mod:`training.runs`.
    test, verified
        Metrics (``METRIC_KEYS``) on the test rows and on the verified subset (test rows a
        reviewer confirmed or corrected; every metric ``None`` and ``n`` 0 when there are
        none). ``test`` is empty until the run is done.
    examples
        The before/after table on fixed test rows (``{"new_head", "note", "rows"}``), or None.
    history
        Train loss per logging step and validation loss per evaluation.
    progress
        The latest progress report while it runs (or ``{"error": ...}`` when it failed).
    model_dir, created_at, finished_at
        Where the model was saved, and when the run started and ended (UTC, ISO 8601).
    """

    VERSION: ClassVar[int] = 2

    id: int
    name: str = ""
    status: str = "running"
    job_id: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    verified: dict[str, Any] | None = None
    examples: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    progress: dict[str, Any] = field(default_factory=dict)
    model_dir: str | None = None
    created_at: str | None = None
    finished_at: str | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"

    def metrics(self) -> dict[str, Any]:
        """The evaluation as stored: see :func:`run_metrics`."""
        return run_metrics(test=self.test, verified=self.verified, examples=self.examples)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with ``"version"``; :meth:`from_dict` reads it back."""
        return {"version": self.VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunRecord:
        """A record from :meth:`to_dict`, or from a store row of any version.

        A store row holds ``metrics`` (JSON text or a dict) in place of ``test`` / ``verified``
        / ``examples``; its older shapes are upgraded here.
        """
        values = dict(record)
        values.pop("version", None)
        if "metrics" in values or "test" not in values:
            metrics = _upgrade_metrics(_json(values.pop("metrics", None), None))
            values.update(
                test=metrics["test"] or {},
                verified=metrics["verified"],
                examples=metrics["examples"],
            )
        for name, default in (("config", {}), ("data", {}), ("history", []), ("progress", {})):
            values[name] = _json(values.get(name), default)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
