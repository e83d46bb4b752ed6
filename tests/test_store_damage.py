"""A damaged workspace is contained: one clear error, backups, and a restore that keeps the log.

Damage is made the way disks and people make it: a file cut short, bytes overwritten in a page
of one table, a file that is not a database at all. Each workspace is closed first, so that its
write-ahead log is checkpointed into the file and the damage cannot hide behind it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cli
from data.store import (
    DB_NAME,
    DamagedWorkspace,
    StoreError,
    Workspace,
    list_workspaces,
    plan_restore,
    restore_workspace,
    workspace_problem,
)
from data.store import backup as backup_module
from data.store.backup import BACKUP_DIR, BACKUP_NAME
from tests.conftest import add_analysis

ROOT = Path(__file__).resolve().parent.parent


# -- making damage -----------------------------------------------------------------------
def page_size(db: Path) -> int:
    return int.from_bytes(db.read_bytes()[16:18], "big")


def root_page(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()[0]
    finally:
        conn.close()


def smash_page(db: Path, page: int) -> None:
    """Overwrite a b-tree page's header (its type byte first): SQLite refuses the page."""
    offset = (page - 1) * page_size(db) + (100 if page == 1 else 0)
    with open(db, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 12)


def event_leaves(db: Path) -> list[tuple[int, int, int]]:
    """The label_events leaf pages under its root, as (page, first id, last id)."""
    data, size = db.read_bytes(), page_size(db)
    root = root_page(db, "label_events")
    page = data[(root - 1) * size : root * size]
    assert page[0] == 0x05, "label_events must span several pages for this test"
    n_cells = int.from_bytes(page[3:5], "big")
    leaves, low = [], 1
    for i in range(n_cells):
        at = int.from_bytes(page[12 + 2 * i : 14 + 2 * i], "big")
        child = int.from_bytes(page[at : at + 4], "big")
        key, shift = 0, at + 4
        while True:  # the cell's varint: the child's largest rowid
            byte = page[shift]
            key = (key << 7) | (byte & 0x7F)
            shift += 1
            if byte < 0x80:
                break
        leaves.append((child, low, key))
        low = key + 1
    return leaves


def events_of(folder: Path) -> pd.DataFrame:
    ws = Workspace(folder)
    try:
        return ws.events().sort_values("id").reset_index(drop=True)
    finally:
        ws.close()


def labels_of(folder: Path) -> list[str]:
    ws = Workspace(folder)
    try:
        return ws.samples()["label"].tolist()
    finally:
        ws.close()


def relabel_rounds(ws: Workspace, rounds: int, reviewer: str = "ana") -> None:
    """``rounds`` batches, each relabelling every sample (one event per sample)."""
    names = ws.label_names
    n = ws.counts()["n"]
    for r in range(rounds):
        ws.apply_actions(
            [(i, "relabel", names[(i + r) % len(names)]) for i in range(n)], reviewer=reviewer
        )


@pytest.fixture
def made(tmp_path, sentiment_prepared):
    """Make closed workspaces by name under tmp_path/home."""

    def make(name: str = "reviews") -> Path:
        ws = Workspace.create(tmp_path / "home" / name, sentiment_prepared, name=name)
        ws.close()
        return ws.folder

    return make


# -- one clear error on open -------------------------------------------------------------
def test_a_truncated_database_is_refused_with_one_clear_error(made):
    folder = made("reviews")
    db = folder / DB_NAME
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size - 1000)
    with pytest.raises(DamagedWorkspace) as caught:
        Workspace(folder)
    message = str(caught.value)
    assert isinstance(caught.value, StoreError)
    assert "'reviews'" in message and str(folder) in message  # names the workspace
    assert "truncated" in message  # what is wrong
    assert f"python cli.py restore {folder}" in message and "Restore" in message  # what to do
    assert caught.value.backup is not None


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("samples page", "SQLite"),
        ("header", "not a SQLite database"),
        ("not a database", "not a SQLite database"),
        ("empty", "empty"),
        ("table dropped", "lacks the table(s) label_events"),
    ],
)
def test_overwritten_bytes_are_refused_with_the_same_error(made, damage, words):
    folder = made("reviews")
    db = folder / DB_NAME
    if damage == "samples page":
        smash_page(db, root_page(db, "samples"))
    elif damage == "header":
        with open(db, "r+b") as fh:
            fh.write(b"\x00" * 16)
    elif damage == "not a database":
        db.write_bytes(b"id,text,label\n1,hello,positive\n" * 500)
    elif damage == "empty":
        db.write_bytes(b"")
    else:
        conn = sqlite3.connect(db)
        conn.execute("DROP TABLE label_events")
        conn.close()
    with pytest.raises(DamagedWorkspace, match="damaged") as caught:
        Workspace(folder)
    assert words in caught.value.problem
    assert "'reviews'" in str(caught.value)


