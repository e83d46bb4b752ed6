"""Accounts, roles, workspace members and sign-in sessions: team mode.

Solo mode (the default) has no accounts: one person on the loopback address. Team mode turns on
when accounts exist or ``SECOND_LOOK_DATABASE_URL`` is set; then every page needs a signed-in
account, a workspace is visible only to its members (and admins), and the reviewer recorded on
every label event is the signed-in account.

The directory (accounts, members, sessions) lives in the team's PostgreSQL database when
``SECOND_LOOK_DATABASE_URL`` is set, else in ``accounts.sqlite`` beside the workspaces
(``SECOND_LOOK_HOME``). Passwords are hashed with Argon2id (argon2-cffi); a sign-in session is a
random 256-bit token of which only a SHA-256 digest is stored, so neither a password nor a usable
token is ever in the database in clear.

>>> directory = Directory(":memory:")
>>> directory.add_account("ana", "correct horse battery", role="curator")
Account(name='ana', role='curator', created_at=...)
>>> token = directory.sign_in("ana", "correct horse battery")
>>> directory.session_account(token).name
'ana'
>>> allowed("reviewer", "train"), allowed("curator", "train")
(False, True)
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from data.home import DATABASE_URL_VARIABLE, DIRECTORY_FILE, database_url, workspaces_root
from data.store.base import StoreError, now
from data.store.sql import Database, is_postgres_url, redact

DIRECTORY_VERSION = 1

# Least to most trusted. A workspace member's role can differ from the account's own.
ROLES = ("viewer", "reviewer", "curator", "admin")
# Each action, and the least role that may do it. A registry, not checks scattered over pages.
PERMISSIONS = {
    "read": "viewer",  # open a member workspace's pages, read its rows, runs, charts, log
    "review": "reviewer",  # relabel / keep / exclude / undo one row; repair one row's text
    "bulk": "curator",  # bulk actions, bulk text repair, the double-review set
    "analyze": "curator",  # run the analysis (predictions and flags)
    "train": "curator",  # train, experiments, domain adaptation, calibration
    "export": "curator",  # download the curated dataset or a trained model
    "import": "admin",  # create a workspace from a file
    "delete": "admin",  # delete a workspace, restore a backup
    "manage": "admin",  # accounts and members
}
ACTIONS = tuple(PERMISSIONS)
# What each action is called in a refusal ("Your role ... may not <words>").
ACTION_WORDS = {
    "read": "open this workspace",
    "review": "change labels",
    "bulk": "apply bulk actions",
    "analyze": "run the analysis",
    "train": "train models",
    "export": "export data or models",
    "import": "import datasets",
    "delete": "delete or restore workspaces",
    "manage": "manage accounts and members",
}

# Lock an account for LOCK_MINUTES after MAX_FAILED wrong passwords in a row.
MAX_FAILED = 5
LOCK_MINUTES = 15
# A session ends SESSION_HOURS after sign-in, or after IDLE_MINUTES without a request.
SESSION_HOURS = 12
IDLE_MINUTES = 120
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS directory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    password_changed_at TEXT NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT
);
CREATE TABLE IF NOT EXISTS members (
    workspace TEXT NOT NULL,
    account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
    role TEXT,
    PRIMARY KEY (workspace, account)
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_account ON sessions(account);
CREATE INDEX IF NOT EXISTS members_account ON members(account)
"""


class SignInError(StoreError):
    """A sign-in was refused (wrong name or password, or the account is locked)."""


@dataclass(frozen=True)
class Account:
    """A person who signs in. ``role`` is their role in every workspace they are a member of,
    unless their membership names another; an admin sees and may do everything."""

    name: str
    role: str
    created_at: str
    locked_until: str | None = None

    def __repr__(self) -> str:
        return f"Account(name={self.name!r}, role={self.role!r}, created_at=...)"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}; valid roles: {', '.join(ROLES)}.")
    return role


def allowed(role: str | None, action: str) -> bool:
    """Whether ``role`` may do ``action`` (see :data:`PERMISSIONS`); no role may do nothing.

    >>> allowed("viewer", "read"), allowed("viewer", "review"), allowed(None, "read")
    (True, False, False)
    """
    if action not in PERMISSIONS:
        raise ValueError(f"Unknown action {action!r}; valid actions: {', '.join(ACTIONS)}.")
    if role is None:
        return False
    return ROLES.index(check_role(role)) >= ROLES.index(PERMISSIONS[action])


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"Account name {name!r} is not allowed: use 1-64 letters, digits, '.', '_', '@' or "
            "'-', starting with a letter or digit."
        )
    return name


