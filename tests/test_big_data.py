"""Bounded memory on big data (issue 10): the analysis streams texts through the encoder in
chunks, reports a rate from the first chunk, stops within a batch or two of a cancel, reuses
the chunks a cancelled run already stored, and the import asks before an hour-long analysis.

Chunk sizes are shrunk so that a few dozen texts make several chunks; the encoder is the real
packaged one (loaded once per session).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from curation import methods as M
from curation import pipeline
from curation.neighbors import knn_arrays, knn_graph
from data.store import Workspace
from data.store.arrays import NpyRows, NpyWriter
from runtime import encoder as encoder_mod
from runtime.encoder import DictCache, EncoderSettings, embed_texts
from runtime.progress import Cancelled, RateMeter, stoppable
from tests.conftest import NEGATIVE, POSITIVE, make_prepared

FP32 = EncoderSettings(precision="fp32", batch_size=4)
# Lengths from 1 to ~25 words, so length-sorting within a chunk differs from sorting all.
TEXTS = [f"{s} {'and more ' * (i % 7)}" for i, s in enumerate(POSITIVE + NEGATIVE)]


@pytest.fixture
def forward_calls(monkeypatch):
    """Counts texts through the model's forward pass (it still runs)."""
    calls: list[int] = []
    real = encoder_mod._forward

    def counting(model, batch, **kwargs):
        calls.append(len(batch["input_ids"]))
        return real(model, batch, **kwargs)

    monkeypatch.setattr(encoder_mod, "_forward", counting)
    return calls


def test_chunked_embedding_gives_the_vectors_of_one_pass():
    whole = embed_texts(TEXTS, settings=FP32, chunk_size=10_000)
    chunked = embed_texts(TEXTS, settings=FP32, chunk_size=5)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    half = embed_texts(TEXTS + TEXTS[:3], settings=FP32, chunk_size=5, dtype=np.float16)
    assert half.dtype == np.float16 and half.shape == (len(TEXTS) + 3, 384)
    np.testing.assert_allclose(half[: len(TEXTS)], whole, atol=2e-3)
    np.testing.assert_array_equal(half[len(TEXTS) :], half[:3])  # duplicates share a vector


def test_progress_carries_a_rate_and_time_left_from_the_first_chunk(monkeypatch):
    monkeypatch.setattr(encoder_mod, "EMBED_CHUNK", 8)
    events: list[dict] = []
    labels = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    pipeline.analyze(
        TEXTS,
        labels,
        label_names=["negative", "positive"],
        method="embedding",
        settings=FP32,
        progress=events.append,
    )
    embedding = [e for e in events if e.get("stage") == "embedding" and e.get("total")]
    assert embedding[-1]["done"] == embedding[-1]["total"] == len(TEXTS)
    # Every chunk of 8 texts reports (batches of 4: twice per chunk), each with a rate.
    assert {8, 16, 24} <= {e["done"] for e in embedding}
    # A rate and a time left from the second batch on, i.e. within the first chunk.
    assert embedding[0]["done"] == 4 and embedding[1]["done"] == 8
    assert all(e["rate"] > 0 and e["eta_seconds"] >= 0 for e in embedding[1:])
    assert embedding[-1]["unit"] == "texts"


def test_rate_meter_measures_per_stage_over_a_sliding_window():
    clock = iter([0.0, 10.0, 20.0, 100.0, 110.0, 111.0]).__next__
    meter = RateMeter(window=30.0, clock=clock)
    meter({"stage": "embedding"})  # set-up (loading the model) is not counted
    assert "rate" not in meter({"stage": "embedding", "done": 100, "total": 1000})
    event = meter({"stage": "embedding", "done": 300, "total": 1000})
    assert (event["rate"], event["eta_seconds"]) == (20.0, 35.0)
    # A slow stretch is forgotten once out of the window: (900 - 300) / 80 s.
    assert meter({"stage": "embedding", "done": 900, "total": 1000})["rate"] == 7.5
    assert "rate" not in meter({"stage": "neighbors", "done": 2, "total": 5})  # a new stage


def test_a_cancel_while_embedding_stops_within_a_batch_and_keeps_its_vectors(
    forward_calls, monkeypatch
):
    cache = DictCache()
    slow = encoder_mod._forward

    def slow_forward(model, batch, **kwargs):
        out = slow(model, batch, **kwargs)
        if len(forward_calls) == 3:
            time.sleep(10)  # a batch on a very busy CPU: the cancel must not wait for it
        return out

    monkeypatch.setattr(encoder_mod, "_forward", slow_forward)
    started = [0.0]

    def stop_during_the_third_batch() -> bool:
        if len(forward_calls) == 3 and not started[0]:
            started[0] = time.monotonic()
        return bool(started[0]) and time.monotonic() - started[0] > 0.2

    with pytest.raises(Cancelled):
        embed_texts(TEXTS, settings=FP32, cache=cache, should_stop=stop_during_the_third_batch)
    assert time.monotonic() - started[0] < 1.0  # not the 10 s the batch takes
    assert forward_calls == [4, 4, 4]  # no batch started after the stop
    assert len(cache) == 8  # the two finished batches were written before stopping


