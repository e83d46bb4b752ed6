"""Shared plumbing of the workspace store: constants, the connection, small helpers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.home import database_url, workspaces_root
from data.store.dialect import POSTGRESQL, SQLITE, PgConnection
from data.store.sql import redact

log = logging.getLogger(__name__)

DB_NAME = "store.sqlite"
# A workspace whose database is a schema of the team's PostgreSQL database holds this file
# instead of store.sqlite: which backend and which schema (never the URL: it comes from
# SECOND_LOOK_DATABASE_URL, so credentials stay out of the shared folder).
PG_MARKER = "store.postgresql.json"
# 3: other issue types and the neighbor graph; 4: the one vocabulary (given_label,
# analyzed_label, analyzed_prob); 5: text repair events (given_text, the current text derived
# from the log); 6: workers claiming jobs (jobs.worker, jobs.heartbeat_at, jobs.attempts);
# 7: the embedding cache and neighbour graphs as checksummed files (data/store/vectors.py).
# Older workspaces are upgraded in place on open, on both backends (data/store/migrate.py).
SCHEMA_VERSION = 7

# Label-setting actions: keep the label, take the model's suggestion, choose another, or settle
# a conflict between reviewers. "undo" must stay last (apply_actions refuses it).
LABEL_ACTIONS = ("confirm", "accept", "relabel", "resolve")
# Text actions change a sample's text, never its label (Workspace.repair_texts writes them).
TEXT_ACTIONS = ("repair_text",)
ACTIONS = (*LABEL_ACTIONS, "exclude", "include", *TEXT_ACTIONS, "undo")
JOB_KINDS = ("analyze", "train", "experiment", "adapt", "calibrate")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
ORDERS = ("quality", "uncertainty", "random", "row")


# Tables every workspace of every upgradable version has: the tables a version added are left
# out (the upgrade on open adds them), and so are ``embeddings`` and ``knn``, which version 7
# moved into files.
REQUIRED_TABLES = (
    "meta",
    "samples",
    "samples_fts",
    "label_events",
    "analyses",
    "analysis_results",
    "jobs",
    "runs",
)
# A whole PRAGMA quick_check reads every page: ~65 ms on the 25 MB demo workspace (38k rows),
# ~150 ms once it holds an analysis and its embeddings (200 MB), about a second per GB. A
# larger database gets only its metadata and its label log (the truth) checked on open; damage
# elsewhere surfaces as an SQLite error that the app and the CLI turn into the same report.
CORE_TABLES = ("meta", "label_events")
FULL_CHECK_MAX_BYTES = 256 * 2**20
SQLITE_MAGIC = b"SQLite format 3\x00"
# Primary result codes that mean the file itself is damaged (not busy, not a bad query).
_DAMAGE_CODES = {11: "SQLITE_CORRUPT", 26: "SQLITE_NOTADB"}


class StoreError(RuntimeError):
    """A workspace problem the user can act on (missing workspace, unknown sample, ...)."""


class DamagedWorkspace(StoreError):
    """The workspace's database is damaged (truncated, overwritten, failing its checks).

    The message names the workspace, what is wrong and what to do; ``folder``, ``problem``
    and ``backup`` (the newest :class:`data.store.backup.BackupInfo`, or None) let a UI offer
    the restore itself.
    """

    def __init__(self, folder: str | os.PathLike, problem: str):
        from data.store.backup import newest_backup

        self.folder = Path(folder).resolve()
        self.problem = problem
        self.backup = newest_backup(self.folder)
        _KNOWN_DAMAGE[str(self.folder)] = problem
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"The workspace '{self.folder.name}' ({self.folder}) is damaged: {self.problem}."
        if self.backup is None:
            return (
                f"{head} There is no backup of it to restore. The damaged file is left as it is; "
                "import the dataset again into a new workspace (Data page, or `python cli.py "
                "import`), or choose another workspace."
            )
        command = f"python cli.py restore {shlex.quote(str(self.folder))}"
        return (
            f"{head} Restore the backup from {self.backup.when}: the Restore button on this "
            f"workspace's page in the app, or `{command}`. Label events newer than the backup "
            "that the damaged file still holds are kept, and the damaged file is set aside, "
            "never deleted."
        )


# Problems found in this process, by folder: the sidebar marks these workspaces as damaged
# even when their file header looks fine (damage deeper in the file).
_KNOWN_DAMAGE: dict[str, str] = {}


def now() -> str:
    """UTC time as ISO 8601 with milliseconds (sortable as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_SLUG_BYTES = 64  # well under the 255-byte file-name limit, with room for a suffix


def slugify(name: str) -> str:
    """A folder-safe workspace name, one per distinct name in practice.

    Letters, digits and underscores of every script are kept (``"Отзывы 2024"`` ->
    ``"отзывы-2024"``), the rest become ``-``. Underscores stay so that the name the Data page
    proposes from a file (``formula_script.csv`` -> ``formula_script``) is the folder name the
    sidebar lists, one spelling. A name with nothing left (``"!!!"``) or too long for a folder
    gets a short hash of the whole name, so such names do not all collide in one folder.

    >>> slugify("My reviews!"), slugify("Отзывы"), slugify("!!!") != slugify("???")
    ('my-reviews', 'отзывы', True)
    >>> slugify("formula_script"), slugify("__")[:10]
    ('formula_script', 'workspace-')
    """
    slug = re.sub(r"\W+", "-", unicodedata.normalize("NFKC", name).lower()).strip("-_")
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    if not slug:
        return f"workspace-{digest}"
    if len(slug.encode("utf-8")) <= _SLUG_BYTES:
        return slug
    while len(slug.encode("utf-8")) > _SLUG_BYTES:
        slug = slug[:-1]
    return f"{slug.rstrip('-')}-{digest}"


def list_workspaces(root: str | os.PathLike | None = None) -> list[Path]:
    """Workspace folders under ``root``, newest first (damaged ones too: see
    :func:`workspace_problem`)."""
    root = Path(root) if root is not None else workspaces_root()
    found = []
    try:
        folders = list(root.iterdir()) if root.is_dir() else []
    except OSError:
        return []
    for folder in folders:
        for name in (DB_NAME, PG_MARKER):
            try:  # a folder can vanish or be swapped (a restore) between listing and stat
                found.append((folder, (folder / name).stat().st_mtime))
                break
            except OSError:
                continue
    return [p for p, _ in sorted(found, key=lambda item: item[1], reverse=True)]


def workspace_problem(folder: str | os.PathLike) -> str | None:
    """What is wrong with a workspace, as far as is known without opening it, else None.

    Cheap enough for every rerun of the sidebar: damage this process already met when opening
    it, else what the file's first 100 bytes and size show (see :func:`header_problem`).
    """
    folder = Path(folder).resolve()
    if (folder / PG_MARKER).exists():
        return None  # a PostgreSQL schema: the server keeps it whole (see StoreBase)
    return _KNOWN_DAMAGE.get(str(folder)) or header_problem(folder / DB_NAME)


def is_workspace(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a workspace (an SQLite file or a PostgreSQL marker)."""
    folder = Path(folder)
    return (folder / DB_NAME).is_file() or (folder / PG_MARKER).is_file()


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The PostgreSQL marker of a workspace folder, or None (an SQLite workspace, or none)."""
    path = Path(folder) / PG_MARKER
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        marker = json.loads(text)
        if marker.get("backend") != "postgresql" or not isinstance(marker.get("schema"), str):
            raise ValueError
    except (ValueError, AttributeError):
        raise StoreError(
            f"The workspace at {Path(folder).resolve()} has an unreadable {PG_MARKER} (it "
            "names the PostgreSQL schema that holds the workspace)."
        ) from None
    return marker


def write_marker(folder: Path, schema: str) -> None:
    """Write the marker whole (a temporary file, fsynced, renamed into place)."""
    tmp = folder / (PG_MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"backend": "postgresql", "schema": schema, "created_at": now()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / PG_MARKER)


_SCHEMA_PREFIX = "ws_"


def new_schema_name(folder_name: str) -> str:
    """A fresh PostgreSQL schema name for a workspace folder: readable (the ASCII letters and
    digits of the name) and unique (8 random hex digits), at most 63 bytes.

    >>> name = new_schema_name("Отзывы 2024 reviews")
    >>> name.startswith("ws_2024_reviews_") and len(name) == len("ws_2024_reviews_") + 8
    True
    """
    readable = re.sub(r"[^a-z0-9]+", "_", folder_name.lower()).strip("_")[:40]
    suffix = os.urandom(4).hex()
    return f"{_SCHEMA_PREFIX}{readable}_{suffix}" if readable else f"{_SCHEMA_PREFIX}{suffix}"


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier (double-quoted)."""
    return '"' + name.replace('"', '""') + '"'


# Descriptors of database files whose header this process read, by (device, inode): opened
# once and never closed. Closing *any* descriptor of a file drops every POSIX lock the process
# holds on it, SQLite's included ("How To Corrupt An SQLite Database File", 2.2). A plain
# open()/close() of store.sqlite on every sidebar rerun made another process's connection
# believe it was the last one: it deleted the WAL, and this process's later commits went to a
# deleted file (acknowledged, then lost). Reading through a descriptor kept open is safe.
_HEADER_FDS: dict[tuple[int, int], int] = {}
_HEADER_FDS_LOCK = threading.Lock()


def read_header(path: Path, n: int = 100) -> tuple[int, bytes]:
    """The file's size and first ``n`` bytes, without ever closing a descriptor of it."""
    with _HEADER_FDS_LOCK:
        st = path.stat()
        fd = _HEADER_FDS.get((st.st_dev, st.st_ino))
        if fd is None:
            fd = os.open(path, os.O_RDONLY)
            opened = os.fstat(fd)  # the path may have been swapped since the stat
            # If that inode already has one, this extra descriptor is kept open too (closing
            # it would drop the locks); it is one descriptor per swap, at most.
            fd = _HEADER_FDS.setdefault((opened.st_dev, opened.st_ino), fd)
        return os.fstat(fd).st_size, os.pread(fd, n, 0)


def header_problem(path: Path) -> str | None:
    """Damage visible in a database file's size and header, else None."""
    try:
        size, head = read_header(path)
    except OSError as exc:
        return f"{DB_NAME} cannot be read ({exc.strerror or exc})"
    if size == 0:
        return f"{DB_NAME} is empty (0 bytes)"
    if not head.startswith(SQLITE_MAGIC):
        return f"{DB_NAME} is not a SQLite database (its header was overwritten)"
    if len(head) < 100:
        return f"{DB_NAME} is cut short ({size} bytes, less than its header)"
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"{DB_NAME}'s header is damaged (page size {page_size})"
    if size % page_size:
        return (
            f"{DB_NAME} is truncated: {size:,} bytes is not a whole number of "
            f"{page_size:,}-byte pages"
        )
    return None


def _truncation(path: Path) -> str | None:
    """A file shorter than its header says (only asked once SQLite found damage: during a
    checkpoint the header can briefly run ahead of the file)."""
    try:
        size, head = read_header(path)
        page_size = int.from_bytes(head[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages, counter, valid_for = (int.from_bytes(head[i : i + 4], "big") for i in (28, 24, 92))
    except (OSError, ValueError):
        return None
    if page_size and counter == valid_for and pages > size // page_size:
        return (
            f"{DB_NAME} is truncated: it holds {size // page_size:,} of its "
            f"{pages:,} pages ({size:,} bytes)"
        )
    return None


def database_problem(conn: sqlite3.Connection, *, full: bool = True) -> str | None:
    """What PRAGMA quick_check and the schema say is wrong with an open database, else None.

    ``full=False`` checks only :data:`CORE_TABLES` (for very large files). May raise
    sqlite3.DatabaseError: see :func:`damage_from_error`.
    """
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in REQUIRED_TABLES if t not in names]
    if missing:
        return f"{DB_NAME} is not a complete workspace: it lacks the table(s) {', '.join(missing)}"
    checks = ["PRAGMA quick_check"] if full else [f"PRAGMA quick_check({t})" for t in CORE_TABLES]
    found = [
        line
        for sql in checks
        for (text,) in conn.execute(sql).fetchall()
        for line in str(text).splitlines()
        if line != "ok" and not line.startswith("*** in database")
    ]
    if found:
        more = f" (and {len(found) - 1:,} more problems)" if len(found) > 1 else ""
        return f"SQLite's integrity check fails: {found[0]}{more}"
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return f"{DB_NAME} has lost its metadata (no schema version)"
    return None


def damage_from_error(exc: sqlite3.Error, path: Path) -> str | None:
    """What an SQLite error says is wrong with the file at ``path``; None when the error is
    not damage (busy, locked, permissions, a bad query)."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    damaged = (code is not None and code & 0xFF in _DAMAGE_CODES) or any(
        words in text for words in ("malformed", "not a database")
    )
    if not damaged:
        return None
    return explain(path, f"SQLite cannot read {DB_NAME} ({text})")


def explain(path: Path, problem: str) -> str:
    """The plainest account of a damaged file: a truncation or overwritten header when the
    file shows one, else SQLite's ``problem``."""
    return header_problem(path) or _truncation(path) or problem


def diagnose(folder: str | os.PathLike) -> str | None:
    """A full check of a workspace's database on a fresh read-only connection: what is wrong,
    or None when it is sound (or cannot be opened for another reason)."""
    path = Path(folder) / DB_NAME
    if not path.exists():
        return None
    problem = header_problem(path)
    if problem is not None:
        return problem
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            problem = database_problem(conn, full=True)
        finally:
            conn.close()
        return None if problem is None else explain(path, problem)
    except sqlite3.Error as exc:
        return damage_from_error(exc, path)


def forget_damage(folder: str | os.PathLike) -> None:
    """Stop marking ``folder`` as damaged (it opened cleanly, or was restored)."""
    _KNOWN_DAMAGE.pop(str(Path(folder).resolve()), None)


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def check_reviewer(reviewer: str) -> str:
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise ValueError("A reviewer name is required: every label event records who made it.")
    return reviewer


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# Schema versions an open upgrades in place (in one transaction; labels and history untouched).
UPGRADABLE_VERSIONS = tuple(range(2, SCHEMA_VERSION))
# PostgreSQL workspaces began at version 6.
PG_UPGRADABLE_VERSIONS = tuple(range(6, SCHEMA_VERSION))


def upgrade_schema(conn: sqlite3.Connection, *, folder: Path | None = None) -> bool:
    """Bring an SQLite database of an older schema version to :data:`SCHEMA_VERSION`, in place
    and in one transaction; returns whether it changed anything (the steps:
    :mod:`data.store.migrate`). Files a step writes (version 7's embedding segments and graph
    files) go to ``folder``, by default the database file's folder. Safe to run twice or from
    two processes at once: the second finds nothing to do. The caller's connection must be in
    autocommit mode (``isolation_level=None``), as the store's are.
    """
    from data.store.migrate import sqlite_folder, upgrade

    changed = upgrade(conn, SQLITE, folder or sqlite_folder(conn))
    if changed:
        reclaim_free_pages(conn)
    return changed


# Free pages worth a VACUUM after an upgrade: version 7 drops the embeddings table (1.5 GB at a
# million texts), and an SQLite file never shrinks by itself: every backup would copy the free
# pages too.
RECLAIM_MIN_BYTES = 64 * 2**20


def reclaim_free_pages(conn: sqlite3.Connection) -> None:
    """VACUUM when at least :data:`RECLAIM_MIN_BYTES` of the file are free pages. Best effort:
    a process holding the database open keeps the space in use until the next upgrade-free
    VACUUM (nothing is lost, the file is only larger than it needs to be)."""
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    if free * page < RECLAIM_MIN_BYTES:
        return
    try:
        conn.execute("VACUUM")
    except sqlite3.OperationalError as exc:  # busy: another process writes right now
        log.warning("Could not give back %d MB of free pages: %s", free * page >> 20, exc)


# Tables every PostgreSQL workspace has (no samples_fts: a GIN index serves the search).
PG_REQUIRED_TABLES = tuple(t for t in REQUIRED_TABLES if t != "samples_fts")


def connect_postgres(schema: str | None, *, what: str = "the team database") -> PgConnection:
    """A connection to the team database (``SECOND_LOOK_DATABASE_URL``) whose ``search_path``
    is ``schema`` alone (None: the server's default, for creating a schema)."""
    url = database_url()
    if not url:
        raise StoreError(
            f"{what[:1].upper()}{what[1:]} lives in PostgreSQL"
            + (f" (schema {schema!r})" if schema else "")
            + ", but SECOND_LOOK_DATABASE_URL is not set. Set it to the team database's URL."
        )
    import psycopg

    try:
        raw = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise StoreError(
            f"Cannot connect to the database at {redact(url)} for {what}: "
            f"{str(exc).strip()}. Check SECOND_LOOK_DATABASE_URL and that the server runs."
        ) from None
    if schema is not None:
        raw.execute("SELECT set_config('search_path', %s, false)", (quote_ident(schema),))
    return PgConnection(
        raw, schema or "", reconnect=lambda: connect_postgres(schema, what=what).raw
    )


class StoreBase:
    """The connection and transaction helpers every part of :class:`Workspace` builds on.

    Thread-safe within a process (one connection behind a lock, because Streamlit serves
    sessions from several threads) and safe across processes (WAL mode, busy timeout), so the UI
    and background jobs can share a workspace.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser().resolve()
        self.db_path = self.folder / DB_NAME
        self._lock = threading.RLock()
        marker = read_marker(self.folder)
        if marker is not None:
            self.dialect = POSTGRESQL
            self.schema = marker["schema"]
            self._conn, version = self._open_postgres()
            if version in PG_UPGRADABLE_VERSIONS:
                version = self._upgrade_postgres()
        else:
            if not self.db_path.exists():
                raise StoreError(
                    f"No workspace at {self.folder} (no {DB_NAME} inside). Import a dataset "
                    "first, or pass the folder of an existing workspace."
                )
            self.dialect = SQLITE
            self.schema = None
            self._conn, version = self._open_checked()
            if version in UPGRADABLE_VERSIONS:
                try:
                    upgrade_schema(self._conn)
                except BaseException:
                    self._conn.close()
                    raise
                version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            self._conn.close()
            raise StoreError(
                f"The workspace at {self.folder} has schema version {version}; this Second Look "
                f"reads version {SCHEMA_VERSION}. Export it with the version that made it, then "
                "import the export into a new workspace."
            )

    @property
    def backend(self) -> str:
        """Where the workspace's database lives: ``"sqlite"`` or ``"postgresql"``."""
        return self.dialect.name

    # -- opening ---------------------------------------------------------------------------
    def _open_checked(self) -> tuple[sqlite3.Connection, Any]:
        """Connect, check the database and read its schema version, so that any damage
        surfaces here, as one :class:`DamagedWorkspace`, not as an SQLite error on a page."""
        problem = header_problem(self.db_path)
        if problem is not None:  # before connecting: SQLite would write a header into an empty file
            raise DamagedWorkspace(self.folder, problem)
        conn, version = None, None
        try:
            conn = self._connect(self.db_path)
            full = self.db_path.stat().st_size <= FULL_CHECK_MAX_BYTES
            problem = database_problem(conn, full=full)
            if problem is None:
                sql = "SELECT value FROM meta WHERE key = 'schema_version'"
                version = json.loads(conn.execute(sql).fetchone()[0])
        except ValueError:
            problem = f"{DB_NAME}'s schema version is garbled"
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            problem = damage_from_error(exc, self.db_path)
            if problem is None:
                raise StoreError(f"Could not open the workspace at {self.folder}: {exc}.") from exc
            raise DamagedWorkspace(self.folder, problem) from exc
        if problem is not None:
            conn.close()
            raise DamagedWorkspace(self.folder, explain(self.db_path, problem))
        forget_damage(self.folder)
        return conn, version

    def _open_postgres(self) -> tuple[PgConnection, Any]:
        """Connect to the workspace's schema in the team database and read its schema version.

        No integrity check runs here: PostgreSQL keeps its own files whole (checksums, WAL);
        a schema that lost tables was changed by hand, which this says plainly.
        """
        conn = connect_postgres(self.schema, what=f"the workspace at {self.folder}")
        try:
            names = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                    (self.schema,),
                )
            }
            missing = [t for t in PG_REQUIRED_TABLES if t not in names]
            if missing:
                raise StoreError(
                    f"The workspace at {self.folder} lives in the PostgreSQL schema "
                    f"{self.schema!r}, which "
                    + (
                        "does not exist"
                        if not names
                        else f"lacks the table(s) {', '.join(missing)}"
                    )
                    + ". Restore the schema from the database's backups (pg_dump / pg_restore),"
                    " or import the dataset again into a new workspace."
                )
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                raise StoreError(
                    f"The workspace at {self.folder} (PostgreSQL schema {self.schema!r}) has "
                    "lost its metadata (no schema version)."
                )
            version = json.loads(row[0])
        except BaseException:
            conn.close()
            raise
        return conn, version

    def _upgrade_postgres(self) -> int:
        """Upgrade the workspace's schema in one transaction under its advisory lock (replicas
        opening it at once queue; the later ones find it upgraded); the version it is now."""
        from data.store.migrate import upgrade

        try:
            upgrade(self._conn, POSTGRESQL, self.folder)
        except BaseException:
            self._conn.close()
            raise
        return SCHEMA_VERSION

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        from data.store.sql import connect_sqlite

        return connect_sqlite(path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- small helpers ----------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._lock:
            cur = self._conn.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def _write(self, fn, *args, **kwargs):
        """Run ``fn(conn, ...)`` inside one immediate transaction; commit before returning."""
        with self._lock:
            conn = self._conn
            self.dialect.begin(conn)
            try:
                out = fn(conn, *args, **kwargs)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

    # -- metadata -------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Workspace metadata (name, label names, columns, split seed, import warnings...)."""
        return {r["key"]: loads(r["value"]) for r in self._read("SELECT key, value FROM meta")}

    def set_info(self, key: str, value: Any) -> None:
        self._write(
            lambda c: c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, to_json(value)),
            )
        )

    @property
    def label_names(self) -> list[str]:
        return list(self.info()["label_names"])

    @property
    def name(self) -> str:
        return str(self.info().get("name", self.folder.name))

    def counts(self) -> dict[str, int]:
        """Row counts: total, per split, reviewed, changed, excluded, encoding-fixed, in the
        double-review set, conflicting, text repaired (current text differs from the given)."""
        n = self.dialect.count_if
        train, test, validation = (n(f"split = '{s}'") for s in ("train", "test", "validation"))
        row = self._read(
            "SELECT COUNT(*) AS n,"
            f" {train} AS train, {test} AS test,"
            f" {validation} AS validation, SUM(reviewed) AS reviewed,"
            f" {n('label != given_label')} AS changed, SUM(excluded) AS excluded,"
            " SUM(encoding_fixed) AS encoding_fixed, SUM(overlap) AS overlap, SUM(conflict) AS conflict,"
            f" {n('text != given_text')} AS repaired"
            " FROM samples"
        )[0]
        return {k: int(row[k] or 0) for k in row.keys()}

    def label_counts(self) -> pd.DataFrame:
        """Rows per current label (index, in label-name order) and split (columns)."""
        df = self._frame("SELECT label, split, COUNT(*) AS n FROM samples GROUP BY label, split")
        table = df.pivot(index="label", columns="split", values="n").fillna(0).astype(int)
        return table.reindex(self.label_names, fill_value=0)

    def label_version(self) -> int:
        """The id of the last event (0 before any review): names a version of the labels (and
        of the texts: a text repair is an event too)."""
        return int(self._read("SELECT COALESCE(MAX(id), 0) FROM label_events")[0][0])
