r"""Export the curated dataset with provenance, and a trained model folder.

Tabular formats (``FORMATS``): one row per sample with its provenance. Every format reads back
to exactly the ids, texts, labels and metadata that were written, with pandas and with Python's
``csv`` module alike: ``csv`` is RFC 4180 (UTF-8, CRLF line ends, so a text holding a bare
carriage return is quoted like one holding a line feed), ``jsonl`` is one ``json.dumps`` per
row (full float precision), ``parquet`` keeps types.

``csv-spreadsheet`` ("CSV for spreadsheets") is the one format that changes values, on purpose
and only when asked: a cell or header that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is prefixed with ``'`` so a spreadsheet shows it as text instead of running it
as a formula (OWASP's CSV-injection advice), and the file starts with a byte-order mark for
Excel. Use it to open the file in a spreadsheet, never to train on: 47% of the demo's tweets
start with ``@``.

Instruction-tuning formats (``INSTRUCTION_FORMATS``), JSON Lines for fine-tuning a generative
model on the curated labels; excluded rows are left out and values are kept exactly (no formula
prefix: no spreadsheet opens these):

- ``instruction``: ``{"text": "[Text]: I love it\n[Sentiment]: positive"}``
- ``chat``: ``{"messages": [{"role": "system", ...}, {"role": "user", "content": text},
  {"role": "assistant", "content": label}]}``
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

FORMATS = ("csv", "csv-spreadsheet", "jsonl", "parquet")
# What each format is called where a person chooses one (the Export page, --help).
FORMAT_TITLES = {
    "csv": "CSV (exact)",
    "csv-spreadsheet": "CSV for spreadsheets (formulas neutralised: changes cells)",
    "jsonl": "JSON Lines",
    "parquet": "Parquet",
    "instruction": "Instruction JSONL (generative fine-tuning)",
    "chat": "Chat messages JSONL (generative fine-tuning)",
}
INSTRUCTION_FORMATS = ("instruction", "chat")
EXPORT_FORMATS = FORMATS + INSTRUCTION_FORMATS
# The file suffix each format is written with.
SUFFIXES = {"csv-spreadsheet": "csv", "instruction": "jsonl", "chat": "jsonl"}
DEFAULT_LABEL_FIELD = "Sentiment"
# The export's name for the text as imported (the store's ``given_text``): the name the repair
# issue and users know, beside ``text``, the current one.
ORIGINAL_TEXT_COLUMN = "text_original"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def curated_frame(
    ws: Any, *, include_metadata: bool = True, split: str | None = None
) -> pd.DataFrame:
    """The curated dataset in import order, with provenance (and metadata) columns.

    ``label`` is the current (curated) label, ``given_label`` the imported one; the
    quality columns come from the latest analysis (empty before any analysis). ``split``
    (e.g. ``"train"``) keeps only that split's rows; ``None`` keeps all.

    ``text`` is the current text. Once any text of the workspace was repaired (Text repair),
    ``text_original`` (:data:`ORIGINAL_TEXT_COLUMN`, the store's ``given_text``) follows it, on
    every row and in every split's export: the text exactly as imported. A workspace without
    repairs exports as before (no ``text_original`` column).
    """
    rows = ws.samples(with_meta=include_metadata)
    repaired = bool((rows["text"] != rows["given_text"]).any())
    rows = _select_split(rows, split)
    results = ws.analysis_results()
    out = pd.DataFrame(
        {
            "id": rows["ext_id"],
            "text": rows["text"],
            **({ORIGINAL_TEXT_COLUMN: rows["given_text"]} if repaired else {}),
            "label": rows["label"],
            "given_label": rows["given_label"],
            "changed": rows["label"] != rows["given_label"],
            "excluded": rows["excluded"],
            "reviewer": rows["reviewer"],
            "reviewed_at": rows["reviewed_at"],
        }
    )
    if len(results):
        res = results.set_index("sample_id").loc[rows["id"]]
        out["label_quality"] = res["label_quality"].to_numpy()
        out["is_label_issue"] = res["is_label_issue"].to_numpy()
        out["predicted_label"] = res["predicted_label"].to_numpy()
        out["predicted_prob"] = res["predicted_prob"].to_numpy()
    else:
        for col in ("label_quality", "is_label_issue", "predicted_label", "predicted_prob"):
            out[col] = None
    out["split"] = rows["split"]
    if include_metadata and "meta" in rows:
        out = pd.concat([out, _metadata_frame(rows["meta"], taken=set(out.columns))], axis=1)
    return out


def _metadata_frame(metas: pd.Series, *, taken: set[str]) -> pd.DataFrame:
    """One column per metadata key, values as stored (object dtype: a column of 3 and None
    stays 3, not 3.0). A key that is also a provenance column's name (a file's own ``id`` or
    ``split`` kept as metadata) is written as ``"<key> (metadata)"`` rather than dropped."""
    keys: dict[str, None] = {}
    for meta in metas:
        keys.update(dict.fromkeys(meta))
    columns = {}
    for key in keys:
        name = key if key not in taken else f"{key} (metadata)"
        columns[name] = pd.Series([m.get(key) for m in metas], index=metas.index, dtype=object)
    return pd.DataFrame(columns, index=metas.index)


def _select_split(rows: pd.DataFrame, split: str | None) -> pd.DataFrame:
    if split is None:
        return rows
    present = sorted(rows["split"].dropna().unique())
    if split not in present:
        raise ValueError(
            f"No rows in split {split!r}; this dataset has the splits {present}. Pick one of "
            "them, or no split to export every row."
        )
    return rows[rows["split"] == split].reset_index(drop=True)


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells and headers that a spreadsheet would run as a formula with ``'``.

    For "CSV for spreadsheets" only: it changes the values.

    >>> neutralize_formulas(pd.DataFrame({"t": ["=1+1", "ok", "-2"]}))["t"].tolist()
    ["'=1+1", 'ok', "'-2"]
    """
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(_neutralize_cell)
    out.columns = [_neutralize_cell(str(c)) for c in out.columns]
    return out


