"""The speed calibration: a real embedding, training and prediction pass whose speeds are kept
where real runs keep theirs, so the next estimate is a measured one."""

from __future__ import annotations

import pytest

import jobs
import runtime.estimates as estimates
from runtime.encoder import EncoderSettings
from runtime.encoder import speed_identity as encoder_identity
from runtime.estimates import measured_speed
from tests.conftest import TINY
from training.calibration import calibrate
from training.finetune import speed_identity


@pytest.fixture
def short_runs_count(monkeypatch):
    # The tiny workspace times in a fraction of a second: let such runs be kept.
    monkeypatch.setattr(estimates, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(estimates, "MIN_UNITS", 1)


def test_too_quick_to_time_keeps_nothing(workspace):
    rows = workspace.samples()
    names = list(workspace.label_names)
    speeds = calibrate(
        rows["text"].tolist(),
        [names.index(label) for label in rows["label"]],
        label_names=names,
        config=TINY,
        settings=EncoderSettings(max_length=32),
    )
    assert speeds == {"embed": None, "train": None, "predict": None}


def test_a_calibrate_job_keeps_the_speeds_the_estimates_look_up(workspace, short_runs_count):
    settings = EncoderSettings(max_length=32)
    assert measured_speed("embed", **encoder_identity(settings)) is None
    params = {"config": TINY.to_dict(), "encoder": {"max_length": 32}}
    job_id = workspace.create_job("calibrate", params)
    jobs.run_job(workspace, job_id)
    job = workspace.job(job_id)
    assert job.status == "done", job.error
    speeds = job.result["speeds"]
    assert all(rate and rate > 0 for rate in speeds.values()), speeds
    # Kept under the identities the estimates look up: analysis (embedding) and training.
    assert measured_speed("embed", **encoder_identity(settings)) == speeds["embed"]
    assert measured_speed("train", **speed_identity(TINY, "train")) == speeds["train"]
    assert measured_speed("predict", **speed_identity(TINY, "predict")) == speeds["predict"]


def test_mismatched_labels_are_refused():
    with pytest.raises(ValueError, match="3 texts but 2 labels"):
        calibrate(
            ["a", "b", "c"],
            [0, 1],
            label_names=["x", "y"],
            config=TINY,
            settings=EncoderSettings(),
        )
