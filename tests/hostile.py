"""Hostile data for the plain-text tests: strings that would render as links, images, HTML,
emphasis, code, autolinks, Streamlit directives or formulas, and a workspace made of them.

Shared by ``test_plain_text`` (AppTest, every page) and ``test_browser`` (a real browser), so
neither test module imports the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data.records import AnalysisSummary, run_metrics
from data.store import Workspace
from tests.conftest import NEGATIVE, POSITIVE, make_prepared

SCRIPT = "<script>alert(1)</script>"
IMG_TAG = "<img src=x onerror=alert(1)>"
LINK = "[link](http://evil.example/)"
IMAGE = "![img](http://evil.example/p.png)"
BOLD = "**bold**"
BACKTICK = "a`b"
URL = "http://evil.example"
WWW = "www.evil.example"
EMAIL = "x@evil.example"
COLOUR = ":red[x]"
FORMULA = "$x^2$"
ICON = ":material/home:"
EMOJI = ":smile:"
A_TAG = '<a href="http://evil.example/">a</a>'  # Plotly draws this one as a link
HOSTILE = (SCRIPT, IMG_TAG, LINK, IMAGE, BOLD, BACKTICK, URL, WWW, EMAIL, COLOUR, FORMULA, ICON)
HOSTILE += (EMOJI, A_TAG)


LABELS = [LINK, f"{IMG_TAG} {A_TAG}", f"{BOLD} {BACKTICK} {COLOUR}", f"{FORMULA} {EMOJI} {ICON}"]
REVIEWERS = [f"ana {LINK}", f"{SCRIPT} bo"]
WORKSPACE_NAME = f"{FORMULA} {IMAGE}"
SOURCE = f"{LINK} {SCRIPT}.csv"
ENCODER = f"model {IMAGE} {WWW}"
ERROR = f"could not read {URL}/{EMAIL}: {SCRIPT}"
RUN_NAME = f"run {LINK} {BOLD}"
META_KEY, META_VALUE = f"{SCRIPT} {WWW}", f"{IMAGE} {EMAIL}"
ANNOTATORS = [f"{LINK} ann", f"{BOLD} ann"]


def ext_id(i: int) -> str:
    return f"{HOSTILE[i % len(HOSTILE)]} #{i}"


def hostile_workspace(home: Path) -> Workspace:
    """A workspace whose every name and value that the pages show is a hostile string."""
    texts = POSITIVE + NEGATIVE
    labels = [LABELS[i % len(LABELS)] for i in range(len(texts))]
    metas = [
        {META_KEY: META_VALUE, ANNOTATORS[0]: lab, ANNOTATORS[1]: LABELS[0]}
        for i, lab in enumerate(labels)
    ]
    splits = ["test" if i % 4 == 0 else "train" for i in range(len(texts))]
    prepared = make_prepared(texts, labels, splits=splits, label_names=LABELS, metas=metas)
    prepared.frame["ext_id"] = [ext_id(i) for i in range(len(texts))]
    prepared.text_column, prepared.label_column = f"text {COLOUR}", f"label {URL}"
    prepared.warnings = [f"Column {SCRIPT} has 3 empty values like {LINK}."]
    prepared.annotator_columns = ANNOTATORS
    ws = Workspace.create(home / "hostile", prepared, name=WORKSPACE_NAME, source=SOURCE)
    add_analysis(ws)
    add_reviews(ws)
    add_jobs_and_runs(ws)
    return ws


def add_analysis(ws: Workspace) -> None:
    """A fake analysis: every issue type, health summary and neighbours, in hostile labels."""
    rows = ws.samples()
    n, k = len(rows), len(LABELS)
    quality = np.linspace(0.01, 0.99, n)
    given = [LABELS.index(lab) for lab in rows["label"]]
    ws.save_analysis(
        pd.DataFrame(
            {
                "sample_id": rows["id"],
                "analyzed_label": rows["label"],
                "predicted_label": [LABELS[(g + 1) % k] for g in given],
                "predicted_prob": 0.9,
                "analyzed_prob": quality,
                "label_quality": quality,
                "is_label_issue": quality < 0.5,
                "is_outlier": np.arange(n) % 5 == 0,
                "outlier_score": quality,
                "dup_group": [i // 2 if i < 8 else None for i in range(n)],
                "dup_conflict": [i < 8 for i in range(n)],
                "consensus_label": [LABELS[0]] * n,
                "consensus_quality": quality,
            }
        ),
        method="test",
        settings={"model_key": "fake"},
        label_version=ws.label_version(),
        summary=AnalysisSummary(
            n_issues=int((quality < 0.5).sum()),
            method=f"method {BOLD}",
            encoder=ENCODER,
            health={
                "num_label_issues": 5,
                "per_class": [{"label": lab, "given": 6, "label_issues": 1} for lab in LABELS],
                "noise_matrix": {"index": LABELS, "columns": LABELS, "data": np.eye(k).tolist()},
            },
            annotators=[{"annotator": a, "quality": 0.5} for a in ANNOTATORS],
            consensus_differs=3,
        ),
    )
    near = (np.arange(n)[:, None] + np.arange(6)[None, :]) % n  # itself, then the next five
    ws.put_knn("fake", near.astype(np.int64), np.full(near.shape, 0.1, dtype=np.float32))


def add_reviews(ws: Workspace) -> None:
    """Two hostile reviewers: they disagree on the worst sample and agree on a few others."""
    worst = int(ws.review_queue(flagged=True, limit=1)[0].iloc[0]["sample_id"])
    for sid in [worst, *range(1, 6)]:
        label = ws.sample(sid)["given_label"]
        ws.relabel(sid, LABELS[0] if sid == worst else label, reviewer=REVIEWERS[0])
        ws.relabel(sid, LABELS[1] if sid == worst else label, reviewer=REVIEWERS[1])


def add_jobs_and_runs(ws: Workspace) -> None:
    """A failed analysis, a training job still running, and a finished run: all hostile."""
    failed = ws.create_job("analyze", {})
    ws.update_job(failed, status="failed", error=ERROR)
    done = ws.create_job("train", {})
    ws.update_job(done, status="done")
    k = len(LABELS)
    test = {
        "accuracy": 0.5,
        "f1": 0.5,
        "n": 6,
        "labels": LABELS,
        "confusion_matrix": np.eye(k, dtype=int).tolist(),
    }
    example = {
        "text": POSITIVE[0],
        "label": LABELS[0],
        "before": {"label": LABELS[1], "prob": 0.5, "probs": {LABELS[1]: 0.5}},
        "after": {"label": LABELS[0], "prob": 0.9, "probs": {LABELS[0]: 0.9}},
    }
    run = ws.create_run(name=RUN_NAME, config={"technique": "full"}, data={}, job_id=done)
    metrics = run_metrics(test=test, verified=None, examples={"note": "", "rows": [example]})
    model_dir = str(ws.folder / "runs" / f"{LINK} {BACKTICK}")
    ws.update_run(run, status="done", metrics=metrics, model_dir=model_dir)
    running = ws.create_job("train", {})
    ws.update_job(
        running,
        status="running",
        progress={"stage": f"loading {ENCODER}", "run": 1, "runs": 2, "name": RUN_NAME},
    )
