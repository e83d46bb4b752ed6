"""Sources of out-of-sample probabilities (curation.methods) on a small fixture with planted
label flips, using the real packaged encoder (and, for fine-tuning, the real model).

The fixture pairs conftest's sentences: every text is two sentences of the same sentiment, so
each sentence (and its words) appears in several rows of its class, which a bag-of-words model
and a neighbour vote need as much as the sentence encoder does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest

from runtime.device import resolve_device

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curation import methods as M  # noqa: E402
from curation import text_features as TF  # noqa: E402
from runtime.encoder import embed_texts  # noqa: E402
from runtime.progress import Cancelled  # noqa: E402
from tests.conftest import NEGATIVE, POSITIVE  # noqa: E402

OFFSETS = (1, 2, 3, 5)
FLIPS = [0, 13, 40, 70]  # three positives and one negative
FAST = ["ensemble", "embedding", "text", "neighbors", "logreg"]


def _pairs(sentences: list[str]) -> list[str]:
    n = len(sentences)
    return [f"{sentences[i]}. {sentences[(i + o) % n]}" for o in OFFSETS for i in range(n)]


@pytest.fixture(scope="module")
def data():
    texts = _pairs(POSITIVE) + _pairs(NEGATIVE)
    clean = np.array([1] * (len(texts) // 2) + [0] * (len(texts) // 2))
    noisy = clean.copy()
    noisy[FLIPS] = 1 - noisy[FLIPS]
    return texts, noisy, embed_texts(texts)


def _auroc_of_flips(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of (flipped, untouched) pairs where the flipped row's given label is less
    believed: 1.0 = every flipped row ranks below every untouched row."""
    given = probs[np.arange(len(labels)), labels]
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[FLIPS] = True
    below = given[flipped][:, None] < given[~flipped][None, :]
    return float(below.mean())


@pytest.mark.parametrize("method", FAST)
def test_each_fast_method_ranks_flipped_labels_below_the_rest(data, method):
    texts, labels, features = data
    probs, info = M.method_probs(texts, labels, method=method, features=features, n_classes=2)
    assert probs.shape == (len(texts), 2)
    assert np.allclose(probs.sum(1), 1.0) and (probs >= 0).all()
    assert _auroc_of_flips(probs, labels) >= 0.95
    assert info["method"] == method and info["n_folds"] == 5 and info["seconds"] >= 0
    assert set(info["components"]) == set(M.detection_method(method).component_names)


def test_cached_text_matrix_and_graph_give_the_same_probabilities(data):
    texts, labels, features = data
    fresh, info = M.method_probs(texts, labels, method="ensemble", features=features)
    neighbors = M.nearest(features, M.vote_k(len(texts)))
    cached, cached_info = M.method_probs(
        texts,
        labels,
        method="ensemble",
        features=features,
        text_matrix=TF.text_features(texts),
        neighbors=neighbors,
    )
    assert np.allclose(fresh, cached)
    assert not info["components"]["text"]["text_matrix_cached"]
    assert cached_info["components"]["text"]["text_matrix_cached"]
    assert cached_info["components"]["neighbors"]["graph_cached"]


def test_a_relabel_never_changes_the_relabelled_rows_own_component_probabilities(data):
    # Folds ignore labels, and a row is never in its own training data or neighbourhood.
    texts, labels, features = data
    other = labels.copy()
    other[5] = 1 - other[5]
    for method in ("embedding", "text", "neighbors"):
        a, _ = M.method_probs(texts, labels, method=method, features=features)
        b, _ = M.method_probs(texts, other, method=method, features=features)
        assert np.allclose(a[5], b[5]), method


def test_text_features_are_label_free_cacheable_and_keyed_by_the_texts(data):
    texts, _, _ = data
    matrix = TF.text_features(texts)
    assert matrix.dtype == np.float32 and matrix.shape[0] == len(texts)
    assert 1 <= matrix.shape[1] <= TF.TEXT_DIMS
    assert np.allclose(matrix, TF.text_features(texts))
    assert TF.text_features_key(texts) == TF.text_features_key(list(texts))
    assert TF.text_features_key(texts) != TF.text_features_key(texts[::-1])
    assert TF.text_features(["", ""]).shape == (2, 1)  # no vocabulary: a constant column


def test_pooling_weights_follow_the_informative_component():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    good = np.where(y[:, None] == np.arange(2), 0.8, 0.2)
    noise = rng.dirichlet([1, 1], size=2000)
    folds = np.arange(2000) % 5
    probs, weights = M.combine({"good": good, "noise": noise}, y, folds)
    assert weights["good"] > 5 * weights["noise"]
    assert np.allclose(probs.sum(1), 1.0)
    assert (probs.argmax(1) == y).mean() > 0.99


def test_unknown_method_and_bad_inputs_name_the_fix(data):
    texts, labels, features = data
    with pytest.raises(ValueError, match="valid: ensemble, embedding"):
        M.method_probs(texts, labels, method="magic", features=features)
    with pytest.raises(ValueError, match="texts has 3 rows"):
        M.method_probs(texts[:3], labels, method="embedding", features=features)
    with pytest.raises(ValueError, match="text_matrix must be"):
        M.method_probs(
            texts, labels, method="text", features=features, text_matrix=np.zeros((3, 2))
        )
    with pytest.raises(ValueError, match="neighbors must be"):
        M.method_probs(
            texts, labels, method="neighbors", features=features, neighbors=np.zeros((3, 2))
        )
    with pytest.raises(ValueError, match="finetune_rows"):
        M.detection_seconds("finetune", 100, finetune_rows=0)


