"""The current workspace and reviewer, the sidebar, and what a damaged workspace shows.

Every page starts here: :func:`require_workspace` gives the workspace chosen in the sidebar (or
stops with a pointer to the Data page, or with the damaged-workspace panel).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import streamlit as st

from app_pages import access
from app_pages.plain import plain
from data.preferences import load_preferences, save_preference
from data.store import (
    DamagedWorkspace,
    StoreError,
    Workspace,
    diagnose,
    list_workspaces,
    plan_restore,
    restore_workspace,
    workspace_problem,
    workspaces_root,
)
from data.store.backup import RestorePlan

WS_KEY = "workspace_path"
REVIEWER_KEY = "reviewer"
RESTORED_KEY = "_restored_message"


@st.cache_resource(show_spinner=False)
def open_workspace(path: str) -> Workspace:
    """One Workspace object per folder, shared by sessions (it is thread-safe)."""
    return Workspace(path)


def select_workspace(path: str | Path) -> None:
    st.session_state[WS_KEY] = str(Path(path).resolve())


def current_workspace() -> Workspace | None:
    """The workspace chosen in the sidebar, else the most recently used one, else None.

    A damaged one shows :func:`damaged_workspace_panel` and gives None, so that the Data page
    still offers the demo and imports.
    """
    return _current()[0]


def visible_workspaces() -> list[Path]:
    """The workspaces this visitor may open (all in solo mode; their own in team mode)."""
    return access.visible(list_workspaces())


def _current() -> tuple[Workspace | None, DamagedWorkspace | None]:
    path = st.session_state.get(WS_KEY)
    if path is not None and access.account_name() is not None:
        # Team mode: membership is asked on every run, so a removed member loses it at once.
        if Path(path) not in visible_workspaces():
            st.session_state.pop(WS_KEY, None)
            path = None
    if path is None:
        found = visible_workspaces()
        if not found:
            return None, None
        path = str(found[0])
        st.session_state[WS_KEY] = path
    try:
        ws = open_workspace(path)
    except DamagedWorkspace as exc:  # stays selected: its panel offers the restore
        damaged_workspace_panel(exc)
        return None, exc
    except StoreError as exc:
        st.session_state.pop(WS_KEY, None)
        st.error(str(exc))
        return None, None
    if restored := st.session_state.pop(RESTORED_KEY, None):
        st.success(restored, icon=":material/restore:")
    return ws, None


def require_workspace() -> Workspace:
    """The current workspace, or a pointer to the Data page (or the damaged-workspace panel)
    and a stop."""
    ws, damaged = _current()
    if ws is None:
        if damaged is None and access.account_name() is not None and not access.can("import"):
            st.info(
                "You are not a member of any workspace yet: ask an admin to add you "
                "(`python cli.py members add WORKSPACE NAME`)."
            )
        elif damaged is None:
            st.info("No dataset yet. Open the **Data** page to load the demo or import a file.")
            st.page_link("app_pages/data.py", label="Go to Data", icon=":material/upload_file:")
        st.stop()
    return ws


def forget_workspace(path: str | Path) -> None:
    """Close and uncache the Workspace of ``path``: its connection is on a file that is
    damaged, or about to be set aside by a restore."""
    path = str(Path(path).resolve())
    try:
        open_workspace(path).close()  # the cached object (opening it anew when not cached)
    except StoreError:
        pass
    open_workspace.clear(path)


def damaged_workspace_panel(exc: DamagedWorkspace) -> None:
    """What is wrong with a damaged workspace and what to do: restore its backup (keeping the
    newer label events its log still holds), import again, or choose another workspace."""
    st.error(
        f"**The workspace {plain(exc.folder.name)} is damaged** and cannot be opened: "
        f"{plain(exc.problem)}.",
        icon=":material/broken_image:",
    )
    plan = plan_restore(exc.folder)
    if plan.backup is None:
        st.warning(
            "There is no sound backup of it to restore. Its damaged file is left as it is: "
            "import the dataset again into a new workspace, or choose another workspace in the "
            "sidebar."
        )
    else:
        st.info(_restore_text(plan), icon=":material/restore:")
        if st.button(
            f"Restore the backup from {plan.backup.when}",
            type="primary",
            key="restore_workspace",
            disabled=not access.can("delete", exc.folder),
        ) and access.require("delete", exc.folder):
            _restore(exc.folder)
        st.caption("The same from a terminal:")
        st.code(f"python cli.py restore {shlex.quote(str(exc.folder))}", language="bash")
    st.page_link(
        "app_pages/data.py",
        label="Import a dataset on the Data page",
        icon=":material/upload_file:",
    )


def _restore_text(plan: RestorePlan) -> str:
    kept = (
        f"The damaged file still holds **{plan.newer_events:,} newer label event(s)**: "
        "restoring keeps them, on top of the backup."
    )
    if plan.unreadable:
        lost = (
            f" **{plan.unreadable:,} newer label event(s) cannot be read any more** and will "
            "be missing after the restore: redo those changes."
        )
    elif plan.unreadable is None:
        lost = (
            " **The end of its log cannot be read**: changes made after the backup that are "
            "not among those may be missing after the restore. Check the latest reviews."
        )
    else:
        lost = ""
    return (
        f"A backup from {plan.backup.when} holds the label events up to "
        f"#{plan.backup_version:,}. {kept}{lost} The damaged file is set aside (renamed), never "
        "deleted."
    )


def _restore(folder: Path) -> None:
    forget_workspace(folder)
    try:
        with st.spinner("Restoring the backup and the newer label events…"):
            report = restore_workspace(folder)
    except StoreError as exc:
        st.error(plain(str(exc)))
        return
    st.session_state[RESTORED_KEY] = plain(report.describe())
    st.rerun()


def show_database_error(exc: Exception) -> None:
    """For app.py, when a page fails with an SQLite error: if the current workspace's file
    turns out damaged (it was fine when opened), drop it from the cache and show its panel;
    any other error is raised again, as it is."""
    path = st.session_state.get(WS_KEY)
    problem = diagnose(path) if path else None
    if problem is None:
        raise exc
    forget_workspace(path)
    damaged_workspace_panel(DamagedWorkspace(path, problem))


def database_unreachable(exc: Exception) -> bool:
    """For app.py: when ``exc`` says the team's PostgreSQL database cannot be reached (down,
    restarting, the network), say so plainly and return True; the next action reconnects."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is in requirements.txt
        return False
    if not isinstance(exc, psycopg.OperationalError):
        return False
    st.error(
        "**The team database cannot be reached right now** "
        f"({plain(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)}). "
        "Nothing you saved before is lost. Check that PostgreSQL runs (ask your admin), then "
        "repeat the last action: the app reconnects by itself.",
        icon=":material/cloud_off:",
    )
    return True


