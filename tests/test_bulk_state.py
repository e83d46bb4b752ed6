"""The store's set-based bulk writes give exactly what the row-by-row ones gave.

``rebuild_state`` resets only rows that are not in their imported state and re-derives rows
with events in batches; ``save_analysis`` writes only the rows whose analysis columns change.
Both run on SQLite and PostgreSQL (tests/conftest.py ``BOTH_BACKENDS``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import data.store.analysis as analysis_module
import data.store.labels as labels_module
from data.store import Workspace
from data.store.dialect import dialect_of
from data.store.labels import LabelsMixin
from tests.conftest import make_prepared, scramble_derived_state

WORDS = ["good", "bad", "phone", "food", "café", "service", "slow", "fast", "love", "hate"]
LABELS = ["negative", "neutral", "positive"]


@pytest.fixture
def ws(tmp_path, store_backend):
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(WORDS, size=6)) + f" #{i}" for i in range(80)]
    labels = [LABELS[i % 3] for i in range(80)]
    ws = Workspace.create(tmp_path / "ws", make_prepared(texts, labels), name="bulk")
    yield ws
    ws.close()


def everything(ws: Workspace) -> pd.DataFrame:
    """Every column of every row."""
    return ws._frame("SELECT * FROM samples ORDER BY id")


def per_row_rebuild(conn) -> None:
    """``rebuild_from_log`` as it was before the set-based rewrite: reset every row, then
    ``_refresh_state`` each row with events (the reference the new one must equal)."""
    dialect = dialect_of(conn)
    disagrees = dialect.as_int("predicted_label IS NOT NULL AND predicted_label != given_label")
    conn.execute(
        "UPDATE samples SET label = given_label, excluded = 0, reviewed = 0,"
        " reviewer = NULL, reviewed_at = NULL, n_reviewers = 0, conflict = 0,"
        f" disagrees = {disagrees}"
    )
    conn.execute("UPDATE samples SET text = given_text WHERE text != given_text")
    for (sample_id,) in conn.execute("SELECT DISTINCT sample_id FROM label_events").fetchall():
        LabelsMixin._refresh_state(conn, int(sample_id), fts=False)
    dialect.search_index_rebuild(conn)


def review_a_lot(ws: Workspace, seed: int) -> None:
    """Reviewers relabel, confirm, accept, resolve, exclude and include, repair texts and undo,
    on overlapping rows (conflicts, undone batches, repairs undone and redone)."""
    rng = np.random.default_rng(seed)
    who = ["ana", "bo", "cy"]
    for step in range(40):
        reviewer = who[step % 3]
        rows = [int(i) for i in rng.choice(40, size=int(rng.integers(1, 5)), replace=False)]
        kind = int(rng.integers(0, 6))
        if kind == 0:
            ws.undo(reviewer=reviewer)
        elif kind == 1:
            ws.repair_texts([(i, f"repaired {step} café") for i in rows], reviewer=reviewer)
        elif kind == 2:
            actions = [(i, str(rng.choice(["exclude", "include"])), None) for i in rows]
            ws.apply_actions(actions, reviewer=reviewer)
        else:
            action = str(rng.choice(["relabel", "confirm", "accept", "resolve"]))
            ws.apply_actions(
                [(i, action, str(rng.choice(LABELS))) for i in rows], reviewer=reviewer
            )


# One wrong derived column per row (by id modulo 9), so that each column's check is needed.
ONE_WRONG_COLUMN = (
    "label = CASE WHEN label = 'neutral' THEN 'positive' ELSE 'neutral' END",
    "excluded = 1 - excluded",
    "reviewed = 1 - reviewed",
    "reviewer = 'nobody'",
    "reviewed_at = '2000-01-01'",
    "n_reviewers = 7",
    "conflict = 1 - conflict",
    "text = 'scrambled ' || id",
    "disagrees = 1 - disagrees",
)


def refuse(*args, **kwargs):
    raise AssertionError("no row should be written")


def corrupt(ws: Workspace, how: str) -> None:
    """Wrong derived state behind the store's back (of rows with and without events):
    ``"all"`` every review column of every row and some texts, ``"one"`` one column a row."""
    if how == "all":
        scramble_derived_state(ws)
        statements = ["UPDATE samples SET text = 'scrambled ' || id WHERE id % 3 = 0"]
    else:
        statements = [
            f"UPDATE samples SET {change} WHERE id % 9 = {k}"
            for k, change in enumerate(ONE_WRONG_COLUMN)
        ]
    for sql in statements:
        ws._write(lambda c, sql=sql: c.execute(sql))


@pytest.mark.parametrize(("seed", "how"), [(0, "all"), (1, "one"), (2, "one")])
def test_rebuild_equals_the_live_state_and_the_per_row_rebuild(ws, seed, how, monkeypatch):
    monkeypatch.setattr(labels_module, "_REBUILD_SAMPLES", 7)  # several batches of rows
    add_analysis_three_labels(ws)
    review_a_lot(ws, seed)
    live = everything(ws)
    assert live["reviewed"].sum() > 0 and (live["text"] != live["given_text"]).any()

    with monkeypatch.context() as m:  # a consistent store: no row is written
        m.setattr(type(ws.dialect), "update_many", refuse)
        ws.rebuild_state()
    pd.testing.assert_frame_equal(live, everything(ws))

    corrupt(ws, how)
    assert not everything(ws).equals(live)
    ws.rebuild_state()
    rebuilt = everything(ws)
    corrupt(ws, how)
    ws._write(per_row_rebuild)
    pd.testing.assert_frame_equal(everything(ws), rebuilt)
    pd.testing.assert_frame_equal(live, rebuilt)
    # The search index follows the rebuilt texts.
    assert ws.review_queue(search="scrambled")[1] == 0
    repaired = int((rebuilt["text"].str.contains("repaired")).sum())
    assert ws.review_queue(search="repaired")[1] == repaired


def test_rebuild_resets_rows_without_events_and_keeps_the_knn_when_texts_agree(ws):
    add_analysis_three_labels(ws)
    ws.relabel(5, "neutral", reviewer="ana")
    ws.put_knn("enc", [[(i + 1) % 80] for i in range(80)], [[0.1]] * 80)
    live = everything(ws)
    scramble_derived_state(ws)  # labels, flags and reviewers, not the texts
    ws.rebuild_state()
    pd.testing.assert_frame_equal(live, everything(ws))
    assert ws.get_knn("enc") is not None
    ws._write(lambda c: c.execute("UPDATE samples SET text = 'x' WHERE id = 70"))
    ws.rebuild_state()  # a row without events had another text: it is reset, the graph goes
    assert ws.sample(70)["text"] == ws.sample(70)["given_text"]
    assert ws.get_knn("enc") is None


def add_analysis_three_labels(ws: Workspace, **changes) -> pd.DataFrame:
    """An analysis of every row (three labels, outliers, duplicate groups); ``changes``
    replaces columns. Returns the results saved."""
    rows = ws.samples()
    n = len(rows)
    quality = np.linspace(0.01, 0.99, n)
    results = pd.DataFrame(
        {
            "sample_id": rows["id"],
            "analyzed_label": rows["label"],
            "predicted_label": [LABELS[(i * 7) % 3] for i in range(n)],
            "predicted_prob": 0.9,
            "analyzed_prob": quality,
            "label_quality": quality,
            "is_label_issue": quality < 0.2,
            "is_outlier": pd.array([1 if i % 10 == 0 else 0 for i in range(n)], dtype="Int64"),
            "outlier_score": np.linspace(0, 1, n),
            "dup_group": pd.array([i // 4 if i < 20 else None for i in range(n)], dtype="Int64"),
            "dup_conflict": pd.array([1 if i < 8 else 0 for i in range(n)], dtype="Int64"),
        }
    )
    for name, values in changes.items():
        results[name] = values
    ws.save_analysis(results, method="test", settings={}, label_version=ws.label_version())
    return results


ANALYSIS_COLUMNS = [
    "predicted_label",
    "predicted_prob",
    "label_quality",
    "is_label_issue",
    "is_outlier",
    "outlier_score",
    "dup_group",
    "dup_conflict",
]


def expected_columns(results: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """What ``samples`` must hold after saving ``results`` with the rows' current labels."""
    out = pd.DataFrame(
        {
            "predicted_label": results["predicted_label"].astype(str),
            "predicted_prob": results["predicted_prob"].astype(float),
            "label_quality": results["label_quality"].astype(float),
            "is_label_issue": results["is_label_issue"].astype(int),
            "is_outlier": results["is_outlier"].fillna(0).astype(int),
            "outlier_score": results["outlier_score"].astype(float),
            "dup_group": results["dup_group"].astype("Int64"),
            "dup_conflict": results["dup_conflict"].fillna(0).astype(int),
        }
    )
    out["disagrees"] = (out["predicted_label"] != labels.to_numpy()).astype(int)
    return out.reset_index(drop=True)


