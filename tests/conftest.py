"""Shared fixtures: small real datasets and workspaces made in tmp folders."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from data.records import AnalysisSummary
from data.store import Workspace
from training.config import TrainingConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _speeds_in_tmp(tmp_path, monkeypatch):
    """Speeds measured while a test embeds or trains (runtime.estimates) go to its tmp folder:
    never to the real workspaces home, and never into another test's estimates."""
    monkeypatch.setenv("SECOND_LOOK_SPEEDS", str(tmp_path / ".speeds.json"))


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


# -------------------------------------------------------------------- store backends
# Store test modules whose tests run on both backends: each test gets a ``[sqlite]`` and a
# ``[postgresql]`` variant (the latter skipped without SECOND_LOOK_TEST_DATABASE_URL), except
# the ones named here, which test what only an SQLite file has. (Not test_jobs: with a database
# URL set, team mode is on and jobs.launch only queues; test_worker runs jobs on both.)
BOTH_BACKENDS: dict[str, dict[str, str]] = {
    "test_store": {
        "test_failed_import_leaves_no_workspace": "expects sqlite3.IntegrityError",
    },
    "test_review_store": {},
    "test_bulk_state": {},
    "test_concurrency": {},
    "test_worker": {},
    "test_team_app": {
        "test_solo_mode_refuses_to_serve_off_loopback": "solo mode: no database URL",
        "test_solo_mode_on_loopback_is_unchanged": "solo mode: no database URL",
    },
    "test_sql_injection": {},
    "test_vectors": {},
    "test_store_issues": {
        "test_a_version_2_workspace_is_upgraded_in_place_keeping_its_labels": (
            "upgrades an SQLite file of schema version 2"
        ),
    },
}


def pytest_generate_tests(metafunc):
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    skipped = BOTH_BACKENDS.get(module)
    if skipped is None or metafunc.function.__name__ in skipped:
        return
    if "store_backend" not in metafunc.fixturenames:
        metafunc.fixturenames.append("store_backend")
    metafunc.parametrize("store_backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def store_backend(request, monkeypatch):
    """Where the workspaces a test creates live: ``"sqlite"`` (the default) or, when a test is
    parametrised over both (:data:`BOTH_BACKENDS`), ``"postgresql"``: a fresh database on the
    test cluster, named by SECOND_LOOK_DATABASE_URL for the test's length."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield backend
        return
    from tests.pg import fresh_database

    databases = fresh_database()
    monkeypatch.setenv("SECOND_LOOK_DATABASE_URL", next(databases))
    yield backend
    databases.close()


@pytest.fixture
def workspace(tmp_path, sentiment_prepared, store_backend):
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
    import jobs

    def fake_launch(ws, kind, params):
        calls.append((kind, params))
        return ws.create_job(kind, params)

    monkeypatch.setattr(jobs, "launch", fake_launch)
    monkeypatch.setattr(jobs, "reap", lambda ws: None)
    return calls


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """The server's data folder (``SECOND_LOOK_DATA_DIR``): the Data page's path box reads
    only inside it, and shows no box without it."""
    folder = tmp_path / "data-dir"
    folder.mkdir()
    monkeypatch.setenv("SECOND_LOOK_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def downloads(monkeypatch):
    """``payload(download_button)``: the bytes an AppTest download button would serve.

    AppTest keeps served files in a media store that it drops after each run; recording the
    stores it creates lets a test read what a user would have downloaded.
    """
    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stores = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stores.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Recording)

    def payload(button) -> bytes:
        name = button.proto.url.rsplit("/", 1)[-1]
        for store in reversed(stores):
            try:
                return bytes(store.get_file(name).content)
            except Exception:  # noqa: BLE001 - not in this run's store; try an earlier one
                continue
        raise KeyError(f"no served file {name!r}")

    return payload


def scramble_derived_state(ws) -> None:
    """Overwrite every row's derived (materialised) review state with wrong values, behind the
    store's back, so a test of ``rebuild_state`` can only pass if it recomputes from the log."""
    import sqlite3

    sql = (
        "UPDATE samples SET label = given_label, excluded = 1 - excluded,"
        " reviewed = 1 - reviewed, reviewer = 'nobody', reviewed_at = NULL,"
        " n_reviewers = 7, conflict = 1 - conflict"
    )
    if ws.backend == "postgresql":
        from data.store.base import connect_postgres

        conn = connect_postgres(ws.schema)
        conn.execute(sql)
        conn.close()
        return
    with sqlite3.connect(ws.db_path) as conn:
        conn.execute(sql)


# --------------------------------------------------------------------------- AppTest

TIMEOUT = 60
ROOT = Path(__file__).resolve().parent.parent


def add_analysis(ws: Workspace) -> int:
    """A stored analysis without a model (the one factory for tests): quality rising with the row,
    the lowest fifth flagged and predicted as the other class. Returns its id."""
    rows = ws.samples()
    n = len(rows)
    quality = np.linspace(0.01, 0.99, n)
    flipped = {"positive": "negative", "negative": "positive"}
    return ws.save_analysis(
        pd.DataFrame(
            {
                "sample_id": rows["id"],
                "analyzed_label": rows["label"],
                "predicted_label": [
                    flipped[lab] if q < 0.2 else lab
                    for lab, q in zip(rows["label"], quality, strict=True)
                ],
                "predicted_prob": 0.9,
                "analyzed_prob": quality,
                "label_quality": quality,
                "is_label_issue": quality < 0.2,
            }
        ),
        method="test",
        settings={},
        label_version=ws.label_version(),
        summary=AnalysisSummary(n_issues=int((quality < 0.2).sum())),
    )


@pytest.fixture
def analysed(home, sentiment_prepared):
    ws = Workspace.create(home / "reviews", sentiment_prepared, name="reviews")
    add_analysis(ws)
    return ws


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at
