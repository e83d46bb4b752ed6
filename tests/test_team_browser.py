"""Team mode in a real browser (issue 15): ``streamlit run app.py`` on a home with accounts,
driven by Debian's Chromium.

tests/test_team_app.py checks the same rules with AppTest; these check what only a browser and
real servers show: the sign-in form is the first thing served (no workspace name, no row text in
the page, even at a page's own URL), a member's workspace select lists their workspaces only and
no page shows another team's rows, a viewer's buttons and keyboard shortcuts write nothing, and
two servers on one home (two replicas) share labels and accounts. Every test also checks the
servers' logs and the browser console. Screenshots are left in ``test-artifacts/team-*.png``.

The fixtures are per module: one home, at most two servers (the second only for the replica
test), one Chromium with a fresh context (a fresh session) for each visitor. The replica test
runs again on a team database in PostgreSQL (a second home and two more servers) when
SECOND_LOOK_TEST_DATABASE_URL names a test cluster (tests/pg.py); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from data.store import Workspace
from data.store.accounts import open_directory
from tests.conftest import NEGATIVE, POSITIVE, add_analysis, make_prepared
from tests.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    STORE_TIMEOUT_S,
    UI_TIMEOUT_MS,
    StreamlitServer,
    blur,
    open_selectbox,
    wait_for_idle,
    wait_until,
)
from tests.test_tour import LOG_PROBLEM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (sudo apt-get install chromium)",
    ),
]

PASSWORD = "correct horse battery"
# Team-b's rows: texts found nowhere else, so any of them on a team-a member's page is a leak.
TEAM_B_MARK = "Quokkaledger"
TEAM_B_TEXTS = [f"{TEAM_B_MARK} {i}: invoice from the zanzibar depot" for i in range(8)]
# What must not be on the sign-in screen: the workspaces' names and any row's text.
SECRETS = ["team-a", "team-b", *POSITIVE, *NEGATIVE, TEAM_B_MARK]
# The pages a reviewer's navigation lists (no Train, no Export).
DEEP_LINK_PROBE = re.compile(r"://[^/]+/[a-z_]+/_stcore/(health|host-config)$")
REVIEWER_PAGES = [
    "Data",
    "Text repair",
    "Predictions & flags",
    "Dataset health",
    "Review",
    "Charts",
    "Run history",
    "Reviewers",
    "Audit log",
]


@pytest.fixture(scope="module")
def team_home(tmp_path_factory):
    return populate(tmp_path_factory.mktemp("team") / "home")


def populate(home: Path) -> Path:
    """team-a (analysed: its first rows are flagged) and team-b (texts of its own); accounts
    ana and bo (reviewers of team-a), vic (viewer of team-a), cy (curator of team-b). In
    PostgreSQL when SECOND_LOOK_DATABASE_URL is set."""
    texts = POSITIVE + NEGATIVE
    labels = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    splits = ["test" if i % 4 == 0 else "train" for i in range(len(texts))]
    a = Workspace.create(
        home / "team-a", make_prepared(texts, labels, splits=splits), name="team-a"
    )
    add_analysis(a)
    a.close()
    b_labels = ["spam", "ham"] * (len(TEAM_B_TEXTS) // 2)
    Workspace.create(home / "team-b", make_prepared(TEAM_B_TEXTS, b_labels), name="team-b").close()
    directory = open_directory(home)
    for name, role in (
        ("ana", "reviewer"),
        ("bo", "reviewer"),
        ("vic", "viewer"),
        ("cy", "curator"),
    ):
        directory.add_account(name, PASSWORD, role=role)
    for name in ("ana", "bo", "vic"):
        directory.add_member("team-a", name)
    directory.add_member("team-b", "cy")
    return home


class Replicas:
    """Streamlit servers on one home, started when first asked for (``replicas[1]``): a test
    that needs one server starts one. All are stopped together at the end of the module."""

    def __init__(self, home, env: dict[str, str] | None = None):
        self.home = home
        self.env = env or {}
        self.servers: dict[int, StreamlitServer] = {}

    def __getitem__(self, n: int) -> StreamlitServer:
        if n not in self.servers:
            srv = self.servers[n] = StreamlitServer(self.home, self.home.parent / f"replica{n}.log")
            srv.env.update(self.env)
            srv.start()
        return self.servers[n]

    def stop(self) -> None:
        for srv in self.servers.values():  # all of them told first: they shut down together
            if srv.proc is not None and srv.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(srv.proc.pid, signal.SIGTERM)
        for srv in self.servers.values():
            srv.stop()  # waits, and kills what did not stop


@pytest.fixture(scope="module")
def replicas(team_home):
    found = Replicas(team_home)
    try:
        yield found
    finally:
        found.stop()


@dataclass
class Team:
    """A populated home, the servers on it, and its team database's URL (None: SQLite)."""

    home: Path
    replicas: Replicas
    database_url: str | None = None