def check_password(password: str, *, name: str = "") -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValueError(f"The password is too short: use at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"The password is too long: use at most {MAX_PASSWORD} characters.")
    if name and password.strip().lower() == name.lower():
        raise ValueError("The password must not be the account name.")
    return password


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # Argon2id with the library's current recommended parameters


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat(timespec="milliseconds")


class Directory:
    """The accounts, workspace members and sessions of one team (see the module docstring)."""

    def __init__(self, target: str | Path):
        self.db = Database.open(target)
        self._ensure_schema()
        # A hash of a random password: a sign-in with an unknown name verifies against it, so
        # it takes as long as one with a known name (no timing tells which names exist).
        self._decoy = _hasher().hash(secrets.token_urlsafe(16))

    def __repr__(self) -> str:
        return f"Directory({self.db!r})"

    # -- opening ---------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        self.db.script(SCHEMA)
        rows = self.db.read("SELECT value FROM directory_meta WHERE key = 'version'")
        if not rows:
            self.db.write(
                lambda tx: tx.execute(
                    "INSERT INTO directory_meta (key, value) VALUES ('version', ?)"
                    " ON CONFLICT (key) DO NOTHING",
                    (str(DIRECTORY_VERSION),),
                )
            )
        elif int(rows[0]["value"]) > DIRECTORY_VERSION:
            raise StoreError(
                f"The accounts database ({self.db}) has version {rows[0]['value']}; this Second "
                f"Look reads version {DIRECTORY_VERSION}. Upgrade Second Look."
            )

    # -- accounts --------------------------------------------------------------------------
    def add_account(self, name: str, password: str, *, role: str = "reviewer") -> Account:
        """Create an account; raises ``ValueError`` for a bad name, role or password and
        :class:`StoreError` when the name is taken."""
        name, role = check_name(name), check_role(role)
        hashed = _hasher().hash(check_password(password, name=name))
        stamp = now()

        def add(tx) -> None:
            if tx.query("SELECT 1 FROM accounts WHERE name = ?", (name,)):
                raise StoreError(f"An account named {name!r} already exists.")
            tx.execute(
                "INSERT INTO accounts (name, role, password_hash, created_at, password_changed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, role, hashed, stamp, stamp),
            )

        self.db.write(add)
        return self.account(name)

    def account(self, name: str) -> Account | None:
        rows = self.db.read(
            "SELECT name, role, created_at, locked_until FROM accounts WHERE name = ?", (name,)
        )
        return Account(**rows[0]) if rows else None

    def _require(self, name: str) -> Account:
        account = self.account(name)
        if account is None:
            raise StoreError(f"No account named {name!r} (`python cli.py users list`).")
        return account

    def accounts(self) -> list[Account]:
        rows = self.db.read(
            "SELECT name, role, created_at, locked_until FROM accounts ORDER BY name"
        )
        return [Account(**row) for row in rows]

    def has_accounts(self) -> bool:
        return bool(self.db.read("SELECT 1 FROM accounts LIMIT 1"))

    def set_password(self, name: str, password: str) -> None:
        """Set a new password; ends the account's sessions and lifts a lock."""
        self._require(name)
        hashed = _hasher().hash(check_password(password, name=name))

        def change(tx) -> None:
            tx.execute(
                "UPDATE accounts SET password_hash = ?, password_changed_at = ?,"
                " failed_attempts = 0, locked_until = NULL WHERE name = ?",
                (hashed, now(), name),
            )
            tx.execute("DELETE FROM sessions WHERE account = ?", (name,))

        self.db.write(change)

    def set_role(self, name: str, role: str) -> None:
        self._require(name)
        check_role(role)
        self._keep_an_admin(name, new_role=role)
        self.db.write(
            lambda tx: tx.execute("UPDATE accounts SET role = ? WHERE name = ?", (role, name))
        )

    def remove_account(self, name: str) -> None:
        """Remove an account with its memberships and sessions (its label events stay: the
        log is never rewritten)."""
        self._require(name)
        self._keep_an_admin(name, new_role=None)

        def remove(tx) -> None:
            tx.execute("DELETE FROM sessions WHERE account = ?", (name,))
            tx.execute("DELETE FROM members WHERE account = ?", (name,))
            tx.execute("DELETE FROM accounts WHERE name = ?", (name,))

        self.db.write(remove)

    def _keep_an_admin(self, name: str, *, new_role: str | None) -> None:
        if new_role == "admin" or self._require(name).role != "admin":
            return
        admins = self.db.read("SELECT COUNT(*) AS n FROM accounts WHERE role = 'admin'")[0]["n"]
        if int(admins) <= 1:
            raise StoreError(
                f"{name!r} is the last admin: add another admin first "
                "(`python cli.py users add NAME --role admin`)."
            )

    # -- signing in ------------------------------------------------------------------------
    def sign_in(self, name: str, password: str) -> str:
        """Check a name and password; returns a new session token (keep it secret).

        Raises :class:`SignInError` with one message for an unknown name or a wrong password
        (so the message does not tell which names exist), and another for a locked account.
        """
        from argon2.exceptions import InvalidHashError, VerificationError

        name = (name or "").strip()
        rows = self.db.read(
            "SELECT password_hash, failed_attempts, locked_until FROM accounts WHERE name = ?",
            (name,),
        )
        if not rows:
            try:
                _hasher().verify(self._decoy, password or "")
            except VerificationError:
                pass
            raise SignInError("Wrong account name or password.")
        row = rows[0]
        if row["locked_until"] and _at(row["locked_until"]) > datetime.now(UTC):
            raise SignInError(
                f"This account is locked after {MAX_FAILED} wrong passwords until "
                f"{row['locked_until'][:16].replace('T', ' ')} UTC. Wait, or ask an admin to "
                "set a new password (`python cli.py users passwd NAME`)."
            )
        try:
            _hasher().verify(row["password_hash"], password or "")
        except (VerificationError, InvalidHashError):
            self._failed(name)
            raise SignInError("Wrong account name or password.") from None
        token = secrets.token_urlsafe(32)
        stamp = now()

        def start(tx) -> None:
            tx.execute(
                "UPDATE accounts SET failed_attempts = 0, locked_until = NULL WHERE name = ?",
                (name,),
            )
            tx.execute(
                "INSERT INTO sessions (token_hash, account, created_at, expires_at, last_seen_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (_digest(token), name, stamp, _later(hours=SESSION_HOURS), stamp),
            )
            # Drop this account's expired sessions while here: the table stays small.
            tx.execute("DELETE FROM sessions WHERE account = ? AND expires_at < ?", (name, stamp))

        self.db.write(start)
        return token

    def _failed(self, name: str) -> None:
        def count(tx) -> None:
            tx.execute(
                "UPDATE accounts SET failed_attempts = failed_attempts + 1 WHERE name = ?",
                (name,),
            )
            tx.execute(
                "UPDATE accounts SET locked_until = ?, failed_attempts = 0"
                " WHERE name = ? AND failed_attempts >= ?",
                (_later(minutes=LOCK_MINUTES), name, MAX_FAILED),
            )

        self.db.write(count)

    def session_account(self, token: str | None) -> Account | None:
        """The account a session token belongs to, or None when the token is unknown, expired
        (:data:`SESSION_HOURS` after sign-in, or :data:`IDLE_MINUTES` idle) or signed out."""
        if not token or not isinstance(token, str):
            return None
        digest = _digest(token)
        rows = self.db.read(
            "SELECT account, expires_at, last_seen_at FROM sessions WHERE token_hash = ?",
            (digest,),
        )
        if not rows:
            return None
        moment = datetime.now(UTC)
        row = rows[0]
        idle = moment - _at(row["last_seen_at"])
        if _at(row["expires_at"]) <= moment or idle > timedelta(minutes=IDLE_MINUTES):
            self.sign_out(token)
            return None
        if idle > timedelta(minutes=1):  # at most one write a minute per session
            self.db.write(
                lambda tx: tx.execute(
                    "UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?", (now(), digest)
                )
            )
        return self.account(row["account"])

    def sign_out(self, token: str) -> None:
        self.db.write(
            lambda tx: tx.execute("DELETE FROM sessions WHERE token_hash = ?", (_digest(token),))
        )

    # -- workspace members -----------------------------------------------------------------
    def add_member(self, workspace: str, name: str, *, role: str | None = None) -> None:
        """Make ``name`` a member of ``workspace`` (its folder name), with the account's own
        role or ``role``; adding again changes the role."""
        self._require(name)
        if role is not None:
            check_role(role)
        workspace = _workspace_key(workspace)
        self.db.write(
            lambda tx: tx.execute(
                "INSERT INTO members (workspace, account, role) VALUES (?, ?, ?)"
                " ON CONFLICT (workspace, account) DO UPDATE SET role = excluded.role",
                (workspace, name, role),
            )
        )

    def remove_member(self, workspace: str, name: str) -> None:
        workspace = _workspace_key(workspace)
        changed = self.db.write(
            lambda tx: tx.execute(
                "DELETE FROM members WHERE workspace = ? AND account = ?", (workspace, name)
            )
        )
        if not changed:
            raise StoreError(f"{name!r} is not a member of {workspace!r}.")

    def members(self, workspace: str) -> list[dict[str, Any]]:
        """``[{"account", "role"}]`` of one workspace (role: the effective one)."""
        rows = self.db.read(
            "SELECT m.account, COALESCE(m.role, a.role) AS role FROM members m"
            " JOIN accounts a ON a.name = m.account WHERE m.workspace = ? ORDER BY m.account",
            (_workspace_key(workspace),),
        )
        return [{"account": r["account"], "role": r["role"]} for r in rows]

    def role_in(self, name: str, workspace: str) -> str | None:
        """``name``'s role in ``workspace``: admin for an admin, the membership's role (or the
        account's) for a member, None for anyone else."""
        account = self.account(name)
        if account is None:
            return None
        if account.is_admin:
            return "admin"
        rows = self.db.read(
            "SELECT role FROM members WHERE workspace = ? AND account = ?",
            (_workspace_key(workspace), name),
        )
        if not rows:
            return None
        return rows[0]["role"] or account.role

    def highest_role(self, name: str) -> str | None:
        """The most trusted role ``name`` holds anywhere: its own or a membership's."""
        account = self.account(name)
        if account is None:
            return None
        rows = self.db.read("SELECT role FROM members WHERE account = ?", (name,))
        roles = [account.role, *(r["role"] for r in rows if r["role"])]
        return max(roles, key=ROLES.index)

    def visible(self, name: str, folders: list[Path]) -> list[Path]:
        """The workspace folders ``name`` may see (all of them for an admin), in order."""
        account = self.account(name)
        if account is None:
            return []
        if account.is_admin:
            return list(folders)
        rows = self.db.read("SELECT workspace FROM members WHERE account = ?", (name,))
        mine = {r["workspace"] for r in rows}
        return [f for f in folders if Path(f).name in mine]


def _workspace_key(workspace: str | Path) -> str:
    key = Path(str(workspace)).name.strip()
    if not key:
        raise ValueError("A workspace name is required (its folder name).")
    return key


# One Directory per database per process, never closed: closing any SQLite connection to a file
# drops every POSIX lock this process holds on it (see data.store.base.read_header).
_OPEN: dict[str, Directory] = {}
_OPEN_LOCK = threading.Lock()


def directory_target(root: str | Path | None = None) -> str:
    """Where the directory lives: ``SECOND_LOOK_DATABASE_URL``, else ``accounts.sqlite`` under
    ``root`` (default: the workspaces' home)."""
    url = database_url()
    if url:
        if not is_postgres_url(url):
            raise ValueError(
                f"{DATABASE_URL_VARIABLE}={redact(url)} is not a PostgreSQL URL: use "
                "postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or unset it for solo mode."
            )
        return url
    home = Path(root) if root is not None else workspaces_root()
    return str((home / DIRECTORY_FILE).resolve())


def open_directory(root: str | Path | None = None, *, create: bool = True) -> Directory | None:
    """The team's directory (cached per process). With ``create=False``, None where no
    directory exists yet (solo mode, nothing written)."""
    target = directory_target(root)
    with _OPEN_LOCK:
        found = _OPEN.get(target)
        if found is not None:
            return found
        if not create and not is_postgres_url(target) and not Path(target).exists():
            return None
        if not is_postgres_url(target):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        found = _OPEN[target] = Directory(target)
        return found


def team_mode(root: str | Path | None = None) -> bool:
    """Whether Second Look runs for a team: a database URL is set, or accounts exist."""
    if database_url():
        return True
    directory = open_directory(root, create=False)
    return directory is not None and directory.has_accounts()
