"""Time estimates from speeds measured on this machine (runtime.estimates), and the one duration
format every page and the CLI print.

Every test here keeps the speed file in its tmp folder (conftest points SECOND_LOOK_SPEEDS there;
a test of the default location sets a tmp SECOND_LOOK_HOME instead).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime import estimates as E
from tests.conftest import NEGATIVE, POSITIVE, TINY

KEY = {"model": "m@1|max_length=64", "device": "cpu", "precision": "fp32"}


@pytest.fixture
def speeds(tmp_path, monkeypatch):
    """The speed file in a tmp workspaces home (its default place)."""
    monkeypatch.delenv("SECOND_LOOK_SPEEDS", raising=False)
    monkeypatch.setenv("SECOND_LOOK_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / E.SPEEDS_FILE


def test_a_recorded_speed_is_what_the_next_estimate_uses(speeds):
    assert E.record_speed("embed", 2000, 10.0, **KEY) == 200.0
    assert speeds.exists()  # in the workspaces home, not among the workspace folders
    assert E.speeds_path() == speeds.resolve()
    assert E.estimate_seconds("embed", 1000, **KEY, default_rate=1.0) == 5.0
    assert E.estimate_seconds("embed", 1000, **KEY, default_rate=1.0, overhead_seconds=3) == 8.0
    # A second run is blended into the first, not substituted for it.
    assert E.record_speed("embed", 4000, 10.0, **KEY) == pytest.approx(300.0)
    assert E.speed("embed", **KEY, default=1.0) == pytest.approx(300.0)


def test_without_a_measurement_the_default_is_used(speeds):
    assert E.measured_speed("embed", **KEY) is None
    assert E.estimate_seconds("embed", 1000, **KEY, default_rate=250.0) == 4.0
    E.record_speed("embed", 2000, 10.0, **KEY)
    # Another task, model, device or precision has no measurement of its own yet.
    for other in (
        {**KEY, "precision": "bf16"},
        {**KEY, "device": "cuda"},
        {**KEY, "model": "m@2|max_length=64"},
    ):
        assert E.speed("embed", **other, default=250.0) == 250.0
    assert E.speed("train", **KEY, default=70.0) == 70.0
    with pytest.raises(ValueError, match="task"):
        E.speed("dance", **KEY, default=1.0)


def test_start_up_dominated_samples_are_not_recorded(speeds):
    assert E.record_speed("embed", 5000, 0.5, **KEY) is None  # under MIN_SECONDS
    assert E.record_speed("embed", 3, 60.0, **KEY) is None  # under MIN_UNITS
    assert E.record_speed("embed", float("nan"), 60.0, **KEY) is None
    assert not speeds.exists()
    assert E.speed("embed", **KEY, default=130.0) == 130.0


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "[1, 2]",
        '{"machines": 7}',
        "\x00\xff garbage",
    ],
)
def test_a_damaged_speed_file_falls_back_to_the_default(speeds, content):
    speeds.parent.mkdir(parents=True)
    speeds.write_bytes(content.encode("utf-8", "surrogateescape"))
    assert E.speed("embed", **KEY, default=130.0) == 130.0
    assert E.estimate_seconds("embed", 260, **KEY, default_rate=130.0) == 2.0
    # The next measurement replaces the damage with a sound file.
    assert E.record_speed("embed", 2000, 10.0, **KEY) == 200.0
    assert E.speed("embed", **KEY, default=130.0) == 200.0


def test_a_damaged_entry_of_this_machine_falls_back_to_the_default(speeds):
    speeds.parent.mkdir(parents=True)
    key = "embed|" + "|".join(KEY.values())
    for rate in ("fast", -5, None, True, float("inf")):
        machines = {E.machine_fingerprint(): {key: {"rate": rate}}}
        speeds.write_text(json.dumps({"machines": machines}))
        assert E.speed("embed", **KEY, default=130.0) == 130.0
    speeds.write_text(json.dumps({"machines": {E.machine_fingerprint(): ["not", "a", "dict"]}}))
    assert E.speed("embed", **KEY, default=130.0) == 130.0
    assert E.record_speed("embed", 2000, 10.0, **KEY) == 200.0


def test_an_unwritable_speed_file_never_raises(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SECOND_LOOK_SPEEDS", str(blocker / "speeds.json"))  # parent is a file
    assert E.record_speed("embed", 2000, 10.0, **KEY) == 200.0  # measured, just not kept
    assert E.speed("embed", **KEY, default=130.0) == 130.0


def test_another_machines_speeds_are_ignored_and_kept(speeds, monkeypatch):
    monkeypatch.setattr(E, "machine_fingerprint", lambda: "big-box|64|EPYC 9654|H200")
    E.record_speed("embed", 30000, 10.0, **KEY)
    assert E.speed("embed", **KEY, default=130.0) == 3000.0
    # The home is copied to (or shared with) a laptop: it does not inherit the server's speed.
    monkeypatch.setattr(E, "machine_fingerprint", lambda: "laptop|8|i7-1185G7|")
    assert E.speed("embed", **KEY, default=130.0) == 130.0
    E.record_speed("embed", 1000, 10.0, **KEY)
    assert E.speed("embed", **KEY, default=130.0) == 100.0
    monkeypatch.setattr(E, "machine_fingerprint", lambda: "big-box|64|EPYC 9654|H200")
    assert E.speed("embed", **KEY, default=130.0) == 3000.0


def test_the_fingerprint_names_this_host_and_its_cpus():
    import os
    import socket

    parts = E.machine_fingerprint().split("|")
    assert parts[0] == socket.gethostname() and parts[1] == str(os.cpu_count())


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (0.04, "0 s"),
        (0.4, "0.4 s"),
        (3, "3 s"),
        (3.04, "3 s"),
        (4.25, "4.2 s"),
        (9.96, "10 s"),
        (59, "59 s"),
        (59.6, "1 min"),
        (61, "1 min 1 s"),
        (125, "2 min 5 s"),
        (599.4, "9 min 59 s"),
        (599.6, "10 min"),
        (42 * 60 + 20, "42 min"),
        (3599.7, "1 h"),
        (3600, "1 h"),
        (3649, "1 h 1 min"),
        (5400, "1 h 30 min"),
        (86399, "1 d"),
        (2 * 86400 + 3 * 3600 + 100, "2 d 3 h"),
        (10 * 86400, "10 d"),
        (-1, "0 s"),
        (float("nan"), "?"),
        (float("inf"), "?"),
    ],
)
def test_duration_formats_seconds_one_way(seconds, text):
    assert E.duration(seconds) == text


def test_the_old_import_of_duration_still_works():
    from runtime.progress import describe, duration

    assert duration is E.duration
    assert describe({"done": 1, "total": 2, "eta_seconds": 61}).endswith("about 1 min 1 s left")


def test_a_real_embedding_records_this_machines_speed(monkeypatch):
    """~200 texts with the packaged encoder: the run records its rate, and the next estimate
    for the same settings uses it; a fully cached rerun records nothing."""
    from runtime.encoder import DictCache, EncoderSettings, embed_seconds, embed_texts
    from runtime.encoder import speed_identity as embed_identity

    monkeypatch.setattr(E, "MIN_SECONDS", 0.0)  # a short run: start-up is part of it here
    settings = EncoderSettings(precision="fp32", max_length=32)
    who = embed_identity(settings)
    assert E.measured_speed("embed", **who) is None
    texts = [f"{t} (review {i})" for i in range(9) for t in POSITIVE + NEGATIVE][:200]
    cache = DictCache()
    vectors = embed_texts(texts, settings=settings, cache=cache)
    assert vectors.shape == (200, 384) and np.isfinite(vectors).all()
    rate = E.measured_speed("embed", **who)
    assert rate is not None and rate > 0
    assert embed_seconds(1000, settings) == pytest.approx(1000 / rate)
    # Another max length is another key: no measurement for it.
    assert E.measured_speed("embed", **embed_identity(EncoderSettings(max_length=64))) is None
    embed_texts(texts, settings=settings, cache=cache)  # all cached: nothing encoded
    stored = json.loads(E.speeds_path().read_text())["machines"][E.machine_fingerprint()]
    assert [entry["count"] for entry in stored.values()] == [1]


def test_a_real_fine_tune_records_its_training_and_scoring_speeds(tmp_path, monkeypatch):
    from training.finetune import fine_tune, speed_identity

    monkeypatch.setattr(E, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(E, "MIN_UNITS", 1)
    texts = POSITIVE + NEGATIVE
    labels = np.array([1] * len(POSITIVE) + [0] * len(NEGATIVE))
    assert E.measured_speed("train", **speed_identity(TINY, "train")) is None
    result = fine_tune(
        texts,
        labels,
        label_names=["negative", "positive"],
        config=TINY,
        output_dir=tmp_path / "run",
        eval_texts=texts[:8],
        eval_labels=labels[:8],
    )
    assert result.model_dir
    train = E.measured_speed("train", **speed_identity(TINY, "train"))
    # Kept from the end of the first step on (its one-off set-up left out): at least the
    # whole run's rate, which counts that set-up.
    assert train >= 0.9 * result.train_samples_per_second
    assert E.measured_speed("predict", **speed_identity(TINY, "predict")) > 0
    # Per technique: a head-only run has no measurement yet.
    head = TINY.__class__(**{**TINY.to_dict(), "technique": "head"})
    assert E.measured_speed("train", **speed_identity(head, "train")) is None


def test_the_train_page_estimates_from_the_measured_speed(home, sentiment_prepared):
    from data.store import Workspace
    from tests.conftest import app
    from training.config import TrainingConfig
    from training.finetune import speed_identity

    Workspace.create(home / "reviews", sentiment_prepared, name="reviews").close()
    at = app("app_pages/train.py")
    plan = next(m.value for m in at.markdown if "roughly" in m.value)
    assert "until a run here measures it" in plan
    E.record_speed("train", 10_000, 10.0, **speed_identity(TrainingConfig(), "train"))
    at = app("app_pages/train.py")
    plan = next(m.value for m in at.markdown if "roughly" in m.value)
    assert "measured on this machine: 1000 rows/s" in plan
