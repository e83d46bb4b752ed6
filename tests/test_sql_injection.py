"""Every text a user or a dataset can put into the store is data, never SQL: quotes,
``; DROP TABLE``, comment markers and full-text-search syntax go into every text field (texts,
ids, labels, metadata, the workspace name, reviewer names, searches, run and job fields) and
come back exactly, with every table still there."""

from __future__ import annotations

from data.export import curated_frame
from data.store import Workspace
from data.store.base import PG_REQUIRED_TABLES, REQUIRED_TABLES
from tests.conftest import make_prepared

HOSTILE = [
    "x'); DROP TABLE samples; --",
    'a" OR "1"="1',
    "'; DELETE FROM label_events WHERE '1'='1",
    "Robert'); DROP TABLE label_events;--",
    "/* comment */ SELECT * FROM meta --",
    "NEAR(a b) OR c* AND NOT d ^e",  # FTS5 query syntax
    "%_% \\ ? :name $1 %s %(x)s",  # LIKE wildcards and every placeholder style
]
LABELS = ["neg'; DROP TABLE runs; --", 'pos" --']


def hostile_workspace(tmp_path) -> Workspace:  # (on the test's backend: store_backend)
    texts = [f"{h} text {i}" for i, h in enumerate(HOSTILE * 2)]
    labels = [LABELS[i % 2] for i in range(len(texts))]
    metas = [{"source'; DROP TABLE meta; --": h} for h in HOSTILE * 2]
    prepared = make_prepared(texts, labels, metas=metas)
    prepared.frame["ext_id"] = [f"{h}#{i}" for i, h in enumerate(HOSTILE * 2)]
    return Workspace.create(tmp_path / "ws", prepared, name=HOSTILE[0])


def tables(ws: Workspace) -> set[str]:
    if ws.dialect.name == "postgresql":
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
        return {r[0] for r in ws._read(sql, (ws.schema,))}
    return {r[0] for r in ws._read("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_hostile_strings_are_stored_and_read_back_exactly(tmp_path, store_backend):
    ws = hostile_workspace(tmp_path)
    assert ws.name == HOSTILE[0]
    rows = ws.samples(with_meta=True)
    assert list(rows["text"]) == [f"{h} text {i}" for i, h in enumerate(HOSTILE * 2)]
    assert set(ws.label_names) == set(LABELS)
    assert ws.sample_ids([f"{HOSTILE[1]}#1"]) == [1]

    for i, reviewer in enumerate(HOSTILE):
        ws.relabel(i, LABELS[(i + 1) % 2], reviewer=reviewer)
    events = ws.events()
    assert sorted(events["reviewer"]) == sorted(HOSTILE)
    ws.undo(reviewer=HOSTILE[3])
    assert len(ws.events()) == len(HOSTILE) + 1

    for phrase in HOSTILE + ["'", '"', "--", ";"]:
        page, total = ws.review_queue(search=phrase, limit=50)
        assert total == sum(phrase in t for t in rows["text"]), phrase
        assert all(phrase in t for t in page["text"])
    page, total = ws.review_queue(label=LABELS[0], limit=50)
    assert total == int((ws.samples()["label"] == LABELS[0]).sum()) and total > 0

    ws.set_info("note", HOSTILE[2])
    assert ws.info()["note"] == HOSTILE[2]
    job = ws.create_job("train", {"name": HOSTILE[0]})
    ws.update_job(job, error=HOSTILE[1], progress={"stage": HOSTILE[3]})
    assert ws.job(job).error == HOSTILE[1] and ws.job(job).progress["stage"] == HOSTILE[3]
    run = ws.create_run(name=HOSTILE[4], config={"x": HOSTILE[0]}, data={}, job_id=job)
    assert ws.run(run).name == HOSTILE[4]

    expected = PG_REQUIRED_TABLES if ws.dialect.name == "postgresql" else REQUIRED_TABLES
    assert set(expected) <= tables(ws)  # nothing was dropped
    exported = curated_frame(ws)
    assert list(exported["id"]) == list(rows["ext_id"])
    assert list(exported["given_label"]) == list(rows["given_label"])
    ws.close()
    again = Workspace(tmp_path / "ws")  # and it opens sound
    assert len(again.samples()) == len(HOSTILE) * 2
    again.close()
