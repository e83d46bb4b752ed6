"""Serving a trained classifier over HTTP (``cli.py serve``): a real tiny fine-tuned model, the
FastAPI app through its TestClient, and once the real server in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import cli
from serving.app import Limits, create_app
from serving.model import ModelLoadError, load_served_model
from tests.conftest import NEGATIVE, POSITIVE, ROOT, TINY
from tests.hostile import HOSTILE, IMG_TAG, LINK, SCRIPT
from tests.hostile import LABELS as HOSTILE_LABELS
from training.finetune import RUN_FILE, fine_tune
from training.inference import predict_proba

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NAMES = ["negative", "positive"]
TEXTS = [
    "I love it, wonderful",
    "awful, I hate this",
    "ok",
    "the delivery was late and the box was broken but the phone itself works fine",
    "",
    "Such a beautiful and heartwarming story",
    "meh",
]
LIMITS = Limits(max_texts=8, max_chars=200)
BATCH = 3  # smaller than a request, so answers are put back together from several batches


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """``cli.py train --out DIR``'s folder: a tiny fine-tune of the packaged model."""
    out = tmp_path_factory.mktemp("trained")
    texts = POSITIVE + NEGATIVE
    labels = np.array([1] * len(POSITIVE) + [0] * len(NEGATIVE))
    fine_tune(
        texts,
        labels,
        label_names=NAMES,
        config=TINY,
        output_dir=out,
        eval_texts=texts[::3],
        eval_labels=labels[::3],
    )
    return out


@pytest.fixture(scope="module")
def served(trained):
    return load_served_model(trained, device="cpu", batch_size=BATCH)


@pytest.fixture(scope="module")
def client(served):
    with TestClient(create_app(served, LIMITS)) as test_client:
        yield test_client


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/predict", content=data, headers={"content-type": content_type})


# --------------------------------------------------------------------------- answers


