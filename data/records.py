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

__all__ = [
    "ACTIVE_JOB_STATUSES",
    "METRIC_KEYS",
    "AnalysisRecord",
    "AnalysisSummary",
    "JobRecord",
    "RunRecord",
    "run_metrics",
]

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
    "roc",
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


def _check_version(cls: type, version: Any) -> None:
    """Refuse a record written by a newer version of the app (its shape is unknown here)."""
    if version is not None and version != cls.VERSION:
        raise ValueError(
            f"{cls.__name__} version {version!r} is not one this app reads (it reads version "
            f"{cls.VERSION} and older, unversioned shapes); was it written by a newer version?"
        )


def _known(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


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
        none). ``test`` is empty until the run is done. ``roc`` holds the ROC curves
        (:func:`training.metrics.roc_curves`); read it with :meth:`roc`.
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

    def roc(self, subset: str = "test") -> dict[str, Any] | None:
        """The ROC curves kept for ``subset`` (``"test"`` or ``"verified"``), or None.

        Upgrade rule: runs recorded before ROC curves were kept have no ``roc`` key in their
        metrics (and an empty subset has ``roc`` None); both read as None here, never as an
        error. A kept ``roc`` with no curves means the subset held a single class.
        """
        if subset not in ("test", "verified"):
            raise ValueError(f"Unknown subset {subset!r}; valid: 'test', 'verified'.")
        metrics = self.test if subset == "test" else self.verified
        return (metrics or {}).get("roc")

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
        _check_version(cls, values.pop("version", None))
        if "metrics" in values or "test" not in values:
            metrics = _upgrade_metrics(_json(values.pop("metrics", None), None))
            values.update(
                test=metrics["test"] or {},
                verified=metrics["verified"],
                examples=metrics["examples"],
            )
        for name, default in (("config", {}), ("data", {}), ("history", []), ("progress", {})):
            values[name] = _json(values.get(name), default)
        return cls(**_known(cls, values))


# A job that has not ended: waiting for its process, or running.
ACTIVE_JOB_STATUSES = ("queued", "running")


