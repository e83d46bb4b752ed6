"""The layers import one way: down. A test walks every import (also those inside functions).

Order, bottom to top (see README, "Where things are"):

    data  <  runtime  <  training  <  curation  <  jobs  <  faces (app.py, app_pages/, cli.py,
                                                                   commands/, serving/)

A module may import its own package and any package below it, never one above. ``training``
sits below ``curation`` because detection uses trained models (the fine-tuned K-fold method
trains through ``training.finetune``) while training never needs detection.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["data", "runtime", "training", "curation", "jobs", "faces"]
FACES = {"app", "app_pages", "cli", "commands", "serving"}
OURS = {"data", "runtime", "training", "curation", "jobs", *FACES}


def layer_of(top: str) -> str:
    return "faces" if top in FACES else top


def our_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) for every import of one of our packages in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in OURS]
    return found


def modules() -> list[Path]:
    paths = [ROOT / "app.py", ROOT / "cli.py"]
    for package in (
        "data",
        "runtime",
        "training",
        "curation",
        "jobs",
        "app_pages",
        "commands",
        "serving",
    ):
        paths += sorted((ROOT / package).rglob("*.py"))
    return paths


def upward_imports(path: Path, root: Path = ROOT) -> list[str]:
    here = layer_of(path.relative_to(root).parts[0].removesuffix(".py"))
    rank = LAYERS.index(here)
    return [
        f"{path.relative_to(root)}:{line} imports {top} ({layer_of(top)} is above {here})"
        for line, top in our_imports(path)
        if LAYERS.index(layer_of(top)) > rank
    ]


def test_every_package_is_walked():
    walked = {p.relative_to(ROOT).parts[0] for p in modules()}
    assert {"data", "runtime", "training", "curation", "jobs", "app_pages", "serving"} <= walked
    assert len(modules()) > 50


def test_no_import_points_up():
    problems = [problem for path in modules() for problem in upward_imports(path)]
    assert problems == []


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        ("data/x.py", "def f():\n    from curation.pipeline import analyze\n", 1),
        ("runtime/x.py", "import training.config\n", 1),
        ("training/x.py", "from curation import methods\n", 1),
        ("curation/x.py", "from jobs import launch\n", 1),
        ("jobs/x.py", "import app_pages.review\n", 1),
        ("training/x.py", "from serving.app import serve\n", 1),
        ("serving/x.py", "from training.inference import predict_loaded\n", 0),
        ("curation/x.py", "from training.config import TrainingConfig\nimport data.store\n", 0),
        ("app_pages/x.py", "import jobs\nfrom curation.pipeline import analyze\n", 0),
    ],
)
def test_the_walk_sees_an_upward_import(tmp_path, where, source, expected):
    # The check itself can fail: a planted upward import (also one inside a function) is found.
    path = tmp_path / where
    path.parent.mkdir(parents=True)
    path.write_text(source)
    assert len(upward_imports(path, tmp_path)) == expected
