"""Curation core: embeddings + cache, out-of-sample probabilities, cleanlab scoring.

Uses the real packaged encoder and cleanlab on a 90-sentence fixture with planted label flips.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curation.issues import FILTER_BY, METHODS, score_labels, summarize  # noqa: E402
from curation.probs import out_of_sample_probs  # noqa: E402
from runtime import encoder as encoder_mod  # noqa: E402
from runtime.encoder import (  # noqa: E402
    DictCache,
    EncoderLoadError,
    EncoderSettings,
    embed_texts,
    text_hash,
)

NAMES = ["negative", "neutral", "positive"]
THINGS = ["phone", "hotel", "movie", "pizza", "laptop", "concert", "book", "car", "coffee", "app"]
TEMPLATES = {
    0: ["I hate this {}, it is awful.", "The {} was terrible and a total waste of money.",
        "Worst {} ever, I am so angry and disappointed."],
    1: ["The {} is listed on page four of the catalogue.", "I picked up the {} on Tuesday.",
        "The {} comes in a grey box."],
    2: ["I love this {}, it is wonderful!", "The {} was fantastic and made me so happy.",
        "Best {} ever, absolutely delightful."],
}  # fmt: skip


def _fixture() -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for label, templates in TEMPLATES.items():
        for thing in THINGS:
            for template in templates:
                texts.append(template.format(thing))
                labels.append(label)
    return texts, np.array(labels)


class CountingCache(DictCache):
    """A DictCache that records what was looked up and stored."""

    def __init__(self) -> None:
        super().__init__()
        self.put_calls: list[int] = []

    def put_embeddings(self, model_key, items):
        self.put_calls.append(len(items))
        super().put_embeddings(model_key, items)


@pytest.fixture(scope="module")
def data():
    texts, labels = _fixture()
    rng = np.random.default_rng(7)
    flipped = rng.choice(len(labels), size=9, replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, 3, size=9)) % 3  # always a wrong class
    cache = CountingCache()
    x = embed_texts(texts, settings=EncoderSettings(precision="fp32"), cache=cache)
    return {"texts": texts, "clean": labels, "noisy": noisy, "flipped": flipped, "x": x,
            "cache": cache}  # fmt: skip


def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    pos, neg = score[positive], score[~positive]
    return float(
        ((pos[:, None] > neg).sum() + 0.5 * (pos[:, None] == neg).sum()) / pos.size / neg.size
    )


# ---- embeddings and cache -----------------------------------------------------------------


def test_text_hash_is_sha1_of_utf8():
    assert text_hash("café") == hashlib.sha1("café".encode()).hexdigest()


def test_embeddings_are_unit_float32_rows(data):
    x = data["x"]
    assert x.shape == (90, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_second_call_encodes_nothing_and_returns_identical_vectors(data, monkeypatch):
    cache = data["cache"]
    assert sum(cache.put_calls) == 90
    calls = []
    monkeypatch.setattr(encoder_mod, "_encode", lambda *a, **k: calls.append(a) or {})
    again = embed_texts(data["texts"], settings=EncoderSettings(precision="fp32"), cache=cache)
    assert calls == []
    np.testing.assert_array_equal(again, data["x"])


def test_precision_and_batch_size_share_the_cache_but_max_length_does_not():
    base = EncoderSettings()
    assert EncoderSettings(precision="fp32", batch_size=8).key() == base.key()
    assert EncoderSettings(max_length=128).key() != base.key()
    assert "all-MiniLM-L6-v2" in base.describe() and "max length 64" in base.describe()


def test_duplicates_are_encoded_once_and_cache_is_written_in_chunks(monkeypatch):
    monkeypatch.setattr(encoder_mod, "CACHE_CHUNK", 2)
    cache, seen = CountingCache(), []
    texts = ["good", "bad", "good", "fine", "okay", "bad"]
    settings = EncoderSettings(batch_size=2)
    x = embed_texts(
        texts, settings=settings, cache=cache, progress=lambda d, t: seen.append((d, t))
    )
    assert cache.put_calls == [2, 2]  # 4 distinct texts, stored 2 at a time
    assert seen == [(2, 4), (4, 4)]
    np.testing.assert_array_equal(x[0], x[2])


def test_undecodable_bytes_still_embed_and_hash_apart():
    bad = b"caf\xe9 ok".decode("utf-8", "surrogateescape")  # what a lenient reader may produce
    x = embed_texts([bad, "café ok"])
    assert x.shape == (2, 384) and text_hash(bad) != text_hash("café ok")


def test_padding_does_not_change_a_vector():
    short = "Nice."
    alone = embed_texts([short], settings=EncoderSettings(precision="fp32"))
    batched = embed_texts(
        [short, "a much longer sentence " * 5], settings=EncoderSettings(precision="fp32")
    )
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)


def test_bf16_autocast_matches_fp32(data):
    texts = data["texts"][:20]
    bf16 = embed_texts(texts, settings=EncoderSettings(precision="bf16"))
    cos = (bf16 * data["x"][:20]).sum(1)
    assert cos.min() > 0.999


def test_bad_settings_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        EncoderSettings(precision="fp8")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        EncoderSettings(device="tpu")
    with pytest.raises(TypeError, match=r"texts\[1\].*fillna"):
        embed_texts(["ok", None])


def test_missing_model_error_names_what_was_tried():
    with pytest.raises(EncoderLoadError, match="no-such-org/no-such-model"):
        encoder_mod.load_encoder(EncoderSettings(model="no-such-org/no-such-model"))


# ---- out-of-sample probabilities ----------------------------------------------------------


def test_probs_are_distributions_and_reproducible(data):
    p = out_of_sample_probs(data["x"], data["noisy"])
    assert p.shape == (90, 3)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_array_equal(p, out_of_sample_probs(data["x"], data["noisy"]))


def test_a_rows_own_label_never_changes_its_own_probs(data):
    before = out_of_sample_probs(data["x"], data["noisy"])
    for row in (0, 45, 89):
        relabeled = data["noisy"].copy()
        relabeled[row] = (relabeled[row] + 1) % 3
        after = out_of_sample_probs(data["x"], relabeled)
        np.testing.assert_array_equal(after[row], before[row])
        assert not np.array_equal(after, before)  # other rows did learn from the new label


def test_rare_and_missing_classes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = np.array([0] * 19 + [1] * 19 + [2] * 2)  # class 2 rarer than the folds
    assert out_of_sample_probs(x, y).shape == (40, 3)
    assert out_of_sample_probs(x, y % 2, n_classes=3)[:, 2].max() == 0  # a class with no rows
    with pytest.raises(ValueError, match=r"class id\(s\) \[2\] have a single row"):
        out_of_sample_probs(x, np.array([0] * 20 + [1] * 19 + [2]))
    with pytest.raises(ValueError, match="n_folds"):
        out_of_sample_probs(x, y % 2, n_folds=1)
    with pytest.raises(ValueError, match="integer class ids"):
        out_of_sample_probs(x, y.astype(float))


# ---- cleanlab scoring ---------------------------------------------------------------------


def test_planted_flips_score_lowest_and_are_flagged(data):
    p = out_of_sample_probs(data["x"], data["noisy"])
    scores = score_labels(data["noisy"], p, label_names=NAMES)
    is_flipped = np.zeros(90, dtype=bool)
    is_flipped[data["flipped"]] = True
    assert _auroc(-scores["label_quality"].to_numpy(), is_flipped) > 0.9
    bottom = np.argsort(scores["label_quality"].to_numpy(), kind="stable")[:9]
    assert np.isin(bottom, data["flipped"]).sum() >= 6
    flagged = scores["is_label_issue"].to_numpy()
    assert flagged[is_flipped].mean() >= 0.6 and flagged[~is_flipped].mean() <= 0.1
    # the predicted label of a caught flip is its true class
    caught = is_flipped & flagged
    true_names = np.array(NAMES)[data["clean"][caught]]
    assert (scores.loc[caught, "predicted_label"].to_numpy() == true_names).mean() >= 0.8


def test_score_columns_follow_the_cleanlab_contract(data):
    p = out_of_sample_probs(data["x"], data["noisy"])
    s = score_labels(data["noisy"], p, label_names=NAMES, method="normalized_margin")
    assert list(s.columns) == [
        "is_label_issue", "label_quality", "analyzed_label", "predicted_label", "predicted_prob",
        "analyzed_prob",
    ]  # fmt: skip
    assert s["is_label_issue"].dtype == bool and s["label_quality"].between(0, 1).all()
    assert (s["analyzed_label"] == np.array(NAMES)[data["noisy"]]).all()
    np.testing.assert_allclose(s["analyzed_prob"], p[np.arange(90), data["noisy"]])
    np.testing.assert_allclose(s["predicted_prob"], p.max(1))


def test_unknown_options_list_the_valid_ones():
    p = np.full((4, 2), 0.5)
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="prune_by_noise_rate, prune_by_class, both"):
        score_labels(y, p, label_names=["a", "b"], filter_by="magic")
    with pytest.raises(ValueError, match=", ".join(METHODS)):
        score_labels(y, p, label_names=["a", "b"], method="magic")
    with pytest.raises(ValueError, match="one name per class"):
        score_labels(y, p, label_names=["a", "b", "c"])
    assert len(FILTER_BY) == 7


def test_summarize_counts_issues_by_class_and_confusion():
    p = np.array([[0.9, 0.1]] * 5 + [[0.1, 0.9]] * 5)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    s = summarize(score_labels(y, p, label_names=["cat", "dog"]))
    assert s["n"] == 10 and s["n_issues"] == 1 and s["issue_rate"] == pytest.approx(0.1)
    assert s["issues_per_class"] == {"cat": 0, "dog": 1}
    assert s["issue_pairs"] == [{"given": "dog", "predicted": "cat", "count": 1}]
