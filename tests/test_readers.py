"""Tests of reading tables in every format (data.readers, data.encoding) and preparing the
app's dataset (data.prepare), through the data.readers imports the app uses."""

from __future__ import annotations

import io
import json
import random
import zipfile

import numpy as np
import pandas as pd
import pytest

from data.demo import DEMO_LABEL_COLUMN, DEMO_TEXT_COLUMN, demo_csv_path
from data.readers import DataError, PreparedDataset, ReadResult, prepare_dataset, read_table

COLUMNS = ["ext_id", "text", "label", "split", "meta", "encoding_fixed"]


def _csv(tmp_path, content: bytes | str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _frame(n: int = 20, **extra) -> pd.DataFrame:
    data = {"text": [f"text {i}" for i in range(n)], "label": ["a", "b"] * (n // 2)}
    data.update(extra)
    return pd.DataFrame(data)


def _prepare(frame, **kwargs) -> PreparedDataset:
    kwargs.setdefault("text_column", "text")
    kwargs.setdefault("label_column", "label")
    return prepare_dataset(frame, **kwargs)


# ------------------------------------------------------------------------------- read_table


def test_missing_path_names_the_path(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="nope.csv"):
        read_table(path)


@pytest.mark.parametrize(
    "content, name",
    [(b"", "empty.csv"), (b"text,label\n", "header.csv"), (b"[]", "x.json"), (b"\n\n", "x.jsonl")],
)
def test_empty_file_is_refused(tmp_path, content, name):
    with pytest.raises(DataError, match=r"empty|no rows|no data|no header"):
        read_table(_csv(tmp_path, content, name))


def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(DataError, match=r"csv.*tsv.*jsonl.*parquet.*hf"):
        read_table(_csv(tmp_path, "a,b\n1,2\n", "data.xlsx"))
    with pytest.raises(DataError, match="Valid formats"):
        read_table(b"a,b\n1,2\n", filename="data.csv", format="excel")


def test_csv_reads_values_and_types(tmp_path):
    path = _csv(tmp_path, 'id,text,label,score\n007,"hi, there",1,0.5\n008,NA,0,\n')
    result = read_table(path)
    assert isinstance(result, ReadResult)
    assert result.encoding == "utf-8" and result.affected_rows == [] and result.warnings == []
    frame = result.frame
    assert list(frame.columns) == ["id", "text", "label", "score"]
    # Every cell is the text in the file: leading zeros are kept (ids), "NA" is text, and
    # numbers keep their spelling; only an empty cell is missing.
    assert frame["id"].tolist() == ["007", "008"]
    assert frame["text"].tolist() == ["hi, there", "NA"]
    assert frame["label"].tolist() == ["1", "0"]
    assert frame["score"].iloc[0] == "0.5" and pd.isna(frame["score"].iloc[1])


def test_tsv_and_semicolon_csv(tmp_path):
    tsv = read_table(_csv(tmp_path, "text\tlabel\nhello, world\tpos\n", "d.tsv"))
    assert tsv.frame.to_dict("records") == [{"text": "hello, world", "label": "pos"}]
    semi = read_table(_csv(tmp_path, "text;label\nhello;pos\n"))
    assert semi.frame.to_dict("records") == [{"text": "hello", "label": "pos"}]
    assert any("semicolons" in w for w in semi.warnings)


@pytest.mark.parametrize(
    "content",
    [
        random.Random(0).randbytes(4096),
        bytes(random.Random(1).choice(range(1, 32)) for _ in range(200)),  # no NUL, all control
        b"text,label\nhello\x00world,a\n",
    ],
    ids=["random", "control-bytes", "nul"],
)
def test_binary_bytes_are_refused(tmp_path, content):
    with pytest.raises(DataError, match="Could not parse .* as CSV.*Check the format"):
        read_table(_csv(tmp_path, content))


def test_zip_and_parquet_renamed_csv_are_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.csv", "text,label\na,b\n")
    with pytest.raises(DataError, match="as CSV: it looks like a zip"):
        read_table(buffer.getvalue(), filename="data.csv")
    parquet = _frame().to_parquet()
    with pytest.raises(DataError, match="as CSV: it looks like a Parquet.*Check the format"):
        read_table(parquet, filename="data.csv")
    with pytest.raises(DataError, match="as Parquet.*Check the format"):
        read_table(b"text,label\na,b\n", filename="data.parquet")


def test_malformed_csv_reports_the_line(tmp_path):
    with pytest.raises(DataError, match=r"Expected 2 fields in line 3, saw 3"):
        read_table(_csv(tmp_path, "text,label\na,b\nc,d,e\n"))


def test_invalid_utf8_falls_back_to_cp1252_for_those_bytes_only(tmp_path):
    # Row 0 is valid UTF-8 (é as two bytes), rows 1 and 3 hold cp1252 bytes (é, smart quotes),
    # and row 3 spans two lines inside quotes.
    content = (
        "text,label\ncaf\u00e9 ok,a\n".encode()
        + b"caf\xe9,b\n"
        + b"plain,a\n"
        + b'"\x93quoted\x94\nsecond line",b\n'
    )
    result = read_table(_csv(tmp_path, content))
    assert result.frame["text"].tolist() == [
        "café ok",
        "café",
        "plain",
        "\u201cquoted\u201d\nsecond line",
    ]
    assert result.affected_rows == [1, 3]
    assert result.encoding == "utf-8 (cp1252 fallback for 2 rows)"
    assert len(result.warnings) == 1 and "2 rows" in result.warnings[0]
    assert "encoding fixed" in result.warnings[0]
    prepared = _prepare(result)
    assert prepared.frame["encoding_fixed"].tolist() == [False, True, False, True]
    assert prepared.encoding == result.encoding
    assert prepared.warnings[: len(result.warnings)] == result.warnings


def test_bytes_undefined_in_cp1252_decode_as_latin1(tmp_path):
    result = read_table(b"text,label\nx\x81y,a\n", filename="d.csv")
    assert result.frame["text"].tolist() == ["x\x81y"]
    assert result.affected_rows == [0]


def test_bom_utf8_and_utf16(tmp_path):
    frame = pd.DataFrame({"text": ["naïve"], "label": ["a"]})
    text = frame.to_csv(index=False)
    with_bom = read_table(_csv(tmp_path, b"\xef\xbb\xbf" + text.encode()))
    assert list(with_bom.frame.columns) == ["text", "label"]  # no BOM glued to "text"
    assert with_bom.encoding == "utf-8"
    for codec in ("utf-16", "utf-16-be"):
        data = text.encode(codec) if codec == "utf-16" else b"\xfe\xff" + text.encode(codec)
        result = read_table(data, filename="x.csv")
        assert result.encoding == "utf-16"
        assert result.frame.to_dict("records") == [{"text": "naïve", "label": "a"}]


def test_mostly_invalid_western_file_keeps_cp1252():
    # charset_normalizer would pick cp1257 here and turn "à" into "ą"; cp1252 is right.
    rows = [f"d\xe9j\xe0 vu {i} \u2013 \xab{i}\xbb,{'ab'[i % 2]}" for i in range(40)]
    content = ("text,label\n" + "\n".join(rows) + "\n").encode("cp1252")
    result = read_table(content, filename="x.csv")
    assert len(result.affected_rows) == 40
    assert result.encoding == "utf-8 (cp1252 fallback for 40 rows)"
    assert result.frame["text"].iloc[0] == "déjà vu 0 \u2013 «0»"


def test_mostly_invalid_cyrillic_file_uses_charset_normalizer_guess():
    rows = [f"Привет мир номер {i},{'ab'[i % 2]}" for i in range(40)]
    content = ("text,label\n" + "\n".join(rows) + "\n").encode("cp1251")
    result = read_table(content, filename="x.csv")
    assert result.frame["text"].iloc[0] == "Привет мир номер 0"
    assert result.encoding.startswith("cp1251 (detected")
    assert len(result.affected_rows) == 40 and "charset_normalizer" in result.warnings[0]


def test_demo_file_imports_with_encoding_report():
    result = read_table(demo_csv_path())
    assert result.frame.shape == (38158, 3)
    assert list(result.frame.columns) == ["sentiment", "confidence", "text"]
    assert result.encoding == "utf-8 (cp1252 fallback for 4,934 rows)"
    assert len(result.affected_rows) == 4934
    assert "4,934 rows" in result.warnings[0]
    # The crowd confidence stays the text in the file ("0.7547"): an export writes it back
    # as it was; the experiments read it with pd.to_numeric.
    assert result.frame["confidence"].iloc[0] == "0.7547"
    prepared = prepare_dataset(result, text_column=DEMO_TEXT_COLUMN, label_column=DEMO_LABEL_COLUMN)
    frame = prepared.frame
    assert len(frame) == 38158 and list(frame.columns) == COLUMNS
    assert prepared.label_names == ["negative", "neutral", "positive"]
    assert int(frame["encoding_fixed"].sum()) == 4934
    assert not frame["text"].str.contains("\ufffd").any()
    # NaN confidences are None in meta, so every meta is valid JSON.
    json.dumps(frame["meta"].tolist(), allow_nan=False)


def test_jsonl_and_json_array(tmp_path):
    records = [{"id": 1, "text": "a", "label": 0}, {"id": 2, "text": "b", "label": 1}]
    lines = "\n".join(json.dumps(r) for r in records) + "\n\n"
    jsonl = read_table(_csv(tmp_path, lines, "d.jsonl"))
    assert jsonl.frame.to_dict("records") == records
    as_json = read_table(_csv(tmp_path, lines, "d.json"))  # JSON Lines in a .json file
    assert as_json.frame.to_dict("records") == records
    array = read_table(_csv(tmp_path, json.dumps(records), "a.json"))
    assert array.frame.to_dict("records") == records
    prepared = _prepare(array, id_column="id")
    assert prepared.frame["ext_id"].tolist() == ["1", "2"]
    assert prepared.frame["label"].tolist() == ["0", "1"]
    with pytest.raises(DataError, match="line 2"):
        read_table(b'{"text": "a"}\n{"text": oops}\n', filename="d.jsonl")
    latin = read_table(b'{"text": "a"}\n\n{"text": "caf\xe9"}\n', filename="d.jsonl")
    assert latin.frame["text"].tolist() == ["a", "café"] and latin.affected_rows == [1]


def test_parquet(tmp_path):
    frame = _frame(4, tags=[["x"], [], ["y", "z"], ["x"]])
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)
    result = read_table(path)
    assert result.frame["text"].tolist() == frame["text"].tolist()
    prepared = _prepare(result)
    # Arrays from Parquet become lists in meta.
    assert prepared.frame["meta"].tolist()[2] == {"tags": ["y", "z"]}


def test_hf_dataset_dict_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["neg", "pos"]),
        }
    )
    splits = {
        "train": {"sentence": ["bad", "good", "meh"], "label": [0, 1, 0]},
        "test": {"sentence": ["fine"], "label": [1]},
    }
    folder = tmp_path / "hf"
    datasets.DatasetDict(
        {k: datasets.Dataset.from_dict(v, features=features) for k, v in splits.items()}
    ).save_to_disk(str(folder))
    result = read_table(folder)
    assert result.frame.to_dict("records") == [
        {"sentence": "bad", "label": "neg", "split": "train"},
        {"sentence": "good", "label": "pos", "split": "train"},
        {"sentence": "meh", "label": "neg", "split": "train"},
        {"sentence": "fine", "label": "pos", "split": "test"},
    ]
    prepared = prepare_dataset(
        result, text_column="sentence", label_column="label", split_column="split"
    )
    assert prepared.frame["split"].tolist() == ["train", "train", "train", "test"]
    assert prepared.split_seed is None and prepared.test_size is None
    single = tmp_path / "single"
    datasets.Dataset.from_dict(splits["train"], features=features).save_to_disk(str(single))
    assert read_table(single).frame["label"].tolist() == ["neg", "pos", "neg"]


