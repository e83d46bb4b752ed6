"""Export: provenance columns, formula-injection safety, tabular and instruction formats."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from data.export import (
    FORMATS,
    curated_frame,
    export_dataset,
    instruction_bytes,
    instruction_records,
    neutralize_formulas,
    to_bytes,
)

ROOT = Path(__file__).resolve().parent.parent


def test_provenance_columns_and_changes(workspace):
    workspace.relabel(0, "negative", reviewer="ana")
    workspace.set_excluded(1, reviewer="ana")
    frame = curated_frame(workspace)
    for col in [
        "id",
        "text",
        "label",
        "given_label",
        "changed",
        "excluded",
        "reviewer",
        "reviewed_at",
        "label_quality",
        "is_label_issue",
        "predicted_label",
    ]:
        assert col in frame.columns
    assert frame.loc[0, "label"] == "negative" and frame.loc[0, "given_label"] == "positive"
    assert frame.loc[0, "changed"] and frame.loc[0, "reviewer"] == "ana"
    assert frame.loc[1, "excluded"] and not frame.loc[1, "changed"]
    assert frame["changed"].sum() == 1


def test_csv_for_spreadsheets_neutralises_formulas_in_cells_and_headers():
    frame = pd.DataFrame(
        {
            "text": ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "fine"],
            "n": [1, 2, 3, 4, 5],
            '=HYPERLINK("http://evil")': ["a", "b", "c", "d", "e"],
        }
    )
    data = to_bytes(frame, "csv-spreadsheet")
    assert data.startswith(b"\xef\xbb\xbf")  # a BOM, for Excel
    out = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")
    assert all(not str(v).startswith(("=", "+", "-", "@")) for v in out["text"])
    assert out["text"].tolist()[-1] == "fine"
    assert out.columns[-1] == '\'=HYPERLINK("http://evil")'
    assert neutralize_formulas(frame)["n"].tolist() == [1, 2, 3, 4, 5]


def test_plain_csv_keeps_formula_like_cells_exactly():
    texts = ["@user hi", "=1+1", "+7", "-0", "\tindented", "\rcarriage", "a\rb", "fine"]
    frame = pd.DataFrame({"text": texts, "=HYPERLINK(1)": texts})
    data = to_bytes(frame, "csv")
    assert not data.startswith(b"\xef\xbb\xbf")
    back = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    assert back["text"].tolist() == texts and list(back.columns) == list(frame.columns)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips(workspace, tmp_path, fmt):
    path = export_dataset(workspace, tmp_path / f"out.{fmt}", fmt=fmt)
    if fmt.startswith("csv"):
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


# ------------------------------------------------------------------ instruction-tuning formats


@pytest.fixture
def tiny_ws(tmp_path):
    """Three rows: one relabelled (curated label wins), one excluded (left out)."""
    from data.store import Workspace
    from tests.conftest import make_prepared

    prepared = make_prepared(
        ["I love it ☺", 'Meh, "fine"\nI guess', "=cmd|' /C calc'!A0"],
        ["positive", "positive", "negative"],
        splits=["train", "test", "train"],
    )
    ws = Workspace.create(tmp_path / "tiny", prepared, name="tiny")
    ws.relabel(1, "negative", reviewer="ana")
    ws.set_excluded(2, reviewer="ana")
    yield ws
    ws.close()


def test_instruction_format_exact_lines(tiny_ws, tmp_path):
    path = export_dataset(tiny_ws, tmp_path / "out.jsonl", fmt="instruction")
    assert path.read_bytes().decode("utf-8") == (
        '{"text": "[Text]: I love it ☺\\n[Sentiment]: positive"}\n'
        '{"text": "[Text]: Meh, \\"fine\\"\\nI guess\\n[Sentiment]: negative"}\n'
    )


def test_chat_format_exact_lines(tiny_ws, tmp_path):
    path = export_dataset(tiny_ws, tmp_path / "out.jsonl", fmt="chat", label_field="Tone")
    system = {
        "role": "system",
        "content": "Classify the tone of the text. Answer with one of: negative, positive.",
    }
    assert [json.loads(line) for line in path.read_text("utf-8").splitlines()] == [
        {
            "messages": [
                system,
                {"role": "user", "content": "I love it ☺"},
                {"role": "assistant", "content": "positive"},
            ]
        },
        {
            "messages": [
                system,
                {"role": "user", "content": 'Meh, "fine"\nI guess'},
                {"role": "assistant", "content": "negative"},
            ]
        },
    ]


def test_instruction_split_filter_custom_prompt_and_no_formula_prefix(tiny_ws):
    frame = curated_frame(tiny_ws, split="train")
    assert frame["id"].tolist() == ["0", "2"]
    # The excluded row is the only other train row; JSONL keeps values exactly (no ' prefix).
    frame.loc[1, "excluded"] = False
    records = instruction_records(frame, "chat", system_prompt="Label it.")
    assert [r["messages"][0]["content"] for r in records] == ["Label it.", "Label it."]
    assert records[1]["messages"][1]["content"] == "=cmd|' /C calc'!A0"


def test_instruction_bad_options_name_the_fix(tiny_ws, tmp_path):
    frame = curated_frame(tiny_ws)
    with pytest.raises(ValueError, match="instruction"):
        instruction_bytes(frame, "alpaca")
    with pytest.raises(ValueError, match="label_field"):
        instruction_bytes(frame, "instruction", label_field="[Mood]")
    with pytest.raises(ValueError, match="'test', 'train'"):
        export_dataset(tiny_ws, tmp_path / "x.jsonl", fmt="chat", split="validation")
    with pytest.raises(ValueError, match="instruction_bytes"):
        to_bytes(frame, "chat")


def test_cli_exports_instruction_formats(tiny_ws, tmp_path):
    import cli

    out = tmp_path / "chat.jsonl"
    code = cli.main(
        ["export", str(tiny_ws.folder), "--format", "chat", "--split", "test", "--out", str(out)]
    )
    assert code == 0
    [line] = out.read_text("utf-8").splitlines()
    assert json.loads(line)["messages"][2] == {"role": "assistant", "content": "negative"}


def test_export_page_offers_instruction_downloads(tmp_path, monkeypatch, tiny_ws):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SECOND_LOOK_HOME", str(tmp_path))  # tiny_ws is tmp_path/tiny
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/export.py")
    at.run()
    assert not at.exception, at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download instruction JSONL (2 examples)" in labels
    assert "Download chat JSONL (2 examples)" in labels
    at.text_input(key="export_label_field").input("Tone").run()
    at.selectbox(key="export_split").select("test").run()
    assert not at.exception, at.exception
    assert any(c.value.endswith('[Tone]: negative"}') for c in at.code)
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download chat JSONL (1 example)" in labels
