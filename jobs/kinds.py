"""The job-kind registry: what each kind of background job runs, and on what.

A kind is a name (stored with the job), a title for people, whether it trains (and so may use
every visible GPU), and a ``run`` function. ``jobs.runner`` looks kinds up here instead of
branching on names, as cleanlab's Datalab looks up its issue managers: adding a kind (say, domain
adaptation) is one :func:`register` call, and nothing else in the runner changes.

The run functions import their layer when called, not at module import: a cancelled analysis
should not pay 2 s for transformers' Trainer just to report that it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.progress import Progress

# run(ws, params, job_id, progress, should_stop) -> the job's result (stored as JSON)
RunFunction = Callable[[Any, dict[str, Any], int, Progress, Callable[[], bool]], dict[str, Any]]


@dataclass(frozen=True)
class JobKind:
    """One kind of background job.

    Attributes
    ----------
    name
        Stored with each job (``analyze``, ``train``, ``experiment``).
    title
        What people read ("Analysis").
    trains
        True when the job fine-tunes models: it then runs one process per visible GPU.
    run
        Does the work in the job's process; raises :class:`runtime.progress.Cancelled` on a stop.
    permission
        The action (``data.store.accounts.PERMISSIONS``) a team member needs to start it and to
        cancel it: ``analyze`` or ``train``.
    """

    name: str
    title: str
    trains: bool
    run: RunFunction
    permission: str = "train"


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add a job kind to the registry (a second kind of the same name is an error)."""
    if kind.name in KINDS:
        raise ValueError(f"A job kind named {kind.name!r} is already registered.")
    KINDS[kind.name] = kind
    return kind


def job_kind(name: str) -> JobKind:
    """The registered kind called ``name``; a ``ValueError`` lists the valid names otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"Unknown job kind {name!r}; valid: {', '.join(KINDS)}.") from None


def _analyze(ws, params, job_id, progress, should_stop) -> dict[str, Any]:
    from curation.pipeline import analyze_workspace
    from runtime.encoder import EncoderSettings

    analysis_id = analyze_workspace(
        ws,
        method=params.get("method"),
        method_options=params.get("method_options"),
        settings=EncoderSettings(**params.get("encoder", {})),
        n_folds=int(params.get("n_folds", 5)),
        seed=int(params.get("seed", 0)),
        progress=progress,
        should_stop=should_stop,
    )
    return {"analysis_id": analysis_id}


def _training(experiment: str | None) -> RunFunction:
    """A run function for one training run (``experiment=None``) or a sweep named in params."""

    def run(ws, params, job_id, progress, should_stop) -> dict[str, Any]:
        from training.config import TrainingConfig
        from training.runs import run_experiment

        run_ids = run_experiment(
            ws,
            experiment or params.get("experiment", "single"),
            config=TrainingConfig.from_dict(params.get("config", {})),
            job_id=job_id,
            progress=progress,
            should_stop=should_stop,
            **params.get("options", {}),
        )
        return {"run_ids": run_ids}

    return run


def _adapt(ws, params, job_id, progress, should_stop) -> dict[str, Any]:
    from training.adapt import AdaptConfig, adapt_workspace

    result = adapt_workspace(
        ws,
        AdaptConfig.from_dict(params.get("config", {})),
        model=params.get("model", ""),
        output_dir=params.get("output") or None,
        progress=progress,
        should_stop=should_stop,
    )
    return {k: v for k, v in result.summary().items() if k != "history"}


def _calibrate(ws, params, job_id, progress, should_stop) -> dict[str, Any]:
    from runtime.encoder import EncoderSettings
    from training.calibration import calibrate
    from training.config import TrainingConfig

    rows = ws.samples()
    names = ws.label_names
    index = {name: i for i, name in enumerate(names)}
    speeds = calibrate(
        rows["text"].tolist(),
        [index[label] for label in rows["label"]],
        label_names=list(names),
        config=TrainingConfig.from_dict(params.get("config", {})),
        settings=EncoderSettings(**params.get("encoder", {})),
        progress=progress,
        should_stop=should_stop,
    )
    return {"speeds": speeds}


register(JobKind("analyze", "Analysis", trains=False, run=_analyze, permission="analyze"))
register(JobKind("train", "Training", trains=True, run=_training("single")))
register(JobKind("experiment", "Experiment", trains=True, run=_training(None)))
# Masked-LM training of the encoder on the texts: single-process on purpose (one GPU at most;
# trains=False keeps jobs.runner from launching it once per GPU).
register(JobKind("adapt", "Encoder adaptation", trains=False, run=_adapt))
# Times embedding, a short training and prediction (training/calibration.py): one process.
register(JobKind("calibrate", "Speed calibration", trains=False, run=_calibrate))
