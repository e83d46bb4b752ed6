"""Backups of a workspace's database, and restoring one when the database is damaged.

A backup is a consistent snapshot taken with SQLite's online backup API in one step (one read
transaction, so writers in other connections neither block it nor tear it). It is written to a
temporary file, checked with ``PRAGMA quick_check`` (so a copy of a damaged database never
replaces a sound backup), fsynced and renamed into place. ``<workspace>/backups/`` keeps the
last :data:`KEEP`: ``store.sqlite.bak`` (newest) and ``store.sqlite.bak.1``.

When: after an import (:meth:`Workspace.create`), after each saved analysis, and during review
in a background thread once the newest backup is :data:`BACKUP_INTERVAL_S` old or
:data:`BACKUP_EVERY_EVENTS` label events were written since the last one, and the newest is at
least :data:`BACKUP_MIN_SPACING_S` old (and ten times as old as this process's last backup
took), so that big workspaces are not copied back to back (the relabel that triggers it
returns at once).

Restoring (:func:`restore_workspace`) copies the newest sound backup into place, then appends
every label event of the damaged log newer than the backup that can still be read (rows are
read by id range, ranges that fail are split down to single rows) and recomputes the derived
state from the log. The damaged file is renamed ``store.sqlite.damaged-<time>``, never deleted.

A backup is the database alone: the files under ``artifacts/`` (embedding segments, neighbour
graphs) are caches, which the database names with their size and SHA-256, and they are neither
copied nor restored. What a restored database finds there is safe all the same: every file name
is fresh (no write ever reuses one) and segments are never rewritten, so a file its records
name is either the very file it recorded (checksum equal: used) or missing or changed (logged,
its record dropped, its vectors embedded again, its graph rebuilt). Files written after the
backup are named by no record of the restored database and are removed by
:meth:`Workspace.prune_artifacts` (the next stored graph runs it). Restoring from a backup older
than schema version 7 moves the backup's embedding and graph rows into new files.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from data.store.base import (
    ACTIONS,
    DB_NAME,
    DamagedWorkspace,
    StoreError,
    damage_from_error,
    database_problem,
    diagnose,
    forget_damage,
    upgrade_schema,
)

log = logging.getLogger(__name__)

BACKUP_DIR = "backups"
BACKUP_NAME = DB_NAME + ".bak"
KEEP = 2
BACKUP_INTERVAL_S = 300.0
BACKUP_EVERY_EVENTS = 500
# ... but never sooner than this after the newest backup (any process's), nor sooner than
# BACKUP_SPACING_FACTOR times this process's last backup took: a backup copies the whole file
# (8-22 s at 1M rows, bench/results/team-cpu2-20261130-run2.md), and back to back, as 8
# reviewers over 2 replicas triggered them, they kept commits' p95 at 55-94 ms instead of 18.
BACKUP_MIN_SPACING_S = 30.0
BACKUP_SPACING_FACTOR = 10.0
# Until this process has timed a backup of its own, one is assumed to copy this many bytes a
# second (7-10 s for the 717 MiB workspace of 1M rows here).
BACKUP_BYTES_PER_S = 100e6
# A review backup in progress in any process holds this file (O_EXCL), so replicas do not copy
# the same workspace at once; one older than BACKUP_LOCK_STALE_S was left by a killed process.
BACKUP_LOCK = "backup.lock"
BACKUP_LOCK_STALE_S = 1800.0
# A failed background backup (e.g. the database is damaged) is not retried sooner than this.
RETRY_AFTER_S = 60.0
# Temporary files older than this were left by a killed process, not by a backup in progress.
STALE_TMP_S = 3600.0
EVENT_COLUMNS = (
    "id, sample_id, action, old_label, new_label, old_excluded, new_excluded, reviewer,"
    " created_at, batch_id, undoes_batch, old_text, new_text"
)
# The same from a log older than schema version 5 (no text columns: no text events).
_V4_EVENT_COLUMNS = EVENT_COLUMNS.replace("old_text, new_text", "NULL, NULL")


@dataclass(frozen=True)
class BackupInfo:
    """One backup file and when it was taken."""

    path: Path
    taken_at: datetime

    @property
    def when(self) -> str:
        return self.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class RestorePlan:
    """What restoring would do: the backup, the last label event it holds (``backup_version``),
    the newer events of the damaged log that can be read and kept, and how many newer ones
    cannot (None when the damaged log's length is unknown)."""

    backup: BackupInfo | None
    backup_version: int = 0
    newer_events: int = 0
    unreadable: int | None = 0


@dataclass(frozen=True)
class RestoreReport:
    """What a restore did; ``damaged_path`` is where the damaged file now is."""

    backup: BackupInfo
    backup_version: int
    kept_events: int
    unreadable: int | None
    damaged_path: Path
    label_version: int

    def describe(self) -> str:
        lost = (
            f"; {self.unreadable:,} newer event(s) could not be read"
            if self.unreadable
            else ("" if self.unreadable == 0 else "; the damaged log's end could not be read")
        )
        return (
            f"Restored the backup from {self.backup.when} (label events up to "
            f"#{self.backup_version:,}) and kept {self.kept_events:,} newer label event(s) from "
            f"the damaged file{lost}. The damaged file is kept as {self.damaged_path}."
        )


# What a PostgreSQL workspace says when asked for a file backup or a restore: its data are the
# database's, and so are its backups.
PG_BACKUPS = (
    "The workspace at {folder} lives in the PostgreSQL schema {schema!r}: its backups are the "
    "database's own. Back the schema up with `pg_dump --schema={schema} ...` (or the server's "
    "base backups and WAL archive), and restore it with pg_restore; Second Look's file backups "
    "and restore (backups/, cli.py backup|restore) are for SQLite workspaces."
)


def _refuse_postgres(folder: Path) -> None:
    from data.store.base import read_marker

    marker = read_marker(folder)
    if marker is not None:
        raise StoreError(PG_BACKUPS.format(folder=folder, schema=marker["schema"]))


# -- writing backups ---------------------------------------------------------------------
def backup_paths(folder: str | os.PathLike) -> list[Path]:
    """The workspace's backup files that exist, newest first."""
    bdir = Path(folder) / BACKUP_DIR
    names = [BACKUP_NAME] + [f"{BACKUP_NAME}.{i}" for i in range(1, KEEP)]
    return [bdir / name for name in names if (bdir / name).is_file()]


def newest_backup(folder: str | os.PathLike) -> BackupInfo | None:
    """The newest backup (not checked; :func:`plan_restore` checks), or None."""
    for path in backup_paths(folder):
        try:
            return BackupInfo(path, datetime.fromtimestamp(path.stat().st_mtime, UTC))
        except OSError:
            continue
    return None


def write_backup(db_path: Path) -> Path:
    """Snapshot the database at ``db_path`` into its workspace's ``backups/``; returns the
    backup's path. Raises :class:`DamagedWorkspace` (keeping the older backups) when the
    snapshot fails its check."""
    bdir = db_path.parent / BACKUP_DIR
    bdir.mkdir(exist_ok=True)
    _remove_stale(bdir)
    tmp = bdir / f"{BACKUP_NAME}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        try:
            _snapshot(db_path, tmp)
        except sqlite3.DatabaseError as exc:
            problem = damage_from_error(exc, db_path)
            if problem is None:
                raise
            raise DamagedWorkspace(db_path.parent, problem) from exc
        target = bdir / BACKUP_NAME
        for i in range(KEEP - 1, 0, -1):
            older = bdir / (BACKUP_NAME if i == 1 else f"{BACKUP_NAME}.{i - 1}")
            if older.exists():
                os.replace(older, bdir / f"{BACKUP_NAME}.{i}")
        os.replace(tmp, target)
        _fsync_dir(bdir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _snapshot(db_path: Path, out: Path) -> None:
    src = sqlite3.connect(_ro_uri(db_path), uri=True)
    dst = sqlite3.connect(out)
    try:
        # No journal and no syncs while copying: the file is fsynced once, at the end.
        dst.execute("PRAGMA journal_mode=OFF")
        dst.execute("PRAGMA synchronous=OFF")
        src.backup(dst)  # pages=-1: one step, so a consistent snapshot
    finally:
        dst.close()
        src.close()
    dst = sqlite3.connect(out, isolation_level=None)
    try:
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        problem = database_problem(dst, full=True)
    finally:
        dst.close()
    if problem is not None:
        raise DamagedWorkspace(db_path.parent, problem)
    _fsync(out)


def _expected_backup_seconds(db_path: Path) -> float:
    try:
        return db_path.stat().st_size / BACKUP_BYTES_PER_S
    except OSError:
        return 0.0


def _take_backup_lock(folder: Path) -> bool:
    """Create ``backups/backup.lock`` if no process holds it (a stale one is taken over)."""
    lock = folder / BACKUP_DIR / BACKUP_LOCK
    lock.parent.mkdir(exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime < BACKUP_LOCK_STALE_S:
                    return False
                lock.unlink()
            except OSError:
                return False
            continue
        except OSError:
            return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)  # (a file of its own: closing it touches no lock SQLite holds)
        return True
    return False


def _release_backup_lock(folder: Path) -> None:
    try:
        (folder / BACKUP_DIR / BACKUP_LOCK).unlink()
    except OSError:
        pass


def _remove_stale(bdir: Path) -> None:
    for path in bdir.glob(f"{BACKUP_NAME}.tmp-*"):
        try:
            if time.time() - path.stat().st_mtime > STALE_TMP_S:
                path.unlink()
        except OSError:
            continue


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # A rename is durable once its directory is synced.
    try:
        _fsync(path)
    except OSError:  # some filesystems refuse to fsync a directory
        pass


def _ro_uri(path: Path) -> str:
    return f"{Path(path).resolve().as_uri()}?mode=ro"


class BackupMixin:
    """Backups for :class:`Workspace`: after imports and analyses, and during review."""

    backup_interval_s: float = BACKUP_INTERVAL_S
    backup_every_events: int = BACKUP_EVERY_EVENTS
    backup_min_spacing_s: float = BACKUP_MIN_SPACING_S
    backup_spacing_factor: float = BACKUP_SPACING_FACTOR
    _last_backup_seconds: float = 0.0
    _backup_thread: threading.Thread | None = None
    _events_since_backup: int = 0
    _backup_tried_at: float = float("-inf")

    def backup(self, *, quiet: bool = False) -> Path | None:
        """Take a backup now (blocking; ~250 ms on the 38k-row demo workspace) and return its
        path. ``quiet``: log a failure and return None instead of raising (the work the
        backup follows is saved already; a failed safety net must not fail it).

        A PostgreSQL workspace has no file to copy: asked plainly, this says where its backups
        are (:data:`PG_BACKUPS`); ``quiet`` (after an analysis) it does nothing.
        """
        if self.dialect.name != "sqlite":
            if quiet:
                return None
            raise StoreError(PG_BACKUPS.format(folder=self.folder, schema=self.schema))
        started = time.monotonic()
        try:
            path = write_backup(self.db_path)
        except Exception as exc:
            if not quiet:
                raise
            log.warning("Backup of the workspace at %s failed: %s", self.folder, exc)
            return None
        self._events_since_backup = 0
        self._last_backup_seconds = time.monotonic() - started
        return path

    def _backup_if_due(self, n_events: int) -> None:
        """After label events: start a background backup when one is due."""
        if self.dialect.name != "sqlite":
            return  # the database's own backups cover it
        with self._lock:
            self._events_since_backup += n_events
            running = self._backup_thread is not None and self._backup_thread.is_alive()
            if running or time.monotonic() - self._backup_tried_at < RETRY_AFTER_S:
                return
            newest = newest_backup(self.folder)
            age = time.time() - newest.taken_at.timestamp() if newest else float("inf")
            took = self._last_backup_seconds or _expected_backup_seconds(self.db_path)
            spacing = max(self.backup_min_spacing_s, self.backup_spacing_factor * took)
            if age < self.backup_interval_s and (
                self._events_since_backup < self.backup_every_events or age < spacing
            ):
                return
            if not _take_backup_lock(self.folder):  # another process is copying it right now
                return
            self._backup_tried_at = time.monotonic()
            self._events_since_backup = 0
            self._backup_thread = threading.Thread(
                target=self._backup_quietly, name=f"backup {self.folder.name}", daemon=True
            )
            self._backup_thread.start()

    def _backup_quietly(self) -> None:
        try:
            if self.backup(quiet=True) is not None:
                self._backup_tried_at = float("-inf")
        finally:
            _release_backup_lock(self.folder)

    def wait_for_backup(self, timeout: float | None = None) -> None:
        """Wait for a background backup in progress, if any."""
        thread = self._backup_thread
        if thread is not None:
            thread.join(timeout)

    def close(self) -> None:
        self.wait_for_backup()
        super().close()


# -- salvaging label events --------------------------------------------------------------
@dataclass
class Salvage:
    """Label events read from a damaged log: the valid ones in id order, and how many of the
    ids the log claims (up to ``top``) could not be read (None when ``top`` is unknown)."""

    events: list[tuple]
    unreadable: int | None


def salvage_events(
    db_path: Path, after_id: int, *, label_names: set[str], sample_ids: set[int]
) -> Salvage:
    """The label events with id > ``after_id`` that can still be read from ``db_path``.

    Reads through a read-only connection (the damaged file and its WAL stay as they are).
    Ids are dense (AUTOINCREMENT, an append-only log), so the ids up to the highest one the
    file knows that are missing or garbled (an unknown action, label or sample) count as
    unreadable.
    """
    try:
        conn = sqlite3.connect(_ro_uri(db_path), uri=True)
    except sqlite3.Error:
        return Salvage([], None)
    try:
        top = _highest_event_id(conn)
        columns = _event_columns(conn)
        if top is not None:
            rows = _read_tolerantly(conn, after_id + 1, top, columns)
            rows += _try(_read_range, conn, top + 1, 2**62, columns) or []
        else:
            rows = _scan_unbounded(conn, after_id + 1, columns=columns)
    finally:
        conn.close()
    valid = [r for r in rows if _valid_event(r, label_names, sample_ids)]
    known = None if top is None else max(top, *(r[0] for r in valid), after_id)
    return Salvage(valid, None if known is None else known - after_id - len(valid))


def _highest_event_id(conn: sqlite3.Connection) -> int | None:
    found = [
        _try(_scalar, conn, "SELECT MAX(id) FROM label_events"),
        _try(_scalar, conn, "SELECT seq FROM sqlite_sequence WHERE name = 'label_events'"),
    ]
    ids = [int(v) for v in found if isinstance(v, int)]
    return max(ids) if ids else None


def _scalar(conn: sqlite3.Connection, sql: str):
    row = conn.execute(sql).fetchone()
    return None if row is None else row[0]


def _try(fn, *args):
    """``fn(*args)``, or None when the damaged file makes it fail."""
    try:
        return fn(*args)
    except sqlite3.Error:
        return None


def _event_columns(conn: sqlite3.Connection) -> str:
    """What to select from this log's ``label_events``: :data:`EVENT_COLUMNS`, with NULL texts
    when the file predates them (a damaged version-4 workspace that was never upgraded)."""
    have = _try(lambda: {r[1] for r in conn.execute("PRAGMA table_info(label_events)")})
    return _V4_EVENT_COLUMNS if have and "new_text" not in have else EVENT_COLUMNS


def _read_range(
    conn: sqlite3.Connection, lo: int, hi: int, columns: str = EVENT_COLUMNS
) -> list[tuple]:
    if lo == hi:  # a point lookup: a range scan steps on to the next page, maybe a damaged one
        sql = f"SELECT {columns} FROM label_events WHERE id = ?"
        return conn.execute(sql, (lo,)).fetchall()
    sql = f"SELECT {columns} FROM label_events WHERE id BETWEEN ? AND ? ORDER BY id"
    return conn.execute(sql, (lo, hi)).fetchall()


def _read_tolerantly(
    conn: sqlite3.Connection, lo: int, hi: int, columns: str = EVENT_COLUMNS
) -> list[tuple]:
    """Rows with ``lo <= id <= hi``: a range that fails is halved until single ids, so a
    damaged page loses only the rows it holds."""
    rows: list[tuple] = []
    pending = [(lo, hi)]
    while pending:
        a, b = pending.pop()
        if a > b:
            continue
        try:
            rows += _read_range(conn, a, b, columns)
        except sqlite3.Error:
            if a < b:
                mid = (a + b) // 2
                pending += [(mid + 1, b), (a, mid)]  # popped low half first: id order
    return rows


def _scan_unbounded(
    conn: sqlite3.Connection, lo: int, chunk: int = 4096, *, columns: str = EVENT_COLUMNS
) -> list[tuple]:
    """Without a known last id: read chunk after chunk until one reads cleanly and is empty,
    or 16 in a row yield nothing."""
    rows: list[tuple] = []
    barren = 0
    while barren < 16:
        clean = _try(_read_range, conn, lo, lo + chunk - 1, columns)
        got = clean if clean is not None else _read_tolerantly(conn, lo, lo + chunk - 1, columns)
        if clean == []:
            break
        rows += got
        barren = 0 if got else barren + 1
        lo += chunk
    return rows


def _valid_event(row: tuple, label_names: set[str], sample_ids: set[int]) -> bool:
    """A row that could be a real event (a damaged page can decode to garbage)."""
    _, sample_id, action, old, new, old_ex, new_ex, reviewer, created, batch, undoes = row[:11]
    old_text, new_text = row[11:13]
    return (
        sample_id in sample_ids
        and action in ACTIONS
        and old in label_names
        and new in label_names
        and old_ex in (0, 1)
        and new_ex in (0, 1)
        and isinstance(reviewer, str)
        and bool(reviewer.strip())
        and isinstance(created, str)
        and isinstance(batch, str)
        and (undoes is None or isinstance(undoes, str))
        and (old_text is None or isinstance(old_text, str))
        and (new_text is None or isinstance(new_text, str))
        and (action != "repair_text" or isinstance(new_text, str))
    )


# -- restoring ---------------------------------------------------------------------------
def _sound_backup(folder: Path) -> tuple[BackupInfo, int, set[str], set[int]] | None:
    """The newest backup that passes its check, with its last event id, label names and
    sample ids."""
    import json

    for path in backup_paths(folder):
        try:
            conn = sqlite3.connect(_ro_uri(path), uri=True)
            try:
                if database_problem(conn, full=True) is not None:
                    continue
                version = conn.execute("SELECT COALESCE(MAX(id), 0) FROM label_events")
                version = int(version.fetchone()[0])
                row = conn.execute("SELECT value FROM meta WHERE key = 'label_names'").fetchone()
                ids = {int(r[0]) for r in conn.execute("SELECT id FROM samples")}
            finally:
                conn.close()
            info = BackupInfo(path, datetime.fromtimestamp(path.stat().st_mtime, UTC))
            return info, version, set(json.loads(row[0])), ids
        except (sqlite3.Error, OSError, ValueError, TypeError):
            continue
    return None


def plan_restore(folder: str | os.PathLike) -> RestorePlan:
    """What :func:`restore_workspace` would do, without doing it."""
    folder = Path(folder).resolve()
    _refuse_postgres(folder)
    sound = _sound_backup(folder)
    if sound is None:
        return RestorePlan(None)
    backup, version, labels, ids = sound
    salvage = salvage_events(folder / DB_NAME, version, label_names=labels, sample_ids=ids)
    return RestorePlan(backup, version, len(salvage.events), salvage.unreadable)


def restore_workspace(folder: str | os.PathLike, *, force: bool = False) -> RestoreReport:
    """Replace a damaged workspace database by its newest sound backup plus every newer label
    event the damaged log still holds; returns what was done.

    The workspace must not be open elsewhere (close it first). ``force`` restores a database
    that is not damaged too (rolling analyses, jobs and runs back to the backup; label events
    are kept all the same).
    """
    folder = Path(folder).resolve()
    _refuse_postgres(folder)
    db_path = folder / DB_NAME
    if not db_path.exists():
        raise StoreError(f"No workspace at {folder} (no {DB_NAME} inside); nothing to restore.")
    if not force and diagnose(folder) is None:
        raise StoreError(
            f"The workspace at {folder} is not damaged: nothing to restore. (To roll it back to "
            "its backup anyway, keeping its label events: cli.py restore --force.)"
        )
    sound = _sound_backup(folder)
    if sound is None:
        raise StoreError(
            f"The workspace at {folder} has no sound backup to restore (none in "
            f"{folder / BACKUP_DIR}). The damaged file is left as it is; import the dataset "
            "again into a new workspace."
        )
    backup, version, labels, ids = sound
    salvage = salvage_events(db_path, version, label_names=labels, sample_ids=ids)
    tmp = folder / (DB_NAME + ".restoring")
    try:
        _build_restored(backup.path, tmp, salvage.events)
        damaged = _set_aside(db_path)
        try:
            os.replace(tmp, db_path)
        except OSError:
            _set_aside(damaged, back_to=db_path)  # never leave the folder without a database
            raise
        _fsync_dir(folder)
    finally:
        tmp.unlink(missing_ok=True)
    forget_damage(folder)
    from data.store.workspace import Workspace

    ws = Workspace(folder)  # checks the restored file
    try:
        ws.backup()
        label_version = ws.label_version()
    finally:
        ws.close()
    return RestoreReport(
        backup, version, len(salvage.events), salvage.unreadable, damaged, label_version
    )


def _build_restored(backup_path: Path, out: Path, events: list[tuple]) -> None:
    """The backup plus ``events`` (their original ids), with the derived state rebuilt."""
    from data.store.labels import LabelsMixin

    out.unlink(missing_ok=True)
    conn = sqlite3.connect(out, isolation_level=None)
    try:
        src = sqlite3.connect(_ro_uri(backup_path), uri=True)
        try:
            src.backup(conn)
        finally:
            src.close()
        conn.row_factory = sqlite3.Row
        # A backup taken before an upgrade has the older schema: upgraded here, the way an
        # open upgrades it, since rebuilding the state below reads the current column names.
        upgrade_schema(conn)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO label_events ({EVENT_COLUMNS}) VALUES ({','.join('?' * 13)})", events
        )
        LabelsMixin.rebuild_from_log(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    _fsync(out)


def _set_aside(db_path: Path, *, back_to: Path | None = None) -> Path:
    """Rename the damaged database and its -wal/-shm (so they stay together and the WAL is
    never replayed onto the restored file); returns the database's new path. ``back_to``
    undoes it: ``db_path`` is then the set-aside file."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = back_to or db_path.with_name(f"{DB_NAME}.damaged-{stamp}")
    for suffix in ("-wal", "-shm"):
        side = db_path.with_name(db_path.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    os.replace(db_path, aside)
    return aside
