"""Who may use the app, and what they may do: solo mode's loopback rule, team mode's sign-in,
roles and workspace membership (the rules themselves are :mod:`data.store.accounts`).

app.py calls :func:`gate` before it draws any page. Pages ask :func:`can` before they offer an
action and :func:`require` in the callback that does it (the server checks the role again: a
button hidden or disabled in the browser is not a permission), and :func:`require_page` at the
top of a page that a role may not open at all.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import streamlit as st

from data.home import is_loopback, team_configured

TOKEN_KEY = "_session_token"
ACCOUNT_KEY = "_account"
NOTICE_KEY = "_sign_in_notice"
ASKED_KEY = "_asked_page"  # the page URL a signed-out visitor opened: opened after signing in
_PAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")  # st.Page's url paths (one path segment)


def listening_address() -> str:
    """The address the server listens on ("" means every interface)."""
    return str(st.get_option("server.address") or "").strip()


def _refuse_solo(address: str) -> None:
    where = f"the address {address}" if address else "every network interface"
    st.error(
        f"**Second Look is listening on {where} without accounts**, so anyone who can reach "
        "this machine could read and change the data. It does not serve data like this.",
        icon=":material/lock:",
    )
    st.markdown(
        "- **For yourself on this machine**: start it as the README says, `streamlit run "
        "app.py` (the project's `.streamlit/config.toml` listens on 127.0.0.1 only).\n"
        "- **For a team**: create the first admin, then restart with your `--server.address`; "
        "everyone then signs in:"
    )
    st.code("python cli.py users add NAME --role admin", language="bash")
    st.stop()


def directory():
    from data.store.accounts import open_directory

    return open_directory()


def team() -> bool:
    """Whether this app runs in team mode (accounts exist or a database URL is set)."""
    if not team_configured():
        return False
    from data.store.accounts import team_mode

    return team_mode()


def gate():
    """The first thing app.py does: returns the signed-in account (team mode) or None (solo
    mode), or draws why not (the sign-in form, or solo mode's refusal off loopback) and stops."""
    if not team():
        address = listening_address()
        if not is_loopback(address):
            _refuse_solo(address)
        return None
    account = directory().session_account(st.session_state.get(TOKEN_KEY))
    if account is None:
        if st.session_state.pop(TOKEN_KEY, None) is not None:
            st.session_state[NOTICE_KEY] = "Your session ended: sign in again."
        st.session_state.pop(ACCOUNT_KEY, None)
        _remember_asked_page()
        _sign_in_form()
        st.stop()
    st.session_state[ACCOUNT_KEY] = account.name
    return account


def page_in_url(url: str | None, base_path: str = "") -> str:
    """The page name in a browser URL (``http://host/review`` -> ``"review"``, under the
    server's ``base_path`` if any), or "" for the app's root or anything that is no page name.
    Only ever compared with the url paths of the pages listed for the account."""
    if not url or len(url) > 2000:
        return ""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    path = path.strip("/")
    base = base_path.strip("/")
    if base:
        if path != base and not path.startswith(base + "/"):
            return ""
        path = path[len(base) :].strip("/")
    return path if _PAGE_NAME.fullmatch(path) else ""


def _remember_asked_page() -> None:
    """Signed out: remember which page's URL the browser is at (st.context.url), so that
    :func:`asked_page` can open it once the visitor has signed in (the sign-in form's reruns
    do not carry the page any further)."""
    asked = page_in_url(st.context.url, str(st.get_option("server.baseUrlPath") or ""))
    if asked:
        st.session_state[ASKED_KEY] = asked
    else:
        st.session_state.pop(ASKED_KEY, None)


def asked_page(pages: dict[str, list]):
    """After signing in: the page (of ``pages``, those listed for this account) whose URL the
    visitor opened while signed out, else None (the app's default page then opens, no error:
    a page the account's roles do not list is never opened). Asked once per sign-in."""
    asked = st.session_state.pop(ASKED_KEY, None)
    if not asked:
        return None
    return next((p for entries in pages.values() for p in entries if p.url_path == asked), None)


def _sign_in_form() -> None:
    from data.store.accounts import SignInError

    st.title("Second Look")
    st.caption("This Second Look is shared by a team: sign in with the account an admin gave you.")
    if notice := st.session_state.pop(NOTICE_KEY, None):
        st.info(notice)
    with st.form("sign_in", clear_on_submit=False, width=420):
        name = st.text_input("Account name", key="sign_in_name", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="sign_in_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            token = directory().sign_in(name, password)
        except SignInError as exc:
            st.error(str(exc))
            return
        finally:
            st.session_state.pop("sign_in_password", None)  # never kept in the session
        st.session_state[TOKEN_KEY] = token
        st.rerun()
    st.caption("No account? An admin creates one: `python cli.py users add NAME`.")


def sign_out() -> None:
    token = st.session_state.pop(TOKEN_KEY, None)
    if token:
        directory().sign_out(token)
    for key in (ACCOUNT_KEY, "workspace_path"):
        st.session_state.pop(key, None)


def account_name() -> str | None:
    """The signed-in account's name (team mode), else None."""
    return st.session_state.get(ACCOUNT_KEY)


def visible(folders: list[Path]) -> list[Path]:
    """The workspace folders this visitor may see: every one in solo mode, their own in team
    mode."""
    name = account_name()
    if name is None:
        return [] if team() else list(folders)
    return directory().visible(name, list(folders))


def role(workspace: str | Path | None = None) -> str | None:
    """This visitor's role in ``workspace`` (default: the current one): admin in solo mode."""
    name = account_name()
    if name is None:
        return None if team() else "admin"
    if workspace is None:
        workspace = st.session_state.get("workspace_path")
    if workspace is None:
        account = directory().account(name)
        return account.role if account is not None else None
    return directory().role_in(name, Path(workspace).name)


def highest_role() -> str | None:
    """The most trusted role this visitor has in any workspace (which pages to list)."""
    name = account_name()
    if name is None:
        return None if team() else "admin"
    return directory().highest_role(name)


def can(action: str, workspace: str | Path | None = None) -> bool:
    from data.store.accounts import allowed

    return allowed(role(workspace), action)


def refusal(action: str, workspace: str | Path | None = None) -> str:
    from data.store.accounts import ACTION_WORDS

    held = role(workspace)
    who = f"Your role here ({held})" if held else "You are not a member of this workspace and"
    return f"{who} may not {ACTION_WORDS[action]}. Ask an admin of this Second Look."


def require(action: str, workspace: str | Path | None = None) -> bool:
    """For callbacks: True when allowed, else a toast saying why and False."""
    if can(action, workspace):
        return True
    st.toast(refusal(action, workspace), icon=":material/block:")
    return False


def require_page(action: str) -> None:
    """At the top of a page: stop with why, unless this visitor may ``action`` here."""
    if not can(action):
        st.info(refusal(action), icon=":material/lock:")
        st.stop()


def launch(ws, kind: str, params: dict) -> int | None:
    """Start a background job if this visitor may (the kind's permission), else say why and
    return None. Every page starts jobs through here."""
    import jobs
    from jobs.kinds import job_kind

    if not require(job_kind(kind).permission, ws.folder):
        return None
    return jobs.launch(ws, kind, params)


def cancel(ws, job) -> None:
    """Cancel a job if this visitor may start its kind, else say why."""
    import jobs
    from jobs.kinds import job_kind

    if require(job_kind(job.kind).permission, ws.folder):
        jobs.cancel(ws, job.id)