@pytest.fixture(scope="module")
def pg_team(tmp_path_factory):
    """The same team on a fresh PostgreSQL database: workspaces and accounts created there, and
    its servers started with SECOND_LOOK_DATABASE_URL. Skipped without a test cluster."""
    from tests.pg import fresh_database

    databases = fresh_database()
    url = next(databases)  # skips without SECOND_LOOK_TEST_DATABASE_URL
    found = None
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("SECOND_LOOK_DATABASE_URL", url)
            home = populate(tmp_path_factory.mktemp("pgteam") / "home")
        assert (home / "team-a" / "store.postgresql.json").is_file()  # in PostgreSQL
        found = Replicas(home, {"SECOND_LOOK_DATABASE_URL": url})
        yield Team(home, found, url)
    finally:
        if found is not None:
            found.stop()
        databases.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def team(request, monkeypatch) -> Team:
    """The team on SQLite workspaces (the module's home and servers), or on PostgreSQL (this
    test process then opens its workspaces there too)."""
    if request.param == "sqlite":
        return Team(request.getfixturevalue("team_home"), request.getfixturevalue("replicas"))
    found = request.getfixturevalue("pg_team")
    monkeypatch.setenv("SECOND_LOOK_DATABASE_URL", found.database_url)
    return found


@pytest.fixture
def replica1(replicas) -> StreamlitServer:
    return replicas[1]


@pytest.fixture
def replica2(replicas) -> StreamlitServer:
    """A second server on the same home: another replica behind a load balancer."""
    return replicas[2]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            sync_api.expect.set_options(timeout=UI_TIMEOUT_MS)
            yield chromium
        finally:
            chromium.close()


