"""What differs between a workspace in an SQLite file and one in a PostgreSQL schema: where it
lives, how it is found, what it refuses. (The store's behaviour itself is tested on both by the
modules in ``tests/conftest.py:BOTH_BACKENDS``.)"""

from __future__ import annotations

import sqlite3

import pytest

from data.store import StoreError, Workspace, list_workspaces, workspace_problem
from data.store.base import DB_NAME, PG_MARKER, connect_postgres, is_workspace
from data.store.dialect import SQLITE, PgConnection, Row, pg_statement
from data.store.schema import PG_SCHEMA, SCHEMA
from tests.conftest import make_prepared
from tests.pg import fresh_database


@pytest.fixture
def team_db(monkeypatch):
    """SECOND_LOOK_DATABASE_URL set to a fresh database on the test cluster."""
    databases = fresh_database()
    url = next(databases)
    monkeypatch.setenv("SECOND_LOOK_DATABASE_URL", url)
    yield url
    databases.close()


def _schemas() -> set[str]:
    conn = connect_postgres(None)
    try:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ws\\_%'")
        return {r[0] for r in rows}
    finally:
        conn.close()


def test_statements_and_rows_speak_both_dialects():
    assert pg_statement("SELECT 1 WHERE a LIKE '%x' AND b = ?") == (
        "SELECT 1 WHERE a LIKE '%%x' AND b = %s"
    )
    names = ("id", "label")
    row = type("R", (Row,), {"__slots__": (), "_names": names, "_index": {"id": 0, "label": 1}})(
        (3, "pos")
    )
    assert row[0] == 3 and row["label"] == "pos" and dict(row) == {"id": 3, "label": "pos"}
    sample_id, label = row
    assert (sample_id, label) == (3, "pos")
    # A plain sqlite3 connection is SQLite: the statements the store always ran.
    assert SQLITE.as_int("a = b") == "(a = b)" and SQLITE.count_if("x") == "SUM(x)"
    assert SQLITE.hint == "+"


def test_the_two_schemas_have_the_same_tables_and_columns(team_db):
    lite = sqlite3.connect(":memory:")
    lite.executescript(SCHEMA)
    tables = [
        r[0]
        for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not r[0].startswith("samples_fts") and r[0] != "sqlite_sequence"
    ]
    expected = {t: [c[1] for c in lite.execute(f"PRAGMA table_info({t})")] for t in tables}
    conn = connect_postgres(None)
    try:
        conn.execute("CREATE SCHEMA parity")
        conn.execute("SET search_path TO parity")
        for statement in PG_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'parity' ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        conn.close()
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    assert found == expected


def test_a_postgresql_workspace_is_a_schema_named_in_its_folder(tmp_path, team_db):
    prepared = make_prepared(["a b c", "d e f"], ["x", "y"])
    ws = Workspace.create(tmp_path / "Отзывы 2024", prepared, name="reviews")
    assert ws.backend == "postgresql" and ws.schema.startswith("ws_2024_")
    assert isinstance(ws._conn, PgConnection)
    assert not (ws.folder / DB_NAME).exists() and (ws.folder / PG_MARKER).is_file()
    assert team_db.split("://")[1] not in (ws.folder / PG_MARKER).read_text()  # no URL in it
    assert is_workspace(ws.folder) and workspace_problem(ws.folder) is None
    assert list_workspaces(tmp_path) == [ws.folder]
    assert _schemas() == {ws.schema}
    ws.close()
    again = Workspace(tmp_path / "Отзывы 2024")  # found by its marker
    assert again.name == "reviews" and again.counts()["n"] == 2
    again.close()


def test_sqlite_workspaces_stay_sqlite_when_a_database_url_is_set(tmp_path, monkeypatch):
    ws = Workspace.create(tmp_path / "w", make_prepared(["a", "b"], ["x", "y"]))
    ws.close()
    databases = fresh_database()
    monkeypatch.setenv("SECOND_LOOK_DATABASE_URL", next(databases))
    try:
        again = Workspace(tmp_path / "w")  # opened by what its folder holds
        assert again.backend == "sqlite" and again.db_path.exists()
        again.close()
    finally:
        databases.close()


