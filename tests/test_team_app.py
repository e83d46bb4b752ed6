"""Team mode in the app (AppTest): sign-in before anything, members see their workspaces only,
roles decide what a page offers and what the server accepts, events carry the account's name;
solo mode refuses to serve off the loopback address."""

from __future__ import annotations

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from data.store import Workspace
from data.store.accounts import open_directory
from tests.conftest import ROOT, TIMEOUT, add_analysis

PASSWORD = "correct horse battery"


@pytest.fixture
def team(store_backend, home, sentiment_prepared, launched):
    """Two workspaces (team-a analysed, team-b) and four accounts: root (admin), ana
    (reviewer of team-a), vic (viewer of team-a), cy (curator of team-b)."""
    a = Workspace.create(home / "team-a", sentiment_prepared, name="team-a")
    add_analysis(a)
    Workspace.create(home / "team-b", sentiment_prepared, name="team-b")
    directory = open_directory(home)
    directory.add_account("root", PASSWORD, role="admin")
    directory.add_account("ana", PASSWORD, role="reviewer")
    directory.add_account("vic", PASSWORD, role="viewer")
    directory.add_account("cy", PASSWORD, role="curator")
    directory.add_member("team-a", "ana")
    directory.add_member("team-a", "vic")
    directory.add_member("team-b", "cy")
    return directory