def test_a_large_database_gets_a_cheaper_check_of_its_log(made, monkeypatch):
    import data.store.base

    monkeypatch.setattr(data.store.base, "FULL_CHECK_MAX_BYTES", 0)  # every file is "large"
    folder = made("reviews")
    db = folder / DB_NAME
    smash_page(db, root_page(db, "samples"))
    Workspace(folder).close()  # not checked on open: met later, as an SQLite error
    smash_page(db, root_page(db, "label_events"))
    with pytest.raises(DamagedWorkspace, match="damaged"):
        Workspace(folder)


def test_other_workspaces_open_and_the_damaged_one_stays_listed_and_marked(made):
    good, bad = made("good"), made("bad")
    (bad / DB_NAME).write_bytes(b"\x00" * 4096)
    assert set(list_workspaces(good.parent)) == {good, bad}
    assert workspace_problem(bad) is not None and workspace_problem(good) is None
    ws = Workspace(good)
    ws.relabel(0, "negative", reviewer="ana")
    assert ws.label_version() == 1
    ws.close()
    # Damage deep in the file is not in its header: once met on open, it is remembered.
    smash_page(good / DB_NAME, root_page(good / DB_NAME, "samples"))
    assert workspace_problem(good) is None
    with pytest.raises(DamagedWorkspace):
        Workspace(good)
    assert "SQLite" in workspace_problem(good)


# -- backups -----------------------------------------------------------------------------
def backup_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0]
    finally:
        conn.close()


def test_backups_follow_the_import_the_analyses_and_the_review(tmp_path, sentiment_prepared):
    ws = Workspace.create(tmp_path / "ws", sentiment_prepared)
    newest = ws.folder / BACKUP_DIR / BACKUP_NAME
    assert newest.is_file() and backup_version(newest) == 0  # after the import

    ws.relabel(0, "negative", reviewer="ana")  # the import's backup is fresh: none due
    ws.wait_for_backup()
    assert backup_version(newest) == 0 and not (newest.parent / f"{BACKUP_NAME}.1").exists()

    add_analysis(ws)  # after each analysis, with the labels it used
    conn = sqlite3.connect(newest)
    assert conn.execute("SELECT COUNT(*) FROM analyses").fetchone()[0] == 1
    conn.close()
    assert backup_version(newest) == 1
    assert backup_version(newest.parent / f"{BACKUP_NAME}.1") == 0  # the previous one is kept

    ws.backup_every_events = 5  # during review: after enough events (or time)
    ws.backup_min_spacing_s = ws.backup_spacing_factor = 0.0  # (one was just taken)
    relabel_rounds(ws, 1)
    ws.wait_for_backup()
    assert backup_version(newest) == ws.label_version() == 25
    assert sorted(p.name for p in newest.parent.iterdir()) == [BACKUP_NAME, f"{BACKUP_NAME}.1"]

    ws.backup_every_events, ws.backup_interval_s = 10**9, 0.0  # ... or after enough time
    ws._backup_tried_at = float("-inf")
    ws.relabel(1, "positive", reviewer="ana")
    ws.wait_for_backup()
    assert backup_version(newest) == 26
    ws.close()