def remember_reviewer() -> None:
    try:
        save_preference("reviewer", reviewer())
    except OSError:  # a read-only home: the name still works for this session
        pass


def reviewer() -> str:
    """Who is recorded on a label event: the signed-in account in team mode (never typed),
    the name typed in the sidebar in solo mode."""
    name = access.account_name()
    if name is not None:
        return name
    return (st.session_state.get(REVIEWER_KEY) or "").strip()


def sidebar() -> None:
    with st.sidebar:
        found = visible_workspaces()
        if found:
            paths = [str(p) for p in found]
            current = st.session_state.get(WS_KEY, paths[0])
            if current not in paths:
                paths.insert(0, current)
            # Damaged ones stay listed (choosing one shows what to do), marked. The current one
            # is opened first (cached), so damage deeper than its header is marked at once.
            try:
                open_workspace(current)
            except StoreError:
                pass
            damaged = {p for p in paths if workspace_problem(p)}
            choice = st.selectbox(
                "Workspace",
                paths,
                index=paths.index(current),
                format_func=lambda p: Path(p).name + (" (damaged)" if p in damaged else ""),
                help=f"Workspaces live in {workspaces_root()} (set SECOND_LOOK_HOME to move them).",
            )
            if choice != st.session_state.get(WS_KEY):
                select_workspace(choice)
        name = access.account_name()
        if name is not None:
            st.caption(f"Signed in as **{plain(name)}** · {access.role() or 'no role here'}")
            st.button("Sign out", key="sign_out", on_click=access.sign_out)
            return
        if REVIEWER_KEY not in st.session_state:  # a new session: offer last time's name
            st.session_state[REVIEWER_KEY] = load_preferences().get("reviewer", "")
        st.text_input(
            "Reviewer name",
            key=REVIEWER_KEY,
            placeholder="your name",
            help="Every label change is logged with this name. It is remembered on this "
            "machine for the next session.",
            on_change=remember_reviewer,
        )