def signed_in(name: str, page: str | None = None, *, url: str | None = None) -> AppTest:
    """``name`` signed in, then on ``page``; ``url``: the browser's URL when signed out (a link
    to a page: st.context.url)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if url is not None:
        at.context = {"url": url}
    at.run()
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_password").input(PASSWORD)
    at.button[0].click()  # the form's submit button
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page)
        at.run()
        assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    return " ".join(
        str(e.value)
        for kind in ("markdown", "text", "caption", "info", "error", "title", "warning")
        for e in getattr(at, kind)
    )


def test_nothing_is_served_before_signing_in(team):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Account name", "Password"]
    assert "team-a" not in texts(at) and not at.selectbox  # no workspace list, no data
    assert "I love this phone" not in texts(at)
    at.switch_page("app_pages/review.py").run()  # a page's URL: still the sign-in form
    assert [t.label for t in at.text_input] == ["Account name", "Password"]
    assert "I love this phone" not in texts(at)


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def test_a_page_link_opened_signed_out_opens_after_signing_in(team):
    """/review opened signed out: the sign-in form, then Review (not the default Data page)."""
    ana = signed_in("ana", url="http://localhost:8501/review")
    assert titles(ana) == ["Review"]
    assert not ana.button(key="rv_keep").disabled  # the review card, for a reviewer
    ana.switch_page("app_pages/data.py").run()  # asked once: the app's pages work as before
    assert titles(ana) == ["Data"]
    ana.run()
    assert titles(ana) == ["Data"]


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("vic", "http://localhost:8501/team"),  # a viewer at the admins' page: not listed
        ("ana", "http://localhost:8501/export"),  # a reviewer: no Export
        ("ana", "http://localhost:8501/../../team%00<script>x</script>"),  # hostile
    ],
)
def test_a_link_to_a_page_the_role_lacks_opens_the_default_page(team, name, url):
    at = signed_in(name, url=url)
    assert titles(at) == ["Data"]  # no error, no admin content
    assert not at.error and not at.exception
    assert "Accounts & members" not in texts(at)
    assert not [t for t in at.text_input if t.key and t.key.startswith("team_")]


PAGE_URLS = [  # (the browser's URL, the server's base path, the page name found)
    ("http://h:1/review", "", "review"),
    ("http://h:1/review/", "", "review"),
    ("http://h:1/sl/review", "/sl/", "review"),
    ("http://h:1/review", "sl", ""),  # not under the server's base path
    ("http://h:1/sl", "sl", ""),
    ("http://h:1/", "", ""),
    (None, "", ""),
    ("", "", ""),
    ("http://h:1/a/b", "", ""),
    ("http://h:1/../etc/passwd", "", ""),
    ("http://h:1/%2e%2e", "", ""),
    ("http://h:1/re%00view", "", ""),
    ("http://h:1/<script>", "", ""),
    ("http://[::1/review", "", ""),  # urlsplit refuses it
    ("javascript:alert(1)", "", ""),
    ("http://h:1/" + "a" * 5000, "", ""),
]


def test_the_page_in_a_url():
    from app_pages.access import page_in_url

    assert [page_in_url(url, base) for url, base, _ in PAGE_URLS] == [p for *_, p in PAGE_URLS]


def test_a_wrong_password_is_refused(team):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.text_input(key="sign_in_name").input("ana")
    at.text_input(key="sign_in_password").input("not the password")
    at.button[0].click().run()
    assert "Wrong account name or password." in texts(at)
    assert [t.label for t in at.text_input] == ["Account name", "Password"]


def test_members_see_their_own_workspaces_only(team, home):
    ana = signed_in("ana")
    options = [o for s in ana.sidebar.selectbox for o in s.options]
    assert options == ["team-a"]
    assert "Signed in as **ana** · reviewer" in " ".join(c.value for c in ana.sidebar.caption)
    cy = signed_in("cy")
    assert [o for s in cy.sidebar.selectbox for o in s.options] == ["team-b"]
    root = signed_in("root")
    assert sorted(o for s in root.sidebar.selectbox for o in s.options) == ["team-a", "team-b"]


def test_pages_are_listed_by_role(team):
    ana = signed_in("ana")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        ana.switch_page("app_pages/train.py")  # a reviewer's navigation has no Train page
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        ana.switch_page("app_pages/export.py")
    root = signed_in("root", "app_pages/export.py")
    assert "may not" not in texts(root)


def test_a_page_checks_the_role_in_the_current_workspace(team):
    team.add_member("team-b", "ana", role="curator")  # Train and Export are listed for ana now
    ana = signed_in("ana", "app_pages/train.py")
    box = ana.sidebar.selectbox[0]
    box.select_index(box.options.index("team-a")).run()  # where ana is a reviewer
    assert "may not train models" in texts(ana)
    assert "start_training" not in [b.key for b in ana.button]
    ana.switch_page("app_pages/export.py").run()
    assert "may not export data or models" in texts(ana)
    box = ana.sidebar.selectbox[0]
    box.select_index(box.options.index("team-b")).run()
    assert "may not export" not in texts(ana)


def test_a_viewer_cannot_relabel(team, home):
    vic = signed_in("vic", "app_pages/review.py")
    assert "may not change labels" in texts(vic)
    assert vic.button(key="rv_keep").disabled


def test_the_server_checks_the_role_when_the_action_arrives(team, home):
    """The card was drawn while ana was a reviewer; an admin makes her a viewer; her click on
    the still-enabled button arrives: the server refuses it (a button drawn enabled, or widget
    state sent by hand, is not a permission)."""
    ana = signed_in("ana", "app_pages/review.py")
    keep = ana.button(key="rv_keep")
    assert not keep.disabled
    team.add_member("team-a", "ana", role="viewer")
    keep.click().run()
    assert not ana.exception
    assert "may not change labels" in " ".join(t.value for t in ana.toast)
    ws = Workspace(home / "team-a")
    assert ws.label_version() == 0  # no event was written
    ws.close()


def test_the_signed_in_account_is_the_reviewer_on_every_event(team, home):
    ana = signed_in("ana", "app_pages/review.py")
    assert not [t for t in ana.sidebar.text_input if t.label == "Reviewer name"]  # never typed
    ana.button(key="rv_keep").click().run()
    assert not ana.exception
    ws = Workspace(home / "team-a")
    log = ws.events()
    assert list(log["reviewer"]) == ["ana"]
    ws.close()


def test_a_reviewer_gets_no_bulk_actions_and_no_analysis(team):
    ana = signed_in("ana", "app_pages/review.py")
    assert "Bulk action on the rows these filters select" not in [e.label for e in ana.expander]
    ana.switch_page("app_pages/issues.py").run()
    assert ana.button(key="run_analysis").disabled


def test_signing_out_ends_the_session(team):
    ana = signed_in("ana")
    ana.sidebar.button(key="sign_out").click().run()
    assert [t.label for t in ana.text_input] == ["Account name", "Password"]
    assert team.db.read("SELECT * FROM sessions WHERE account = 'ana'") == []


def test_removing_a_member_hides_the_workspace_at_once(team):
    ana = signed_in("ana")
    team.remove_member("team-a", "ana")
    ana.run()
    assert not [o for s in ana.sidebar.selectbox for o in s.options]
    assert "not a member of any workspace" in texts(ana)


@pytest.mark.parametrize("address", ["0.0.0.0", "", "192.168.1.20"])
def test_solo_mode_refuses_to_serve_off_loopback(home, sentiment_prepared, address):
    Workspace.create(home / "mine", sentiment_prepared, name="mine")
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", address)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    finally:
        st_config.set_option("server.address", before)
    assert "without accounts" in texts(at)
    assert "python cli.py users add NAME --role admin" in [c.value for c in at.code]
    assert not at.selectbox and "mine" not in texts(at)


def test_solo_mode_on_loopback_is_unchanged(home, sentiment_prepared):
    Workspace.create(home / "mine", sentiment_prepared, name="mine")
    assert st_config.get_option("server.address") == "127.0.0.1"  # .streamlit/config.toml
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [o for s in at.sidebar.selectbox for o in s.options] == ["mine"]
    assert [t.label for t in at.sidebar.text_input] == ["Reviewer name"]


def test_an_expired_session_asks_to_sign_in_again(team):
    ana = signed_in("ana")
    team.db.write(
        lambda tx: tx.execute(
            "UPDATE sessions SET expires_at = ? WHERE account = 'ana'",
            ("2000-01-01T00:00:00.000+00:00",),
        )
    )
    ana.run()
    assert [t.label for t in ana.text_input] == ["Account name", "Password"]
    assert "Your session ended: sign in again." in texts(ana)
    assert not ana.sidebar.selectbox


def test_an_admin_manages_accounts_and_members_in_the_browser(team):
    root = signed_in("root", "app_pages/team.py")
    assert [t.value for t in root.title] == ["Accounts & members"]
    root.text_input(key="team_new_name").input("bea")
    root.selectbox(key="team_new_role").select("curator")
    root.text_input(key="team_new_password").input(PASSWORD)
    root.text_input(key="team_new_again").input(PASSWORD)
    root.button(key="FormSubmitter:team_add-Add account").click().run()
    assert not root.exception
    assert team.account("bea").role == "curator"
    assert root.text_input(key="team_new_password").value == ""  # the form let it go
    root.selectbox(key="team_member").select("bea")
    root.button(key="team_add_member").click().run()
    workspace = root.session_state["workspace_path"].rsplit("/", 1)[-1]
    assert {"account": "bea", "role": "curator"} in team.members(workspace)
    root.button(key="team_remove_member_bea").click().run()
    assert {"account": "bea", "role": "curator"} not in team.members(workspace)


def test_only_admins_get_the_accounts_page(team):
    cy = signed_in("cy")  # a curator
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        cy.switch_page("app_pages/team.py")


PAGES = [
    "app_pages/data.py",
    "app_pages/repair.py",
    "app_pages/issues.py",
    "app_pages/health.py",
    "app_pages/review.py",
    "app_pages/train.py",
    "app_pages/charts.py",
    "app_pages/history.py",
    "app_pages/reviewers.py",
    "app_pages/audit.py",
    "app_pages/team.py",
    "app_pages/export.py",
]


def test_an_admin_opens_every_page_of_a_reviewed_workspace(team, home):
    ws = Workspace(home / "team-a")
    ws.relabel(0, "negative", reviewer="ana")
    ws.relabel(1, "negative", reviewer="vic")
    ws.undo(reviewer="vic")
    ws.close()
    root = signed_in("root")
    box = root.sidebar.selectbox[0]
    box.select_index(box.options.index("team-a")).run()
    for page in PAGES:
        root.switch_page(page).run()
        assert not root.exception, (page, root.exception)
        assert not [e.value for e in root.error], (page, [e.value for e in root.error])


def test_an_unreachable_team_database_is_said_plainly(team, monkeypatch):
    import psycopg

    root = signed_in("root")

    def down(self, *args, **kwargs):
        raise psycopg.OperationalError("connection to server on socket failed: No such file")

    monkeypatch.setattr(Workspace, "counts", down)
    root.switch_page("app_pages/data.py").run()
    assert not root.exception
    [error] = [e.value for e in root.error]
    assert "The team database cannot be reached right now" in error
    assert "Nothing you saved before is lost" in error
