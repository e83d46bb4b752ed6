"""Import -> review -> export reads back exactly: what was imported plus the reviewers' changes.

A property test writes random tables in every input format and encoding, imports them, relabels
and excludes a row, exports every format and reads each back with pandas and with Python's
``csv`` module: the ids, texts, labels and metadata must be identical, or the import must stop
with a :class:`DataError`. Hand-made hostile files cover what a fuzzer rarely draws.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from data.export import FORMATS, INSTRUCTION_FORMATS, export_dataset
from data.readers import DataError, prepare_dataset, read_table
from data.store import Workspace

META = '=HYPERLINK("http://x")'  # a hostile header, kept as is by the exact formats
INPUT_FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16")


# ------------------------------------------------------------------ writing the user's file


def write_input(rows: list[dict], fmt: str, encoding: str) -> bytes:
    """The table as a user's tool would save it: every cell a string (or missing)."""
    columns = list(rows[0])
    if fmt == "parquet":
        buf = io.BytesIO()
        pd.DataFrame(rows, columns=columns, dtype=object).to_parquet(buf, index=False)
        return buf.getvalue()
    if fmt in ("csv", "tsv"):
        out = io.StringIO(newline="")
        writer = csv.writer(out, delimiter="," if fmt == "csv" else "\t", lineterminator="\r\n")
        writer.writerow(columns)
        writer.writerows([["" if r[c] is None else r[c] for c in columns] for r in rows])
        text = out.getvalue()
    elif fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        text = json.dumps(rows, ensure_ascii=False)
    return text.encode(encoding)


def import_rows(data: bytes, fmt: str, folder: Path) -> Workspace:
    raw = read_table(data, filename=f"input.{fmt}")
    prepared = prepare_dataset(raw, text_column="text", label_column="label", id_column="id")
    return Workspace.create(folder / "ws", prepared, name="round trip")


# ------------------------------------------------------------------ reading the export back


def read_back(path: Path, fmt: str) -> list[dict]:
    """Every exported row as a dict of strings / values, read the way a user would."""
    if fmt == "csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        by_pandas = [
            {k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in frame.to_dict("records")
        ]
        with open(path, newline="", encoding="utf-8") as handle:
            by_csv = [
                {k: (v if v != "" else None) for k, v in row.items()}
                for row in csv.DictReader(handle)
            ]
        assert by_csv == by_pandas, "pandas and the csv module read the export differently"
        return by_pandas
    if fmt == "jsonl":
        lines = path.read_bytes().decode("utf-8").split("\n")
        assert lines[-1] == ""
        from_json = [json.loads(line) for line in lines[:-1]]
        by_pandas = pd.read_json(path, lines=True, dtype=False).to_dict("records")
        assert [r["id"] for r in by_pandas] == [r["id"] for r in from_json]
        assert [r["text"] for r in by_pandas] == [r["text"] for r in from_json]
        return from_json
    return [
        {k: (None if not isinstance(v, list | dict) and pd.isna(v) else v) for k, v in r.items()}
        for r in pd.read_parquet(path).to_dict("records")
    ]


def expected_rows(rows: list[dict], changes: dict[str, str], excluded: set[str]) -> list[dict]:
    return [
        {
            "id": r["id"],
            "text": r["text"],
            "label": changes.get(r["id"], r["label"]),
            "given_label": r["label"],
            "excluded": r["id"] in excluded,
            META: r[META],
        }
        for r in rows
    ]


