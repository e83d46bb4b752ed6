"""`cli.py users` and `cli.py members`: team accounts and members, headless (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys

from data.store import Workspace
from data.store.accounts import open_directory
from tests.conftest import ROOT

PASSWORD = "correct horse battery"


def cli(*args: str, stdin: str = "", home=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("SECOND_LOOK_DATABASE_URL", None)
    if home is not None:
        env["SECOND_LOOK_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_users_from_the_first_admin_to_removal(tmp_path):
    home = tmp_path / "home"
    listed = cli("users", "list", home=home)
    assert listed.returncode == 0 and "No accounts: solo mode" in listed.stdout
    assert not (home / "accounts.sqlite").exists()  # listing created nothing

    added = cli(
        "users",
        "add",
        "root",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
        home=home,
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "Added root (admin)."
    cli("users", "add", "ana", "--password-stdin", stdin=PASSWORD + "\n", home=home)
    listed = cli("users", "list", home=home).stdout
    assert "root  admin" in listed and "ana   reviewer" in listed
    assert PASSWORD not in added.stdout + added.stderr + listed  # never echoed

    assert cli("users", "role", "ana", "curator", home=home).returncode == 0
    changed = cli(
        "users", "passwd", "ana", "--password-stdin", stdin="another long one\n", home=home
    )
    assert changed.returncode == 0, changed.stderr
    directory = open_directory(home)
    assert directory.account("ana").role == "curator"
    assert directory.session_account(directory.sign_in("ana", "another long one")).name == "ana"

    assert cli("users", "remove", "ana", home=home).returncode == 0
    assert directory.account("ana") is None


def test_users_refuse_bad_input_with_a_clear_message(tmp_path):
    home = tmp_path / "home"
    short = cli("users", "add", "ana", "--password-stdin", stdin="short\n", home=home)
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    no_tty = cli("users", "add", "ana", home=home)  # stdin is not a terminal: nothing to ask
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr
    cli("users", "add", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD, home=home)
    last = cli("users", "remove", "root", home=home)
    assert last.returncode == 2 and "last admin" in last.stderr
    bad_role = cli(
        "users", "add", "x", "--role", "owner", "--password-stdin", stdin=PASSWORD, home=home
    )
    assert bad_role.returncode == 2 and "invalid choice: 'owner'" in bad_role.stderr


def test_members_of_a_workspace(tmp_path, sentiment_prepared):
    home = tmp_path / "home"
    Workspace.create(home / "team-a", sentiment_prepared, name="team-a").close()
    cli("users", "add", "ana", "--password-stdin", stdin=PASSWORD, home=home)
    added = cli("members", "add", "team-a", "ana", "--role", "curator", home=home)
    assert added.returncode == 0, added.stderr
    assert cli("members", "list", "team-a", home=home).stdout.strip() == "ana  curator"
    typo = cli("members", "add", "team-x", "ana", home=home)
    assert typo.returncode == 2 and "No workspace named 'team-x'" in typo.stderr
    assert "team-a" in typo.stderr  # it says which workspaces there are
    assert cli("members", "remove", str(home / "team-a"), "ana", home=home).returncode == 0
    assert "no members" in cli("members", "list", "team-a", home=home).stdout


def test_in_team_mode_the_reviewer_of_a_cli_review_is_an_account_with_the_right(
    tmp_path, sentiment_prepared
):
    home = tmp_path / "home"
    ws = Workspace.create(home / "team-a", sentiment_prepared, name="team-a")
    ext_id = str(ws.samples()["ext_id"].iloc[0])
    ws.close()
    review = ("review", str(home / "team-a"), "--id", ext_id, "--label", "negative")
    solo = cli(*review, "--reviewer", "anyone", home=home)
    assert solo.returncode == 0, solo.stderr  # solo mode: any name, as before

    cli("users", "add", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD, home=home)
    cli("users", "add", "vic", "--role", "viewer", "--password-stdin", stdin=PASSWORD, home=home)
    cli("members", "add", "team-a", "vic", home=home)
    typed = cli(*review, "--reviewer", "anyone", home=home)
    assert typed.returncode == 2 and "'anyone' is not one" in typed.stderr
    viewer = cli(*review, "--reviewer", "vic", home=home)
    assert viewer.returncode == 2 and "vic has role viewer in team-a" in viewer.stderr
    admin = cli(*review, "--reviewer", "root", home=home)
    assert admin.returncode == 0, admin.stderr
    ws = Workspace(home / "team-a")
    assert sorted(ws.events()["reviewer"]) == ["anyone", "root"]
    ws.close()