def test_a_restart_encodes_only_what_the_killed_run_did_not_store(
    tmp_path, monkeypatch, forward_calls
):
    monkeypatch.setattr(encoder_mod, "CACHE_CHUNK", 4)
    prepared = make_prepared(TEXTS, ["positive"] * len(TEXTS))
    ws = Workspace.create(tmp_path / "ws", prepared, name="t")
    counting = encoder_mod._forward

    def dies_after_ten_texts(model, batch, **kwargs):
        if sum(forward_calls) + len(batch["input_ids"]) > 10:
            raise RuntimeError("killed")  # a crash, not a cooperative cancel: no last flush
        return counting(model, batch, **kwargs)

    monkeypatch.setattr(encoder_mod, "_forward", dies_after_ten_texts)
    with pytest.raises(RuntimeError, match="killed"):
        embed_texts(TEXTS, settings=FP32, cache=ws, chunk_size=6)
    first = sum(forward_calls)
    assert first == 10
    # Committed as it went: another connection (another process) sees every vector.
    other = Workspace(tmp_path / "ws")
    hashes = [encoder_mod.text_hash(t) for t in TEXTS]
    assert len(other.get_embeddings(FP32.key(), hashes)) == first
    monkeypatch.setattr(encoder_mod, "_forward", counting)
    forward_calls.clear()
    again = embed_texts(TEXTS, settings=FP32, cache=other, chunk_size=6)
    assert sum(forward_calls) == len(TEXTS) - first
    np.testing.assert_allclose(again, embed_texts(TEXTS, settings=FP32), atol=1e-5)
    ws.close()
    other.close()


def test_stoppable_abandons_a_call_that_cannot_poll():
    started = time.monotonic()
    with pytest.raises(Cancelled):
        stoppable(lambda: time.sleep(5), lambda: time.monotonic() - started > 0.3)
    assert time.monotonic() - started < 1.0
    assert stoppable(lambda: 42, lambda: False) == 42
    with pytest.raises(ZeroDivisionError):
        stoppable(lambda: 1 / 0, lambda: False)


def test_the_neighbor_search_stops_from_its_progress_and_reads_float16_by_block(monkeypatch):
    from curation import neighbors

    products = []
    real_scores = neighbors._scores
    monkeypatch.setattr(neighbors, "_scores", lambda *a: products.append(1) or real_scores(*a))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[5] = x[7]  # an exact duplicate
    seen = []

    def stop_after_three(done, total):
        seen.append(done)
        if done >= 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        knn_arrays(x, k=5, batch_size=20, threads=2, progress=stop_after_three)
    assert seen[-1] == 3  # nothing was reported after the stop...
    assert len(products) <= 3 + 2 * 2  # ...and only the blocks already running finished
    graph = knn_graph(x, k=5, batch_size=50)
    idx, dist = knn_arrays(x, k=5, batch_size=50)
    np.testing.assert_array_equal(idx, graph.indices.reshape(600, 5))
    assert dist.dtype == np.float32 and idx.dtype == np.int32  # 8 bytes a neighbour
    idx16, dist16 = knn_arrays(x.astype(np.float16), k=5, batch_size=50)
    assert (idx16[:, 0] == idx[:, 0]).mean() > 0.99
    assert dist16[5, 0] == 0 and idx16[5, 0] == 7  # duplicates still found at distance 0


def test_lda_in_steps_and_from_disk_matches_one_pass(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 500)
    x = (rng.standard_normal((500, 12)) + y[:, None]).astype(np.float32)
    folds = np.arange(500) % 5
    whole = M.lda_fold_probs(x, y, folds, n_classes=3, standardize=True)
    monkeypatch.setattr("curation.methods.lda.ROWS_PER_STEP", 37)  # the LDA and vote steps
    with NpyWriter(tmp_path / "x.npy", rows=500) as writer:
        for start in range(0, 500, 64):
            writer.write(x[start : start + 64])
    stepped = M.lda_fold_probs(NpyRows(tmp_path / "x.npy"), y, folds, n_classes=3, standardize=True)
    np.testing.assert_allclose(stepped, whole, atol=1e-6)
    vote = M.neighbor_vote_probs(y, rng.integers(0, 500, (500, 7)), n_classes=3)
    assert np.allclose(vote.sum(1), 1.0)


def test_store_reads_inputs_and_the_graph_in_batches(workspace, monkeypatch):
    from data.store import analysis as store_analysis
    from data.store import vectors

    monkeypatch.setattr(vectors, "_KNN_BLOCK_ROWS", 5)
    monkeypatch.setattr(store_analysis, "_INPUT_READ_ROWS", 5)
    rows = workspace.samples()
    n = len(rows)
    idx = (np.arange(n)[:, None] + np.arange(1, 4)) % n
    dist = np.tile(np.float32([0.1, 0.2, 0.3]), (n, 1))
    workspace.put_knn("m", idx, dist)
    got_idx, got_dist = workspace.get_knn("m")
    np.testing.assert_array_equal(got_idx, idx)
    np.testing.assert_array_equal(got_dist, dist)
    inputs = workspace.analysis_inputs()
    assert inputs["text"] == rows["text"].tolist() and inputs["label"] == rows["label"].tolist()
    np.testing.assert_array_equal(inputs["id"], rows["id"].to_numpy())


def test_import_asks_before_starting_an_analysis_estimated_over_an_hour(
    home, launched, tmp_path, monkeypatch
):
    from tests.conftest import app

    monkeypatch.setattr(M, "analysis_seconds", lambda *a, **k: 7200.0)
    monkeypatch.setenv("SECOND_LOOK_DATA_DIR", str(tmp_path))  # where the path box may read
    pd.DataFrame({"text": [f"ticket {i}" for i in range(20)], "label": ["a", "b"] * 10}).to_csv(
        tmp_path / "big.csv", index=False
    )
    at = app()
    at.text_input(key="import_path").input("big.csv").run()
    assert any("about 2 h" in w.value for w in at.warning)
    assert at.checkbox(key="analyze_long_ok").value is False
    at.button(key="do_import").click().run()
    assert not at.exception, at.exception
    assert launched == []  # imported, but the two-hour analysis was not started
    at.text_input(key="ws_name").input("again").run()
    at.checkbox(key="analyze_long_ok").check().run()
    at.button(key="do_import").click().run()
    assert [kind for kind, _ in launched] == ["analyze"]
