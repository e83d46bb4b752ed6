"""What the local user chose last time, kept across app restarts (solo mode).

One small JSON file beside the workspaces (``<SECOND_LOOK_HOME>/preferences.json``): solo mode
has one user per home, so the reviewer name typed once is offered again after a restart instead
of being typed before every session. Preferences are a convenience, never data: a missing,
unreadable or damaged file reads as no preferences, and writing one never touches a workspace.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from data.store.base import workspaces_root

PREFERENCES_FILE = "preferences.json"
KEYS = ("reviewer",)


def _path(root: str | os.PathLike | None) -> Path:
    return (Path(root) if root is not None else workspaces_root()) / PREFERENCES_FILE


def load_preferences(root: str | os.PathLike | None = None) -> dict[str, str]:
    """The saved preferences (``{"reviewer": "ana"}``), or ``{}`` when there are none.

    Parameters
    ----------
    root
        The workspaces folder; default :func:`data.store.workspaces_root`.
    """
    try:
        saved = json.loads(_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict):
        return {}
    return {k: v for k, v in saved.items() if k in KEYS and isinstance(v, str)}


def save_preference(key: str, value: str, *, root: str | os.PathLike | None = None) -> None:
    """Remember ``value`` for ``key`` (one of :data:`KEYS`), replacing the file atomically.

    Raises
    ------
    ValueError
        For a key that is not a preference.
    """
    if key not in KEYS:
        raise ValueError(f"Unknown preference {key!r}; valid: {', '.join(KEYS)}.")
    path = _path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {**load_preferences(root), key: value}
    # Write beside, then rename: a crash mid-write leaves the old file, never half a file.
    fd, tmp = tempfile.mkstemp(prefix=".preferences-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(saved, f, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