def test_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(DataError, match="save_to_disk"):
        read_table(tmp_path)


def test_upload_bytes_and_file_object():
    content = b"text,label\nhello,a\nbye,b\n"
    from_bytes = read_table(content, filename="upload.csv")
    assert from_bytes.source == "upload.csv"
    assert from_bytes.frame["text"].tolist() == ["hello", "bye"]
    upload = io.BytesIO(content)
    upload.name = "upload.tsv"  # the name of the file object is used, but format wins
    upload.read()  # an earlier rerun may have consumed it
    from_file = read_table(upload, format="csv")
    assert from_file.source == "upload.tsv"
    assert from_file.frame.equals(from_bytes.frame)


# -------------------------------------------------------------------------- prepare_dataset


def test_prepared_frame_columns_and_meta():
    frame = _frame(4, score=[0.5, np.nan, 1.0, 2.0], k=np.array([1, 2, 3, 4], dtype=np.int32))
    prepared = _prepare(frame)
    assert list(prepared.frame.columns) == COLUMNS
    assert prepared.frame["ext_id"].tolist() == ["0", "1", "2", "3"]
    assert prepared.frame["meta"].tolist()[:2] == [{"score": 0.5, "k": 1}, {"score": None, "k": 2}]
    assert type(prepared.frame["meta"].iloc[0]["k"]) is int
    json.dumps(prepared.frame["meta"].tolist(), allow_nan=False)
    assert prepared.label_names == ["a", "b"]
    assert prepared.encoding == "n/a (DataFrame)" and prepared.dropped_rows == 0