@dataclass
class JobRecord:
    """One background job (an analysis, a training run, an experiment) as the store holds it.

    Attributes
    ----------
    id, kind, status
        The job's id, its kind (``analyze`` / ``train`` / ``experiment``) and ``queued`` /
        ``running`` / ``done`` / ``failed`` / ``cancelled``.
    params
        What the job was asked to do (its kind's parameters).
    progress
        The latest progress report (``{"stage", "done", "total", ...}``); empty before the
        first one.
    result
        What the job returned when done (``{"analysis_id"}``, ``{"run_ids"}``); empty before.
    error
        Why it failed (or that it was killed after a cancel), else None.
    pid
        The process (group leader) running it, once launched.
    cancel_requested
        Whether someone asked it to stop.
    created_at, started_at, finished_at
        When it was queued, started and ended (UTC, ISO 8601).
    worker, heartbeat_at, attempts
        The worker that claimed it (``"host:pid"``, None when the app launched it or before a
        claim), when that worker last said it is alive (UTC, ISO 8601), and how many times it
        was claimed (a job whose worker stopped heartbeating is re-queued once).
    """

    VERSION: ClassVar[int] = 1

    id: int
    kind: str
    status: str = "queued"
    params: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    pid: int | None = None
    cancel_requested: bool = False
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    worker: str | None = None
    heartbeat_at: str | None = None
    attempts: int = 0

    @property
    def active(self) -> bool:
        """Queued or running: it has not ended."""
        return self.status in ACTIVE_JOB_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with ``"version"``; :meth:`from_dict` reads it back."""
        return {"version": self.VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> JobRecord:
        """A record from :meth:`to_dict`, or a ``jobs`` store row (JSON text in ``params``,
        ``progress`` and ``result``, NULL before they are set; ``cancel_requested`` 0/1)."""
        values = dict(record)
        _check_version(cls, values.pop("version", None))
        for name in ("params", "progress", "result"):
            values[name] = _json(values.get(name), {})
        values["cancel_requested"] = bool(values.get("cancel_requested"))
        values["attempts"] = int(values.get("attempts") or 0)
        return cls(**_known(cls, values))


@dataclass
class AnalysisSummary:
    """The headline numbers of one analysis, as :mod:`curation.pipeline` builds them.

    Attributes
    ----------
    n, n_issues, issue_rate
        Rows scored, rows flagged as likely label errors, and their share (0 with no rows).
    issues_per_class
        Given label -> flagged rows (every class listed, also with 0).
    issue_pairs
        ``{"given", "predicted", "count"}`` among the flagged rows, most frequent first.
    issue_types, k, metric
        Which other issue types Datalab checked (``near_duplicate``, ``outlier``), over how
        many neighbours and with which distance.
    near_duplicate, outlier
        Datalab's counts and thresholds per issue type (``{"n_issues", ...}``); None when that
        type was not checked.
    health
        Per-class noise (cleanlab's ``health_summary``: ``num_label_issues``, ``per_class``,
        ``noise_matrix``...); empty when not computed.
    method, method_info
        Where the probabilities came from, and what that method reports about itself.
    annotators, consensus_differs
        With annotator columns: a quality per annotator (``{"annotator", ...}`` records) and how
        many rows' consensus label differs from the label; ``[]`` and 0 without.
    timings
        Seconds per stage (``embed_seconds``, ``total_seconds``...) and ``rows``.
    encoder
        The encoder, described for people.
    """

    VERSION: ClassVar[int] = 1

    n: int = 0
    n_issues: int = 0
    issue_rate: float = 0.0
    issues_per_class: dict[str, int] = field(default_factory=dict)
    issue_pairs: list[dict[str, Any]] = field(default_factory=list)
    issue_types: list[str] = field(default_factory=list)
    k: int | None = None
    metric: str | None = None
    near_duplicate: dict[str, Any] | None = None
    outlier: dict[str, Any] | None = None
    health: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    method_info: dict[str, Any] = field(default_factory=dict)
    annotators: list[dict[str, Any]] = field(default_factory=list)
    consensus_differs: int = 0
    timings: dict[str, Any] = field(default_factory=dict)
    encoder: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with ``"version"`` (what the store keeps); :meth:`from_dict` reads
        it back."""
        return {"version": self.VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any] | str | None) -> AnalysisSummary:
        """A summary from :meth:`to_dict` (a dict or its JSON text), or an older one.

        Summaries stored before they were versioned lack keys (an empty one was stored when
        none was given; ``encoder``, ``annotators``, ``consensus_differs``... came later):
        each missing key takes its default here. Stored nulls read as the defaults too.
        """
        values = dict(_json(record, {}))
        _check_version(cls, values.pop("version", None))
        # A stored null reads as the field's default, like a missing key.
        values = {k: v for k, v in values.items() if v is not None}
        return cls(**_known(cls, values))


@dataclass
class AnalysisRecord:
    """One stored analysis: when, how (method and settings), on which labels, and its summary.

    Attributes
    ----------
    id, created_at
        The analysis's id and when it was stored (UTC, ISO 8601).
    method
        Where the probabilities came from (also in ``summary.method``).
    settings
        What it ran with: the encoder settings, ``model_key``, ``n_folds``, ``seed`` and the
        method's options.
    label_version
        The label events it scored (the last event id): labels changed since when the
        workspace's label version is higher.
    summary
        Its headline numbers (:class:`AnalysisSummary`).
    """

    VERSION: ClassVar[int] = 1

    id: int
    created_at: str
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    label_version: int = 0
    summary: AnalysisSummary = field(default_factory=AnalysisSummary)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with ``"version"``; :meth:`from_dict` reads it back."""
        return {
            "version": self.VERSION,
            **asdict(self),
            "summary": self.summary.to_dict(),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> AnalysisRecord:
        """A record from :meth:`to_dict`, or an ``analyses`` store row (JSON text in
        ``settings`` and ``summary``). A summary stored without its method takes the row's."""
        values = dict(record)
        _check_version(cls, values.pop("version", None))
        values["settings"] = _json(values.get("settings"), {})
        summary = _json(values.get("summary"), {})
        if not summary.get("method"):  # summaries once lacked the method
            summary = {**summary, "method": values.get("method") or ""}
        values["summary"] = AnalysisSummary.from_dict(summary)
        values["label_version"] = int(values.get("label_version") or 0)
        return cls(**_known(cls, values))