def test_predictions_are_predict_probas_in_label_order(client, trained):
    response = post(client, {"texts": TEXTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["labels"] == NAMES
    expected = predict_proba(trained, TEXTS, max_length=TINY.max_length, device="cpu")
    assert len(body["predictions"]) == len(TEXTS)
    for prediction, row in zip(body["predictions"], expected, strict=True):
        probabilities = prediction["probabilities"]
        assert list(probabilities) == NAMES  # every class, in the model's class order
        got = np.array([probabilities[name] for name in NAMES])
        np.testing.assert_allclose(got, row, atol=1e-5)
        assert abs(got.sum() - 1) < 1e-5
        assert prediction["label"] == NAMES[int(np.argmax(row))]


def test_requests_are_batched_by_length_up_to_the_batch_size(served, monkeypatch):
    calls = []

    class Recorder:
        """The model, recording the shape of every batch it is given."""

        def __init__(self, model):
            self.model = model

        def __getattr__(self, name):
            return getattr(self.model, name)

        def __call__(self, **inputs):
            calls.append(tuple(inputs["input_ids"].shape))
            return self.model(**inputs)

    monkeypatch.setattr(served, "model", Recorder(served.model))
    probs = served.predict(TEXTS)
    assert probs.shape == (len(TEXTS), len(NAMES))
    assert [rows for rows, _ in calls] == [3, 3, 1]  # at most BATCH texts per forward pass
    lengths = [width for _, width in calls]
    assert lengths == sorted(lengths)  # sorted by length: short texts pad only to short ones


def test_health_and_model_describe_the_loaded_model(client, trained):
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model_loaded": True, "labels": 2}

    info = client.get("/model").json()
    run = json.loads((trained / RUN_FILE).read_text())
    assert info["labels"] == NAMES
    assert info["config"] == run["config"] and info["config"]["max_length"] == TINY.max_length
    assert info["max_length"] == TINY.max_length  # the length it was trained with
    assert info["training"]["train_samples"] == run["train_samples"]
    assert info["training"]["technique"] == "full"
    assert "history" not in info["training"]
    assert info["data"] == {
        "source": RUN_FILE,
        "train_rows": run["train_samples"],
        "validation_rows": run["validation_samples"],
        "eval_rows": 8,
    }
    assert info["metrics"]["n"] == 8 and set(info["metrics"]) >= {"accuracy", "f1", "labels"}
    assert info["limits"] == {"max_texts": 8, "max_chars": 200}
    assert info["base_model"] == "all-MiniLM-L6-v2 (packaged)"
    assert str(trained) not in json.dumps(info)  # no server paths


def test_a_workspace_run_reports_its_data_version_from_the_store(workspace, trained):
    data = {"experiment": "label quality", "label_source": "curated", "label_version": 7}
    run_id = workspace.create_run(name="seed 0", config=TINY.to_dict(), data=data, job_id=None)
    folder = workspace.run_dir(run_id)
    shutil.copytree(trained, folder)
    test = json.loads((trained / "metrics.json").read_text())
    verified = {**test, "n": 3}
    evaluation = {"test": test, "verified": verified, "examples": {"rows": [{"text": SCRIPT}]}}
    (folder / "evaluation.json").write_text(json.dumps(evaluation))

    info = load_served_model(folder, device="cpu").info
    assert info["data"] == {
        "source": "workspace",
        "workspace": "test",
        "run_id": run_id,
        "run_name": "seed 0",
        **data,
    }
    assert info["verified_metrics"] == verified
    assert SCRIPT not in json.dumps(info)  # the examples (test rows' texts) are left out


# --------------------------------------------------------------------------- bad requests


TOO_LONG = "é" * 201
BAD_BODIES = [
    # (body, content type, status, problem, words the message must hold)
    (b'{"texts": ["a"', "application/json", 400, "not_json", ["not JSON", "line 1"]),
    (b"\xff\xfe\x00garbage", "application/json", 400, "not_json", ["not JSON"]),
    (b"[" * 5000, "application/json", 400, "not_json", ["nests too deeply"]),
    (b'["a", "b"]', "application/json", 400, "not_object", ["an array", "JSON object"]),
    (b'"just text"', "application/json", 400, "not_object", ["a string", "JSON object"]),
    (b'{"text": ["a"]}', "application/json", 400, "texts_missing", ['no "texts" field']),
    (b'{"texts": ["a"], "id": 1}', "application/json", 400, "unknown_fields", ["besides"]),
    (b'{"texts": "a"}', "application/json", 400, "texts_not_list", ["a string", "wrap"]),
    (b'{"texts": {"a": 1}}', "application/json", 400, "texts_not_list", ["an object", "list"]),
    (b'{"texts": null}', "application/json", 400, "texts_not_list", ["null"]),
    (b'{"texts": ["a", 3, null]}', "application/json", 400, "text_not_string", ["[1]", "2 such"]),
    (b'{"texts": []}', "application/json", 400, "texts_empty", ["empty list"]),
    (json.dumps({"texts": ["a"] * 9}).encode(), None, 413, "too_many_texts", ["9", "at most 8"]),
    (json.dumps({"texts": ["a", TOO_LONG]}).encode(), None, 413, "text_too_long", ["[1]", "201"]),
    (b'{"texts": ["ok", "\\ud800"]}', "application/json", 400, "invalid_unicode", ["[1]"]),
    (b'{"texts": ["a"]}', "text/plain", 415, "bad_content_type", ["application/json"]),
    (b'{"texts": ["a"]}', "", 415, "bad_content_type", ["application/json"]),
    (b'{"texts": ["' + b"a" * 30_000 + b'"]}', None, 413, "body_too_large", ["larger than"]),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "problem", "words"),
    BAD_BODIES,
    ids=[f"{case[3]}-{i}" for i, case in enumerate(BAD_BODIES)],
)
def test_a_bad_body_gets_a_4xx_that_names_the_problem(
    client, body, content_type, status, problem, words
):
    response = post(client, body, "application/json" if content_type is None else content_type)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["problem"] == problem
    for word in words:
        assert word in answer["error"]
    assert TOO_LONG[:20] not in answer["error"] and "aaaa" not in answer["error"]  # not echoed


def test_unknown_paths_and_methods_answer_json(client):
    assert client.get("/nope").json()["problem"] == "not_found"
    assert client.get("/predict").json()["problem"] == "method_not_allowed"
    assert client.get("/docs").status_code == 404  # no API page that loads scripts


def test_the_server_still_answers_after_bad_bodies(client):
    for body in (b"nope", b"[" * 5000, b'{"texts": [1]}'):
        assert post(client, body).status_code == 400
    assert post(client, {"texts": ["fine"]}).status_code == 200


# --------------------------------------------------------------------------- hostile data


def test_hostile_texts_are_only_data(client):
    texts = list(HOSTILE)[: LIMITS.max_texts]
    response = post(client, {"texts": texts})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    predictions = response.json()["predictions"]
    assert len(predictions) == len(texts)
    assert all(p["label"] in NAMES for p in predictions)
    for text in texts:  # the texts are never echoed: the answer is labels and probabilities
        assert text not in response.text


def test_hostile_label_names_come_back_as_json_strings(trained, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(trained / "model", folder)
    config = json.loads((folder / "config.json").read_text())
    names = [HOSTILE_LABELS[1], f"{SCRIPT} {LINK}"]
    config["id2label"] = {str(i): name for i, name in enumerate(names)}
    config["label2id"] = {name: i for i, name in enumerate(names)}
    (folder / "config.json").write_text(json.dumps(config))

    with TestClient(create_app(load_served_model(folder, device="cpu"))) as hostile_client:
        response = post(hostile_client, {"texts": [IMG_TAG, "fine"]})
        info = hostile_client.get("/model")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert body["labels"] == names
    assert [list(p["probabilities"]) for p in body["predictions"]] == [names, names]
    assert {p["label"] for p in body["predictions"]} <= set(names)
    assert info.headers["content-type"] == "application/json"
    assert info.json()["labels"] == names


# --------------------------------------------------------------------------- start-up


def test_a_folder_without_a_classifier_fails_at_start_up(tmp_path):
    with pytest.raises(ModelLoadError, match="no saved classifier"):
        load_served_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ModelLoadError, match="without a classification head"):
        load_served_model(tmp_path)


@pytest.mark.parametrize("what", ["empty", "encoder", "missing"])
def test_cli_serve_on_a_folder_that_is_not_a_model_exits_2(tmp_path, capsys, what):
    folder = tmp_path / "not-a-model"
    if what != "missing":
        folder.mkdir()
    if what == "encoder":  # a model, but no classification head
        (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    assert cli.main(["serve", str(folder), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(folder) in err and "cli.py train" in err


def test_cli_serve_rejects_bad_limits_with_exit_2(trained, capsys):
    assert cli.main(["serve", str(trained), "--max-texts", "0"]) == 2
    assert "max_texts must be a whole number > 0" in capsys.readouterr().err
    assert cli.main(["serve", str(trained), "--port", "70000"]) == 2
    assert "--port must be 0-65535" in capsys.readouterr().err


def test_the_export_page_shows_the_serve_command(home, sentiment_prepared):
    from data.records import run_metrics
    from data.store import Workspace
    from tests.conftest import app

    ws = Workspace.create(home / "reviews", sentiment_prepared, name="reviews")
    test = {
        "accuracy": 0.8,
        "f1": 0.8,
        "labels": NAMES,
        "n": 6,
        "confusion_matrix": [[3, 0], [1, 2]],
    }
    run = ws.create_run(name="seed 0", config={"technique": "full"}, data={}, job_id=None)
    model_dir = ws.run_dir(run) / "model"
    model_dir.mkdir(parents=True)  # (Export checks the folder is there before it offers it)
    metrics = run_metrics(test=test, verified=None, examples=None)
    ws.update_run(run, status="done", metrics=metrics, model_dir=str(model_dir))
    ws.close()
    at = app("app_pages/export.py")
    commands = [c.value for c in at.code if "cli.py serve" in c.value]
    assert commands == [f"python cli.py serve {model_dir} --port 8000"]


def test_cli_serve_answers_over_http_on_localhost(trained):
    """The real thing: ``python cli.py serve DIR --port 0`` in a subprocess, asked over HTTP."""
    process = subprocess.Popen(
        [sys.executable, "cli.py", "serve", str(trained), "--port", "0", "--device", "cpu"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url, seen = None, []
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            url = match.group(1) if match else None
        assert url, "".join(seen)
        health = json.loads(urllib.request.urlopen(f"{url}/health", timeout=30).read())
        assert health["model_loaded"] is True
        request = urllib.request.Request(
            f"{url}/predict",
            data=json.dumps({"texts": ["I love it", SCRIPT]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        body = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert body["labels"] == NAMES and len(body["predictions"]) == 2
        # A second server on the same port is refused before it loads anything.
        port = url.rsplit(":", 1)[1]
        taken = subprocess.run(
            [sys.executable, "cli.py", "serve", str(trained), "--port", port],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert taken.returncode == 2
        assert f"Cannot listen on 127.0.0.1:{port}" in taken.stderr
        assert "choose another --port" in taken.stderr
    finally:
        process.terminate()
        process.wait(timeout=30)


TOKEN = "s3cret-token-of-32-characters-xx"


def test_with_a_token_every_endpoint_but_health_needs_it(served):
    with TestClient(create_app(served, LIMITS, token=TOKEN)) as guarded:
        body = {"texts": ["I love it"]}
        assert guarded.get("/health").status_code == 200  # for load balancers' checks
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-wrong-token"},
            {"Authorization": TOKEN},
        ):
            for answer in (
                guarded.post("/predict", json=body, headers=headers),
                guarded.get("/model", headers=headers),
            ):
                assert answer.status_code == 401
                assert answer.json()["problem"] == "unauthorized"
                assert answer.headers["x-content-type-options"] == "nosniff"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert guarded.post("/predict", json=body, headers=auth).status_code == 200
        assert guarded.get("/model", headers=auth).status_code == 200


@pytest.mark.parametrize(
    "token", ["short", "has a space in it somewhere", "ünïcödé-token-long-enough"]
)
def test_a_weak_token_is_refused(served, token):
    with pytest.raises(ValueError, match="token"):
        create_app(served, LIMITS, token=token)


def test_serving_off_loopback_needs_a_token(trained, tmp_path, capsys):
    code = cli.main(["serve", str(trained), "--host", "0.0.0.0", "--port", "0"])
    assert code == 2
    assert "without a token would answer anyone" in capsys.readouterr().err
    short = tmp_path / "token.txt"
    short.write_text("abc\n")
    code = cli.main(
        ["serve", str(trained), "--host", "0.0.0.0", "--port", "0", "--token-file", str(short)]
    )
    assert code == 2
    assert "token is too short" in capsys.readouterr().err