def test_unknown_column_lists_the_available_ones():
    with pytest.raises(DataError, match=r"'nope'.*Available columns: 'text', 'label'"):
        _prepare(_frame(), text_column="nope")
    with pytest.raises(DataError, match="Available columns"):
        _prepare(_frame(), id_column="nope")


def test_empty_text_is_refused_with_row_numbers_or_dropped():
    frame = _frame(10)
    frame.loc[[1, 4, 7], "text"] = [np.nan, "", "  \t"]
    with pytest.raises(DataError, match=r"3 rows have empty text") as info:
        _prepare(frame)
    message = str(info.value)
    assert "rows 3, 6, 9" in message and "header is row 1" in message
    assert "Drop rows with empty text" in message
    prepared = _prepare(frame, drop_empty_text=True)
    assert prepared.dropped_rows == 3 and len(prepared.frame) == 7
    assert any("Dropped 3 rows" in w for w in prepared.warnings)
    # ext_id stays the row position in the original table.
    assert prepared.frame["ext_id"].tolist() == ["0", "2", "3", "5", "6", "8", "9"]


def test_missing_labels_are_refused():
    frame = _frame(10)
    frame.loc[[2, 5], "label"] = [np.nan, " "]
    with pytest.raises(DataError, match=r"2 rows have no label.*rows 4, 7.*Fill in"):
        _prepare(frame)


