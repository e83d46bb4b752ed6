"""The embedding cache and neighbour graphs as checksummed files (schema version 7, issue 15):
round trips, damaged or missing files never used (recomputed, with a warning), and version-6
workspaces whose vectors and graphs are table rows upgrading on open, on both backends (every
test runs on SQLite and PostgreSQL: tests/conftest.py BOTH_BACKENDS)."""

from __future__ import annotations

import json
import logging
import os
import threading

import numpy as np
import pytest

from data.store import Workspace
from data.store import migrate as migrate_mod
from data.store.base import SCHEMA_VERSION
from runtime import encoder as encoder_mod
from runtime.encoder import EncoderSettings, embed_texts
from tests.conftest import NEGATIVE, POSITIVE
from tests.legacy import connect, downgrade_to_6


def _vectors(n: int, *, seed: int = 0, dim: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"h{i}": rng.normal(size=dim).astype(np.float32) for i in range(n)}


def _graph(ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    n = ws.counts()["n"]
    ids = (np.arange(n)[:, None] + np.arange(1, 4)) % n
    dist = np.tile(np.float32([0.1, 0.2, 0.3]), (n, 1)) + np.arange(n, dtype=np.float32)[:, None]
    return ids, dist


def _segments(ws: Workspace) -> list[tuple[int, str]]:
    return [
        (int(r[0]), r[1]) for r in ws._read("SELECT id, path FROM embedding_segments ORDER BY id")
    ]


def _spoil(path) -> None:
    """Change one byte of a file, keeping its size (a bit flip on the shared folder)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # as any writer would


def test_embeddings_round_trip_through_segment_files_and_replace_by_hash(workspace):
    first, second = _vectors(10), _vectors(15, seed=1)
    workspace.put_embeddings("m", first)
    workspace.put_embeddings("m", {h: second[h] for h in list(second)[5:]})  # h5..h14
    got = workspace.get_embeddings("m", [*second, "missing", "h0"])
    assert set(got) == {f"h{i}" for i in range(15)}
    for h in ("h0", "h4"):
        np.testing.assert_array_equal(got[h], first[h])
    for h in ("h5", "h9", "h14"):  # the newer vector wins
        np.testing.assert_array_equal(got[h], second[h])
    assert got["h0"].dtype == np.float32
    assert workspace.get_embeddings("other-model", ["h0"]) == {}
    segments = _segments(workspace)
    assert len(segments) == 2
    assert all((workspace.folder / path).is_file() for _, path in segments)
    # A segment whose every row was replaced is forgotten and its file removed.
    workspace.put_embeddings("m", {h: second[h] for h in list(second)[:10]})
    got = workspace.get_embeddings("m", list(second))
    for h, vector in second.items():
        np.testing.assert_array_equal(got[h], vector)
    assert not (workspace.folder / segments[0][1]).exists()
    assert len(_segments(workspace)) == 2
    with pytest.raises(ValueError, match="one length"):
        workspace.put_embeddings("m", {"a": np.ones(3), "b": np.ones(4)})


@pytest.mark.parametrize("damage", ["one byte", "deleted"])
def test_a_damaged_segment_is_never_used_and_its_texts_count_as_missing(workspace, damage, caplog):
    workspace.put_embeddings("m", _vectors(4))
    later = _vectors(8, seed=3)
    workspace.put_embeddings("m", {h: later[h] for h in list(later)[4:]})  # h4..h7
    (_, path), _ = _segments(workspace)
    file = workspace.folder / path
    if damage == "deleted":
        file.unlink()
    else:
        _spoil(file)
    with caplog.at_level(logging.WARNING, logger="data.store.vectors"):
        got = workspace.get_embeddings("m", list(later))
    assert set(got) == {"h4", "h5", "h6", "h7"}  # the sound segment's only
    assert "embedded again" in caplog.text and path.rsplit("/", 1)[-1] in caplog.text
    # Forgotten: no record, no file, no second warning; putting them again works.
    assert len(_segments(workspace)) == 1 and not file.exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="data.store.vectors"):
        assert set(workspace.get_embeddings("m", list(later))) == set(got)
    assert caplog.text == ""
    workspace.put_embeddings("m", {h: later[h] for h in list(later)[:4]})
    np.testing.assert_array_equal(workspace.get_embeddings("m", ["h1"])["h1"], later["h1"])


def test_a_second_embedding_run_encodes_nothing_and_a_damaged_segment_is_re_embedded(
    tmp_path, monkeypatch, store_backend, caplog
):
    from tests.conftest import make_prepared

    texts = POSITIVE + NEGATIVE
    ws = Workspace.create(tmp_path / "ws", make_prepared(texts, ["positive"] * 24), name="t")
    monkeypatch.setattr(encoder_mod, "CACHE_CHUNK", 10)
    settings = EncoderSettings(precision="fp32", batch_size=8)
    first = embed_texts(texts, settings=settings, cache=ws)
    sizes = [int(r[0]) for r in ws._read("SELECT n_rows FROM embedding_segments ORDER BY id")]
    assert len(sizes) >= 2 and sum(sizes) == len(texts)
    encoded: list[int] = []
    real = encoder_mod._forward

    def counting(model, batch, **kwargs):
        encoded.append(len(batch["input_ids"]))
        return real(model, batch, **kwargs)

    monkeypatch.setattr(encoder_mod, "_forward", counting)
    np.testing.assert_array_equal(embed_texts(texts, settings=settings, cache=ws), first)
    assert encoded == []  # all from the cache
    _, path = _segments(ws)[1]
    _spoil(ws.folder / path)
    with caplog.at_level(logging.WARNING, logger="data.store.vectors"):
        again = embed_texts(texts, settings=settings, cache=ws)
    assert sum(encoded) == sizes[1] and "embedded again" in caplog.text
    np.testing.assert_allclose(again, first, atol=1e-5)
    ws.close()


def test_the_graph_round_trips_through_files_and_one_changed_byte_makes_it_rebuilt(
    workspace, caplog
):
    ids, dist = _graph(workspace)
    assert workspace.get_knn("enc") is None
    workspace.put_knn("enc", ids, dist)
    got_ids, got_dist = workspace.get_knn("enc")
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got_dist, dist)
    assert got_ids.dtype == np.int32 and got_dist.dtype == np.float32
    near = workspace.neighbors(5, k=2, model_key="enc")
    assert near["sample_id"].tolist() == [6, 7]
    assert near["distance"].tolist() == pytest.approx([5.1, 5.2])
    record = dict(workspace._read("SELECT * FROM knn_graphs")[0])
    # A rewrite uses fresh names and removes the replaced pair.
    workspace.put_knn("enc", ids, dist * 2)
    assert not (workspace.folder / record["ids_path"]).exists()
    record = dict(workspace._read("SELECT * FROM knn_graphs")[0])
    _spoil(workspace.folder / record["distances_path"])
    with caplog.at_level(logging.WARNING, logger="data.store.vectors"):
        assert workspace.get_knn("enc") is None
    assert "does not match its recorded checksum" in caplog.text
    assert workspace.neighbors(5, model_key="enc").empty  # the record was dropped
    workspace.put_knn("enc", ids, dist)  # the analysis rebuilds it
    np.testing.assert_array_equal(workspace.get_knn("enc")[1], dist)


def test_a_missing_graph_file_means_no_graph_and_a_text_repair_drops_it(workspace, caplog):
    ids, dist = _graph(workspace)
    workspace.put_knn("enc", ids, dist)
    record = dict(workspace._read("SELECT * FROM knn_graphs")[0])
    (workspace.folder / record["ids_path"]).unlink()
    with caplog.at_level(logging.WARNING, logger="data.store.vectors"):
        assert workspace.neighbors(0, model_key="enc").empty
        assert workspace.get_knn("enc") is None
    assert "is missing" in caplog.text
    workspace.put_knn("enc", ids, dist)
    record = dict(workspace._read("SELECT * FROM knn_graphs")[0])
    workspace.repair_texts([(0, "a repaired text")], reviewer="ana")
    assert workspace.get_knn("enc") is None  # built from the old texts
    assert (workspace.folder / record["ids_path"]).exists()  # until pruned
    # (and the distances file of the graph whose ids file went missing)
    assert workspace.prune_artifacts(min_age_s=0) == 3
    assert not (workspace.folder / record["ids_path"]).exists()
    assert not (workspace.folder / record["distances_path"]).exists()
    assert list((workspace.folder / "artifacts" / "knn").iterdir()) == []


def _v6_workspace(workspace: Workspace) -> dict:
    """Vectors of two encoders and a graph stored, then the workspace closed and turned into
    version 6 (rows in tables, no files); what it held."""
    vectors = {**_vectors(40), **{f"x{i}": v for i, v in enumerate(_vectors(3, seed=9).values())}}
    workspace.put_embeddings("m", {h: v for h, v in vectors.items() if h.startswith("h")})
    other = _vectors(5, seed=4, dim=3)
    workspace.put_embeddings("other", other)
    workspace.put_embeddings("m", {h: v for h, v in vectors.items() if h.startswith("x")})
    workspace.put_knn("enc", *_graph(workspace))
    want = {
        "m": vectors,
        "other": other,
        "knn": workspace.get_knn("enc"),
        "near": workspace.neighbors(3, k=2, model_key="enc"),
    }
    workspace.close()
    downgrade_to_6(workspace.folder)
    assert not (workspace.folder / "artifacts").exists()
    return want


def _assert_holds(ws: Workspace, want: dict) -> None:
    for key in ("m", "other"):
        got = ws.get_embeddings(key, list(want[key]))
        assert got.keys() == want[key].keys()
        for h, vector in want[key].items():
            np.testing.assert_array_equal(got[h], vector)
    for got_array, want_array in zip(ws.get_knn("enc"), want["knn"], strict=True):
        np.testing.assert_array_equal(got_array, want_array)
        assert got_array.dtype == want_array.dtype
    assert ws.neighbors(3, k=2, model_key="enc").equals(want["near"])


def _version(folder) -> int:
    conn, _ = connect(folder)
    try:
        return json.loads(
            conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        )
    finally:
        conn.close()


def test_a_version_6_workspace_moves_its_vectors_and_graph_into_files_on_open(
    workspace, monkeypatch
):
    monkeypatch.setattr(migrate_mod, "MOVE_ROWS", 7)  # many batches: 40 + 3 vectors, 24 rows
    want = _v6_workspace(workspace)
    assert _version(workspace.folder) == 6
    ws = Workspace(workspace.folder)
    try:
        assert ws.info()["schema_version"] == SCHEMA_VERSION == 7
        _assert_holds(ws, want)
        assert len(_segments(ws)) == 7 + 1  # ceil(43 / 7) of "m", one of "other"
        tables = migrate_mod.Migration(ws._conn, ws.dialect, ws.folder).tables()
        assert not {"embeddings", "knn"} & tables
        # A second upgrade (another process, a restore) finds nothing to do.
        assert migrate_mod.upgrade(ws._conn, ws.dialect, ws.folder) is False
    finally:
        ws.close()
    Workspace(workspace.folder).close()


def test_two_processes_opening_a_version_6_workspace_at_once_upgrade_it_once(workspace):
    want = _v6_workspace(workspace)
    opened: list[Workspace] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            opened.append(Workspace(workspace.folder))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    try:
        for ws in opened:
            _assert_holds(ws, want)
        assert len(_segments(opened[0])) == 2  # moved once: one segment per encoder
        files = list((workspace.folder / "artifacts" / "embeddings").rglob("*.npy"))
        assert len(files) == 2
    finally:
        for ws in opened:
            ws.close()


def test_an_upgrade_that_fails_leaves_version_6_and_no_files(workspace, monkeypatch):
    want = _v6_workspace(workspace)

    def fails(step):
        raise RuntimeError("disk full")

    move_graphs = migrate_mod._move_graphs
    monkeypatch.setattr(migrate_mod, "_move_graphs", fails)  # after the vectors were moved
    with pytest.raises(RuntimeError, match="disk full"):
        Workspace(workspace.folder)
    assert _version(workspace.folder) == 6
    assert list((workspace.folder / "artifacts").rglob("*.npy")) == []
    monkeypatch.setattr(migrate_mod, "_move_graphs", move_graphs)
    ws = Workspace(workspace.folder)
    try:
        _assert_holds(ws, want)
    finally:
        ws.close()


def test_the_sqlite_file_gives_back_the_moved_vectors_space_after_the_upgrade(
    workspace, monkeypatch
):
    if workspace.backend != "sqlite":
        pytest.skip("PostgreSQL reclaims a dropped table's space itself")
    from data.store import base

    monkeypatch.setattr(base, "RECLAIM_MIN_BYTES", 1 << 20)
    vectors = _vectors(1500, dim=384)  # 2.3 MB of vectors: more than the threshold above
    workspace.put_embeddings("m", vectors)
    workspace.close()
    downgrade_to_6(workspace.folder)
    db = workspace.folder / "store.sqlite"
    before = db.stat().st_size
    ws = Workspace(workspace.folder)
    try:
        got = ws.get_embeddings("m", list(vectors))
        assert len(got) == len(vectors)
        free = ws._read("PRAGMA freelist_count")[0][0]
        assert free * ws._read("PRAGMA page_size")[0][0] < (1 << 20)
    finally:
        ws.close()
    assert db.stat().st_size < before - 2_000_000  # the vectors' pages left the file