def test_a_backup_is_a_consistent_snapshot_while_reviewers_write(tmp_path, sentiment_prepared):
    ws = Workspace.create(tmp_path / "ws", sentiment_prepared)
    stop = threading.Event()

    def review() -> None:
        other = Workspace(ws.folder)  # another connection, as another process would have
        while not stop.is_set():
            relabel_rounds(other, 1, reviewer="bo")
        other.close()

    writer = threading.Thread(target=review)
    writer.start()
    try:
        for i in range(5):
            committed = ws.label_version()  # committed before the backup starts: in it
            path = ws.backup()
            copy = tmp_path / f"copy{i}"
            copy.mkdir()
            (copy / DB_NAME).write_bytes(path.read_bytes())
            snap = Workspace(copy)  # passes the full check on open
            before = snap.samples()
            snap.rebuild_state()  # the materialised labels agree with the log in the snapshot
            assert before.equals(snap.samples())
            assert snap.label_version() % 24 == 0  # whole batches only
            assert snap.label_version() >= committed
            snap.close()
    finally:
        stop.set()
        writer.join()
    ws.close()


def test_a_damaged_database_never_replaces_a_sound_backup(made):
    folder = made("reviews")
    ws = Workspace(folder)
    ws.relabel(0, "negative", reviewer="ana")
    ws.backup()
    ws.close()
    newest = folder / BACKUP_DIR / BACKUP_NAME
    before = newest.read_bytes()
    smash_page(folder / DB_NAME, root_page(folder / DB_NAME, "samples"))
    from data.store.backup import write_backup

    with pytest.raises(DamagedWorkspace):
        write_backup(folder / DB_NAME)
    assert newest.read_bytes() == before
    assert [p.name for p in newest.parent.iterdir() if "tmp" in p.name] == []


# -- restore -----------------------------------------------------------------------------
def test_restore_keeps_the_newer_events_of_a_damaged_log(made):
    folder = made("reviews")
    ws = Workspace(folder)
    relabel_rounds(ws, 1)
    ws.backup()  # the backup holds events 1..24
    relabel_rounds(ws, 3)  # 72 newer events, and an undo of the last batch: 24 more
    ws.undo(reviewer="ana")
    ws.set_excluded(3, reviewer="bo")
    ws.close()
    events, labels = events_of(folder), labels_of(folder)
    assert len(events) == 24 + 72 + 24 + 1

    smash_page(folder / DB_NAME, root_page(folder / DB_NAME, "samples"))
    with pytest.raises(DamagedWorkspace):
        Workspace(folder)
    plan = plan_restore(folder)
    assert (plan.backup_version, plan.newer_events, plan.unreadable) == (24, 97, 0)

    report = restore_workspace(folder)
    assert (report.backup_version, report.kept_events, report.unreadable) == (24, 97, 0)
    assert "kept 97 newer label event(s)" in report.describe()
    assert report.damaged_path.exists() and report.damaged_path.name.startswith(
        f"{DB_NAME}.damaged-"
    )
    restored = events_of(folder)
    pd.testing.assert_frame_equal(restored, events)  # the whole log, ids and all
    assert labels_of(folder) == labels  # derived state rebuilt from it
    ws = Workspace(folder)
    assert ws.sample(3)["excluded"] and ws.counts()["reviewed"] == 24
    ws.relabel(5, "negative", reviewer="ana")  # and review goes on
    assert ws.label_version() == 24 + 97 + 1
    ws.close()


