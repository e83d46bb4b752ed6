"""Shared fixtures: small real datasets and workspaces made in tmp folders."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pandas as pd
import pytest

from training.config import TrainingConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = [
    "I love this phone, the battery lasts forever",
    "Absolutely wonderful service, thank you so much",
    "Best purchase I have made all year",
    "The food was delicious and the staff were lovely",
    "What a fantastic movie, I enjoyed every minute",
    "Great quality and fast delivery, very happy",
    "This made my day, brilliant work",
    "Superb experience, I will come back again",
    "I am delighted with how well this works",
    "Excellent value, highly recommended",
    "The concert was amazing and the crowd was joyful",
    "Such a beautiful and heartwarming story",
]
NEGATIVE = [
    "I hate this phone, the battery dies in an hour",
    "Terrible service, nobody answered my calls",
    "Worst purchase I have made all year",
    "The food was cold and the staff were rude",
    "What an awful movie, a complete waste of time",
    "Poor quality and the delivery was late, very upset",
    "This ruined my day, horrible work",
    "Dreadful experience, I will never come back",
    "I am furious that this broke after a day",
    "Awful value, do not buy this",
    "The concert was a disaster and the sound was painful",
    "Such a boring and depressing story",
]

# A training config that runs in seconds on the packaged model (tests of runs and jobs).
TINY = TrainingConfig(
    epochs=1.0,
    batch_size=8,
    max_length=32,
    max_train_samples=None,
    max_eval_samples=None,
    precision="fp32",
)


def make_prepared(texts, labels, *, splits=None, label_names=None, metas=None):
    """A PreparedDataset-shaped object without going through the readers."""
    n = len(texts)
    frame = pd.DataFrame(
        {
            "ext_id": [str(i) for i in range(n)],
            "text": list(texts),
            "label": list(labels),
            "split": list(splits) if splits is not None else ["train"] * n,
            "meta": list(metas) if metas is not None else [{} for _ in range(n)],
            "encoding_fixed": [False] * n,
        }
    )
    return SimpleNamespace(
        frame=frame,
        label_names=label_names or sorted(set(labels)),
        text_column="text",
        label_column="label",
        id_column=None,
        split_column=None,
        split_seed=0,
        test_size=0.25,
        warnings=[],
        encoding="utf-8",
        dropped_rows=0,
    )


@pytest.fixture
def sentiment_prepared():
    texts = POSITIVE + NEGATIVE
    labels = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    splits = ["test" if i % 4 == 0 else "train" for i in range(len(texts))]
    return make_prepared(texts, labels, splits=splits)


@pytest.fixture
def workspace(tmp_path, sentiment_prepared):
    from data.store import Workspace

    ws = Workspace.create(tmp_path / "ws", sentiment_prepared, name="test")
    yield ws
    ws.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty SECOND_LOOK_HOME for the app's workspaces."""
    monkeypatch.setenv("SECOND_LOOK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def launched(monkeypatch):
    """Background jobs are recorded as ``(kind, params)`` and queued, never started."""
    calls = []
    from training import jobs

    def fake_launch(ws, kind, params):
        calls.append((kind, params))
        return ws.create_job(kind, params)

    monkeypatch.setattr(jobs, "launch", fake_launch)
    monkeypatch.setattr(jobs, "reap", lambda ws: None)
    return calls