class Watch:
    """Fresh browser contexts (one session each) whose console errors are recorded, and the
    servers' log lines written since the test began; :meth:`check` fails on any problem."""

    def __init__(self, browser, servers):
        self.browser = browser
        self.problems: list[str] = []
        self.logs = {srv.log_path: _size(srv.log_path) for srv in servers}
        self.contexts = []

    def page(self):
        context = self.browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(UI_TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("response", self._response)
        return page

    def _console(self, msg) -> None:
        # A failed request is logged twice: here without its URL, and as a response (below).
        if msg.type == "error" and not msg.text.startswith("Failed to load resource:"):
            self.problems.append(f"console: {msg.text}")

    def _response(self, response) -> None:
        # At a page's own URL (/review) the frontend first looks for the server under that
        # path (/review/_stcore/health, then /_stcore/health): Streamlit's own 404s, issue
        # streamlit/streamlit#7074, in solo mode too.
        if response.status >= 400 and not DEEP_LINK_PROBE.search(response.url):
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def check(self) -> None:
        for context in self.contexts:
            context.close()
        for path, start in self.logs.items():
            with path.open("rb") as f:
                f.seek(start)
                new = f.read().decode(errors="replace")
            self.problems += [
                f"{path.name}: {line}" for line in new.splitlines() if LOG_PROBLEM.search(line)
            ]
        assert not self.problems, "\n".join(self.problems)


def _size(path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.fixture
def watch(browser, replica1):
    return Watch(browser, [replica1])


def shown_text(page) -> str:
    """What a reader sees (without the invisible word joiners that plain() adds)."""
    return page.locator("body").inner_text().replace("\u2060", "")


def leaks(page, secrets: list[str]) -> list[str]:
    """Those of ``secrets`` in the page's text or anywhere in its HTML (hidden elements, the
    table's DOM mirror, attributes)."""
    text, html = shown_text(page), page.content().replace("\u2060", "")
    return [s for s in secrets if s in text or s in html]


def sign_in_form(page):
    """The sign-in form's fields and button, once shown."""
    from playwright.sync_api import expect

    name = page.get_by_label("Account name", exact=True)
    password = page.get_by_label("Password", exact=True)
    button = page.get_by_role("button", name="Sign in", exact=True)
    expect(button).to_be_visible()
    expect(name).to_be_visible()
    expect(password).to_be_visible()
    return name, password, button


def submit(page, name: str, password: str) -> None:
    field, secret, button = sign_in_form(page)
    field.fill(name)
    secret.fill(password)
    button.click()


def sign_in(page, url: str, name: str, title: str | None = None) -> None:
    """Sign in as ``name`` at ``url``, then open the page called ``title`` from the sidebar."""
    from playwright.sync_api import expect

    page.goto(url)
    submit(page, name, PASSWORD)
    sidebar = page.locator("[data-testid='stSidebar']")
    expect(sidebar).to_contain_text("Signed in as")
    wait_for_idle(page)
    if title:
        nav_link(page, title).click()
        main = page.locator("[data-testid='stMain']")
        expect(main.get_by_role("heading", name=title, exact=True)).to_be_visible()
        wait_for_idle(page)


def nav_link(page, title: str):
    """The sidebar's link to the page called ``title`` (its text is the icon's name, then the
    title: "Review" must not match "Reviewers")."""
    links = page.locator("[data-testid='stSidebarNav'] a")
    return links.filter(has=page.get_by_text(title, exact=True))


def signed_in_as(page) -> str:
    caption = page.locator("[data-testid='stSidebar']").get_by_text(re.compile("^Signed in as"))
    return caption.inner_text().replace("\u2060", "").strip()


def button(page, key: str):
    """The shown button with widget key ``key`` (Streamlit may keep a hidden copy around)."""
    return page.locator(f".st-key-{key} button").filter(visible=True)


def wait_for_card(page, sample_text: str):
    """Wait until the review card shows ``sample_text`` and the run is over; the card's line of
    labels ("Given label … current label …")."""
    from playwright.sync_api import expect

    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_test_id("stText").filter(has_text=sample_text)).to_be_visible()
    wait_for_idle(page)
    expect(main.locator("[data-stale='true']")).to_have_count(0)
    return main.get_by_text(re.compile(r"^Given label"))


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(300)  # fonts and the toast area settle
    page.screenshot(path=str(ARTIFACTS / f"team-{name}.png"), full_page=True)


def first_flagged(home) -> dict:
    """team-a's first row in the review card's default order (flagged, worst quality first)."""
    ws = Workspace(home / "team-a")
    try:
        row = ws.review_queue(flagged=True, limit=1)[0].iloc[0]
        return {k: row[k] for k in ("sample_id", "text", "label", "predicted_label")}
    finally:
        ws.close()


# --------------------------------------------------------------------------------- tests


def test_the_sign_in_form_comes_before_anything(replica1, team_home, watch):
    """Before signing in, the app's root and a page's own URL (/review) both show the sign-in
    form and nothing else: no page list, no workspace name, no row's text. A wrong password is
    refused; the right one opens the page whose URL was opened (/review), else the first."""
    from playwright.sync_api import expect

    page = watch.page()
    page.goto(replica1.url)
    sign_in_form(page)
    wait_for_idle(page)
    assert leaks(page, SECRETS) == []
    # No page list and no workspace select before signing in.
    expect(page.locator("[data-testid='stSidebarNav']")).to_have_count(0)
    expect(page.get_by_role("combobox")).to_have_count(0)
    screenshot(page, "sign-in")

    submit(page, "ana", "not the password")
    expect(page.get_by_text("Wrong account name or password.", exact=True)).to_be_visible()
    wait_for_idle(page)
    sign_in_form(page)  # still the form, still nothing served
    assert leaks(page, SECRETS) == []
    expect(page.get_by_text("Signed in as")).to_have_count(0)

    submit(page, "ana", PASSWORD)
    sidebar = page.locator("[data-testid='stSidebar']")
    expect(sidebar).to_contain_text("Signed in as")
    wait_for_idle(page)
    assert signed_in_as(page) == "Signed in as ana · reviewer"
    expect(page.get_by_label("Password", exact=True)).to_have_count(0)
    # The app's root was opened: its first page.
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()

    # A link to a page (/review), signed out: the form, nothing of the page; then the page.
    page = watch.page()
    page.goto(f"{replica1.url}/review")
    sign_in_form(page)
    wait_for_idle(page)
    assert leaks(page, SECRETS) == []
    expect(page.get_by_role("heading", name="Review", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile(r"^Keep '"))).to_have_count(0)
    submit(page, "bo", PASSWORD)
    wait_for_card(page, first_flagged(team_home)["text"])
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_role("heading", name="Review", exact=True)).to_be_visible()
    assert signed_in_as(page) == "Signed in as bo · reviewer"
    assert page.url == f"{replica1.url}/review"
    expect(nav_link(page, "Review")).to_have_attribute("aria-current", "page")
    watch.check()


