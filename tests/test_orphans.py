"""Workspace schemas of the team database that no folder names (data/store/orphans.py)."""

from __future__ import annotations

import json

import pytest

import data.store.workspace as workspace_module
from data.store import StoreError, Workspace
from data.store.base import PG_MARKER, connect_postgres
from data.store.orphans import drop_orphans, find_orphans
from tests.conftest import make_prepared


@pytest.fixture
def team_db(monkeypatch):
    from tests.pg import fresh_database

    databases = fresh_database()
    monkeypatch.setenv("SECOND_LOOK_DATABASE_URL", next(databases))
    yield
    databases.close()


def crashed_import(folder, monkeypatch) -> None:
    """A PostgreSQL import that died after its commit, before writing the marker."""

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed before the marker")

    with monkeypatch.context() as m:
        m.setattr(workspace_module, "write_marker", crash)
        with pytest.raises(KeyboardInterrupt):
            Workspace.create(folder, make_prepared(["a b", "c d"], ["x", "y"]), name="lost")


def schemas() -> set[str]:
    conn = connect_postgres(None)
    try:
        return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
    finally:
        conn.close()


def backdate(schema: str, minutes: int) -> None:
    conn = connect_postgres(schema)
    conn.execute(
        "UPDATE meta SET value = ? WHERE key = 'created_at'",
        (json.dumps(f"2020-01-01T00:{minutes:02d}:00.000+00:00"),),
    )
    conn.close()


def test_a_crashed_import_leaves_an_orphan_that_is_listed_then_dropped(
    tmp_path, team_db, monkeypatch
):
    home = tmp_path / "home"
    kept = Workspace.create(home / "kept", make_prepared(["e f", "g h"], ["x", "y"]), name="kept")
    kept_schema = kept.schema
    kept.close()
    before = schemas()
    crashed_import(home / "lost", monkeypatch)
    (orphan,) = schemas() - before
    assert not (home / "lost" / PG_MARKER).exists()
    # A schema that is no workspace (no meta table, or another name) is never listed.
    conn = connect_postgres(None)
    conn.execute("CREATE SCHEMA ws_not_ours")
    conn.execute("CREATE SCHEMA other_app")
    conn.execute("CREATE TABLE other_app.meta (key TEXT, value TEXT)")
    conn.close()

    assert find_orphans(home) == []  # just created: maybe its marker is being written now
    (found,) = find_orphans(home, min_age_minutes=0)
    assert (found.schema, found.name) == (orphan, "lost")
    backdate(orphan, 5)
    backdate(kept_schema, 6)  # old but named by its folder's marker
    assert [o.schema for o in find_orphans(home)] == [orphan]

    assert drop_orphans(find_orphans(home), home) == [orphan]
    assert orphan not in schemas() and {"ws_not_ours", "other_app", kept_schema} <= schemas()
    assert Workspace(home / "kept").counts()["n"] == 2
    assert find_orphans(home, min_age_minutes=0) == []


def test_nothing_is_dropped_while_a_marker_is_unreadable_or_names_it_again(
    tmp_path, team_db, monkeypatch
):
    home = tmp_path / "home"
    crashed_import(home / "lost", monkeypatch)
    (found,) = find_orphans(home, min_age_minutes=0)
    # The folder got its marker after the listing (a slow disk): the drop leaves it.
    (home / "lost" / PG_MARKER).write_text(
        json.dumps({"backend": "postgresql", "schema": found.schema})
    )
    assert drop_orphans([found], home) == []
    assert Workspace(home / "lost").counts()["n"] == 2
    (home / "lost" / PG_MARKER).write_text("{garbled")
    with pytest.raises(StoreError, match="no schema is taken for an orphan"):
        find_orphans(home, min_age_minutes=0)
    assert found.schema in schemas()


def test_cli_lists_by_default_and_drops_only_when_asked(tmp_path, team_db, monkeypatch, capsys):
    import cli

    home = tmp_path / "home"
    crashed_import(home / "lost", monkeypatch)
    (found,) = find_orphans(home, min_age_minutes=0)
    assert cli.main(["orphans", "--home", str(home), "--min-age", "0"]) == 0
    out = capsys.readouterr()
    assert found.schema in out.out and "--drop" in out.err
    assert found.schema in schemas()
    assert cli.main(["orphans", "--home", str(home), "--min-age", "0", "--drop"]) == 0
    assert found.schema not in schemas()
