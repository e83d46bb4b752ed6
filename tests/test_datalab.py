"""kNN graph, near duplicates, outliers and class noise (curation.neighbors, curation.datalab).

Real MiniLM embeddings of the shared sentiment fixture with planted duplicates and an outlier,
and real cleanlab (Datalab, count.estimate_joint).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curation.datalab import (  # noqa: E402
    ISSUE_TYPES,
    class_noise,
    find_data_issues,
)
from curation.neighbors import (  # noqa: E402
    exact_duplicate_sets,
    graph_arrays,
    knn_graph,
    load_graph,
    neighbors_of,
    save_graph,
)
from runtime.encoder import EncoderSettings, embed_texts  # noqa: E402
from tests.conftest import NEGATIVE, POSITIVE  # noqa: E402

NAMES = ["negative", "positive"]
OUTLIER = "Xq7 zzkp 90210 vrrmmf qwrt lorem ipsum 4451 kjjh"
EXTRA = [
    (POSITIVE[0], "negative"),  # exact copy of row 0 with the other label: a conflict
    (NEGATIVE[1] + ".", "negative"),  # near copy of row 13 with the same label
    (OUTLIER, "positive"),
]


@pytest.fixture(scope="module")
def planted():
    texts = POSITIVE + NEGATIVE + [t for t, _ in EXTRA]
    names = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE) + [y for _, y in EXTRA]
    labels = np.array([NAMES.index(y) for y in names])
    x = embed_texts(texts, settings=EncoderSettings(precision="fp32"))
    n = len(texts)
    rows = {"copy": n - 3, "near": n - 2, "outlier": n - 1, "neg1": len(POSITIVE) + 1}
    return {"texts": texts, "labels": labels, "x": x, "graph": knn_graph(x, k=10), "rows": rows}


def _brute_force(x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1 - x @ x.T
    else:
        d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0))
    np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, 1)


# --------------------------------------------------------------------------------------------
# knn_graph


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("batch_size", [16, 1000])
def test_knn_graph_equals_brute_force(metric, batch_size):
    x = np.random.default_rng(0).standard_normal((300, 24)).astype(np.float32)
    graph = knn_graph(x, k=7, metric=metric, batch_size=batch_size)
    idx, dist = _brute_force(x, 7, metric)
    got_idx, got_dist = graph_arrays(graph)
    assert graph.shape == (300, 300) and graph.nnz == 300 * 7
    np.testing.assert_array_equal(got_idx, idx)
    np.testing.assert_allclose(got_dist, dist, atol=1e-5)
    assert (np.diff(got_dist, axis=1) >= 0).all()  # sorted, nearest first
    assert (got_idx != np.arange(300)[:, None]).all()  # no self-edges


def test_exact_duplicates_get_explicit_zeros_and_stay_connected():
    x = np.random.default_rng(1).standard_normal((200, 16)).astype(np.float32)
    x[50:65] = x[3]  # 16 equal rows: more than k + 1, so each row sees only some of them
    graph = knn_graph(x, k=5, batch_size=32)
    idx, dist = graph_arrays(graph)
    same = [3, *range(50, 65)]
    assert (dist[same] == 0).all() and graph.nnz == 200 * 5  # zeros are stored, not dropped
    assert set(idx[same].ravel()) <= set(same)
    [found] = exact_duplicate_sets(x)
    assert found.tolist() == same
    issues, summary = find_data_issues(
        x, np.zeros(200, int), knn_graph=graph, label_names=["a"], issue_types="near_duplicate"
    )
    assert issues.loc[same, "near_duplicate_group"].nunique() == 1
    assert (issues.loc[same, "near_duplicate_score"] == 0).all()


def test_graph_neighbors_and_round_trip(tmp_path, planted):
    graph = planted["graph"]
    idx, dist = neighbors_of(graph, planted["rows"]["copy"])
    assert idx[0] == 0 and dist[0] == 0.0  # the exact copy of row 0
    path = save_graph(graph, tmp_path / "knn.npz")
    again = load_graph(path, n_rows=graph.shape[0])
    np.testing.assert_array_equal(again.indices, graph.indices)
    np.testing.assert_array_equal(again.data, graph.data)
    with pytest.raises(ValueError, match="rebuild"):
        load_graph(path, n_rows=graph.shape[0] + 1)
    with pytest.raises(ValueError, match="0 to"):
        neighbors_of(graph, graph.shape[0])


def test_knn_graph_rejects_bad_input():
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="valid: cosine, euclidean"):
        knn_graph(x, k=2, metric="manhattan")
    with pytest.raises(ValueError, match="n - 1 = 3"):
        knn_graph(x, k=4)
    with pytest.raises(ValueError, match="all zeros"):
        knn_graph(np.zeros((4, 3)), k=2)


# --------------------------------------------------------------------------------------------
# find_data_issues


def test_planted_duplicates_outlier_and_conflict(planted):
    rows, labels = planted["rows"], planted["labels"]
    issues, summary = find_data_issues(
        planted["x"], labels, knn_graph=planted["graph"], label_names=NAMES
    )
    assert len(issues) == len(labels)
    flagged = set(np.flatnonzero(issues["is_near_duplicate"]))
    assert flagged == {0, rows["copy"], rows["neg1"], rows["near"]}
    group = issues["near_duplicate_group"]
    assert group[0] == group[rows["copy"]] != group[rows["neg1"]] == group[rows["near"]]
    assert issues.loc[[0, rows["copy"]], "near_duplicate_conflict"].all()
    assert not issues.loc[[rows["neg1"], rows["near"]], "near_duplicate_conflict"].any()
    assert summary["near_duplicate"]["n_groups"] == 2
    assert summary["near_duplicate"]["n_conflicting_groups"] == 1
    # The random string is the most outlying row (lowest score) and is flagged.
    assert issues["outlier_score"].idxmin() == rows["outlier"]
    assert issues.loc[rows["outlier"], "is_outlier"]


def test_matches_datalab_building_its_own_graph(planted):
    """Our graph in, the same verdicts out as Datalab on the raw features."""
    from cleanlab import Datalab

    issues, _ = find_data_issues(
        None, planted["labels"], knn_graph=planted["graph"], label_names=NAMES
    )
    lab = Datalab(data={"y": planted["labels"]}, label_name="y", verbosity=0)
    lab.find_issues(features=planted["x"], issue_types={"near_duplicate": {}, "outlier": {}})
    theirs = lab.get_issues()
    for name in ISSUE_TYPES:
        np.testing.assert_array_equal(issues[f"is_{name}"], theirs[f"is_{name}_issue"])
        np.testing.assert_allclose(issues[f"{name}_score"], theirs[f"{name}_score"], atol=1e-5)


def test_find_data_issues_checks_inputs(planted):
    labels, graph = planted["labels"], planted["graph"]
    with pytest.raises(ValueError, match="valid: near_duplicate, outlier"):
        find_data_issues(None, labels, knn_graph=graph, label_names=NAMES, issue_types=["label"])
    with pytest.raises(ValueError, match="rebuild"):
        find_data_issues(None, labels[:-1], knn_graph=graph, label_names=NAMES)
    with pytest.raises(ValueError, match="knn_graph"):
        find_data_issues(None, labels, knn_graph=None, label_names=NAMES)


# --------------------------------------------------------------------------------------------
# class_noise


def test_class_noise_finds_the_planted_direction():
    rng = np.random.default_rng(0)
    names = ["cat", "dog", "fox"]
    truth = np.repeat([0, 1, 2], 300)
    probs = np.full((900, 3), 0.05)
    probs[np.arange(900), truth] = 0.9
    probs = probs + rng.uniform(0, 0.02, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    given = truth.copy()
    flipped = rng.choice(np.flatnonzero(truth == 2), 60, replace=False)
    given[flipped] = 0  # 60 foxes labeled "cat"
    noise = class_noise(given, probs, label_names=names)
    assert noise["top_pairs"][0]["given"] == "cat" and noise["top_pairs"][0]["actual"] == "fox"
    # Confident learning counts only confidently-held flips, so it under-counts a little here
    # (threshold = mean confidence); the direction is what a reviewer acts on.
    off = noise["confusion"].to_numpy() * (1 - np.eye(3))
    assert off.argmax() == 2 and off[0, 2] >= 20 and np.delete(off.ravel(), 2).max() < 1
    assert 20 <= noise["num_label_issues"] <= 60
    per_class = noise["per_class"].set_index("label")
    assert per_class["label_noise"].idxmax() == "cat"
    np.testing.assert_allclose(noise["confusion"].sum(axis=1), np.bincount(given), atol=1e-6)
    np.testing.assert_allclose(noise["noise_matrix"].sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="one column per label name"):
        class_noise(given, probs[:, :2], label_names=names)