def check_export(ws: Workspace, rows: list[dict], changes, excluded, folder: Path) -> None:
    want = expected_rows(rows, changes, excluded)
    for fmt in FORMATS:
        if fmt == "csv-spreadsheet":
            continue  # changes formula-like cells on purpose: tested in test_export
        path = export_dataset(ws, folder / f"out.{fmt}", fmt=fmt)
        back = read_back(path, fmt)
        assert len(back) == len(want), fmt
        for got, row in zip(back, want, strict=True):
            assert got["id"] == row["id"], fmt
            assert got["text"] == row["text"], fmt
            assert got["label"] == row["label"], fmt
            assert got["given_label"] == row["given_label"], fmt
            assert got[META] == row[META], (fmt, got[META], row[META])
            excluded_back = got["excluded"]
            if isinstance(excluded_back, str):
                excluded_back = excluded_back == "True"
            assert bool(excluded_back) == row["excluded"], fmt
    for style in INSTRUCTION_FORMATS:
        path = export_dataset(ws, folder / f"{style}.jsonl", fmt=style)
        records = [json.loads(line) for line in path.read_text("utf-8").split("\n") if line]
        kept = [r for r in want if not r["excluded"]]
        assert len(records) == len(kept)
        for record, row in zip(records, kept, strict=True):
            if style == "chat":
                user, answer = record["messages"][1]["content"], record["messages"][2]["content"]
                assert (user, answer) == (row["text"], row["label"])
            else:
                assert record["text"] == f"[Text]: {row['text']}\n[Sentiment]: {row['label']}"


# ------------------------------------------------------------------ the property


# Text as users have it: any script, emoji, quotes, separators, CR / LF / U+2028, formula
# starts. Surrogates cannot be written as UTF-8; NUL and most C0 controls make a text file look
# binary, so they are drawn only rarely (tab, CR, LF are common).
_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_SPECIAL = st.sampled_from(
    ["\r", "\n", "\r\n", "\u2028", '"', ",", ";", "\t", "=", "+", "-", "@", "'", "\\", "é", "😀"]
)
_TEXT = st.lists(st.one_of(_CHARS, _SPECIAL), min_size=1, max_size=12).map("".join)
# Ids that look like numbers are the ones readers used to rewrite: "1.50", "+7", "1e3", ".7".
_ID = st.one_of(
    st.from_regex(r"\A[+-]?[0-9]{0,3}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,2})?\Z"),
    st.text(alphabet="0123456789abc.-_ +#x", min_size=1, max_size=6),
    _TEXT,
)
_LABELS = ["positive", "negative", "1", "1.0", "01", "-0", "=SUM(A1)", "<b>x</b>", "ünï"]


@st.composite
def tables(draw) -> list[dict]:
    n = draw(st.integers(min_value=4, max_value=10))
    ids = draw(st.lists(_ID, min_size=n, max_size=n, unique=True))
    texts = draw(st.lists(_TEXT, min_size=n, max_size=n))
    labels = draw(st.lists(st.sampled_from(_LABELS[:4]), min_size=n, max_size=n))
    metas = draw(st.lists(st.one_of(st.none(), _TEXT), min_size=n, max_size=n))
    return [
        {"id": i, "text": t, "label": y, META: m}
        for i, t, y, m in zip(ids, texts, labels, metas, strict=True)
    ]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    rows=tables(),
    fmt=st.sampled_from(INPUT_FORMATS),
    encoding=st.sampled_from(ENCODINGS),
    data=st.data(),
)
def test_import_review_export_reads_back_exactly(rows, fmt, encoding, data):
    # Empty or whitespace-only text, and an id or label that is only whitespace, are refused
    # or normalised by design (labels are stripped); draw tables without them.
    assume(all(r["text"].strip() for r in rows))
    assume(len({r["label"] for r in rows}) >= 2)
    if fmt in ("csv", "tsv"):
        # In a CSV an empty cell is the only way to write "missing": a metadata value that is
        # an empty string reads back as missing, by the format's nature.
        assume(all(r[META] != "" for r in rows))
    payload = write_input(rows, fmt, encoding)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            ws = import_rows(payload, fmt, folder)
        except DataError as exc:
            # A refusal must say what is wrong; it must never be a crash or a silent change.
            assert len(str(exc)) > 40
            return
        try:
            assert ws.samples()["ext_id"].tolist() == [r["id"] for r in rows]
            first, second = ws.sample_ids([rows[0]["id"], rows[1]["id"]])
            new_label = data.draw(st.sampled_from([y for y in ws.label_names]))
            ws.relabel(first, new_label, reviewer="ana")
            ws.set_excluded(second, reviewer="bo")
            changes = {rows[0]["id"]: new_label}
            check_export(ws, rows, changes, {rows[1]["id"]}, folder)
        finally:
            ws.close()