@pytest.mark.parametrize(("name", "path"), [("vic", "team"), ("ana", "nosuchpage")])
def test_a_link_to_a_page_the_role_lacks_opens_the_first_page(replica1, watch, name, path):
    """A viewer at the admins' page (/team), a reviewer at a page that does not exist: after
    signing in, the first page, no "page not found", nothing of the page asked for."""
    from playwright.sync_api import expect

    page = watch.page()
    page.goto(f"{replica1.url}/{path}")
    submit(page, name, PASSWORD)
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    wait_for_idle(page)
    expect(main.locator("[data-stale='true']")).to_have_count(0)
    assert page.url == f"{replica1.url}/"
    text = shown_text(page)
    for what in ("Accounts & members", "Add account", "Page not found", "may not"):
        assert what not in text, what
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(nav_link(page, "Accounts & members")).to_have_count(0)
    watch.check()


def test_a_member_sees_only_their_workspace_on_every_page(replica1, watch):
    from playwright.sync_api import expect

    page = watch.page()
    sign_in(page, replica1.url, "ana")
    sidebar = page.locator("[data-testid='stSidebar']")
    select = sidebar.get_by_role("combobox", name="Workspace")
    expect(select).to_have_value("team-a")
    open_selectbox(page, select)
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    assert [o.strip() for o in options.all_inner_texts()] == ["team-a"]
    page.keyboard.press("Escape")
    expect(select).to_have_attribute("aria-expanded", "false")

    nav = page.locator("[data-testid='stSidebarNav'] a")
    titles = [t.strip().split("\n")[-1] for t in nav.all_inner_texts()]
    assert titles == REVIEWER_PAGES  # a reviewer's navigation: no Train, no Export
    main = page.locator("[data-testid='stMain']")
    seen, own = {}, {}
    for i, title in enumerate(titles):
        nav.nth(i).click()
        expect(main.get_by_role("heading", name=title, exact=True)).to_be_visible()
        wait_for_idle(page)
        expect(main.locator("[data-stale='true']")).to_have_count(0)
        if main.locator("[data-testid='stException']").count():
            pytest.fail(f"{title}: {main.locator('[data-testid=stException]').inner_text()}")
        seen[title] = leaks(page, ["team-b", TEAM_B_MARK, "spam", "zanzibar"])
        own[title] = leaks(page, ["team-a", POSITIVE[0]])
    assert seen == {title: [] for title in titles}
    # The same look finds team-a's own name and rows where they are shown.
    assert "team-a" in own["Data"] and POSITIVE[0] in own["Review"]
    watch.check()


