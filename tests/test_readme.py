"""The README's notebook example runs as printed, on a small file with one planted label flip."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from tests.conftest import NEGATIVE, POSITIVE

ROOT = Path(__file__).resolve().parent.parent


def notebook_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## In a notebook", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_the_notebook_example_runs_as_printed(tmp_path, monkeypatch):
    labels = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    labels[2] = "negative"  # a planted flip: the likeliest error
    pd.DataFrame({"text": POSITIVE + NEGATIVE, "label": labels}).to_csv(
        tmp_path / "reviews.csv", index=False
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(notebook_block(), "README.md", "exec"), namespace)  # noqa: S102
    curated = pd.read_csv(tmp_path / "curated.csv", dtype=str, keep_default_na=False)
    assert curated["text"].tolist() == POSITIVE + NEGATIVE
    # The first row of the queue was accepted: its label is now the model's suggestion.
    queue = namespace["queue"]
    first = int(queue.sample_id[0])
    assert curated.loc[first, "label"] == queue.predicted_label[0]
    assert curated.loc[first, "changed"] == "True" and curated.loc[first, "reviewer"] == "me"
    assert namespace["total"] == len(labels) and first == 2