def _neutralize_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """Serialise a frame as ``csv`` (exact), ``csv-spreadsheet`` (formulas neutralised, UTF-8
    with a BOM for Excel), ``jsonl`` or ``parquet``."""
    if fmt in INSTRUCTION_FORMATS:
        raise ValueError(
            f"{fmt!r} is an instruction-tuning format; build it with instruction_bytes(frame, "
            f"{fmt!r}) or export_dataset(ws, path, fmt={fmt!r})."
        )
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; valid: {list(FORMATS)}.")
    if fmt == "csv":
        return _csv_text(frame).encode("utf-8")
    if fmt == "csv-spreadsheet":
        return _csv_text(neutralize_formulas(frame)).encode("utf-8-sig")
    if fmt == "jsonl":
        return _jsonl_bytes(frame)
    buf = io.BytesIO()
    _parquet_ready(frame).to_parquet(buf, index=False)
    return buf.getvalue()


def _csv_text(frame: pd.DataFrame) -> str:
    # CRLF as the line end makes the csv writer quote every field holding a CR or an LF; with
    # the default LF, a text holding a bare CR was written unquoted and read back as two rows.
    return frame.to_csv(index=False, lineterminator="\r\n")


def _jsonl_bytes(frame: pd.DataFrame) -> bytes:
    """One ``json.dumps`` per row: pandas' ``to_json`` rounds floats to 10 digits."""
    columns = [str(c) for c in frame.columns]
    lines = []
    for values in zip(*(frame[c].tolist() for c in frame.columns), strict=True):
        record = dict(zip(columns, (_json_value(v) for v in values), strict=True))
        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        # Line and paragraph separators are valid inside JSON strings, but some JSON Lines
        # readers split on them; escaped, they read back the same.
        lines.append(line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if _is_nan(value):  # a missing cell
        return None
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        return _json_value(value.item())  # numpy scalars
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Parquet needs one type per column: a metadata column mixing kinds (3 in one row, "x"
    in another, as JSON allows) is written as text, each value as JSON spells it."""
    out = frame
    for col in frame.columns:
        values = frame[col]
        if values.dtype != object:
            continue
        kinds = {type(v) for v in values if v is not None and not _is_nan(v)}
        if len(kinds - {int, float}) > 1 or (len(kinds) > 1 and not kinds <= {int, float}):
            if out is frame:
                out = frame.copy()
            out[col] = [
                None if v is None or _is_nan(v) else v if isinstance(v, str) else json.dumps(v)
                for v in values
            ]
    return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def export_dataset(
    ws: Any,
    path: str | os.PathLike,
    *,
    fmt: str | None = None,
    include_metadata: bool = True,
    split: str | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    system_prompt: str | None = None,
) -> Path:
    """Write the curated dataset to ``path``; the format comes from ``fmt`` or the suffix.

    Parameters
    ----------
    ws
        The workspace.
    path
        Output file. Written to a temporary file and moved into place, so a failed export
        never leaves a truncated file where a good one was.
    fmt
        One of ``EXPORT_FORMATS``; default from the suffix (``.csv``, ``.jsonl``,
        ``.parquet``: tabular, ``.csv`` exact). The instruction-tuning formats and
        ``csv-spreadsheet`` must be named.
    include_metadata
        Tabular formats: add the imported metadata columns.
    split
        Keep only this split's rows (``"train"``, ``"test"``, ...); ``None`` keeps all.
    label_field, system_prompt
        Instruction-tuning formats only; see :func:`instruction_records`.
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt in INSTRUCTION_FORMATS:
        data = workspace_instruction_bytes(
            ws, fmt, split=split, label_field=label_field, system_prompt=system_prompt
        )
        return _write_atomically(path, data)
    frame = curated_frame(ws, include_metadata=include_metadata, split=split)
    return export_frame(frame, path, fmt=fmt)


def export_frame(frame: pd.DataFrame, path: str | os.PathLike, *, fmt: str | None = None) -> Path:
    """Write any frame as csv/jsonl/parquet (format from ``fmt`` or the suffix), atomically."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(
            f"Unknown export format {fmt!r} (from {path.name!r}); use a .csv, .jsonl or "
            f".parquet file name or pass one of {list(EXPORT_FORMATS)}."
        )
    return _write_atomically(path, to_bytes(frame, fmt))


def _write_atomically(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".part") as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
    return path


# ------------------------------------------------------------------ instruction-tuning formats


def instruction_records(
    frame: pd.DataFrame,
    style: str,
    *,
    label_field: str = DEFAULT_LABEL_FIELD,
    label_names: Sequence[str] | None = None,
    system_prompt: str | None = None,
) -> list[dict]:
    r"""One instruction-tuning example per kept row of a curated frame, in row order.

    Parameters
    ----------
    frame
        A :func:`curated_frame` (columns ``text``, ``label``, ``excluded``); excluded rows
        are left out and ``label`` (the curated label) is the answer, written as it is.
    style
        ``"instruction"``: ``{"text": "[Text]: <text>\n[<label_field>]: <label>"}``;
        ``"chat"``: ``{"messages": [system, user (the text), assistant (the label)]}``.
    label_field
        Name of what the label is, shown in the prompt: ``"Sentiment"``, ``"Topic"``, ...
    label_names
        The classes, listed in the default system prompt; default: the labels in ``frame``.
    system_prompt
        Chat only: the system message; default :func:`default_system_prompt`.

    Examples
    --------
    >>> f = pd.DataFrame({"text": ["I love it", "meh"], "label": ["positive", "negative"],
    ...                   "excluded": [False, True]})
    >>> instruction_records(f, "instruction")
    [{'text': '[Text]: I love it\n[Sentiment]: positive'}]
    """
    if style not in INSTRUCTION_FORMATS:
        raise ValueError(
            f"Unknown instruction style {style!r}; valid: {list(INSTRUCTION_FORMATS)}."
        )
    label_field = _check_label_field(label_field)
    missing = [c for c in ("text", "label", "excluded") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"The frame lacks the column(s) {missing}; pass the output of curated_frame(ws)."
        )
    kept = frame[~frame["excluded"].astype(bool)]
    texts = ["" if pd.isna(t) else str(t) for t in kept["text"]]
    labels = [str(label) for label in kept["label"]]
    if style == "instruction":
        return [
            {"text": f"[Text]: {text}\n[{label_field}]: {label}"}
            for text, label in zip(texts, labels, strict=True)
        ]
    if system_prompt is None:
        names = list(label_names) if label_names is not None else sorted(set(labels))
        system_prompt = default_system_prompt(label_field, names)
    return [
        {
            "messages": [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": text},
                {"role": "assistant", "content": label},
            ]
        }
        for text, label in zip(texts, labels, strict=True)
    ]


def instruction_bytes(
    frame: pd.DataFrame,
    style: str,
    *,
    label_field: str = DEFAULT_LABEL_FIELD,
    label_names: Sequence[str] | None = None,
    system_prompt: str | None = None,
) -> bytes:
    """:func:`instruction_records` as UTF-8 JSON Lines (one example per line)."""
    records = instruction_records(
        frame,
        style,
        label_field=label_field,
        label_names=label_names,
        system_prompt=system_prompt,
    )
    # ensure_ascii=False keeps non-English text readable; json escapes any newline in a text,
    # so each example stays on one line.
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def workspace_instruction_bytes(
    ws: Any,
    style: str,
    *,
    split: str | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    system_prompt: str | None = None,
) -> bytes:
    """A workspace's curated rows (excluded left out) as instruction-tuning JSON Lines."""
    return instruction_bytes(
        curated_frame(ws, include_metadata=False, split=split),
        style,
        label_field=label_field,
        label_names=ws.label_names,
        system_prompt=system_prompt,
    )


def default_system_prompt(label_field: str, label_names: Sequence[str]) -> str:
    """The chat format's default system message: the task and the allowed answers.

    >>> default_system_prompt("Sentiment", ["negative", "positive"])
    'Classify the sentiment of the text. Answer with one of: negative, positive.'
    """
    field = _check_label_field(label_field)
    return f"Classify the {field.lower()} of the text. Answer with one of: " + (
        ", ".join(str(n) for n in label_names) + "."
    )


def _check_label_field(label_field: str) -> str:
    field = label_field.strip() if isinstance(label_field, str) else ""
    if not field or any(ch in field for ch in "[]\n\r"):
        raise ValueError(
            f"label_field must be a short name such as 'Sentiment' or 'Topic', without "
            f"brackets or line breaks (got {label_field!r})."
        )
    return field


def model_archive(model_dir: str | os.PathLike) -> bytes:
    """A trained model folder (``save_pretrained`` output) as zip bytes, for download."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a saved model folder (no config.json).")
    with tempfile.TemporaryDirectory() as tmp:
        archive = shutil.make_archive(str(Path(tmp) / "model"), "zip", model_dir)
        return Path(archive).read_bytes()
