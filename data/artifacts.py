"""Checksums of the files a job leaves on disk (a trained model's folder), so that a missing or
changed file is reported instead of silently used.

Model folders live under ``SECOND_LOOK_HOME`` (a run's folder in its workspace), which every app
replica and worker shares; the workspace's database keeps each run's checksums
(``RunRecord.data["model_files"]``).

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "config.json").write_text("{}")
>>> sums = folder_checksums(folder)
>>> artifact_problems(folder, sums)
[]
>>> _ = (folder / "config.json").write_text('{"changed": 1}')
>>> artifact_problems(folder, sums)
['config.json has changed since it was saved']
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def folder_checksums(folder: str | os.PathLike) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (paths with ``/``)."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def artifact_problems(folder: str | os.PathLike, expected: dict[str, str]) -> list[str]:
    """What differs between ``folder`` and the checksums taken when it was saved: missing and
    changed files (files added since are left alone: they change nothing that was saved)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"the folder {folder} is missing"]
    problems = []
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif file_sha256(path) != digest:
            problems.append(f"{name} has changed since it was saved")
    return problems
