"""A browser tour: ``streamlit run app.py`` on a small analysed workspace with reviews and
training runs, every page of the navigation visited in headless Chromium at 1366×768.

It fails on anything a person would see go wrong that no other test looks for: a Streamlit
exception box on a page, an error in the server's log, a browser console error, a failed
request (nothing may be fetched from outside: the app must work offline). How soon the first
page paints is printed, not asserted (speed lives in benchmarks, not in tests). A screenshot of
each page is left in ``test-artifacts/tour-<page>.png`` (the README's ``docs/*.png`` are copied
from these).

The workspace is built without training: the analysis and the run records are written straight
into the store in the formats the app writes them (see tests/test_browser.py and
tests/test_app_training.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.records import AnalysisSummary, run_metrics
from data.store import Workspace
from tests.conftest import NEGATIVE, POSITIVE, make_prepared
from tests.test_app_training import LABELS, add_run, finished_job
from tests.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    HIGH_PROB,
    MID_PROB,
    N_FLAGGED,
    REVIEWER,
    UI_TIMEOUT_MS,
    StreamlitServer,
)
from training.config import TrainingConfig

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (sudo apt-get install chromium)",
    ),
]

VIEWPORT = {"width": 1366, "height": 768}
N_ROWS = 300
# Every page of the navigation: its title (the link's text and the page's heading) and the
# name of its screenshot. A page added to the navigation but not here fails the tour.
PAGES = {
    "Data": "data",
    "Text repair": "repair",
    "Predictions & flags": "flags",
    "Dataset health": "health",
    "Review": "review",
    "Train": "train",
    "Charts": "charts",
    "Run history": "runs",
    "Reviewers": "reviewers",
    "Audit log": "audit",
    "Accounts & members": "accounts",
    "Export": "export",
}
# Server-log lines that mean something went wrong (a traceback, a logged error or warning).
LOG_PROBLEM = re.compile(r"Traceback|Error|Exception|Warning|WARNING|deprecat", re.IGNORECASE)


def tour_workspace(home: Path) -> Path:
    """300 rows with a flagged analysis, some reviews by two reviewers (one disagreement, one
    exclusion), a data-size, a label-quality and a learning-rate experiment over seeds, and two
    single runs (full and LoRA), each with metrics, ROC curves and loss curves."""
    texts = [
        f"{base} (review {i})" for i, base in enumerate((POSITIVE + NEGATIVE) * (N_ROWS // 24 + 1))
    ][:N_ROWS]
    labels = ["positive" if (i % 24) < len(POSITIVE) else "negative" for i in range(N_ROWS)]
    splits = ["test" if i % 4 == 0 else "train" for i in range(N_ROWS)]
    ws = Workspace.create(home / "tour", make_prepared(texts, labels, splits=splits), name="tour")
    try:
        add_analysis(ws)
        flagged = ws.review_queue(flagged=True, limit=100)[0]
        ids = [int(i) for i in flagged["sample_id"]]
        ws.relabel(ids[0], "negative", reviewer="ana", action="accept")
        ws.relabel(ids[0], "positive", reviewer="ben", action="confirm")  # a disagreement
        ws.relabel(ids[1], "negative", reviewer="ana", action="relabel")
        ws.relabel(ids[1], "negative", reviewer="ben", action="accept")
        ws.set_excluded(ids[2], reviewer="ana")
        ws.relabel(ids[3], "positive", reviewer="ben", action="confirm")

        experiment_runs(ws)
        # The last two runs are the ones Run history compares by default.
        for technique, accuracy in (("full", 0.82), ("lora", 0.86)):
            job = finished_job(ws, "train")
            run = add_run(ws, job, accuracy=accuracy, verified=0.75, technique=technique)
            examples = ws.run(run).examples
            ws.update_run(run, metrics=metrics(accuracy, examples))
        return ws.folder
    finally:
        ws.close()


def add_analysis(ws: Workspace) -> None:
    """The flagged analysis of tests/test_browser.py (the 12 worst rows flagged, all given
    'positive', the model suggesting 'negative'), with the summary a real one has: the method,
    the encoder, timings and cleanlab's health summary."""
    from curation.methods import DEFAULT_METHOD
    from runtime.encoder import EncoderSettings

    rows = ws.samples()
    n = len(rows)
    flagged = np.arange(n) < N_FLAGGED
    assert set(rows.loc[flagged, "label"]) == {"positive"}
    prob = np.where(flagged & (np.arange(n) % 2 == 1), MID_PROB, HIGH_PROB)
    counts = rows["label"].value_counts()
    wrong = {"negative": 3, "positive": 11}  # cleanlab's estimates (made up)
    health = {
        "num_label_issues": sum(wrong.values()),
        "per_class": [
            {
                "label": label,
                "given": int(counts[label]),
                "label_issues": wrong[label],
                "inverse_label_issues": wrong[other],
                "label_noise": wrong[label] / counts[label],
                "inverse_label_noise": wrong[other] / counts[label],
                "label_quality": 1 - wrong[label] / counts[label],
            }
            for label, other in (("negative", "positive"), ("positive", "negative"))
        ],
        "noise_matrix": {
            "index": LABELS,
            "columns": LABELS,
            "data": [[0.98, 0.07], [0.02, 0.93]],
        },
    }
    timings = {"embed_seconds": 4.2, "knn_seconds": 0.3, "fit_seconds": 2.1}
    timings |= {"score_seconds": 0.4, "total_seconds": 7.5, "rows": n}
    ws.save_analysis(
        pd.DataFrame(
            {
                "sample_id": rows["id"],
                "analyzed_label": rows["label"],
                "predicted_label": np.where(flagged, "negative", rows["label"]),
                "predicted_prob": prob,
                "analyzed_prob": np.where(flagged, 1 - prob, prob),
                "label_quality": np.linspace(0.01, 0.99, n),
                "is_label_issue": flagged,
            }
        ),
        method=DEFAULT_METHOD,
        settings={},
        label_version=ws.label_version(),
        summary=AnalysisSummary(
            n=n,
            n_issues=N_FLAGGED,
            issue_rate=N_FLAGGED / n,
            issues_per_class={"negative": 0, "positive": N_FLAGGED},
            issue_pairs=[{"given": "positive", "predicted": "negative", "count": N_FLAGGED}],
            health=health,
            method=DEFAULT_METHOD,
            timings=timings,
            encoder=EncoderSettings().describe(),
        ),
    )


