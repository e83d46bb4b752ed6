"""The one real-browser test: ``streamlit run app.py`` driven by headless Chromium.

AppTest (tests/test_app.py) runs the scripts without a browser; this test checks what only a
browser shows: the page loads over the websocket, the sidebar input, button clicks and keyboard
shortcuts reach the server, and every action lands in the store. It drives Debian's Chromium
(``apt-get install chromium``; never a downloaded build) and is skipped when that is missing.
A screenshot is left in ``test-artifacts/browser-review.png`` for people to look at.
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

import pytest

from data.store import Workspace
from tests.test_app import add_analysis

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
REVIEWER = "browser-ana"
# Generous: the test machine may have 2 shared cores and a cold Streamlit start.
START_TIMEOUT_S = 60
UI_TIMEOUT_MS = 30_000
STORE_TIMEOUT_S = 20
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


@pytest.fixture
def workspace_folder(tmp_path, sentiment_prepared) -> Path:
    home = tmp_path / "home"
    ws = Workspace.create(home / "browser", sentiment_prepared, name="browser")
    add_analysis(ws)
    ws.close()
    return ws.folder


@pytest.fixture
def server(workspace_folder, tmp_path):
    """A real Streamlit server on a free port; the whole process group is stopped afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "SECOND_LOOK_HOME": str(workspace_folder.parent),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    log_path = tmp_path / "streamlit.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so it can be stopped as a whole
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not health_ok(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Streamlit did not start on {url}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc)


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
        accept = page.get_by_role("button", name=re.compile(rf"^Accept suggestion '{suggested}'"))
        expect(accept).to_be_disabled()  # no reviewer name yet

        name = sidebar.get_by_role("textbox", name="Reviewer name", exact=True)
        name.fill(REVIEWER)
        name.press("Enter")
        expect(accept).to_be_enabled()

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
        # column 3 of row 0 is the current label of the worst-quality sample.
        current_cell = page.locator("[data-testid='stDataFrame'] [data-testid='glide-cell-3-0']")
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
