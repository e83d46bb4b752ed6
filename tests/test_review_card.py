"""The review card (issue 14): the suggested action is the primary button, and at a laptop's
1366×768 the text, the labels and every action are on screen without scrolling.

The first test runs the page with AppTest; the second drives a real Streamlit server with
Debian's Chromium, reusing the fixtures of tests/test_browser.py, and leaves its screenshot in
``test-artifacts/review-1366.png``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from data.records import AnalysisSummary
from data.store import Workspace
from tests.conftest import app
from tests.test_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    UI_TIMEOUT_MS,
    open_review_as_reviewer,
    server,
    streamlit_server,
    wait_for_idle,
    workspace_folder,
)

# Rows in "worst quality first" order and what the card should make primary on each:
# (flagged, model disagrees, predicted_prob, reviewed before, expected primary button).
CASES = [
    (True, True, 0.9, False, "rv_accept"),  # flagged: accept
    (False, True, 0.45, False, "rv_keep"),  # disagrees, but not confidently: keep
    (False, True, 0.7, False, "rv_accept"),  # disagrees confidently (p ≥ 0.5): accept
    (False, False, 0.9, False, "rv_keep"),  # agrees: keep (no accept button at all)
    (True, True, 0.9, True, "rv_keep"),  # a reviewer already kept its label: keep
]


@pytest.fixture
def cases_workspace(home, sentiment_prepared) -> Workspace:
    ws = Workspace.create(home / "cases", sentiment_prepared, name="cases")
    rows = ws.samples()
    n = len(rows)
    flipped = {"positive": "negative", "negative": "positive"}
    flagged = np.zeros(n, bool)
    disagree = np.zeros(n, bool)
    prob = np.full(n, 0.9)
    for i, (flag, dis, p, _, _) in enumerate(CASES):
        flagged[i], disagree[i], prob[i] = flag, dis, p
    ws.save_analysis(
        pd.DataFrame(
            {
                "sample_id": rows["id"],
                "analyzed_label": rows["label"],
                "predicted_label": [
                    flipped[lab] if d else lab
                    for lab, d in zip(rows["label"], disagree, strict=True)
                ],
                "predicted_prob": prob,
                "analyzed_prob": np.where(disagree, 1 - prob, prob),
                "label_quality": np.linspace(0.01, 0.99, n),  # row order = quality order
                "is_label_issue": flagged,
            }
        ),
        method="test",
        settings={},
        label_version=ws.label_version(),
        summary=AnalysisSummary(n_issues=int(flagged.sum())),
    )
    for i, case in enumerate(CASES):
        if case[3]:
            ws.relabel(int(rows["id"][i]), rows["label"][i], reviewer="earlier", action="confirm")
    return ws


def primary_buttons(at) -> list[str]:
    return [b.key for b in at.button if b.proto.type == "primary" and b.key != "bulk_apply"]


def test_the_suggested_action_is_the_primary_button(cases_workspace):
    at = app("app_pages/review.py")
    at.sidebar.text_input(key="reviewer").input("ana").run()
    # The folded filters say what is active in one line.
    assert at.expander(key="rv_filters").label == "Showing: flagged · worst quality first"
    at.selectbox(key="rv_flagged").select("any").run()
    assert not at.exception, at.exception
    assert at.expander(key="rv_filters").label == "Showing: all rows · worst quality first"
    for i, (*_, expected) in enumerate(CASES):
        assert any(m.value.startswith(f"**Sample {i + 1} of") for m in at.markdown)
        assert primary_buttons(at) == [expected], f"row {i}: {CASES[i]}"
        # The suggested action comes first in the row of actions.
        actions = [b.key for b in at.button if b.key in ("rv_keep", "rv_accept")]
        assert actions[0] == expected
        at.button(key="rv_next").click().run()
    at.selectbox(key="rv_disagree").select("disagree").run()
    at.selectbox(key="rv_label").select("positive").run()
    assert at.expander(key="rv_filters").label == (
        "Showing: prediction ≠ label · current label: positive · worst quality first"
    )


def test_no_code_names_and_no_flag_words_before_an_analysis(home, sentiment_prepared):
    Workspace.create(home / "fresh", sentiment_prepared, name="fresh")
    at = app("app_pages/review.py")
    assert not at.exception, at.exception
    # Without an analysis nothing is flagged: the flag filters are not offered at all.
    keys = {s.key for s in at.selectbox}
    assert not keys & {"rv_flagged", "rv_disagree", "rv_issue"}
    [filters] = [e for e in at.expander if e.label.startswith("Showing:")]
    assert filters.label == "Showing: all rows · row order"  # no quality to order by yet
    words = " ".join(m.value for m in [*at.markdown, *at.caption])
    assert "flagged" not in words.replace("no analysis yet", "")
    for code in ("is_label_issue", "ext_id", "predicted_label", "None"):
        assert code not in words


def button(page, key: str):
    """The shown button with widget key ``key`` (Streamlit may keep a hidden copy around)."""
    return page.locator(f".st-key-{key} button").filter(visible=True)


@pytest.fixture
def laptop_page():
    """A Chromium page at a common laptop viewport, 1366×768."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            context.set_default_timeout(UI_TIMEOUT_MS)
            sync_api.expect.set_options(timeout=UI_TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


@pytest.mark.browser
def test_card_and_all_actions_fit_a_laptop_screen(
    server,  # noqa: F811 (the fixture imported above)
    workspace_folder,  # noqa: F811
    laptop_page,
):
    from playwright.sync_api import expect

    page = laptop_page
    open_review_as_reviewer(page, server)
    ws = Workspace(workspace_folder)
    try:
        first = ws.review_queue(flagged=True, limit=1)[0].iloc[0]
    finally:
        ws.close()
    main = page.locator("[data-testid='stMain']")
    text = main.get_by_test_id("stText").filter(has_text=first["text"])
    labels = main.get_by_text(re.compile(r"^Given label"))
    accept = button(page, "rv_accept")
    expect(text).to_be_visible()
    expect(labels).to_contain_text(f"model predicts {first['predicted_label']}")
    # The flagged row's suggestion is the primary button.
    expect(accept).to_have_attribute("data-testid", "stBaseButton-primary")
    wait_for_idle(page)
    page.wait_for_timeout(500)  # let the layout settle (fonts, the toast area)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-1366.png"))

    assert page.evaluate("() => window.scrollY") == 0
    keys = ["rv_keep", "rv_accept", "rv_label_0", "rv_exclude", "rv_undo", "rv_prev", "rv_next"]
    boxes = {"text": text.bounding_box(), "labels": labels.bounding_box()}
    for key in keys:
        boxes[key] = button(page, key).bounding_box()
    outside = {
        name: box
        for name, box in boxes.items()
        if box is None
        or box["y"] < 0
        or box["y"] + box["height"] > 768
        or box["x"] < 0
        or box["x"] + box["width"] > 1366
    }
    assert not outside, f"not within the 1366×768 viewport without scrolling: {outside}"


@pytest.mark.browser
def test_a_long_text_scrolls_in_its_box_and_the_actions_stay_on_screen(
    server,  # noqa: F811 (the fixture imported above)
    workspace_folder,  # noqa: F811
    laptop_page,
):
    from playwright.sync_api import expect

    ws = Workspace(workspace_folder)
    try:
        first = ws.review_queue(flagged=True, limit=1)[0].iloc[0]
        long_text = "\n".join(f"Line {i}: the support ticket goes on and on." for i in range(80))
        ws.repair_texts([(int(first["sample_id"]), long_text)], reviewer="setup")
    finally:
        ws.close()
    page = laptop_page
    open_review_as_reviewer(page, server)
    box = page.locator(".st-key-rv_long_text")
    expect(box).to_contain_text("Line 79:")  # the whole text is there, in its own scroll box
    wait_for_idle(page)
    keys = ["rv_keep", "rv_accept", "rv_exclude", "rv_undo", "rv_prev", "rv_next"]
    boxes = {"text box": box.bounding_box()}
    boxes |= {key: button(page, key).bounding_box() for key in keys}
    outside = {k: b for k, b in boxes.items() if b is None or b["y"] + b["height"] > 768}
    assert not outside, f"below the fold of a 1366×768 screen: {outside}"
