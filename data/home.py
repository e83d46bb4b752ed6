"""Where Second Look keeps things, and whether it runs for a team: cheap to ask (no pandas, no
store), so the app can decide solo or team before it draws anything.

- ``SECOND_LOOK_HOME`` (default ``./workspaces``): the workspace folders, ``accounts.sqlite``
  (the team directory when no database URL is set), ``preferences.json``, measured speeds.
- ``SECOND_LOOK_DATABASE_URL``: a PostgreSQL URL; set, it holds the team directory and turns
  team mode on.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

HOME_VARIABLE = "SECOND_LOOK_HOME"
DATABASE_URL_VARIABLE = "SECOND_LOOK_DATABASE_URL"
DIRECTORY_FILE = "accounts.sqlite"


def workspaces_root() -> Path:
    """Where workspaces live: ``$SECOND_LOOK_HOME`` or ``./workspaces``."""
    return Path(os.environ.get(HOME_VARIABLE, "workspaces")).expanduser().resolve()


def database_url() -> str:
    """``$SECOND_LOOK_DATABASE_URL``, or ``""`` when unset (solo mode's embedded SQLite)."""
    return os.environ.get(DATABASE_URL_VARIABLE, "").strip()


def team_configured(root: str | os.PathLike | None = None) -> bool:
    """Whether team mode may be on: a database URL is set or a team directory file exists.
    (Whether accounts exist is :func:`data.store.accounts.team_mode`'s question.)"""
    home = Path(root) if root is not None else workspaces_root()
    return bool(database_url()) or (home / DIRECTORY_FILE).exists()


def is_loopback(address: str) -> bool:
    """Whether ``address`` reaches this machine only (``localhost``, 127.x, ``::1``): where solo
    mode may serve the app, and ``cli.py serve`` may answer without a token.

    >>> [is_loopback(a) for a in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "", "10.0.0.5")]
    [True, True, True, False, False, False]
    """
    address = address.strip()
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False
