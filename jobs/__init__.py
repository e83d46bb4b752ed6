"""Background work: the job kinds (analysis, training, experiments), launching, cancelling.

The only layer that knows both ``curation/`` and ``training/``. Pages and the CLI start work
with :func:`launch` and poll the store; ``python -m jobs WORKSPACE_DIR JOB_ID`` is a job's
process (the worker entry point).
"""

from jobs.kinds import KINDS, JobKind, job_kind, register
from jobs.runner import cancel, child_command, gpus_for, launch, reap, run_job

__all__ = [
    "KINDS",
    "JobKind",
    "cancel",
    "child_command",
    "gpus_for",
    "job_kind",
    "launch",
    "reap",
    "register",
    "run_job",
]