def stored_columns(ws: Workspace) -> pd.DataFrame:
    df = ws._frame(f"SELECT {', '.join(ANALYSIS_COLUMNS)}, disagrees FROM samples ORDER BY id")
    df["dup_group"] = df["dup_group"].astype("Int64")
    for col in ("is_label_issue", "is_outlier", "dup_conflict", "disagrees"):
        df[col] = df[col].astype(int)
    return df


def test_save_analysis_twice_sets_the_changed_rows_and_keeps_the_rest(ws, monkeypatch):
    first = add_analysis_three_labels(ws)
    labels = ws.samples()["label"]
    pd.testing.assert_frame_equal(stored_columns(ws), expected_columns(first, labels))
    ws.relabel(3, first["predicted_label"][3], reviewer="ana")  # now agrees with the model

    # A re-analysis: some rows change each kind of value, to and from NULL; the rest do not.
    second = first.copy()
    second.loc[[1, 2], "predicted_label"] = "neutral"
    second.loc[[4], "label_quality"] = 0.5
    second.loc[[6], "predicted_prob"] = 0.25
    second.loc[[0, 10], "is_outlier"] = pd.NA  # stored as 0
    second.loc[[11], "is_outlier"] = 1
    second.loc[[12], "outlier_score"] = np.nan
    second.loc[[0, 1, 2, 3], "dup_group"] = pd.NA  # a group dissolves
    second.loc[[30, 31], "dup_group"] = 99  # a new one
    second.loc[[4, 5], "dup_conflict"] = 0
    second.loc[[2, 40], "is_label_issue"] = [False, True]
    before = everything(ws)
    aid = ws.save_analysis(second, method="test", settings={}, label_version=ws.label_version())
    labels = ws.samples()["label"]
    pd.testing.assert_frame_equal(stored_columns(ws), expected_columns(second, labels))
    after = everything(ws)
    other = [c for c in after.columns if c not in ANALYSIS_COLUMNS and c != "disagrees"]
    pd.testing.assert_frame_equal(before[other], after[other])  # nothing else moved

    # The same values again: no row of samples is written; the analysis is stored all the same.
    written = []
    copy = analysis_module._copy_to_samples
    monkeypatch.setattr(
        analysis_module, "_copy_to_samples", lambda c, a: written.append(copy(c, a)) or written[-1]
    )
    ws.save_analysis(second, method="test", settings={}, label_version=ws.label_version())
    assert written == [0]
    pd.testing.assert_frame_equal(after, everything(ws))
    assert [a.id for a in ws.analyses()][1] == aid
    kept = ws._read("SELECT DISTINCT analysis_id FROM analysis_results ORDER BY analysis_id")
    assert [int(r[0]) for r in kept] == [aid, aid + 1]  # the two newest keep their rows


def test_save_analysis_of_some_rows_leaves_the_others(ws):
    first = add_analysis_three_labels(ws)
    part = first.iloc[:10].copy()
    part["label_quality"] = 0.33
    ws.save_analysis(part, method="test", settings={}, label_version=ws.label_version())
    stored = stored_columns(ws)
    assert (stored["label_quality"][:10] == 0.33).all()
    expected = expected_columns(first, ws.samples()["label"])
    pd.testing.assert_frame_equal(stored[10:], expected[10:])


def test_rebuild_of_a_repaired_row_with_another_text_redoes_the_index_and_drops_the_knn(ws):
    ws.repair_texts([(3, "mended words")], reviewer="ana")
    ws.put_knn("enc", [[(i + 1) % 80] for i in range(80)], [[0.1]] * 80)
    ws._write(lambda c: c.execute("UPDATE samples SET text = 'garbled' WHERE id = 3"))
    ws.rebuild_state()
    assert ws.sample(3)["text"] == "mended words"
    assert ws.review_queue(search="mended words")[1] == 1
    assert ws.review_queue(search="garbled")[1] == 0
    assert ws.get_knn("enc") is None
