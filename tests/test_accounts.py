"""Accounts, roles, members and sessions (team mode), on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from data.store import StoreError
from data.store.accounts import (
    MAX_FAILED,
    PERMISSIONS,
    ROLES,
    Directory,
    SignInError,
    allowed,
    open_directory,
    team_mode,
)
from tests.pg import fresh_database

PASSWORD = "correct horse battery"


@pytest.fixture(params=["sqlite", "postgresql"])
def directory(request, tmp_path):
    if request.param == "sqlite":
        yield Directory(tmp_path / "accounts.sqlite")
        return
    databases = fresh_database()
    url = next(databases)
    directory = Directory(url)
    yield directory
    directory.db.close()
    databases.close()


def everything_stored(directory: Directory) -> str:
    """Every value of every directory table, as one string (what an attacker with the
    database would read)."""
    tables = ("accounts", "members", "sessions", "directory_meta")
    return repr([directory.db.read(f"SELECT * FROM {table}") for table in tables])  # noqa: S608


def test_accounts_are_added_listed_and_refused_when_bad(directory):
    directory.add_account("ana", PASSWORD, role="curator")
    directory.add_account("ben", PASSWORD + "!")
    assert [(a.name, a.role) for a in directory.accounts()] == [
        ("ana", "curator"),
        ("ben", "reviewer"),
    ]
    with pytest.raises(StoreError, match="already exists"):
        directory.add_account("ana", PASSWORD)
    with pytest.raises(ValueError, match="valid roles: viewer, reviewer, curator, admin"):
        directory.add_account("cy", PASSWORD, role="owner")
    with pytest.raises(ValueError, match="at least 10 characters"):
        directory.add_account("cy", "short")
    with pytest.raises(ValueError, match="not allowed"):
        directory.add_account("ana'; DROP TABLE accounts; --", PASSWORD)
    assert [a.name for a in directory.accounts()] == ["ana", "ben"]


def test_passwords_and_tokens_are_never_stored_in_clear(directory, tmp_path):
    directory.add_account("ana", PASSWORD)
    token = directory.sign_in("ana", PASSWORD)
    stored = everything_stored(directory)
    assert PASSWORD not in stored and token not in stored
    assert "$argon2id$" in stored
    if directory.db.kind == "sqlite":  # the file and its write-ahead log, byte for byte
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("accounts.sqlite*"))
        assert PASSWORD.encode() not in raw and token.encode() not in raw


def test_sign_in_sign_out_and_unguessable_tokens(directory):
    directory.add_account("ana", PASSWORD)
    first, second = directory.sign_in("ana", PASSWORD), directory.sign_in("ana", PASSWORD)
    assert first != second and len(first) >= 43  # 256 random bits, URL-safe base64
    assert directory.session_account(first).name == "ana"
    directory.sign_out(first)
    assert directory.session_account(first) is None
    assert directory.session_account(second).name == "ana"
    assert directory.session_account("forged-token") is None
    assert directory.session_account(None) is None


def test_wrong_password_and_unknown_name_say_the_same(directory):
    directory.add_account("ana", PASSWORD)
    with pytest.raises(SignInError) as wrong:
        directory.sign_in("ana", "not the password")
    with pytest.raises(SignInError) as unknown:
        directory.sign_in("nobody", "not the password")
    assert str(wrong.value) == str(unknown.value) == "Wrong account name or password."


def test_repeated_failures_lock_the_account_until_a_new_password(directory):
    directory.add_account("ana", PASSWORD)
    for _ in range(MAX_FAILED):
        with pytest.raises(SignInError, match="Wrong"):
            directory.sign_in("ana", "guess")
    with pytest.raises(SignInError, match="locked"):
        directory.sign_in("ana", PASSWORD)  # even the right password, while locked
    directory.set_password("ana", PASSWORD + " again")
    assert directory.session_account(directory.sign_in("ana", PASSWORD + " again")).name == "ana"


def test_a_new_password_ends_the_sessions(directory):
    directory.add_account("ana", PASSWORD)
    token = directory.sign_in("ana", PASSWORD)
    directory.set_password("ana", PASSWORD + " again")
    assert directory.session_account(token) is None
    with pytest.raises(SignInError):
        directory.sign_in("ana", PASSWORD)


@pytest.mark.parametrize("column", ["expires_at", "last_seen_at"])
def test_sessions_expire(directory, column):
    directory.add_account("ana", PASSWORD)
    token = directory.sign_in("ana", PASSWORD)
    directory.db.write(
        lambda tx: tx.execute(
            f"UPDATE sessions SET {column} = ?", ("2000-01-01T00:00:00.000+00:00",)
        )
    )
    assert directory.session_account(token) is None
    assert directory.db.read("SELECT * FROM sessions") == []  # the expired session is gone


def test_members_see_their_workspaces_only(directory, tmp_path):
    directory.add_account("root", PASSWORD, role="admin")
    directory.add_account("ana", PASSWORD, role="reviewer")
    directory.add_account("vic", PASSWORD, role="viewer")
    folders = [tmp_path / "team-a", tmp_path / "team-b"]
    directory.add_member("team-a", "ana")
    directory.add_member(str(folders[1]), "vic", role="curator")  # a folder path works too
    assert directory.visible("ana", folders) == [folders[0]]
    assert directory.visible("vic", folders) == [folders[1]]
    assert directory.visible("root", folders) == folders
    assert directory.visible("nobody", folders) == []
    assert directory.role_in("ana", "team-a") == "reviewer"
    assert directory.role_in("ana", "team-b") is None
    assert directory.role_in("vic", "team-b") == "curator"  # the membership's role wins
    assert directory.role_in("root", "anything") == "admin"
    assert directory.members("team-a") == [{"account": "ana", "role": "reviewer"}]
    directory.remove_member("team-a", "ana")
    assert directory.visible("ana", folders) == []
    with pytest.raises(StoreError, match="not a member"):
        directory.remove_member("team-a", "ana")


def test_removing_an_account_ends_its_sessions_and_memberships(directory):
    directory.add_account("root", PASSWORD, role="admin")
    directory.add_account("ana", PASSWORD)
    directory.add_member("team-a", "ana")
    token = directory.sign_in("ana", PASSWORD)
    directory.remove_account("ana")
    assert directory.session_account(token) is None
    assert directory.members("team-a") == []
    with pytest.raises(StoreError, match="No account named 'ana'"):
        directory.remove_account("ana")


def test_the_last_admin_stays(directory):
    directory.add_account("root", PASSWORD, role="admin")
    with pytest.raises(StoreError, match="last admin"):
        directory.remove_account("root")
    with pytest.raises(StoreError, match="last admin"):
        directory.set_role("root", "viewer")
    directory.add_account("second", PASSWORD, role="admin")
    directory.set_role("root", "viewer")
    assert directory.account("root").role == "viewer"


def test_hostile_strings_are_data_not_sql(directory):
    hostile = "x'); DROP TABLE accounts; -- \" ; DROP TABLE members; %s %(x)s ?"
    directory.add_account("ana", hostile)  # as a password
    directory.add_member(hostile, "ana")  # as a workspace name
    assert directory.members(hostile) == [{"account": "ana", "role": "reviewer"}]
    assert directory.session_account(directory.sign_in("ana", hostile)).name == "ana"
    with pytest.raises(SignInError):
        directory.sign_in(hostile, hostile)
    assert [a.name for a in directory.accounts()] == ["ana"]  # both tables still there


def test_roles_and_permissions():
    assert ROLES == ("viewer", "reviewer", "curator", "admin")
    table = {role: {a for a in PERMISSIONS if allowed(role, a)} for role in ROLES}
    assert table["viewer"] == {"read"}
    assert table["reviewer"] == {"read", "review"}
    assert table["curator"] == {"read", "review", "bulk", "analyze", "train", "export"}
    assert table["admin"] == set(PERMISSIONS)
    assert not allowed(None, "read")
    with pytest.raises(ValueError, match="valid actions: read, review"):
        allowed("admin", "fly")


def test_team_mode_turns_on_with_accounts_or_a_database_url(tmp_path, monkeypatch):
    monkeypatch.delenv("SECOND_LOOK_DATABASE_URL", raising=False)
    home = tmp_path / "home"
    assert not team_mode(home)
    assert not (home / "accounts.sqlite").exists()  # asking wrote nothing
    open_directory(home).add_account("root", PASSWORD, role="admin")
    assert team_mode(home)
    monkeypatch.setenv("SECOND_LOOK_DATABASE_URL", "postgresql://nobody@nowhere/db")
    assert team_mode(tmp_path / "empty")
    monkeypatch.setenv("SECOND_LOOK_DATABASE_URL", "mysql://x")
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        open_directory(tmp_path / "empty")
