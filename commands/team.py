"""``cli.py users`` and ``cli.py members``: accounts and workspace members, headless.

    python cli.py users add NAME --role admin          # asks for the password twice
    echo "$PASSWORD" | python cli.py users add NAME --role reviewer --password-stdin
    python cli.py users passwd NAME | remove NAME | role NAME ROLE | list
    python cli.py members add WORKSPACE NAME [--role curator] | remove WORKSPACE NAME | list WORKSPACE

A password is never taken as an argument (it would be in the shell's history and in every
process listing): it is asked for, or read as one line from stdin.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path

from data.store import StoreError, list_workspaces, workspaces_root
from data.store.accounts import ACTION_WORDS, ROLES, allowed, open_directory, team_mode


class TeamCommandError(Exception):
    """A problem with the arguments; printed as ``error: ...`` with exit status 2."""


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise TeamCommandError("--password-stdin: nothing was read from stdin.")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise TeamCommandError(
            "No terminal to ask for the password: pipe it in with --password-stdin."
        )
    first = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != first:
        raise TeamCommandError("The two passwords differ; nothing was changed.")
    return first


def _directory(args: argparse.Namespace):
    return open_directory(args.home)


def users_add(args: argparse.Namespace) -> str:
    account = _directory(args).add_account(args.name, _password(args), role=args.role)
    return f"Added {account.name} ({account.role})."


def users_passwd(args: argparse.Namespace) -> str:
    directory = _directory(args)
    if directory.account(args.name) is None:  # before asking for a password
        raise StoreError(f"No account named {args.name!r} (`python cli.py users list`).")
    directory.set_password(args.name, _password(args))
    return f"New password set for {args.name}; its sessions were signed out."


def users_remove(args: argparse.Namespace) -> str:
    _directory(args).remove_account(args.name)
    return f"Removed {args.name} (its label events stay in the log)."


def users_role(args: argparse.Namespace) -> str:
    _directory(args).set_role(args.name, args.role)
    return f"{args.name} is now {args.role}."


def users_list(args: argparse.Namespace) -> str:
    directory = open_directory(args.home, create=False)  # listing writes nothing
    accounts = directory.accounts() if directory is not None else []
    if not accounts:
        return "No accounts: solo mode. Create the first admin: python cli.py users add NAME --role admin"
    width = max(len(a.name) for a in accounts)
    lines = [f"{'name':<{width}}  role      created"]
    for a in accounts:
        locked = f"  locked until {a.locked_until[:16]}" if a.locked_until else ""
        lines.append(f"{a.name:<{width}}  {a.role:<8}  {a.created_at[:10]}{locked}")
    return "\n".join(lines)


def _workspace(args: argparse.Namespace) -> str:
    """The workspace's folder name; it must exist under the home, so a typo is caught."""
    names = {p.name for p in list_workspaces(workspaces_root() if args.home is None else args.home)}
    name = args.workspace.rstrip("/").rsplit("/", 1)[-1]
    if name not in names:
        known = ", ".join(sorted(names)) or "none yet"
        raise TeamCommandError(f"No workspace named {name!r} here (workspaces: {known}).")
    return name


def members_add(args: argparse.Namespace) -> str:
    workspace = _workspace(args)
    _directory(args).add_member(workspace, args.name, role=args.role)
    return f"{args.name} is a member of {workspace}" + (f" as {args.role}." if args.role else ".")


def members_remove(args: argparse.Namespace) -> str:
    workspace = _workspace(args)
    _directory(args).remove_member(workspace, args.name)
    return f"{args.name} is no longer a member of {workspace}."


def members_list(args: argparse.Namespace) -> str:
    workspace = _workspace(args)
    members = _directory(args).members(workspace)
    if not members:
        return f"{workspace} has no members (admins see every workspace)."
    return "\n".join(f"{m['account']}  {m['role']}" for m in members)


def check_reviewer(folder: Path, name: str, action: str) -> str:
    """The reviewer a CLI command records on its events. In team mode it must be an account
    whose role in that workspace allows ``action`` (the CLI has no sign-in: whoever runs it has
    the files, but the log still names only real accounts, with their rights); in solo mode any
    name. Raises :class:`TeamCommandError` saying why not."""
    name = (name or "").strip()
    if not team_mode(folder.parent):
        return name
    directory = open_directory(folder.parent)
    if directory.account(name) is None:
        raise TeamCommandError(
            f"Team mode: --reviewer must be an account, and {name!r} is not one "
            "(`python cli.py users list`)."
        )
    role = directory.role_in(name, folder.name)
    if not allowed(role, action):
        held = f"role {role}" if role else "no membership"
        raise TeamCommandError(
            f"Team mode: {name} has {held} in {folder.name}, which may not {ACTION_WORDS[action]}."
        )
    return name


def run(handler: Callable[[argparse.Namespace], str], args: argparse.Namespace) -> int:
    try:
        print(handler(args))
    except (TeamCommandError, StoreError, ValueError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_team_commands(sub) -> None:
    """Register ``users`` and ``members`` on the CLI's subparsers."""
    home = {"help": "workspaces folder (default: $SECOND_LOOK_HOME or ./workspaces)"}

    u = sub.add_parser("users", help="team mode: accounts (add, passwd, remove, role, list)")
    us = u.add_subparsers(dest="users_command", required=True)
    for name, handler, text in (
        ("add", users_add, "create an account (the first admin turns on team mode)"),
        ("passwd", users_passwd, "set a new password (signs the account out)"),
        ("remove", users_remove, "remove an account"),
        ("role", users_role, "change an account's role"),
        ("list", users_list, "list the accounts"),
    ):
        p = us.add_parser(name, help=text)
        if name != "list":
            p.add_argument("name")
        if name == "add":
            p.add_argument("--role", choices=ROLES, default="reviewer")
        if name == "role":
            p.add_argument("role", choices=ROLES)
        if name in ("add", "passwd"):
            p.add_argument(
                "--password-stdin", action="store_true", help="read the password from stdin"
            )
        p.add_argument("--home", **home)
        p.set_defaults(func=lambda args, handler=handler: run(handler, args))

    m = sub.add_parser("members", help="team mode: who may open a workspace (add, remove, list)")
    ms = m.add_subparsers(dest="members_command", required=True)
    for name, handler, text in (
        ("add", members_add, "make an account a member of a workspace"),
        ("remove", members_remove, "remove an account from a workspace"),
        ("list", members_list, "list a workspace's members"),
    ):
        p = ms.add_parser(name, help=text)
        p.add_argument("workspace", help="the workspace's folder name (or path)")
        if name != "list":
            p.add_argument("name")
        if name == "add":
            p.add_argument(
                "--role", choices=ROLES, help="role in this workspace (default: the account's)"
            )
        p.add_argument("--home", **home)
        p.set_defaults(func=lambda args, handler=handler: run(handler, args))
