"""Real-browser tests: ``streamlit run app.py`` driven by headless Chromium.

AppTest (tests/test_app.py) runs the scripts without a browser; these tests check what only a
browser shows: the page loads over the websocket, the sidebar input, button clicks and keyboard
shortcuts reach the server (keys pressed faster than the page redraws included), bulk actions
and their one-step undo, and every action lands in the store, which is what the tests assert.
They drive Debian's Chromium (``apt-get install chromium``; never a downloaded build) and are
skipped when that is missing. Screenshots are left in ``test-artifacts/browser-*.png`` for
people to look at.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.records import AnalysisSummary
from data.store import Workspace

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
REVIEWER = "browser-ana"
# Generous: the test machine may have 2 shared cores and a cold Streamlit start.
START_TIMEOUT_S = 60
UI_TIMEOUT_MS = 30_000
STORE_TIMEOUT_S = 20
QUIET_S = 3  # no new event this long while the app is idle: a press was lost
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (sudo apt-get install chromium)",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, *, timeout: float, what: str):
    """Poll ``check()`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout:.0f} s waiting for {what}.")
        time.sleep(0.2)


def health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


# The fake analysis: every row's quality is spread over (0, 1) in row order; the worst half
# (the 12 positive rows) is flagged, and the model suggests the other label for them. Its
# confidence alternates between high and middling, so a probability floor selects half of them.
N_FLAGGED = 12
HIGH_PROB, MID_PROB, PROB_FLOOR = 0.95, 0.6, 0.75


def add_flagged_analysis(ws: Workspace) -> None:
    rows = ws.samples()
    n = len(rows)
    quality = np.linspace(0.01, 0.99, n)
    flagged = np.arange(n) < N_FLAGGED
    flipped = {"positive": "negative", "negative": "positive"}
    predicted_prob = np.where(flagged & (np.arange(n) % 2 == 1), MID_PROB, HIGH_PROB)
    ws.save_analysis(
        pd.DataFrame(
            {
                "sample_id": rows["id"],
                "analyzed_label": rows["label"],
                "predicted_label": [
                    flipped[lab] if flag else lab
                    for lab, flag in zip(rows["label"], flagged, strict=True)
                ],
                "predicted_prob": predicted_prob,
                "analyzed_prob": np.where(flagged, 1 - predicted_prob, predicted_prob),
                "label_quality": quality,
                "is_label_issue": flagged,
            }
        ),
        method="test",
        settings={},
        label_version=ws.label_version(),
        summary=AnalysisSummary(n_issues=int(flagged.sum())),
    )


@pytest.fixture
def workspace_folder(tmp_path, sentiment_prepared) -> Path:
    home = tmp_path / "home"
    ws = Workspace.create(home / "browser", sentiment_prepared, name="browser")
    add_flagged_analysis(ws)
    # All flagged rows share one label, so every card the keyboard test passes through shows
    # the same buttons (A, 1 · negative, X, K, U), whichever one the browser is drawing.
    flagged = ws.review_queue(flagged=True, limit=100)[0]
    assert len(flagged) == N_FLAGGED and set(flagged["label"]) == {"positive"}
    ws.close()
    return ws.folder


class StreamlitServer:
    """``streamlit run app.py`` on a free port, as its own process group; ``restart()`` stops it
    and starts a fresh one on the same port (every browser session is then new)."""

    def __init__(self, home: Path, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SECOND_LOOK_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamlit",
                    "run",
                    "app.py",
                    "--server.port",
                    str(self.port),
                    "--server.address",
                    "127.0.0.1",
                    "--server.headless",
                    "true",
                    "--browser.gatherUsageStats",
                    "false",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so it can be stopped as a whole
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not health_ok(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log_path.read_text()[-3000:]
                pytest.fail(f"Streamlit did not start on {self.url}:\n{log}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def streamlit_server(workspace_folder, tmp_path):
    """A real Streamlit server; the whole process group is stopped afterwards."""
    srv = StreamlitServer(workspace_folder.parent, tmp_path / "streamlit.log")
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server(streamlit_server) -> str:
    """The URL of a real Streamlit server."""
    return streamlit_server.url


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(UI_TIMEOUT_MS)
            # expect() keeps its own 5 s default apart from the context's; a loaded 2-core
            # machine takes longer than that to draw the review card.
            sync_api.expect.set_options(timeout=UI_TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def test_review_relabel_and_undo_in_a_real_browser(server, workspace_folder, page):
    from playwright.sync_api import expect

    ws = Workspace(workspace_folder)
    try:
        first = ws.review_queue(flagged=True, limit=1)[0].iloc[0]
        sid, given, suggested = int(first["sample_id"]), first["label"], first["predicted_label"]
        assert suggested != given  # the fake analysis flips the worst-quality labels

        # Streamlit draws over a websocket after the load event: wait for elements instead.
        page.goto(f"{server}/review")
        sidebar = page.locator("[data-testid='stSidebar']")
        expect(sidebar).to_be_visible()
        accept_name = re.compile(rf"^Accept suggestion '{suggested}'")
        accept = page.get_by_role("button", name=accept_name)
        expect(accept).to_be_disabled()  # no reviewer name yet

        name = sidebar.get_by_role("textbox", name="Reviewer name", exact=True)
        name.fill(REVIEWER)
        name.press("Enter")
        # While the page redraws, the button can briefly be there twice: the new, enabled one
        # and the stale, disabled one from before (the warning above it went away).
        accept = page.get_by_role("button", name=accept_name, disabled=False)
        expect(accept).to_be_visible()

        accept.click()
        wait_until(
            lambda: ws.sample(sid)["label"] == suggested,
            timeout=STORE_TIMEOUT_S,
            what="the accepted suggestion to reach the store",
        )
        events = ws.events(reviewer=REVIEWER)
        assert list(events["action"]) == ["accept"]
        assert events.iloc[0]["sample_id"] == sid and events.iloc[0]["new_label"] == suggested
        assert ws.sample(sid)["reviewer"] == REVIEWER
        # The card has moved on to the next sample: the action was taken exactly once.
        expect(page.get_by_text("Sample 2 of")).to_be_visible()
        # The table below the card (a canvas grid with an accessible DOM mirror) shows it too:
        # column 2 of row 0 is the current label of the worst-quality sample.
        current_cell = page.locator("[data-testid='stDataFrame'] [data-testid='glide-cell-2-0']")
        expect(current_cell).to_have_text(suggested)

        # Shortcuts are ignored while a text input has focus: make sure none has (as a reviewer
        # clicking the page would), then press U for Undo.
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press("u")
        wait_until(
            lambda: ws.sample(sid)["label"] == given,
            timeout=STORE_TIMEOUT_S,
            what="the U shortcut's undo to reach the store",
        )
        assert list(ws.events(reviewer=REVIEWER)["action"]) == ["undo", "accept"]
        expect(page.get_by_text("Undone.")).to_be_visible()
        expect(current_cell).to_have_text(given)

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-review.png"), full_page=True)
    finally:
        ws.close()


def open_review_as_reviewer(page, url: str) -> None:
    """Open /review, enter the reviewer name, wait for the page to settle, and leave no input
    focused (shortcuts are ignored while one has focus; a reviewer clicks the page)."""
    from playwright.sync_api import expect

    page.goto(f"{url}/review")
    keep = re.compile(r"^Keep '")
    expect(page.get_by_role("button", name=keep)).to_be_disabled()  # waiting for a name
    name = page.locator("[data-testid='stSidebar']").get_by_role(
        "textbox", name="Reviewer name", exact=True
    )
    name.fill(REVIEWER)
    name.press("Enter")
    # Not to_be_enabled(): while the page redraws, a stale disabled copy can linger.
    expect(page.get_by_role("button", name=keep, disabled=False)).to_be_visible()
    wait_for_idle(page)
    blur(page)


def wait_for_idle(page) -> None:
    """Wait until the script run in progress has finished (call it once the run has visibly
    started): a popup opened during a run can be closed by the redraw."""
    from playwright.sync_api import expect

    app = page.locator("[data-testid='stApp']")
    expect(app).to_have_attribute("data-test-script-state", "notRunning")


def open_selectbox(page, combobox) -> None:
    """Open a selectbox's list. Its popup closes when the page scrolls, and Playwright's
    scroll-into-view can still be moving the page when it clicks: scroll first, wait for the
    scrolling to stop, then open it with its button."""
    from playwright.sync_api import expect

    combobox.scroll_into_view_if_needed()
    page.evaluate(SCROLL_SETTLED_JS)
    box = combobox.locator("xpath=ancestor::*[@data-testid='stSelectbox']")
    box.get_by_role("button", name="Open").click()
    expect(combobox).to_have_attribute("aria-expanded", "true")


# Resolves once no scroll event (in any scrolling container) has fired for 300 ms.
SCROLL_SETTLED_JS = """() => new Promise(resolve => {
    let timer;
    const done = () => { document.removeEventListener("scroll", onScroll, true); resolve(); };
    const onScroll = () => { clearTimeout(timer); timer = setTimeout(done, 300); };
    document.addEventListener("scroll", onScroll, true);
    onScroll();
})"""


def app_idle(page) -> bool:
    state = page.locator("[data-testid='stApp']").get_attribute("data-test-script-state")
    return state == "notRunning"


def blur(page) -> None:
    page.evaluate("document.activeElement && document.activeElement.blur()")


def reviewer_events(ws: Workspace) -> pd.DataFrame:
    """This reviewer's events, oldest first."""
    return ws.events(reviewer=REVIEWER).iloc[::-1].reset_index(drop=True)


def wait_for_events(
    ws: Workspace, n: int, what: str, page=None, *, poll: float = 0.2
) -> pd.DataFrame:
    """Wait until the reviewer has ``n`` events and check there are exactly ``n``.

    With ``page``, stop early once the app is idle and the store has not changed for
    ``QUIET_S``: the missing events are not coming (a lost key press), so fail now.
    """
    deadline = time.monotonic() + STORE_TIMEOUT_S
    seen, since = -1, time.monotonic()
    while len(events := reviewer_events(ws)) < n and time.monotonic() < deadline:
        if len(events) != seen:
            seen, since = len(events), time.monotonic()
        elif page is not None and app_idle(page) and time.monotonic() - since > QUIET_S:
            break
        time.sleep(poll)
    shown = events[["sample_id", "action", "new_label", "new_excluded"]].to_string()
    assert len(events) == n, f"expected {n} events ({what}); the store has:\n{shown}"
    return events


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=True)


# The keyboard flow: five actions on the five worst samples, then three undos.
KEYS = ("a", "a", "1", "x", "k")
ACTIONS = ["accept", "accept", "relabel", "exclude", "confirm"]


def check_five_actions(ws: Workspace, queue: pd.DataFrame, before: dict, events) -> None:
    """The five actions landed once each, on five distinct samples in queue order."""
    ids = [int(i) for i in queue["sample_id"]]
    assert list(events["action"]) == ACTIONS
    assert list(events["sample_id"]) == ids
    assert events["batch_id"].nunique() == 5
    negative = ws.label_names[0]  # key 1
    assert list(events["new_label"][:3]) == [*queue["predicted_label"][:2], negative]
    after = {sid: ws.sample(sid) for sid in ids}
    assert [after[sid]["label"] for sid in ids] == [
        *queue["predicted_label"][:2],
        negative,
        before[ids[3]]["label"],
        before[ids[4]]["label"],
    ]
    assert [after[sid]["excluded"] for sid in ids] == [False, False, False, True, False]
    assert all(after[sid]["reviewed"] for sid in ids)


def check_three_undos(ws: Workspace, queue: pd.DataFrame, before: dict, events) -> None:
    """The last three actions are reverted, newest first; the first two are kept."""
    ids = [int(i) for i in queue["sample_id"]]
    undos = events.iloc[5:]
    assert list(undos["action"]) == ["undo"] * 3
    assert list(undos["sample_id"]) == ids[4:1:-1]
    assert list(undos["undoes_batch"]) == list(events["batch_id"][4:1:-1])
    for sid in ids[2:]:
        now = ws.sample(sid)
        assert now["label"] == before[sid]["label"]
        assert now["excluded"] == before[sid]["excluded"]
        assert not now["reviewed"]
    for sid, label in zip(ids[:2], queue["predicted_label"][:2], strict=True):
        now = ws.sample(sid)
        assert now["label"] == label != before[sid]["label"] and now["reviewed"]


def test_keys_pressed_before_the_redraw_act_on_the_next_sample(server, workspace_folder, page):
    """Each key is pressed as soon as the previous action is in the store: its callback has
    run, and the page usually still shows the card just acted on (the redraw follows). The
    server resolves the target, so every key acts once, on the next sample in queue order
    (worst label quality first). One press at a time is in flight: see the next test for more."""
    ws = Workspace(workspace_folder)
    try:
        queue = ws.review_queue(flagged=True, limit=5)[0]  # the page's defaults
        before = {int(sid): ws.sample(sid) for sid in queue["sample_id"]}
        open_review_as_reviewer(page, server)

        for i, key in enumerate(KEYS, start=1):
            page.keyboard.press(key)
            wait_for_events(ws, i, f"key {key!r} after {KEYS[: i - 1]}", poll=0.01)
        check_five_actions(ws, queue, before, reviewer_events(ws))
        screenshot(page, "keys")

        for i in range(1, 4):
            page.keyboard.press("u")
            wait_for_events(ws, 5 + i, f"undo #{i}", poll=0.01)
        check_three_undos(ws, queue, before, reviewer_events(ws))
        screenshot(page, "keys-undone")
    finally:
        ws.close()


def test_keys_pressed_without_any_pause_are_all_applied(server, workspace_folder, page):
    """The same flow with no pause at all between keys: every press counts, in order.

    Streamlit's button shortcuts failed this (presses arriving during a run were merged into
    one trigger; different buttons then ran newest first); app_pages/keys.py sends a log."""
    ws = Workspace(workspace_folder)
    try:
        queue = ws.review_queue(flagged=True, limit=5)[0]
        before = {int(sid): ws.sample(sid) for sid in queue["sample_id"]}
        open_review_as_reviewer(page, server)

        for key in KEYS:
            page.keyboard.press(key)
        try:
            events = wait_for_events(ws, 5, f"keys {KEYS} without pauses", page)
            check_five_actions(ws, queue, before, events)
        finally:
            screenshot(page, "keys-fast")

        for _ in range(3):
            page.keyboard.press("u")
        try:
            events = wait_for_events(ws, 8, "'u' three times without pauses", page)
            check_three_undos(ws, queue, before, events)
        finally:
            screenshot(page, "keys-fast-undone")
    finally:
        ws.close()


def test_bulk_accept_with_preview_is_undone_in_one_step(server, workspace_folder, page):
    from playwright.sync_api import expect

    ws = Workspace(workspace_folder)
    try:
        # The page's default filter (flagged) plus the probability floor.
        expected = ws.review_ids(flagged=True, min_prob=PROB_FLOOR)
        assert 0 < len(expected) < N_FLAGGED  # the floor really selects
        before = {sid: ws.sample(sid) for sid in expected}
        rows = ws.review_queue(ids=expected, order="row", limit=len(expected))[0]
        suggested = dict(zip(rows["sample_id"], rows["predicted_label"], strict=True))
        open_review_as_reviewer(page, server)

        page.get_by_text("Bulk action on the rows these filters select").click()
        # The filters are folded into an expander too: pick the bulk one.
        panel = page.locator("[data-testid='stExpander']").filter(has_text="Bulk action")
        expect(panel).to_contain_text(f"{N_FLAGGED} rows match")
        floor = panel.get_by_role("spinbutton", name="…and the model's probability is at least")
        floor.fill(str(PROB_FLOOR))
        floor.press("Enter")
        expect(panel).to_contain_text(f"{len(expected)} rows match")
        wait_for_idle(page)
        action = panel.get_by_role("combobox", name="Action")
        open_selectbox(page, action)
        page.get_by_role("option", name="accept the model's suggestion", exact=True).click()
        expect(action).to_have_value("accept the model's suggestion")
        panel.get_by_role("button", name=f"Apply to {len(expected)} rows").click()

        events = wait_for_events(ws, len(expected), "one bulk accept")
        assert set(events["action"]) == {"accept"}
        assert events["batch_id"].nunique() == 1
        assert sorted(events["sample_id"]) == expected
        for sid in expected:
            now = ws.sample(sid)
            assert now["label"] == suggested[sid] != before[sid]["label"] and now["reviewed"]
        expect(page.get_by_text(re.compile(r"One Undo \(U\) reverts them all"))).to_be_visible()
        screenshot(page, "bulk")

        wait_for_idle(page)
        blur(page)
        page.keyboard.press("u")
        events = wait_for_events(ws, 2 * len(expected), "the bulk accept and one undo")
        undos = events.iloc[len(expected) :]
        assert set(undos["action"]) == {"undo"}
        assert undos["batch_id"].nunique() == 1  # one step
        assert set(undos["undoes_batch"]) == {events["batch_id"].iloc[0]}
        assert sorted(undos["sample_id"]) == expected
        for sid in expected:
            now = ws.sample(sid)
            assert now["label"] == before[sid]["label"] and not now["reviewed"]
        expect(page.get_by_text("Undone.")).to_be_visible()
        screenshot(page, "bulk-undone")
    finally:
        ws.close()


def test_keys_pressed_before_a_server_restart_are_not_replayed(
    streamlit_server, workspace_folder, page
):
    """The browser keeps its key log across a new server session (a restart, or a session the
    server dropped): the new session must not apply the old presses again."""
    from playwright.sync_api import expect

    ws = Workspace(workspace_folder)
    try:
        open_review_as_reviewer(page, streamlit_server.url)
        for key in ("a", "a", "a"):
            page.keyboard.press(key)
        wait_for_events(ws, 3, "three accepts")

        streamlit_server.restart()
        # The page reconnects by itself, without a reload, to a new session.
        keep = page.get_by_role("button", name=re.compile(r"^Keep '"), disabled=False)
        expect(keep).to_be_visible()
        wait_for_idle(page)
        assert len(reviewer_events(ws)) == 3  # reconnecting alone changed nothing
        blur(page)
        page.keyboard.press("k")
        events = wait_for_events(ws, 4, "three accepts, a restart, one keep", page)
        screenshot(page, "keys-after-restart")
        wait_for_idle(page)
        events = wait_for_events(ws, 4, "three accepts, a restart, one keep", page)
        assert list(events["action"]) == ["accept"] * 3 + ["confirm"]
    finally:
        ws.close()


# Every link and image on the page, SVG ones (Plotly's) included.
LINKS_AND_IMAGES_JS = """() => [...document.querySelectorAll('a, img, image')].map(e =>
    e.getAttribute('href') || e.getAttribute('xlink:href') || e.getAttribute('src') || '')"""


@pytest.fixture
def hostile_server(tmp_path):
    """A real server on a workspace whose names and values are hostile strings."""
    from tests.hostile import hostile_workspace

    home = tmp_path / "home"
    hostile_workspace(home).close()
    srv = StreamlitServer(home, tmp_path / "streamlit.log")
    try:
        srv.start()
        yield srv.url
    finally:
        srv.stop()


def test_hostile_data_shows_as_plain_text_in_a_real_browser(hostile_server, page):
    """Label names, ids, reviewer names and the rest show as typed: no link or image to
    evil.example, no HTML, no script run; checked on the Review card (after an action, so its
    toast too), the Reviewers page and the Data page."""
    from playwright.sync_api import expect

    from tests.hostile import LABELS, LINK, REVIEWERS, SCRIPT, WORKSPACE_NAME

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    def check(*expected: str) -> None:
        wait_for_idle(page)
        page.wait_for_timeout(1000)  # lazy plugins (KaTeX, emoji) load after the first draw
        assert [u for u in page.evaluate(LINKS_AND_IMAGES_JS) if "evil.example" in u] == []
        assert page.locator("[data-testid='stMain'] img[src='x']").count() == 0
        assert page.locator("[data-testid='stMain'] script").count() == 0
        assert page.locator("[data-testid='stMain'] strong:text-is('bold')").count() == 0
        # What a reader sees (the invisible word joiners plain() adds left out). A part drawn
        # a moment after the script run ended (once in CI: the Reviewers page's buttons) is
        # waited for, up to the UI timeout, before the text counts as not shown.
        deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
        while True:
            text = page.locator("[data-testid='stApp']").inner_text().replace("\u2060", "")
            missing = [value for value in expected if value not in text]
            if not missing or time.monotonic() > deadline:
                break
            page.wait_for_timeout(250)
        for value in expected:
            assert value in text, f"{value!r} is not shown as typed"

    page.goto(f"{hostile_server}/review")
    name = page.locator("[data-testid='stSidebar']").get_by_role(
        "textbox", name="Reviewer name", exact=True
    )
    name.fill(REVIEWERS[0])
    name.press("Enter")
    keep = page.get_by_role("button", name=re.compile(r"^Keep '"), disabled=False)
    expect(keep).to_be_visible(timeout=UI_TIMEOUT_MS)
    check(f"Keep '{LABELS[1]}' · K", "Sample 1 of", SCRIPT, REVIEWERS[1])
    page.locator(".st-key-rv_label_0 button").first.click()  # relabel as LABELS[0] (key 1)
    toast = page.get_by_test_id("stToast")  # drawn outside the app's own container
    expect(toast).to_contain_text("Saved: relabel")
    assert f"Saved: relabel → {LABELS[0]}" in toast.inner_text().replace("\u2060", "")
    check()
    screenshot(page, "plain-text-review")

    page.goto(f"{hostile_server}/reviewers")
    expect(page.get_by_text("Disagreements to settle")).to_be_visible(timeout=UI_TIMEOUT_MS)
    check(f"{REVIEWERS[1]} → {LABELS[1]}", f"Resolve as {LABELS[2]}")
    screenshot(page, "plain-text-reviewers")

    page.goto(hostile_server)
    expect(page.get_by_text("Workspace:")).to_be_visible(timeout=UI_TIMEOUT_MS)
    check(f"Workspace: {WORKSPACE_NAME}", f"Source: {LINK}")
    assert dialogs == []


# Texts for the repair test: planted mojibake, an HTML entity, and a hostile text that also has
# an entity (so it is among the proposals and its markup-like pieces are drawn on the page).
MOJIBAKE, MOJIBAKE_FIXED = (
    "The cafÃ© was lovely, I will come back",
    "The café was lovely, I will come back",
)
ENTITY, ENTITY_FIXED = (
    "Great fish &amp; chips and fast service",
    "Great fish & chips and fast service",
)


@pytest.fixture
def repair_workspace(tmp_path):
    """A workspace with texts to repair, and the hostile text (its id and text are returned)."""
    from tests.conftest import NEGATIVE, POSITIVE, make_prepared
    from tests.hostile import BOLD, COLOUR, FORMULA, IMG_TAG, LINK, SCRIPT

    hostile = f"{SCRIPT} {IMG_TAG} {LINK} {BOLD} {COLOUR} {FORMULA} R&amp;D"
    texts = [MOJIBAKE, ENTITY, hostile, *POSITIVE[3:], *NEGATIVE]
    labels = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    splits = ["test" if i % 4 == 0 else "train" for i in range(len(texts))]
    ws = Workspace.create(
        tmp_path / "home" / "repair",
        make_prepared(texts, labels, splits=splits),
        name="repair",
    )
    ws.close()
    return ws.folder, hostile


@pytest.fixture
def repair_server(repair_workspace, tmp_path):
    srv = StreamlitServer(repair_workspace[0].parent, tmp_path / "streamlit.log")
    try:
        srv.start()
        yield srv.url
    finally:
        srv.stop()


def test_text_repair_accept_and_undo_in_a_real_browser(repair_server, repair_workspace, page):
    """The Text repair page shows each proposal original beside fixed; Accept writes the fixed
    text to the store and the page drops the proposal; Undo brings the text back. The hostile
    text is shown as typed."""
    from playwright.sync_api import expect

    from tests.hostile import LINK, SCRIPT

    folder, hostile = repair_workspace
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    ws = Workspace(folder)
    try:
        rows = ws.samples().set_index("text")
        sid, ext_id = int(rows.loc[MOJIBAKE, "id"]), rows.loc[MOJIBAKE, "ext_id"]

        def text_of(sample_id: int) -> str:
            rows = ws.samples(ids=[sample_id])
            return rows["text"].iloc[0]

        page.goto(f"{repair_server}/repair")
        main = page.locator("[data-testid='stMain']")
        expect(main.get_by_text("3 proposals", exact=False)).to_be_visible()
        accept = page.locator(f".st-key-rp_accept_{sid} button")
        expect(accept).to_be_disabled()  # no reviewer name yet

        # Original beside fixed: one card per proposal, its row of columns holding the original,
        # the fixed text and the button; the caption above names the kind.
        row = main.locator("[data-testid='stHorizontalBlock']").filter(has=accept)
        columns = row.locator("[data-testid='stColumn']")
        expect(columns).to_have_count(3)
        expect(columns.nth(0)).to_have_text(MOJIBAKE)
        expect(columns.nth(1)).to_have_text(MOJIBAKE_FIXED)
        expect(
            main.get_by_text(f"id {ext_id} · mis-decoded characters", exact=True)
        ).to_be_visible()
        # Only the changed characters are highlighted: "Ã©" on the left, "é" on the right.
        highlight = "[data-testid='stMarkdownColoredText'], .stMarkdownColoredText"
        expect(columns.nth(0).locator(highlight)).to_have_text(["Ã©"])
        expect(columns.nth(1).locator(highlight)).to_have_text(["é"])

        # The hostile text: shown as typed, nothing in it rendered.
        wait_for_idle(page)
        page.wait_for_timeout(1000)  # lazy plugins (KaTeX, emoji) load after the first draw
        shown = main.inner_text().replace("\u2060", "")
        assert hostile in shown and hostile.replace("&amp;", "&") in shown
        assert [u for u in page.evaluate(LINKS_AND_IMAGES_JS) if "evil.example" in u] == []
        assert main.locator("img[src='x'], script, strong:text-is('bold')").count() == 0
        assert main.locator(".katex").count() == 0
        assert SCRIPT in shown and LINK in shown

        name = page.locator("[data-testid='stSidebar']").get_by_role(
            "textbox", name="Reviewer name", exact=True
        )
        name.fill(REVIEWER)
        name.press("Enter")
        # While the page redraws, a stale disabled copy of the button can linger.
        accept = page.locator(f".st-key-rp_accept_{sid} button:not([disabled])")
        expect(accept).to_be_visible()
        wait_for_idle(page)
        accept.click()

        wait_until(
            lambda: text_of(sid) == MOJIBAKE_FIXED,
            timeout=STORE_TIMEOUT_S,
            what="the accepted repair to reach the store",
        )
        events = ws.events(reviewer=REVIEWER)
        assert list(events["action"]) == ["repair_text"]
        assert text_of(int(rows.loc[ENTITY, "id"])) == ENTITY  # only the accepted one changed
        row = ws.samples(ids=[sid]).iloc[0]
        assert row["given_text"] == MOJIBAKE  # the imported text is kept beside it
        # The page: the proposal is gone, the count says so, the toast confirms.
        expect(main.get_by_text("2 proposals", exact=False)).to_be_visible()
        expect(page.locator(f".st-key-rp_accept_{sid}")).to_have_count(0)
        expect(main.get_by_text("Repaired so far: 1 text.", exact=True)).to_be_visible()
        expect(page.get_by_test_id("stToast")).to_contain_text("repair accepted")
        screenshot(page, "repair-accepted")

        wait_for_idle(page)
        page.locator(".st-key-rp_undo button:not([disabled])").click()
        wait_until(
            lambda: text_of(sid) == MOJIBAKE,
            timeout=STORE_TIMEOUT_S,
            what="the undo to bring the text back",
        )
        assert list(ws.events(reviewer=REVIEWER)["action"]) == ["undo", "repair_text"]
        expect(main.get_by_text("3 proposals", exact=False)).to_be_visible()
        expect(page.locator(f".st-key-rp_accept_{sid} button")).to_be_visible()
        expect(page.get_by_test_id("stToast").filter(has_text="Undone")).to_be_visible()
        screenshot(page, "repair-undone")
        assert dialogs == []
    finally:
        ws.close()
