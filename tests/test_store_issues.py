"""Store schema 3: other issue types per row, the neighbour graph, duplicate groups, and the
upgrade of a version-2 workspace."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from data.store import Workspace
from data.store.base import SCHEMA_VERSION
from data.store.schema import V4_RENAMED_COLUMNS
from tests.legacy import downgrade_to_6


def _results(ws, **extra):
    rows = ws.samples()
    n = len(rows)
    frame = pd.DataFrame(
        {
            "sample_id": rows["id"],
            "analyzed_label": rows["label"],
            "predicted_label": rows["label"],
            "predicted_prob": np.full(n, 0.9),
            "analyzed_prob": np.full(n, 0.9),
            "label_quality": np.linspace(0.1, 0.9, n),
            "is_label_issue": np.zeros(n, bool),
        }
    )
    for k, v in extra.items():
        frame[k] = v
    return frame


def test_outliers_and_duplicate_groups_reach_the_queue_and_the_group_view(workspace):
    n = workspace.counts()["n"]
    groups = pd.array([pd.NA] * n, dtype="Int64")
    groups[0], groups[1] = 7, 7  # rows 0 and 1: same group, one label each below
    groups[2], groups[3] = 9, 9
    outlier = np.zeros(n, bool)
    outlier[5] = True
    workspace.relabel(1, "negative", reviewer="r")
    results = _results(
        workspace,
        is_outlier=outlier,
        outlier_score=np.linspace(0, 1, n),
        dup_group=groups,
        dup_conflict=[i < 2 for i in range(n)],
    )
    workspace.save_analysis(results, method="m", settings={}, label_version=1)
    page, total = workspace.review_queue(outlier=True)
    assert total == 1 and page["sample_id"].tolist() == [5] and page["is_outlier"].all()
    assert workspace.review_queue(duplicate=True)[1] == 4
    assert workspace.review_queue(dup_conflict=True)[1] == 2
    members, n_groups = workspace.duplicate_groups()
    assert n_groups == 2
    # The group whose members now carry different labels comes first.
    assert members["dup_group"].tolist() == [7, 7, 9, 9]
    assert members["conflicting"].tolist() == [True, True, False, False]
    assert workspace.duplicate_groups(conflicting_only=True)[1] == 1
    table = workspace.analysis_results()
    assert table["is_outlier"].sum() == 1 and table["dup_group"].notna().sum() == 4


def test_the_neighbor_graph_round_trips_and_explains_a_row_with_current_labels(workspace):
    n = workspace.counts()["n"]
    indices = np.array([[(i + 1) % n, (i + 2) % n] for i in range(n)])
    distances = np.tile(np.array([0.1, 0.2], dtype=np.float32), (n, 1))
    assert workspace.get_knn("enc") is None
    workspace.put_knn("enc", indices, distances)
    got = workspace.get_knn("enc")
    assert np.array_equal(got[0], indices) and np.allclose(got[1], distances)
    workspace.relabel(1, "negative", reviewer="r")
    near = workspace.neighbors(0, k=5, model_key="enc")
    assert near["sample_id"].tolist() == [1, 2]
    assert near.loc[0, "label"] == "negative" and bool(near.loc[0, "reviewed"])
    with pytest.raises(ValueError, match="n_samples"):
        workspace.put_knn("enc", indices[:3], distances[:3])


def test_a_version_2_workspace_is_upgraded_in_place_keeping_its_labels(workspace):
    workspace.relabel(3, "negative", reviewer="r")
    folder = workspace.folder
    workspace.close()
    downgrade_to_6(folder)
    conn = sqlite3.connect(folder / "store.sqlite")
    # Make it look like version 2: drop the new columns and tables.
    for col in ("is_outlier", "outlier_score", "dup_group", "dup_conflict"):
        for index in ("samples_outlier", "samples_dup", "samples_dup_conflict"):
            conn.execute(f"DROP INDEX IF EXISTS {index}")
        conn.execute(f"ALTER TABLE samples DROP COLUMN {col}")
    conn.execute("DROP TABLE knn")
    # ... and give the columns version 4 renamed their old names.
    for table, old, new in V4_RENAMED_COLUMNS:
        conn.execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {old}")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    ws = Workspace(folder)
    assert ws.info()["schema_version"] == SCHEMA_VERSION
    assert ws.sample(3)["label"] == "negative" and ws.sample(3)["given_label"] == "positive"
    assert ws.review_queue(outlier=True)[1] == 0
    assert ws.get_knn("enc") is None
    ws.close()