def metrics(accuracy: float, examples: dict | None = None) -> dict:
    """Made-up test metrics (75 rows) and verified ones (8 rows) that score about
    ``accuracy``, with a confusion matrix and an ROC curve in the format training.metrics
    writes (computing real ones with scikit-learn takes seconds)."""
    scored = {}
    for subset, n, target in (("test", 75, accuracy), ("verified", 8, accuracy - 0.05)):
        negatives, positives = n // 2, n - n // 2
        tn, tp = round(target * negatives), round(target * positives)
        score = (tn + tp) / n
        auc = round(min(0.99, score + 0.06), 4)
        fpr = np.linspace(0, 1, 11)
        tpr = 1 - (1 - fpr) ** (auc / (1 - auc))  # a curve whose area is ``auc``
        curve = {"label": "positive", "fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}
        curve |= {"auc": auc, "positives": positives, "negatives": negatives}
        scored[subset] = {
            "accuracy": score,
            "precision": score,
            "recall": score,
            "f1": score - 0.01,
            "roc_auc": auc,
            "confusion_matrix": [[tn, negatives - tn], [positives - tp, tp]],
            "labels": LABELS,
            "n": n,
            "roc": {"scheme": "binary", "curves": [curve]},
        }
    return run_metrics(test=scored["test"], verified=scored["verified"], examples=examples)


def experiment_runs(ws: Workspace) -> None:
    """A data-size experiment (4 sizes), a label-quality one (labels and noise) and a
    learning-rate sweep (3 rates), 3 seeds each, as training.runs records them."""
    common = {
        "label_version": ws.label_version(),
        "eval_rows": 75,
        "eval_ids_hash": "e75",
        "verified_rows": 8,
        "technique": "full",
        "device": "cpu",
        "label_source": "curated",
        "noise_rate": 0.0,
        "train_rows": 225,
    }
    job = finished_job(ws, "experiment")
    for x, rows in ((0.125, 28), (0.25, 56), (0.5, 112), (1.0, 225)):
        for seed in range(3):
            data = common | {"experiment": "data_size", "series": "data size", "x": x}
            data |= {"seed": seed, "train_rows": rows}
            record(ws, job, f"seed {seed}, {x:.0%} of train", data, 0.55 + 0.3 * x + 0.02 * seed)
    job = finished_job(ws, "experiment")
    points = [("labels", "original", 0.70), ("labels", "curated", 0.80)]
    points += [("noise", rate, 0.8 - rate / 2) for rate in (0.1, 0.2, 0.3)]
    for series, x, accuracy in points:
        for seed in range(3):
            data = common | {"experiment": "label_quality", "series": series, "x": x}
            data |= {"seed": seed, "noise_rate": x if series == "noise" else 0.0}
            if x == "original":
                data["label_source"] = "original"
            record(ws, job, f"seed {seed}, {series} {x}", data, accuracy + 0.01 * seed)
    job = finished_job(ws, "experiment")
    for rate, accuracy in ((1e-5, 0.62), (1e-4, 0.84), (1e-3, 0.71)):
        for seed in range(3):
            data = common | {"experiment": "learning_rate", "series": "learning rate", "x": rate}
            data |= {"seed": seed, "learning_rate": rate}
            name = f"seed {seed}, lr {rate:g}"
            record(ws, job, name, data, accuracy + 0.01 * seed, learning_rate=rate)


def record(
    ws: Workspace, job: int, name: str, data: dict, accuracy: float, **config: float
) -> None:
    """A finished run of an experiment, with its whole config."""
    config = TrainingConfig(seed=data["seed"], max_train_samples=None, **config).to_dict()
    run = ws.create_run(name=name, config=config, data=data, job_id=job)
    history = [
        {"step": 1, "loss": 0.7, "epoch": 0.5},
        {"step": 2, "loss": 0.5, "epoch": 1.0},
        {"step": 2, "eval_loss": 0.55, "epoch": 1.0},
    ]
    ws.update_run(run, status="done", metrics=metrics(accuracy), history=history)


@pytest.fixture
def tour_server(tmp_path):
    home = tmp_path / "home"
    tour_workspace(home)
    srv = StreamlitServer(home, tmp_path / "streamlit.log")
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def test_tour_of_every_page(tour_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            page = context.new_page()
            page.on(
                "console",
                lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"),
            )
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "requestfailed",
                lambda req: problems.append(f"request failed: {req.url} ({req.failure})"),
            )
            page.on(
                "response",
                lambda resp: (
                    resp.status >= 400 and problems.append(f"HTTP {resp.status}: {resp.url}")
                ),
            )

            # The first paint: how soon the navigation shows after the request (on a cold
            # server), then the first page's heading.
            started = time.monotonic()
            page.goto(tour_server.url)
            nav = page.locator("[data-testid='stSidebarNav'] a")
            expect(nav.first).to_be_visible()
            first_paint = time.monotonic() - started
            main = page.locator("[data-testid='stMain']")
            expect(main.get_by_role("heading", name="Data", exact=True)).to_be_visible()
            print(f"first paint {first_paint:.1f} s, heading {time.monotonic() - started:.1f} s")

            # A link's text is its icon's name, then its title.
            titles = [t.strip().split("\n")[-1] for t in nav.all_inner_texts()]
            assert sorted(titles) == sorted(PAGES), f"the navigation has {titles}"

            # A reviewer name, as a reviewer would give it: the pages then show what they offer
            # a reviewer (enabled buttons), and the screenshots with them.
            name = page.locator("[data-testid='stSidebar']").get_by_role(
                "textbox", name="Reviewer name", exact=True
            )
            name.fill(REVIEWER)
            name.press("Enter")
            expect(page.locator("[data-testid='stApp']")).to_have_attribute(
                "data-test-script-state", "notRunning"
            )
            page.evaluate("document.activeElement && document.activeElement.blur()")

            ARTIFACTS.mkdir(exist_ok=True)
            for i, title in enumerate(titles):
                t0 = time.monotonic()
                if i:  # the first page (Data) is open already
                    nav.nth(i).click()
                visit(page, title)
                t1 = time.monotonic()
                screenshot(page, PAGES[title])
                print(f"{title}: {t1 - t0:.1f} s, screenshot {time.monotonic() - t1:.1f} s")
                shown = main.locator("[data-testid='stException']")
                if shown.count():
                    problems.append(f"{title}: exception shown: {shown.first.inner_text()[:500]}")
                    continue
                if title == "Run history":
                    compare = main.locator("[data-testid='stMultiSelect']").filter(
                        has_text="Runs to compare"
                    )
                    # Two runs are picked for the comparison by default, and compared.
                    expect(compare.locator(".react-aria-ComboBox [data-tag]")).to_have_count(2)
                    # The tables: the runs, then the comparison's metrics and settings.
                    expect(main.locator("[data-testid='stDataFrame']").nth(2)).to_be_visible()
        finally:
            browser.close()

    log = tour_server.log_path.read_text(errors="replace")
    problems += [f"server log: {line}" for line in log.splitlines() if LOG_PROBLEM.search(line)]
    assert not problems, "\n".join(problems)


def visit(page, title: str) -> None:
    """Wait until the page is drawn: its heading shown, the script run over, charts drawn."""
    from playwright.sync_api import expect

    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_role("heading", name=title, exact=True)).to_be_visible()
    app = page.locator("[data-testid='stApp']")
    expect(app).to_have_attribute("data-test-script-state", "notRunning")
    # Stale elements of the previous page fade out once the run is over; charts draw late.
    expect(main.locator("[data-stale='true']")).to_have_count(0)
    charts = main.locator("[data-testid='stPlotlyChart']")
    for i in range(charts.count()):
        expect(charts.nth(i).locator(".main-svg").first).to_be_attached()
    page.wait_for_timeout(300)


def screenshot(page, name: str) -> None:
    """The whole page: the app scrolls inside its main area, so the window is made as tall as
    the page for the shot (charts redraw at the new size), then put back."""
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
        "[data-testid=stAppViewContainer]')].map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height, 768), 4000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / f"tour-{name}.png"))
    page.set_viewport_size(VIEWPORT)