def test_a_viewer_cannot_relabel_by_button_or_key(replica1, team_home, watch):
    from playwright.sync_api import expect

    first = first_flagged(team_home)
    ws = Workspace(team_home / "team-a")
    try:
        before = ws.label_version()
        page = watch.page()
        sign_in(page, replica1.url, "vic", "Review")
        labels = wait_for_card(page, first["text"])
        expect(labels).to_be_visible()
        assert signed_in_as(page) == "Signed in as vic · viewer"
        main = page.locator("[data-testid='stMain']")
        expect(main.get_by_text(re.compile("may not change labels"))).to_be_visible()
        for key in ("rv_keep", "rv_accept", "rv_label_0", "rv_exclude", "rv_undo"):
            expect(button(page, key)).to_be_disabled()
        screenshot(page, "review-viewer")

        # A key press reaches the server (it answers with a toast), which refuses it.
        main.get_by_role("heading", name="Review", exact=True).click()  # the page, not a box
        blur(page)
        page.keyboard.press("k")
        toast = page.get_by_test_id("stToast")
        expect(toast).to_be_visible()  # the server has handled the press
        wait_for_idle(page)
        page.wait_for_timeout(500)
        assert ws.label_version() == before
        assert len(ws.events(reviewer="vic")) == 0
        assert ws.sample(int(first["sample_id"]))["label"] == first["label"]
        expect(toast).to_contain_text("may not change labels")
    finally:
        ws.close()
    watch.check()


def test_two_replicas_share_labels_and_record_each_account(team, browser):
    """ana on replica 1 relabels the first flagged row; bo, on replica 2 with the same row on
    his card (opened by its link, /review, before signing in), sees the new label after a
    rerun (Next, then Prev) and keeps it. The store holds both events, each with its account's
    name. On SQLite workspaces and on a PostgreSQL team database."""
    from playwright.sync_api import expect

    team_home, replica1, replica2 = team.home, team.replicas[1], team.replicas[2]
    watch = Watch(browser, [replica1, replica2])
    first = first_flagged(team_home)
    sid, given, new = int(first["sample_id"]), first["label"], first["predicted_label"]
    assert new != given
    ws = Workspace(team_home / "team-a")
    try:
        already = len(ws.events())
        ana, bo = watch.page(), watch.page()
        sign_in(ana, replica1.url, "ana", "Review")
        sign_in(bo, f"{replica2.url}/review", "bo")  # the page asked for opens
        ana_labels = wait_for_card(ana, first["text"])
        bo_labels = wait_for_card(bo, first["text"])
        expect(bo_labels).to_contain_text(f"current label {given}")
        assert signed_in_as(bo) == "Signed in as bo · reviewer"

        index = ws.label_names.index(new)
        button(ana, f"rv_label_{index}").click()  # relabel: "negative · 1"
        wait_until(
            lambda: ws.sample(sid)["label"] == new,
            timeout=STORE_TIMEOUT_S,
            what="ana's relabel on replica 1 to reach the store",
        )
        expect(ana.get_by_test_id("stToast")).to_contain_text(f"Saved: relabel → {new}")

        # bo's card was drawn before; a rerun on replica 2 reads the store again.
        expect(bo_labels).to_contain_text(f"current label {given}")
        button(bo, "rv_next").click()
        wait_for_card(bo, "")
        expect(bo.locator("[data-testid='stMain']")).to_contain_text("Sample 2 of")
        button(bo, "rv_prev").click()
        bo_labels = wait_for_card(bo, first["text"])
        expect(bo.locator("[data-testid='stMain']")).to_contain_text("Sample 1 of")
        expect(bo_labels).to_contain_text(f"current label {new}")
        expect(bo_labels).to_contain_text("reviewed by ana")
        current_cell = bo.locator("[data-testid='stDataFrame'] [data-testid='glide-cell-2-0']")
        expect(current_cell).to_have_text(new)
        screenshot(bo, "review-reviewer")

        # bo keeps it on replica 2: recorded as bo, and ana's replica shows it after a rerun.
        button(bo, "rv_keep").click()
        wait_until(
            lambda: len(ws.events()) == already + 2,
            timeout=STORE_TIMEOUT_S,
            what="bo's keep on replica 2 to reach the store",
        )
        wait_for_idle(ana)
        button(ana, "rv_prev").click()
        ana_labels = wait_for_card(ana, first["text"])
        expect(ana_labels).to_contain_text(f"current label {new}")
        expect(ana_labels).to_contain_text("reviewed by bo")

        events = ws.events().iloc[::-1].iloc[already:]  # oldest first, this test's only
        assert list(events["reviewer"]) == ["ana", "bo"]
        assert list(events["action"]) == ["relabel", "confirm"]
        assert list(events["sample_id"]) == [sid, sid]
        assert list(events["new_label"]) == [new, new]
        assert ws.sample(sid)["reviewer"] == "bo"
    finally:
        ws.close()
    watch.check()