# ------------------------------------------------------------------ hostile files, by hand

HOSTILE_TEXTS = [
    "@user thanks!",  # 47% of the demo's tweets start with @
    '=HYPERLINK("http://evil.example","click")',
    "+7",
    "-0",
    "\tindented",
    "a bare\rcarriage return",
    "\rstarts with CR",
    "a\r\nwindows line",
    'quote " inside, and a comma',
    "line\u2028separator",
    "<script>alert(1)</script>",
    "1e3",
]
HOSTILE_IDS = ["1.50", "+7", "1e3", ".7", "0", "0.0", "007", "-0", " 5", "1,5", "x`y", "NaN"]


def _hostile_rows() -> list[dict]:
    labels = ["positive", "negative"] * (len(HOSTILE_TEXTS) // 2)
    return [
        {"id": i, "text": t, "label": y, META: t if k % 2 else None}
        for k, (i, t, y) in enumerate(zip(HOSTILE_IDS, HOSTILE_TEXTS, labels, strict=True))
    ]


@pytest.mark.parametrize("fmt", INPUT_FORMATS)
def test_hostile_table_round_trips_in_every_format(fmt, tmp_path):
    rows = _hostile_rows()
    ws = import_rows(write_input(rows, fmt, "utf-8"), fmt, tmp_path)
    try:
        assert ws.samples()["ext_id"].tolist() == HOSTILE_IDS
        assert ws.samples()["text"].tolist() == HOSTILE_TEXTS
        a, b = ws.sample_ids(["1.50", "0.0"])
        ws.relabel(a, "negative", reviewer="ana")
        ws.set_excluded(b, reviewer="ana")
        check_export(ws, rows, {"1.50": "negative"}, {"0.0"}, tmp_path)
    finally:
        ws.close()


def test_numeric_looking_cells_keep_their_spelling():
    data = b"id,text,label\n1.50,1.50,1\n+7,-0,2.0\n1e3,+7,1\n.7,1e3,2.0\n"
    prepared = prepare_dataset(
        read_table(data, filename="n.csv"), text_column="text", label_column="label", id_column="id"
    )
    assert prepared.frame["ext_id"].tolist() == ["1.50", "+7", "1e3", ".7"]
    assert prepared.frame["text"].tolist() == ["1.50", "-0", "+7", "1e3"]
    assert prepared.label_names == ["1", "2.0"]


def test_json_numbers_keep_their_spelling_as_ids_texts_and_labels():
    data = (
        b'{"id": 1.50, "text": 1e3, "label": 1, "score": 0.50}\n'
        b'{"id": 0, "text": "ok", "label": 2.0, "score": 2}\n'
        b'{"id": 0.0, "text": "fine", "label": 1, "score": null}\n'
        b'{"id": -0, "text": "good", "label": 2.0, "score": 1e-3}\n'
    )
    raw = read_table(data, filename="n.jsonl")
    prepared = prepare_dataset(raw, text_column="text", label_column="label", id_column="id")
    assert prepared.frame["ext_id"].tolist() == ["1.50", "0", "0.0", "-0"]
    assert prepared.frame["text"].tolist() == ["1e3", "ok", "fine", "good"]
    assert prepared.label_names == ["1", "2.0"]
    # Metadata keeps JSON's numbers and their types: 2 stays an int, not 2.0.
    scores = [m["score"] for m in prepared.frame["meta"]]
    assert scores == [0.5, 2, None, 0.001] and type(scores[1]) is int


def test_a_binary_parquet_text_column_is_decoded_not_stringified(tmp_path):
    buf = io.BytesIO()
    pd.DataFrame({"text": [b"great", b"caf\xe9", b"fine"], "label": ["a", "b", "a"]}).to_parquet(
        buf
    )
    raw = read_table(buf.getvalue(), filename="b.parquet")
    assert raw.frame["text"].tolist() == ["great", "café", "fine"]
    assert raw.affected_rows == [1] and "holds bytes" in raw.warnings[0]


def test_integer_column_names_can_be_chosen():
    buf = io.BytesIO()
    pd.DataFrame({0: ["good", "bad", "fine"], 1: ["pos", "neg", "pos"]}).to_parquet(buf)
    raw = read_table(buf.getvalue(), filename="i.parquet")
    prepared = prepare_dataset(raw, text_column="0", label_column="1")
    assert prepared.frame["text"].tolist() == ["good", "bad", "fine"]


@pytest.mark.parametrize(
    ("payload", "name", "message"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "deep.json", "nests arrays or objects too deeply"),
        (
            b'{"text": "a", "label": "x", "n": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n",
            "deep.jsonl",
            "line 1 nests arrays or objects too deeply",
        ),
        (
            b'{"text": ["a", "b", "c"], "label": ["x", "y"]}',
            "cols.json",
            "lists have different lengths \\('text': 3, 'label': 2\\)",
        ),
        (b"a\nb\n", "notes.txt", "Save or rename the file with one of those suffixes"),
        (b"", "empty.csv", "is empty"),
    ],
)
def test_bad_files_get_a_clear_error(payload, name, message):
    with pytest.raises(DataError, match=message):
        read_table(payload, filename=name)


