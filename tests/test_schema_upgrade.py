"""Schema version 4 (the one vocabulary): a version-3 workspace, and a restore from a version-3
backup, open with every sample, label event, analysis result, job and export intact under the
new names (``given_label``, ``analyzed_label``, ``analyzed_prob``, stage ``neighbors``)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest

from data.export import FORMATS, export_dataset
from data.store import Workspace, restore_workspace
from data.store.backup import BACKUP_DIR, BACKUP_NAME
from data.store.base import SCHEMA_VERSION, upgrade_schema
from tests.conftest import add_analysis
from tests.legacy import downgrade_to_6

# Version 3's columns, as its schema.py wrote them (git history), where version 4 renamed them.
V3_SAMPLES = (
    "id ext_id text original_label split meta encoding_fixed label excluded reviewed reviewer"
    " reviewed_at n_reviewers conflict overlap rand predicted_label predicted_prob label_quality"
    " is_label_issue disagrees is_outlier outlier_score dup_group dup_conflict"
).split()
V3_RESULTS = (
    "analysis_id sample_id label_used predicted_label predicted_prob given_prob label_quality"
    " is_label_issue is_outlier outlier_score dup_group dup_conflict consensus_label"
    " consensus_quality"
).split()
V3_RENAMES = (
    ("samples", "given_label", "original_label"),
    ("analysis_results", "analyzed_label", "label_used"),
    ("analysis_results", "analyzed_prob", "given_prob"),
)
OLD_STAGE = '{"stage": "neighbours", "done": 3, "total": 9, "unit": "blocks"}'


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _raw(db_path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def downgrade_to_5(db_path) -> None:
    """The database as version 5 left it: jobs without worker, heartbeat_at and attempts (and
    the embeddings and neighbour graphs in tables, as version 6 left them)."""
    downgrade_to_6(db_path.parent)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        for column in ("worker", "heartbeat_at", "attempts"):
            conn.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    finally:
        conn.close()


def downgrade_to_4(db_path) -> None:
    """The database as version 4 left it: no given_text, no text columns in the event log."""
    downgrade_to_5(db_path)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("ALTER TABLE samples DROP COLUMN given_text")
        for column in ("old_text", "new_text"):
            conn.execute(f"ALTER TABLE label_events DROP COLUMN {column}")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    finally:
        conn.close()


def _downgrade_to_3(db_path) -> None:
    """The database as version 3 left it: its column names, its version, its stage name."""
    downgrade_to_4(db_path)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        for table, new, old in V3_RENAMES:
            conn.execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {old}")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        conn.execute("UPDATE jobs SET progress = ?", (OLD_STAGE,))
        assert _columns(conn, "samples") == V3_SAMPLES
        assert _columns(conn, "analysis_results") == V3_RESULTS
    finally:
        conn.close()


def _snapshot(ws: Workspace, out) -> dict:
    """Everything a user sees of the workspace, under the current names."""
    out.mkdir(exist_ok=True)
    aids = [r[0] for r in _raw(ws.db_path, "SELECT id FROM analyses ORDER BY id")]
    return {
        "samples": ws.samples(with_meta=True),
        "events": ws.events(),
        "results": {aid: ws.analysis_results(aid) for aid in aids},
        "result_for": ws.result_for(5),
        "analyses": _raw(ws.db_path, "SELECT * FROM analyses ORDER BY id"),
        "runs": _raw(ws.db_path, "SELECT * FROM runs ORDER BY id"),
        "counts": ws.counts(),
        "flag_counts": ws.flag_review_counts(),
        "queue": ws.review_queue(limit=100)[0],
        "neighbors": ws.neighbors(2, k=3, model_key="enc"),
        "knn": ws.get_knn("enc"),
        "embeddings": ws.get_embeddings("enc", [f"h{i}" for i in range(30)]),
        "exports": {
            fmt: export_dataset(ws, out / f"export.{fmt}", fmt=fmt).read_bytes() for fmt in FORMATS
        },
    }


def _assert_same(got: dict, want: dict) -> None:
    for key in ("samples", "events", "queue", "neighbors"):
        pd.testing.assert_frame_equal(got[key], want[key], obj=key)
    assert got["results"].keys() == want["results"].keys()
    for aid, frame in want["results"].items():
        pd.testing.assert_frame_equal(got["results"][aid], frame, obj=f"analysis {aid}")
    for got_array, want_array in zip(got["knn"], want["knn"], strict=True):  # ids, distances
        np.testing.assert_array_equal(got_array, want_array)
        assert got_array.dtype == want_array.dtype
    assert got["embeddings"].keys() == want["embeddings"].keys()
    for h, vector in want["embeddings"].items():
        np.testing.assert_array_equal(got["embeddings"][h], vector)
    for key in ("result_for", "analyses", "runs", "counts", "flag_counts"):
        assert got[key] == want[key], key
    for fmt, data in want["exports"].items():
        if fmt == "parquet":  # compared as a table: the file's bytes may carry writer metadata
            pd.testing.assert_frame_equal(
                pd.read_parquet(pd.io.common.BytesIO(got["exports"][fmt])),
                pd.read_parquet(pd.io.common.BytesIO(data)),
            )
        else:
            assert got["exports"][fmt] == data, fmt


@pytest.fixture
def version_3(tmp_path, sentiment_prepared):
    """A workspace with history (relabels, an exclusion, an undo, two analyses, a neighbor
    graph, a job and a run) turned into version 3, a version-3 backup beside it, and the
    snapshot of what it held before."""
    folder = tmp_path / "ws"
    ws = Workspace.create(folder, sentiment_prepared, name="old")
    ws.relabel(0, "negative", reviewer="ana")
    ws.relabel(1, "negative", reviewer="ana")
    ws.undo(reviewer="ana")
    ws.set_excluded(2, reviewer="bo")
    ws.relabel(3, "negative", reviewer="bo")
    add_analysis(ws)
    ws.relabel(4, "negative", reviewer="ana")
    add_analysis(ws)
    n = len(ws.samples())
    ids = np.array([[(i + j) % n for j in range(1, 4)] for i in range(n)])
    ws.put_knn("enc", ids, np.tile(np.float32([0.1, 0.2, 0.3]), (n, 1)))
    rng = np.random.default_rng(0)
    ws.put_embeddings("enc", {f"h{i}": rng.normal(size=6) for i in range(20)})
    ws.put_embeddings("enc", {f"h{i}": rng.normal(size=6) for i in range(15, 25)})  # 5 replaced
    job = ws.create_job("analyze", {"method": "embedding"})
    ws.update_job(job, status="failed", progress={"stage": "neighbors"}, error="stopped")
    ws.create_run(name="seed 0", config={"seed": 0}, data={"noise_rate": 0}, job_id=job)
    want = _snapshot(ws, tmp_path / "before")
    # A relabel (given_label stays, label changes) and an exclusion are in the export.
    assert want["samples"].loc[0, "given_label"] == "positive"
    assert want["samples"].loc[0, "label"] == "negative"
    assert "given_label" in want["exports"]["csv"].decode("utf-8-sig").splitlines()[0]
    ws.close()
    _downgrade_to_3(folder / "store.sqlite")
    (folder / BACKUP_DIR).mkdir(exist_ok=True)
    shutil.copy(folder / "store.sqlite", folder / BACKUP_DIR / BACKUP_NAME)
    return folder, want


def test_a_version_3_workspace_opens_with_everything_under_the_new_names(version_3, tmp_path):
    folder, want = version_3
    ws = Workspace(folder)
    try:
        assert ws.info()["schema_version"] == SCHEMA_VERSION == 7
        _assert_same(_snapshot(ws, tmp_path / "after"), want)
        stage = json.loads(_raw(ws.db_path, "SELECT progress FROM jobs")[0][0])
        assert stage == {"stage": "neighbors", "done": 3, "total": 9, "unit": "blocks"}
        # New writes use the new names.
        ws.relabel(6, "negative", reviewer="ana")
        add_analysis(ws)
        assert ws.analysis_results().loc[6, "analyzed_label"] == "negative"
        assert ws.sample(6)["given_label"] == "positive"
    finally:
        ws.close()
    conn = sqlite3.connect(folder / "store.sqlite", isolation_level=None)
    try:
        columns = set(_columns(conn, "samples")) | set(_columns(conn, "analysis_results"))
        assert {"given_label", "analyzed_label", "analyzed_prob"} <= columns
        assert not {"original_label", "label_used", "given_prob"} & columns
        assert upgrade_schema(conn) is False  # idempotent: nothing left to do
    finally:
        conn.close()
    Workspace(folder).close()  # and opens again


def test_an_upgrade_that_fails_leaves_the_version_3_workspace_as_it_was(version_3, monkeypatch):
    folder, _ = version_3
    import data.store.schema as schema

    # A last rename that fails (an invalid name): the renames before it are rolled back.
    failing = (*schema.V4_RENAMED_COLUMNS, ("analysis_results", "label_quality", "not valid"))
    monkeypatch.setattr(schema, "V4_RENAMED_COLUMNS", failing)
    with pytest.raises(sqlite3.OperationalError):
        Workspace(folder)
    conn = sqlite3.connect(folder / "store.sqlite")
    try:
        assert _columns(conn, "samples") == V3_SAMPLES
        assert _columns(conn, "analysis_results") == V3_RESULTS
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == ("3",)
    finally:
        conn.close()
    monkeypatch.undo()
    Workspace(folder).close()  # and the next open upgrades it


def test_a_version_3_backup_restores_into_the_new_schema(version_3, tmp_path):
    folder, want = version_3
    ws = Workspace(folder)  # upgrades the workspace; its backup stays version 3
    ws.relabel(7, "negative", reviewer="cy")  # newer than the backup: kept by the restore
    ws.close()
    backup = sqlite3.connect(folder / BACKUP_DIR / BACKUP_NAME)
    try:
        assert "original_label" in _columns(backup, "samples")
    finally:
        backup.close()

    report = restore_workspace(folder, force=True)
    assert report.kept_events == 1
    ws = Workspace(folder)
    try:
        assert ws.info()["schema_version"] == SCHEMA_VERSION
        assert ws.sample(7)["label"] == "negative" and ws.sample(7)["given_label"] == "positive"
        ws.undo(reviewer="cy")  # back to what the backup held
        got = _snapshot(ws, tmp_path / "restored")
    finally:
        ws.close()
    # The undo added two events; everything else is as before the upgrade.
    pd.testing.assert_frame_equal(
        got["events"].iloc[2:].reset_index(drop=True), want["events"], obj="events"
    )
    review = ["reviewed", "reviewer", "reviewed_at"]
    pd.testing.assert_frame_equal(
        got["samples"].drop(columns=review), want["samples"].drop(columns=review), obj="samples"
    )
    for aid, frame in want["results"].items():
        assert (got["results"][aid]["analyzed_label"] == frame["analyzed_label"]).all()
        assert (got["results"][aid]["analyzed_prob"] == frame["analyzed_prob"]).all()
    assert got["analyses"] == want["analyses"]


def test_a_version_5_workspace_opens_as_version_6_with_its_jobs_claimable(version_3, tmp_path):
    folder, want = version_3
    Workspace(folder).close()  # up to the current version, then back to version 5
    downgrade_to_5(folder / "store.sqlite")
    conn = sqlite3.connect(folder / "store.sqlite")
    try:
        assert not {"worker", "heartbeat_at", "attempts"} & set(_columns(conn, "jobs"))
        queued = conn.execute(
            "INSERT INTO jobs (kind, status, params, created_at) VALUES ('analyze', 'queued',"
            " '{}', '2024-01-01T00:00:00.000+00:00')"
        ).lastrowid
        conn.commit()
    finally:
        conn.close()
    ws = Workspace(folder)
    try:
        assert ws.info()["schema_version"] == SCHEMA_VERSION == 7
        _assert_same(_snapshot(ws, tmp_path / "after"), want)
        old = ws.job(1)
        assert (old.status, old.worker, old.heartbeat_at, old.attempts) == ("failed", None, None, 0)
        claimed = ws.claim_job("host:1")
        assert claimed.id == queued and claimed.worker == "host:1" and claimed.attempts == 1
        assert claimed.status == "running" and claimed.heartbeat_at is not None
    finally:
        ws.close()
    conn = sqlite3.connect(folder / "store.sqlite", isolation_level=None)
    try:
        assert {"worker", "heartbeat_at", "attempts"} <= set(_columns(conn, "jobs"))
        assert upgrade_schema(conn) is False  # idempotent: nothing left to do
    finally:
        conn.close()
