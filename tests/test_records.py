"""Records that cross layers: one versioned serialisation, old shapes upgraded when read."""

from __future__ import annotations

import json

from data.records import RunRecord, run_metrics

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
