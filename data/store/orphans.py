"""PostgreSQL schemas that no workspace folder names: found, and dropped when asked.

Creating a PostgreSQL workspace commits its schema, then writes the folder's marker
(``store.postgresql.json``, :func:`data.store.base.write_marker`). A crash between the two, an
overwrite that died before dropping the schema it replaced, or a folder deleted by hand leaves
a schema that nothing names: it holds a whole dataset and is never opened again.

Listing is safe and is the default. Dropping is a separate, explicit step because the folders
under one ``SECOND_LOOK_HOME`` are not necessarily every folder that names a schema of the team
database: another deployment (staging, a second home) may share the database, and
``cli.py import --home`` can create a workspace elsewhere. Those schemas look orphaned from
here, and only a person knows. A schema still being created is never visible (its
transaction has not committed); one committed moments ago and waiting for its marker is left
alone by the age limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from data.home import workspaces_root
from data.store.base import (
    _SCHEMA_PREFIX,
    StoreError,
    connect_postgres,
    loads,
    quote_ident,
    read_marker,
)
from data.store.dialect import Connection, lock_key

# Schemas younger than this are left alone: the marker is written just after the commit.
MIN_AGE_MINUTES = 30.0


@dataclass(frozen=True)
class OrphanSchema:
    """A workspace schema no folder under the home names."""

    schema: str
    name: str  # the workspace's name, as its meta table says
    created_at: str  # ISO 8601 UTC, from its meta table
    age_minutes: float


def find_orphans(
    root: str | os.PathLike | None = None, *, min_age_minutes: float = MIN_AGE_MINUTES
) -> list[OrphanSchema]:
    """The Second Look schemas of the team database (``SECOND_LOOK_DATABASE_URL``) that no
    marker under ``root`` (default ``SECOND_LOOK_HOME``) names and that were created at least
    ``min_age_minutes`` ago, oldest first.

    A Second Look schema is one named as :func:`data.store.base.new_schema_name` names them
    that holds a ``meta`` table with a schema version; any other schema is never listed.

    Raises
    ------
    StoreError
        When a marker under ``root`` cannot be read (it might name any schema).
    """
    named = _named_schemas(Path(root) if root is not None else workspaces_root())
    conn = connect_postgres(None, what="the team database")
    try:
        found = [s for s in _workspace_schemas(conn) if s.schema not in named]
    finally:
        conn.close()
    return sorted((s for s in found if s.age_minutes >= min_age_minutes), key=_by_age)


def drop_orphans(orphans: list[OrphanSchema], root: str | os.PathLike | None = None) -> list[str]:
    """Drop these schemas (as :func:`find_orphans` listed them), each in its own transaction
    under the workspace's write lock, after checking again that no marker names it. Returns
    the schemas dropped."""
    home = Path(root) if root is not None else workspaces_root()
    conn = connect_postgres(None, what="the team database")
    dropped = []
    try:
        for orphan in orphans:
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(orphan.schema),))
            if orphan.schema in _named_schemas(home):  # a marker appeared meanwhile
                conn.execute("ROLLBACK")
                continue
            conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(orphan.schema)} CASCADE")
            conn.execute("COMMIT")
            dropped.append(orphan.schema)
    finally:
        conn.close()
    return dropped


def _named_schemas(root: Path) -> set[str]:
    """The schemas the markers of the folders under ``root`` name."""
    named = set()
    folders = [f for f in root.iterdir() if f.is_dir()] if root.is_dir() else []
    for folder in folders:
        try:
            marker = read_marker(folder)
        except StoreError as exc:
            raise StoreError(
                f"{exc} Until it is repaired no schema is taken for an orphan: it might be "
                "the one this marker names."
            ) from exc
        if marker is not None:
            named.add(marker["schema"])
    return named


def _workspace_schemas(conn: Connection) -> list[OrphanSchema]:
    """Every schema of the database that holds a Second Look workspace (named, age)."""
    rows = conn.execute(
        "SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid"
        " WHERE c.relname = 'meta' AND c.relkind = 'r' AND starts_with(n.nspname, ?)",
        (_SCHEMA_PREFIX,),
    ).fetchall()
    out = []
    for (schema,) in rows:
        meta = {
            r[0]: loads(r[1])
            for r in conn.execute(
                f"SELECT key, value FROM {quote_ident(schema)}.meta"
                " WHERE key IN ('schema_version', 'name', 'created_at')"
            )
        }
        if "schema_version" not in meta or not isinstance(meta.get("created_at"), str):
            continue  # not a workspace's meta table
        created = datetime.fromisoformat(meta["created_at"])
        age = (datetime.now(UTC) - created).total_seconds() / 60
        out.append(OrphanSchema(schema, str(meta.get("name", "")), meta["created_at"], age))
    return out


def _by_age(orphan: OrphanSchema) -> str:
    return orphan.created_at
