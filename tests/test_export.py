"""Export: provenance columns, formula-injection safety, all three formats."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from data.export import FORMATS, curated_frame, export_dataset, neutralize_formulas, to_bytes


def test_provenance_columns_and_changes(workspace):
    workspace.relabel(0, "negative", reviewer="ana")
    workspace.set_excluded(1, reviewer="ana")
    frame = curated_frame(workspace)
    for col in [
        "id",
        "text",
        "label",
        "original_label",
        "changed",
        "excluded",
        "reviewer",
        "reviewed_at",
        "label_quality",
        "is_label_issue",
        "predicted_label",
    ]:
        assert col in frame.columns
    assert frame.loc[0, "label"] == "negative" and frame.loc[0, "original_label"] == "positive"
    assert frame.loc[0, "changed"] and frame.loc[0, "reviewer"] == "ana"
    assert frame.loc[1, "excluded"] and not frame.loc[1, "changed"]
    assert frame["changed"].sum() == 1


def test_csv_neutralises_formulas():
    frame = pd.DataFrame(
        {"text": ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "fine"], "n": [1, 2, 3, 4, 5]}
    )
    out = pd.read_csv(io.BytesIO(to_bytes(frame, "csv")), encoding="utf-8-sig")
    assert all(not str(v).startswith(("=", "+", "-", "@")) for v in out["text"])
    assert out["text"].tolist()[-1] == "fine"
    assert neutralize_formulas(frame)["n"].tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips(workspace, tmp_path, fmt):
    path = export_dataset(workspace, tmp_path / f"out.{fmt}")
    if fmt == "csv":
        back = pd.read_csv(path, encoding="utf-8-sig")
    elif fmt == "jsonl":
        back = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    else:
        back = pd.read_parquet(path)
    assert len(back) == workspace.counts()["n"]
    assert set(back["label"]) == {"positive", "negative"}


def test_unknown_format_names_the_valid_ones(workspace, tmp_path):
    with pytest.raises(ValueError, match="csv"):
        export_dataset(workspace, tmp_path / "out.xlsx")