def test_restore_reads_around_a_damaged_page_of_the_log(made):
    folder = made("reviews")
    ws = Workspace(folder)
    ws.backup_every_events = 10**9
    relabel_rounds(ws, 1)
    ws.backup()
    relabel_rounds(ws, 20)  # 480 newer events, on several pages
    ws.close()
    events = events_of(folder)
    db = folder / DB_NAME
    leaves = [leaf for leaf in event_leaves(db) if leaf[1] > 24]
    page, first, last = leaves[len(leaves) // 2]  # a page in the middle of the newer events
    smash_page(db, page)

    report = restore_workspace(folder)
    lost = last - first + 1
    assert report.unreadable == lost and report.kept_events == 480 - lost
    restored = events_of(folder)
    expected = events[(events["id"] < first) | (events["id"] > last)].reset_index(drop=True)
    pd.testing.assert_frame_equal(restored, expected)
    assert restored["id"].max() == 24 + 480  # the newest events, after the damaged page, too


def test_restore_refuses_a_sound_workspace_and_one_without_a_backup(made):
    folder = made("reviews")
    with pytest.raises(StoreError, match="not damaged"):
        restore_workspace(folder)
    for path in (folder / BACKUP_DIR).iterdir():
        path.unlink()
    (folder / DB_NAME).write_bytes(b"garbage" * 1000)
    with pytest.raises(DamagedWorkspace, match="no backup"):
        Workspace(folder)
    with pytest.raises(StoreError, match="no sound backup"):
        restore_workspace(folder)
    assert (folder / DB_NAME).read_bytes() == b"garbage" * 1000  # left as it was


# -- the CLI -----------------------------------------------------------------------------
def test_cli_reports_a_damaged_workspace_and_restores_it(made, tmp_path, capsys, monkeypatch):
    folder = made("reviews")
    ws = Workspace(folder)
    ws.relabel(0, "negative", reviewer="ana")
    ws.close()
    smash_page(folder / DB_NAME, root_page(folder / DB_NAME, "samples"))

    proc = subprocess.run(
        [sys.executable, "cli.py", "export", str(folder), "--format", "csv", "--out", "x.csv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'reviews'" in proc.stderr and "damaged" in proc.stderr
    assert f"python cli.py restore {folder}" in proc.stderr

    assert cli.main(["restore", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "kept 1 newer label event(s)" in err and "damaged-" in err
    out = tmp_path / "curated.csv"
    assert cli.main(["export", str(folder), "--format", "csv", "--out", str(out)]) == 0
    assert pd.read_csv(out).loc[0, "label"] == "negative"
    assert cli.main(["restore", str(folder)]) == 2  # not damaged any more
    assert "not damaged" in capsys.readouterr().err

    # Damage met in the middle of a command (after a clean open) reads the same.
    import data.export

    def damaged_export(*args, **kwargs):
        smash_page(folder / DB_NAME, root_page(folder / DB_NAME, "samples"))
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(data.export, "export_dataset", damaged_export)
    assert cli.main(["export", str(folder), "--format", "csv", "--out", str(out)]) == 2
    assert "is damaged" in capsys.readouterr().err


# -- the app -----------------------------------------------------------------------------
def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def test_the_app_shows_a_damaged_workspace_and_restores_it(home, sentiment_prepared):
    good = Workspace.create(home / "good", sentiment_prepared, name="good")
    good.close()
    bad = Workspace.create(home / "bad", sentiment_prepared, name="bad")
    bad.relabel(2, "negative", reviewer="ana")
    bad.close()
    smash_page(bad.db_path, root_page(bad.db_path, "samples"))

    at = app()  # the Data page, on the newest workspace: the damaged one
    assert not at.exception, at.exception
    assert "The workspace bad is damaged" in at.error[0].value
    assert any("1 newer" in i.value for i in at.info)
    assert at.button(key="restore_workspace").label.startswith("Restore the backup from")
    assert any(e.label == "Import a dataset" for e in at.expander)  # imports stay reachable
    options = at.sidebar.selectbox[0].options
    assert "bad (damaged)" in options and "good" in options

    at.switch_page("app_pages/review.py")
    at.run()
    assert not at.exception, at.exception
    assert "damaged" in at.error[0].value
    assert not any("No dataset" in i.value for i in at.info)

    at.button(key="restore_workspace").click().run()
    assert not at.exception, at.exception
    assert any("Restored the backup" in s.value for s in at.success)
    assert "bad" in at.sidebar.selectbox[0].options
    assert labels_of(bad.folder)[2] == "negative"

    # The other workspace works all along.
    at.sidebar.selectbox[0].select(str(good.folder)).run()
    assert not at.exception, at.exception
    assert not at.error


def test_the_app_contains_damage_met_after_opening(home, sentiment_prepared, monkeypatch):
    ws = Workspace.create(home / "reviews", sentiment_prepared, name="reviews")
    ws.close()
    at = app()
    assert not at.exception and not at.error
    real_counts = Workspace.counts

    def counts(self):  # the page's next query meets the damage
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(Workspace, "counts", counts)
    at.run()  # the file is sound: a real bug, shown as one
    assert at.exception

    smash_page(ws.db_path, root_page(ws.db_path, "samples"))
    at.run()
    assert not at.exception, at.exception
    assert "The workspace reviews is damaged" in at.error[0].value
    monkeypatch.setattr(Workspace, "counts", real_counts)
    at.run()  # the next run meets it on open
    assert not at.exception, at.exception
    assert "damaged" in at.error[0].value


def test_checking_a_header_keeps_the_locks_that_protect_the_log(workspace):
    """The sidebar reads every workspace's header on each rerun. Closing a descriptor of the
    database drops all of this process's POSIX locks on it: a job process closing its own
    connection then took itself for the last user and deleted the WAL, and the reviewer's
    next "saved" relabel went to a deleted file (found in the browser, after an analysis)."""
    assert workspace_problem(workspace.folder) is None  # what the sidebar does
    assert workspace_problem(workspace.folder) is None  # and on the next rerun
    child = (
        "import sys; from data.store import Workspace; ws = Workspace(sys.argv[1]); "
        "ws.relabel(1, ws.label_names[0], reviewer='job'); ws.close()"
    )
    subprocess.run([sys.executable, "-c", child, str(workspace.folder)], check=True, cwd=ROOT)
    assert (workspace.folder / "store.sqlite-wal").exists()  # still in use by this process
    event = workspace.relabel(2, workspace.label_names[-1], reviewer="ana")  # "Saved"
    reader = (
        "import sys; from data.store import Workspace; "
        "print(Workspace(sys.argv[1]).label_version())"
    )
    seen = subprocess.run(
        [sys.executable, "-c", reader, str(workspace.folder)],
        check=True, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert int(seen.stdout.strip()) == event  # another process sees the acknowledged write


def test_review_backups_are_spaced_out(tmp_path, sentiment_prepared, monkeypatch):
    """Many events soon after a backup wait for the spacing: a backup copies the whole file, and
    back-to-back copies held up reviewers' commits (bench/results/team-cpu2-20261130-run2.md)."""
    ws = Workspace.create(tmp_path / "ws", sentiment_prepared)  # takes the first backup
    newest = ws.folder / "backups" / BACKUP_NAME
    ws.backup_every_events = 5
    relabel_rounds(ws, 1)  # 25 events, but the newest backup is seconds old
    ws.wait_for_backup()
    assert backup_version(newest) == 0
    ws.backup_min_spacing_s = 0.0
    ws._last_backup_seconds = 1000.0  # ... and ten times the last backup's own duration
    ws.relabel(1, "positive", reviewer="ana")
    ws.wait_for_backup()
    assert backup_version(newest) == 0
    ws._last_backup_seconds = 0.0  # not timed here yet: estimated from the file's size
    monkeypatch.setattr(backup_module, "BACKUP_BYTES_PER_S", 1.0)  # (a very slow disk)
    ws.relabel(1, "negative", reviewer="ana")
    ws.wait_for_backup()
    assert backup_version(newest) == 0
    ws.backup_spacing_factor = 0.0
    ws.relabel(2, "positive", reviewer="ana")
    ws.wait_for_backup()
    assert backup_version(newest) == ws.label_version()
    ws.close()


def test_one_review_backup_at_a_time_across_processes(tmp_path, sentiment_prepared):
    """Two replicas reaching their backup point together: the one that finds another's backup
    in progress (backups/backup.lock) leaves it at that; a lock left by a killed process is
    taken over."""
    ws = Workspace.create(tmp_path / "ws", sentiment_prepared)
    newest = ws.folder / BACKUP_DIR / BACKUP_NAME
    ws.backup_every_events, ws.backup_min_spacing_s, ws.backup_spacing_factor = 1, 0.0, 0.0
    lock = ws.folder / BACKUP_DIR / "backup.lock"
    lock.write_text("4242")  # another process is copying the workspace right now
    ws.relabel(0, "negative", reviewer="ana")
    ws.wait_for_backup()
    assert backup_version(newest) == 0 and lock.exists()
    old = time.time() - 3600
    os.utime(lock, (old, old))  # ... or was killed an hour ago
    ws._backup_tried_at = float("-inf")
    ws.relabel(1, "negative", reviewer="ana")
    ws.wait_for_backup()
    assert backup_version(newest) == ws.label_version() == 2
    assert not lock.exists()  # released after the backup
    ws.close()