def test_a_lone_surrogate_is_replaced_and_reported(tmp_path):
    data = b'{"text": "bad \\ud800 half", "label": "a"}\n{"text": "ok", "label": "b"}\n'
    raw = read_table(data, filename="s.jsonl")
    assert raw.frame["text"].tolist() == ["bad \ufffd half", "ok"]
    assert raw.affected_rows == [0] and "lone surrogate" in raw.warnings[0]
    prepared = prepare_dataset(raw, text_column="text", label_column="label")
    ws = Workspace.create(tmp_path / "s", prepared)  # stores: no codec error
    assert ws.counts()["encoding_fixed"] == 1
    ws.close()


def test_a_class_with_one_row_is_named_at_import_and_refused_before_embedding(tmp_path):
    from curation.pipeline import analyze

    frame = pd.DataFrame({"text": ["a", "b", "c", "d", "e"], "label": ["x", "x", "y", "y", "z"]})
    prepared = prepare_dataset(frame, text_column="text", label_column="label")
    assert prepared.lonely_labels == ["z"]
    assert any("'z' have a single row" in w for w in prepared.warnings)
    with pytest.raises(ValueError, match="label\\(s\\) 'z' have a single row"):
        # No encoder is given and none may load: the check runs before any embedding.
        analyze(frame["text"].tolist(), frame["label"].tolist(), label_names=["x", "y", "z"])


def test_metadata_named_like_a_provenance_column_is_kept(tmp_path):
    # The file's own "id" is not chosen as the id column, so it is metadata; the export's
    # "id" column is the row number. Neither may hide the other.
    frame = pd.DataFrame(
        {"id": ["a-1", "a-2", "a-3", "a-4"], "text": ["w", "x", "y", "z"], "y": list("ppnn")}
    )
    prepared = prepare_dataset(frame, text_column="text", label_column="y")
    ws = Workspace.create(tmp_path / "m", prepared)
    back = pd.read_csv(export_dataset(ws, tmp_path / "m.csv"), dtype=str)
    ws.close()
    assert back["id"].tolist() == ["0", "1", "2", "3"]
    assert back["id (metadata)"].tolist() == ["a-1", "a-2", "a-3", "a-4"]
