"""Records that cross layers: one versioned serialisation, old shapes upgraded when read."""

from __future__ import annotations

import json

import pytest

from data.records import AnalysisRecord, AnalysisSummary, JobRecord, RunRecord, run_metrics
from tests.conftest import add_analysis

TEST = {"accuracy": 0.8, "f1": 0.75, "n": 10, "labels": ["a", "b"]}
VERIFIED = {"accuracy": 0.9, "f1": 0.9, "n": 4, "labels": ["a", "b"]}
EXAMPLES = {"new_head": True, "note": "chance", "rows": []}


def row(metrics) -> dict:
    """A store row as SQLite returns it: JSON text in the JSON columns."""
    return {
        "id": 3,
        "job_id": 1,
        "name": "r",
        "status": "done",
        "config": json.dumps({"seed": 0}),
        "data": json.dumps({"train_rows": 14}),
        "metrics": json.dumps(metrics),
        "history": json.dumps([{"step": 1, "loss": 0.5}]),
        "progress": None,
        "model_dir": "/m",
        "created_at": "2026-11-30T00:00:00.000+00:00",
        "finished_at": None,
    }


def test_every_stored_shape_of_metrics_reads_as_the_same_record():
    current = RunRecord.from_dict(row(run_metrics(test=TEST, verified=VERIFIED, examples=EXAMPLES)))
    # Version 1 kept the test metrics twice: at the top level and under "test".
    v1 = RunRecord.from_dict(
        row({**TEST, "test": TEST, "verified": VERIFIED, "examples": EXAMPLES})
    )
    assert v1 == current
    assert (current.test, current.verified, current.examples) == (TEST, VERIFIED, EXAMPLES)
    assert current.config == {"seed": 0} and current.progress == {} and current.done
    # Before the verified subset: the metrics were the test metrics, nothing else.
    oldest = RunRecord.from_dict(row(TEST))
    assert oldest.test == TEST and oldest.verified is None and oldest.examples is None


def test_to_dict_is_versioned_and_reads_back():
    record = RunRecord.from_dict(row(run_metrics(test=TEST, verified=None, examples=None)))
    as_dict = record.to_dict()
    assert as_dict["version"] == RunRecord.VERSION
    assert RunRecord.from_dict(json.loads(json.dumps(as_dict))) == record
    assert record.metrics() == {"version": 2, "test": TEST, "verified": None, "examples": None}


def test_the_store_returns_job_records_with_fields_parsed(workspace):
    job_id = workspace.create_job("train", {"epochs": 1})
    job = workspace.job(job_id)
    assert isinstance(job, JobRecord) and [j.id for j in workspace.jobs()] == [job_id]
    # Before the first report and the result: empty, never None.
    assert (job.kind, job.status, job.params) == ("train", "queued", {"epochs": 1})
    assert (job.progress, job.result, job.pid, job.error) == ({}, {}, None, None)
    assert job.active and job.cancel_requested is False and job.created_at
    workspace.update_job(job_id, status="running", pid=123, progress={"step": 1})
    workspace.request_cancel(job_id)
    job = workspace.job(job_id)
    assert (job.progress, job.pid, job.cancel_requested) == ({"step": 1}, 123, True)
    assert job.active and job.started_at and job.finished_at is None
    workspace.update_job(job_id, status="done", result={"run_ids": [1]})
    job = workspace.job(job_id)
    assert job.result == {"run_ids": [1]} and not job.active and job.finished_at
    assert workspace.jobs(active=True) == [] and workspace.jobs(active=False) == [job]


def test_job_to_dict_is_versioned_and_reads_back(workspace):
    job_id = workspace.create_job("analyze", {"n_folds": 3})
    workspace.update_job(job_id, status="failed", error="boom", progress={"stage": "x"})
    job = workspace.job(job_id)
    as_dict = job.to_dict()
    assert as_dict["version"] == JobRecord.VERSION
    assert JobRecord.from_dict(json.loads(json.dumps(as_dict))) == job


SUMMARY = AnalysisSummary(
    n=10,
    n_issues=2,
    issue_rate=0.2,
    issues_per_class={"a": 2, "b": 0},
    issue_pairs=[{"given": "a", "predicted": "b", "count": 2}],
    issue_types=["near_duplicate", "outlier"],
    k=5,
    metric="cosine",
    near_duplicate={"n_issues": 0, "n_groups": 0},
    outlier={"n_issues": 1},
    health={"num_label_issues": 2},
    method="embedding",
    method_info={"folds": 3},
    annotators=[{"annotator": "x", "quality": 0.5}],
    consensus_differs=1,
    timings={"total_seconds": 1.5},
    encoder="MiniLM",
)


def test_analysis_records_read_back_from_to_dict_and_from_the_store(workspace):
    as_dict = SUMMARY.to_dict()
    assert as_dict["version"] == AnalysisSummary.VERSION
    assert AnalysisSummary.from_dict(json.loads(json.dumps(as_dict))) == SUMMARY
    record = AnalysisRecord(
        id=1, created_at="2026-01-01", method="m", settings={"seed": 0}, summary=SUMMARY
    )
    assert record.to_dict()["summary"] == as_dict
    assert AnalysisRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    # The store keeps the summary it was given and returns typed records.
    aid = add_analysis(workspace)
    latest = workspace.latest_analysis()
    assert isinstance(latest, AnalysisRecord) and latest.id == aid
    assert workspace.analyses() == [latest]
    assert latest.summary.n_issues > 0 and latest.summary.method == "test"


def test_an_old_summary_missing_keys_is_upgraded_with_defaults(workspace):
    """Summaries stored before they were versioned lack keys (``{}`` when none was given)."""
    old = {"n": 4, "n_issues": 1, "timings": {"total_seconds": 2.0}, "health": None}
    workspace._write(
        lambda c: c.executemany(
            "INSERT INTO analyses (created_at, method, settings, label_version, summary)"
            " VALUES (?,?,?,?,?)",
            [
                ("2025-01-01", "embedding", "{}", 0, json.dumps(old)),
                ("2025-01-02", "ensemble", json.dumps({"model_key": "k"}), 3, "{}"),
            ],
        )
    )
    empty, older = workspace.analyses()
    assert (older.summary.n, older.summary.n_issues) == (4, 1)
    assert older.summary.timings == {"total_seconds": 2.0}
    # Missing (or null) keys take their defaults; the method comes from the row.
    assert older.summary.method == "embedding" and older.summary.health == {}
    assert (older.summary.annotators, older.summary.consensus_differs) == ([], 0)
    assert (older.summary.encoder, older.summary.near_duplicate) == ("", None)
    assert empty.summary == AnalysisSummary(method="ensemble")
    assert (empty.settings, empty.label_version) == ({"model_key": "k"}, 3)


@pytest.mark.parametrize("cls", [RunRecord, JobRecord, AnalysisSummary, AnalysisRecord])
def test_a_record_of_an_unknown_version_is_refused(cls):
    with pytest.raises(ValueError, match=f"{cls.__name__} version 99 .* newer version"):
        cls.from_dict({"version": 99, "id": 1, "kind": "analyze", "created_at": "", "method": ""})