def test_opening_without_the_database_url_says_where_the_workspace_lives(
    tmp_path, team_db, monkeypatch
):
    ws = Workspace.create(tmp_path / "w", make_prepared(["a", "b"], ["x", "y"]))
    ws.close()
    monkeypatch.delenv("SECOND_LOOK_DATABASE_URL")
    with pytest.raises(StoreError, match=f"{ws.schema}.*SECOND_LOOK_DATABASE_URL is not set"):
        Workspace(tmp_path / "w")


def test_file_backups_and_restores_are_refused_with_the_databases_own_way(tmp_path, team_db):
    from data.store import plan_restore, restore_workspace

    ws = Workspace.create(tmp_path / "w", make_prepared(["a", "b"], ["x", "y"]))
    with pytest.raises(StoreError, match=f"pg_dump --schema={ws.schema}"):
        ws.backup()
    assert ws.backup(quiet=True) is None  # after an analysis: nothing to do, nothing faked
    ws.relabel(0, "y", reviewer="ana")
    ws.wait_for_backup()
    assert not (ws.folder / "backups").exists()
    for call in (plan_restore, restore_workspace):
        with pytest.raises(StoreError, match="backups are the database's own"):
            call(ws.folder)
    ws.close()


def test_a_failed_import_leaves_no_schema_and_no_workspace(tmp_path, team_db):
    import psycopg

    bad = make_prepared(["a", "b", "c"], ["x", "y", "x"])
    bad.frame.loc[2, "ext_id"] = bad.frame.loc[1, "ext_id"]  # duplicate id violates UNIQUE
    with pytest.raises(psycopg.IntegrityError):
        Workspace.create(tmp_path / "w", bad)
    with pytest.raises(StoreError, match="No workspace"):
        Workspace(tmp_path / "w")
    assert _schemas() == set()


def test_texts_with_nul_characters_are_refused_clearly(tmp_path, team_db):
    bad = make_prepared(["fine", "nul\x00inside"], ["x", "y"])
    with pytest.raises(StoreError, match="NUL"):
        Workspace.create(tmp_path / "w", bad)
    assert _schemas() == set()


def test_overwriting_drops_the_replaced_schema(tmp_path, team_db):
    prepared = make_prepared(["a", "b"], ["x", "y"])
    first = Workspace.create(tmp_path / "w", prepared)
    first.close()
    second = Workspace.create(tmp_path / "w", prepared, overwrite=True)
    assert second.schema != first.schema and _schemas() == {second.schema}
    second.close()


def test_a_schema_dropped_behind_the_stores_back_is_reported_plainly(tmp_path, team_db):
    ws = Workspace.create(tmp_path / "w", make_prepared(["a", "b"], ["x", "y"]))
    ws.close()
    conn = connect_postgres(None)
    conn.execute(f'DROP SCHEMA "{ws.schema}" CASCADE')
    conn.close()
    with pytest.raises(StoreError, match="does not exist.*pg_restore"):
        Workspace(tmp_path / "w")


def test_a_workspace_reconnects_after_the_server_drops_its_connection(tmp_path, team_db):
    """A restart or failover of PostgreSQL ends every connection; an app replica's cached
    workspace carries on at its next statement, and a transaction the drop cut is never half
    committed."""
    import psycopg

    ws = Workspace.create(tmp_path / "ws", make_prepared(["a b c", "d e f"], ["x", "y"]))

    def drop_connections() -> None:
        with psycopg.connect(team_db, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    drop_connections()
    assert ws.counts()["n"] == 2  # a read after the drop
    drop_connections()
    ws.relabel(0, "y", reviewer="ana")  # a write after the drop
    assert ws.sample(0)["label"] == "y"

    def cut(conn) -> None:  # the connection dies inside a transaction, after its first write
        conn.execute("UPDATE samples SET label = 'x' WHERE id = 1")
        drop_connections()
        conn.execute("UPDATE samples SET label = 'x' WHERE id = 0")

    with pytest.raises(psycopg.OperationalError):
        ws._write(cut)
    assert [ws.sample(i)["label"] for i in (0, 1)] == ["y", "y"]  # nothing of it committed
    assert len(ws.events()) == 1
    ws.close()
