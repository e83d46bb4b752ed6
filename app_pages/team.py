"""Accounts & members (admins, team mode): accounts and the current workspace's members, as the CLI's
``users`` and ``members`` commands manage them.

Every action checks the ``manage`` permission again in its callback; passwords are read from
password fields and dropped from the session as soon as they are used.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import access
from app_pages.plain import plain
from app_pages.workspace import require_workspace
from data.store import StoreError
from data.store.accounts import ROLES

st.title("Accounts & members")
if access.account_name() is None:
    st.info(
        "Solo mode: no accounts. Create the first admin to share this Second Look with a team "
        "(everyone then signs in):"
    )
    st.code("python cli.py users add NAME --role admin", language="bash")
    st.stop()
access.require_page("manage")
directory = access.directory()
if msg := st.session_state.pop("team_toast", None):
    st.toast(plain(msg))


def _done(message: str) -> None:
    st.session_state["team_toast"] = message


def _attempt(fn, *args, ok: str, **kwargs) -> None:
    """Run one directory change for a callback: refuse without the right, report its error."""
    if not access.require("manage"):
        return
    try:
        fn(*args, **kwargs)
    except (StoreError, ValueError) as exc:
        st.session_state["team_toast"] = str(exc)
        return
    _done(ok)


def add_account() -> None:
    name = st.session_state.get("team_new_name", "")
    password = st.session_state.get("team_new_password", "")
    again = st.session_state.get("team_new_again", "")
    # Not kept in the session after use (a callback may reset its own widgets).
    st.session_state["team_new_password"] = st.session_state["team_new_again"] = ""
    if password != again:
        _done("The two passwords differ; nothing was changed.")
        return
    role = st.session_state.get("team_new_role", "reviewer")
    _attempt(directory.add_account, name, password, role=role, ok=f"Added {name} ({role}).")


def set_role(name: str) -> None:
    role = st.session_state[f"team_role_{name}"]
    _attempt(directory.set_role, name, role, ok=f"{name} is now {role}.")


def reset_password(name: str) -> None:
    password = st.session_state.get(f"team_pw_{name}", "")
    st.session_state[f"team_pw_{name}"] = ""  # not kept in the session after use
    _attempt(directory.set_password, name, password, ok=f"New password set for {name}; signed out.")


def remove_account(name: str) -> None:
    _attempt(directory.remove_account, name, ok=f"Removed {name} (its label events stay).")


# --- accounts ------------------------------------------------------------------------------
st.subheader("Accounts")
accounts = directory.accounts()
st.dataframe(
    pd.DataFrame(
        [
            {
                "account": a.name,
                "role": a.role,
                "created": a.created_at[:10],
                "locked until (UTC)": (a.locked_until or "")[:16].replace("T", " "),
            }
            for a in accounts
        ]
    ),
    hide_index=True,
    width="content",
)
with st.expander("Add an account"):
    with st.form("team_add", clear_on_submit=True):
        st.text_input("Account name", key="team_new_name")
        st.selectbox("Role", ROLES, index=ROLES.index("reviewer"), key="team_new_role")
        st.text_input("Password (at least 10 characters)", type="password", key="team_new_password")
        st.text_input("Password again", type="password", key="team_new_again")
        st.form_submit_button("Add account", on_click=add_account, type="primary")
with st.expander("Change an account"):
    names = [a.name for a in accounts]
    chosen = st.selectbox("Account", names, key="team_chosen")
    if chosen:
        current = next(a for a in accounts if a.name == chosen)
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.selectbox(
                "Role", ROLES, index=ROLES.index(current.role), key=f"team_role_{chosen}", width=200
            )
            st.button("Set role", key="team_set_role", on_click=set_role, args=(chosen,))
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.text_input("New password", type="password", key=f"team_pw_{chosen}", width=300)
            st.button("Set password", key="team_set_pw", on_click=reset_password, args=(chosen,))
        st.button(
            f"Remove {chosen}",
            key="team_remove",
            on_click=remove_account,
            args=(chosen,),
            disabled=chosen == access.account_name(),
            help="You cannot remove yourself here." if chosen == access.account_name() else None,
        )

# --- members of the current workspace ------------------------------------------------------
ws = require_workspace()
workspace = ws.folder.name
st.subheader(f"Members of {plain(workspace)}")
st.caption("Admins see every workspace; everyone else only the workspaces they are members of.")
members = directory.members(workspace)
if members:
    st.dataframe(pd.DataFrame(members), hide_index=True, width="content")
else:
    st.caption("No members yet.")


def add_member() -> None:
    name = st.session_state.get("team_member")
    role = st.session_state.get("team_member_role")
    _attempt(
        directory.add_member,
        workspace,
        name,
        role=None if role == "(the account's own)" else role,
        ok=f"{name} is a member of {workspace}.",
    )


def remove_member(name: str) -> None:
    _attempt(directory.remove_member, workspace, name, ok=f"{name} left {workspace}.")


with st.container(horizontal=True, vertical_alignment="bottom"):
    st.selectbox("Account", [a.name for a in accounts], key="team_member", width=220)
    st.selectbox("Role here", ["(the account's own)", *ROLES], key="team_member_role", width=220)
    st.button("Add member", key="team_add_member", on_click=add_member, type="primary")
for member in members:
    st.button(
        f"Remove {member['account']} from {workspace}",
        key=f"team_remove_member_{member['account']}",
        on_click=remove_member,
        args=(member["account"],),
    )