def test_single_class_is_refused():
    with pytest.raises(DataError, match="at least two classes"):
        _prepare(_frame(4).assign(label="a"))


def test_labels_are_strings_without_float_suffix_or_spaces():
    ints = _prepare(_frame(4).assign(label=[0, 1, 0, 1]))
    assert ints.frame["label"].tolist() == ["0", "1", "0", "1"] and ints.label_names == ["0", "1"]
    floats = _prepare(_frame(4).assign(label=[0.0, 1.0, 0.0, 1.0]))
    assert floats.frame["label"].tolist() == ["0", "1", "0", "1"]
    mixed = _prepare(_frame(4).assign(label=pd.Series([1, "1", " pos ", "pos"], dtype=object)))
    assert mixed.frame["label"].tolist() == ["1", "1", "pos", "pos"]


def test_numeric_labels_with_a_gap_in_csv_still_refused_not_float(tmp_path):
    result = read_table(_csv(tmp_path, "text,label\na,0\nb,1\nc,\n"))
    with pytest.raises(DataError, match="1 row has no label.*row 4"):
        _prepare(result)
    ok = _prepare(read_table(_csv(tmp_path, "text,label\na,0\nb,1\nc,1\n", "ok.csv")))
    assert ok.frame["label"].tolist() == ["0", "1", "1"]