def test_should_stop_raises_the_one_cancelled(data):
    texts, labels, features = data
    with pytest.raises(Cancelled):
        M.method_probs(texts, labels, features=features, should_stop=lambda: True)


def test_detection_seconds_is_sane():
    for method in M.METHODS:
        assert M.detection_seconds(method, 0) >= 0
        assert M.detection_seconds(method, 10_000) <= M.detection_seconds(method, 100_000)
    # Cached label-independent parts make a re-analysis cheap; fine-tuning on a CPU is slow
    # and a GPU is faster; the cap bounds the training part.
    assert M.detection_seconds("ensemble", 100_000, cached=True) < 15
    assert M.detection_seconds("ensemble", 100_000) > M.detection_seconds(
        "ensemble", 100_000, cached=True
    )
    cpu = M.detection_seconds("finetune", 12_000, device="cpu")
    assert 300 < cpu < 1800
    assert M.detection_seconds("finetune", 12_000, device="cuda") < cpu
    assert M.detection_seconds("finetune", 12_000, finetune_rows=500) < cpu
    assert M.detection_seconds("finetune", 12_000, finetune_rows=None) > cpu
    with pytest.raises(ValueError, match="valid: ensemble"):
        M.detection_seconds("nope", 10)
    with pytest.raises(ValueError, match="device"):
        M.detection_seconds("ensemble", 10, device="tpu")


def test_the_registry_lists_every_method_with_help_and_an_estimate():
    names = ["ensemble", "embedding", "text", "neighbors", "logreg", "finetune"]
    names.append("finetune+ensemble")
    assert list(M.METHODS) == list(M.REGISTRY) == list(M.METHOD_HELP) == names
    assert M.DEFAULT_METHOD in M.METHODS
    for name in M.METHODS:
        method = M.detection_method(name)
        assert method.name == name and method.help == M.METHOD_HELP[name] and len(method.help) > 20
        assert method.components and all(isinstance(c, M.Component) for c in method.components)
        assert method.estimate(10_000) > 0
    # Composite methods pool the very components of the single ones.
    fast = ("embedding", "text", "neighbors")
    singles = tuple(M.detection_method(name).components[0] for name in fast)
    assert M.detection_method("ensemble").components == singles
    assert M.detection_method("finetune+ensemble").component_names == (*fast, "finetune")


def test_an_unknown_method_name_lists_the_valid_ones():
    for call in (
        lambda: M.detection_method("magic"),
        lambda: M.unregister_method("magic"),
        lambda: M.detection_seconds("magic", 10),
        lambda: M.analysis_seconds("magic", 10),
    ):
        with pytest.raises(ValueError, match="Unknown method 'magic'; valid: ensemble, embedding"):
            call()
    with pytest.raises(ValueError, match="already registered"):
        M.register_method(M.detection_method("text"))


@dataclass(frozen=True)
class _ClassPrior(M.Component):
    """A toy component: every row gets the class shares of the other folds."""

    name: str = "prior"
    fit_seconds_per_row: float = 1.0

    def probs(self, split):
        probs = np.zeros((len(split.labels), split.n_classes))
        for f in range(split.n_folds):
            train = split.labels[split.folds != f]
            probs[split.folds == f] = np.bincount(train, minlength=split.n_classes) / len(train)
        return probs, {"model": "class prior"}


@pytest.fixture
def toy_method():
    method = M.register_method(
        M.DetectionMethod("toy", "Class priors, for a test.", (_ClassPrior(),))
    )
    yield method
    M.unregister_method("toy")
    assert "toy" not in M.METHODS


def test_a_registered_method_is_listed_run_and_estimated(data, toy_method):
    texts, labels, features = data
    assert "toy" in M.METHODS and M.METHOD_HELP["toy"] == "Class priors, for a test."
    events = []
    probs, info = M.method_probs(
        texts, labels, method="toy", features=features, n_folds=4, progress=events.append
    )
    shares = np.bincount(labels) / len(labels)
    assert np.allclose(probs, shares, atol=0.05) and np.allclose(probs.sum(1), 1.0)
    assert info["method"] == "toy" and info["components"]["prior"]["model"] == "class prior"
    assert info["weights"] == {"prior": 1.0}
    assert [e["stage"] for e in events] == ["prior", "done"]
    assert M.detection_seconds("toy", 1_000) == 1_000.0


@pytest.mark.slow
def test_finetune_predicts_every_row_from_a_model_that_never_saw_it(data):
    from training.config import TrainingConfig

    texts, labels, features = data
    config = TrainingConfig(epochs=1, batch_size=4, max_length=32, max_eval_samples=None)
    events = []
    probs, info = M.method_probs(
        texts,
        labels,
        method="finetune",
        features=features,
        n_folds=2,
        finetune_rows=8,
        training_config=config,
        label_names=["negative", "positive"],
        progress=events.append,
    )
    assert probs.shape == (len(texts), 2) and np.allclose(probs.sum(1), 1.0)
    ft = info["components"]["finetune"]
    assert ft["rows_cap"] == 8 and ft["device"] == resolve_device("auto")
    assert [f["train_rows"] for f in ft["folds"]] == [8, 8]
    assert sum(f["predict_rows"] for f in ft["folds"]) == len(texts)
    assert ft["config"]["max_train_samples"] == 8 and ft["config"]["validation_fraction"] == 0
    assert {e["fold"] for e in events if "fold" in e} == {1, 2}
    assert any("step" in e for e in events) and events[-1]["stage"] == "done"

    with pytest.raises(Cancelled):
        M.method_probs(
            texts,
            labels,
            method="finetune",
            features=features,
            n_folds=2,
            finetune_rows=8,
            training_config=config,
            should_stop=lambda: True,
        )