def test_duplicate_ids_are_listed():
    frame = _frame(6, id=["x", "y", "x", "z", "y", "w"])
    with pytest.raises(DataError, match=r"appear more than once: 'x' \(2x\), 'y' \(2x\)"):
        _prepare(frame, id_column="id")
    prepared = _prepare(frame.assign(id=[10, 11, 12, 13, 14, 15]), id_column="id")
    assert prepared.frame["ext_id"].tolist() == ["10", "11", "12", "13", "14", "15"]
    assert "id" not in prepared.frame["meta"].iloc[0]


def test_split_aliases_are_normalised_and_unknown_values_refused():
    given = ["Train", "training", "TEST", "testing", "valid", "val", "dev", "eval", "validation"]
    frame = _frame(10, part=[*given, "train"])
    prepared = _prepare(frame, split_column="part")
    assert prepared.frame["split"].tolist() == [
        "train",
        "train",
        "test",
        "test",
        *["validation"] * 5,
        "train",
    ]
    assert prepared.split_seed is None and prepared.test_size is None
    with pytest.raises(DataError, match=r"'holdout'.*Valid splits: train, test, validation"):
        _prepare(frame.assign(part=["train"] * 9 + ["holdout"]), split_column="part")


def test_split_is_stratified_and_seeded():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 19 + ["lonely"]
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": labels})
    first = _prepare(frame, test_size=0.2, seed=3)
    again = _prepare(frame, test_size=0.2, seed=3)
    other = _prepare(frame, test_size=0.2, seed=4)
    assert first.frame["split"].tolist() == again.frame["split"].tolist()
    assert first.frame["split"].tolist() != other.frame["split"].tolist()
    assert first.split_seed == 3 and first.test_size == 0.2
    split = first.frame.set_index("label")["split"]
    test_counts = split[split == "test"].groupby(level=0).size().to_dict()
    assert test_counts == {"a": 10, "b": 6, "c": 4}  # stratified; the single row stays in train
    assert split.loc["lonely"] == "train"


def test_tiny_dataset_still_splits():
    prepared = _prepare(_frame(4), test_size=0.25)
    assert sorted(prepared.frame["split"]) == ["test", "train", "train", "train"]


def test_input_frame_is_not_mutated():
    frame = _frame(10, extra=[1.5, np.nan] * 5)
    frame.loc[0, "text"] = " "
    before = frame.copy(deep=True)
    _prepare(frame, drop_empty_text=True)
    pd.testing.assert_frame_equal(frame, before)


def test_annotator_columns_give_a_majority_vote_label_and_stay_in_meta():
    df = pd.DataFrame(
        {
            "t": ["good", "bad", "fine", "meh"],
            "a1": ["pos", "neg", "pos", None],
            "a2": ["pos", "pos", "neg", "neg"],
            "a3": ["neg", "neg", "neg", ""],
        }
    )
    ds = prepare_dataset(
        df, text_column="t", label_column=None, annotator_columns=["a1", "a2", "a3"]
    )
    assert ds.frame["label"].tolist() == ["pos", "neg", "neg", "neg"]
    assert ds.annotator_columns == ["a1", "a2", "a3"]
    assert ds.frame["meta"][0] == {"a1": "pos", "a2": "pos", "a3": "neg"}


def test_bad_annotator_mappings_are_named():
    df = pd.DataFrame({"t": ["a", "b"], "y": ["x", "z"], "a1": ["x", None], "a2": ["z", None]})
    with pytest.raises(DataError, match="at least two annotator"):
        prepare_dataset(df, text_column="t", label_column="y", annotator_columns=["a1"])
    with pytest.raises(DataError, match="no label from any annotator"):
        prepare_dataset(df, text_column="t", label_column="y", annotator_columns=["a1", "a2"])
    with pytest.raises(DataError, match="Unknown annotator column"):
        prepare_dataset(df, text_column="t", label_column="y", annotator_columns=["a1", "zz"])
