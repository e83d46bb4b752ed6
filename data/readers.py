"""Read a user's table from a file, an upload or a ``datasets`` folder into a raw DataFrame.

:func:`read_table` reads CSV, TSV, JSON Lines / JSON, Parquet or a folder written by
``datasets``' ``save_to_disk`` into a :class:`ReadResult`: the raw frame with all its columns,
how its bytes were decoded (:mod:`data.encoding` does the decoding) and warnings. Every input
problem raises :class:`DataError` with a message that names the problem and the fix.

This is also where the data layer is imported from: it re-exports :func:`prepare_dataset` and
:class:`PreparedDataset` (:mod:`data.prepare`, which checks the chosen columns and builds the
dataset the app works on) so that ``from data.readers import prepare_dataset`` keeps working.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from data.encoding import decode, locate_invalid_bytes
from data.prepare import SPLITS, PreparedDataset, prepare_dataset
from data.table import DataError, ReadResult

__all__ = [
    "FORMATS",
    "SPLITS",
    "DataError",
    "PreparedDataset",
    "ReadResult",
    "prepare_dataset",
    "read_table",
]

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "hf")

_FORMAT_NAMES = {
    "csv": "CSV",
    "tsv": "TSV",
    "jsonl": "JSON Lines",
    "json": "JSON",
    "parquet": "Parquet",
    "hf": "a Hugging Face dataset folder",
}
_FORMAT_ALIASES = {
    "jsonlines": "jsonl",
    "ndjson": "jsonl",
    "pq": "parquet",
    "datasets": "hf",
    "huggingface": "hf",
    "arrow": "hf",
}
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_VALID_FORMATS_TEXT = (
    "csv (.csv), tsv (.tsv), jsonl (.jsonl, .ndjson), json (.json: an array of objects or "
    "JSON Lines), parquet (.parquet), hf (a folder written by datasets' save_to_disk)"
)
# Strings that mean "no value" in a numeric column (pandas' defaults, minus those that are
# plausible text: we read every cell as text first so that a tweet saying "NA" stays a tweet).
_NA_TOKENS = frozenset({"nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None", "#N/A"})


# --------------------------------------------------------------------------------------------
# Parsing


def _delimiter(text: str, fmt: str) -> tuple[str, str | None]:
    """The separator to use, and a warning when it is not the one the format implies."""
    if fmt == "tsv":
        return "\t", None
    header = text[: text.find("\n")] if "\n" in text else text
    # A ".csv" exported by a European-locale spreadsheet separates with ";".
    for sep, label in ((";", "semicolons"), ("\t", "tabs")):
        if "," not in header and sep in header:
            return (
                sep,
                f"The header has no commas but has {label}; {label} were used as the separator.",
            )
    return ",", None


def _parse_delimited(text: str, fmt: str, source: str) -> tuple[pd.DataFrame, list[str]]:
    sep, note = _delimiter(text, fmt)
    name = _FORMAT_NAMES[fmt]
    try:
        # Every cell as text, and only empty cells as missing: a tweet that says "NA" or "null"
        # is text, and "007" is an id. Numbers are inferred afterwards (_infer_numbers).
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""]
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"{source} has no header row and no data. Check that you chose the right file."
        ) from exc
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split())
        raise DataError(
            f"Could not parse {source} as {name}: {detail}. Check the format: fields that "
            "contain the separator, a quote or a line break must be enclosed in double quotes, "
            "and every row needs the same number of fields as the header."
        ) from exc
    warnings = [note] if note else []
    return frame, warnings


def _parse_json_lines(text: str, source: str) -> pd.DataFrame:
    records = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line separators.
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line, strict=False)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"Could not parse {source} as JSON Lines: line {lineno:,}, column {exc.colno}: "
                f"{exc.msg}. Check the format: each line must hold one JSON object."
            ) from exc
        if not isinstance(record, dict):
            raise DataError(
                f"Could not parse {source} as JSON Lines: line {lineno:,} is a JSON "
                f"{type(record).__name__}, not an object. Check the format: each line must hold "
                'one JSON object such as {"text": "...", "label": "..."}.'
            )
        records.append(record)
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def _records_frame(doc: Any, source: str) -> pd.DataFrame:
    if isinstance(doc, dict):
        lists = [v for v in doc.values() if isinstance(v, list)]
        if lists and len(lists) == len(doc) and len({len(v) for v in lists}) == 1:
            return pd.DataFrame(doc)  # column-oriented: {"text": [...], "label": [...]}
        if len(doc) == 1 and lists:
            doc = lists[0]  # wrapped: {"data": [{...}, ...]}
        else:
            doc = [doc]  # a single record
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise DataError(
            f"Could not parse {source} as JSON: expected an array of objects such as "
            '[{"text": "...", "label": "..."}, ...]. Check the format.'
        )
    return pd.DataFrame.from_records(doc) if doc else pd.DataFrame()


def _parse_json(text: str, fmt: str, source: str) -> pd.DataFrame:
    head = text.lstrip()[:1]
    if head != "[" and fmt == "jsonl":
        return _parse_json_lines(text, source)
    try:
        doc = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        if head == "{" and exc.msg == "Extra data":
            return _parse_json_lines(text, source)  # one object per line in a ".json" file
        raise DataError(
            f"Could not parse {source} as JSON: line {exc.lineno:,}, column {exc.colno}: "
            f"{exc.msg}. Check the format: a JSON array of objects, or JSON Lines."
        ) from exc
    return _records_frame(doc, source)


def _parse(text: str, fmt: str, source: str) -> tuple[pd.DataFrame, list[str]]:
    if fmt in ("csv", "tsv"):
        return _parse_delimited(text, fmt, source)
    return _parse_json(text, fmt, source), []


def _infer_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Turn text columns that hold only numbers into numeric columns (in place; ours)."""
    for i, column in enumerate(frame.columns):
        frame.isetitem(i, _numeric_or_text(frame[column]))
    return frame


def _numeric_or_text(column: pd.Series) -> pd.Series:
    values = column.dropna()
    values = values[~values.isin(_NA_TOKENS)]
    if values.empty:
        return column
    try:
        numbers = pd.to_numeric(values)
    except (ValueError, TypeError):
        return column
    # "007" -> 7 would lose what the user typed (ids, codes): keep such columns as text. The
    # cheap startswith narrows the rows that need the regex.
    if numbers.dtype.kind in "iu":
        zero = values[values.str.lstrip().str.lstrip("+-").str.startswith("0")]
        if zero.str.contains(r"^\s*[+-]?0\d", regex=True).any():
            return column
    if len(values) == len(column):
        return numbers
    with_missing = column.where(~column.isin(_NA_TOKENS))
    if numbers.dtype.kind == "f":
        return pd.to_numeric(with_missing)  # float64, NaN where missing
    # Ints with missing cells: nullable Int64 keeps 19-digit ids exact; float64 would round them.
    return pd.to_numeric(with_missing, dtype_backend="numpy_nullable")


def _read_text(data: bytes, fmt: str, source: str) -> ReadResult:
    decoded = decode(data, source, _FORMAT_NAMES[fmt])
    frame, warnings = _parse(decoded.text, fmt, source)
    encoding = decoded.encoding
    affected: list[int] = []
    if decoded.replaced is not None:
        replaced, _ = _parse(decoded.replaced, fmt, source)
        frame, encoding, affected, notes = locate_invalid_bytes(
            frame, replaced, decoded, parse=lambda text: _parse(text, fmt, "")[0]
        )
        warnings.extend(notes)
    if fmt in ("csv", "tsv"):
        frame = _infer_numbers(frame)
    return ReadResult(frame, source, encoding, warnings, affected)


# --------------------------------------------------------------------------------------------
# Parquet and Hugging Face folders


def _read_parquet(data: bytes, source: str) -> pd.DataFrame:
    import pyarrow

    try:
        return pd.read_parquet(io.BytesIO(data))
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"Could not parse {source} as Parquet ({type(exc).__name__}: {exc}). Check the "
            "format: choose CSV, TSV or JSON Lines if it is a text file."
        ) from exc


def _is_hf_folder(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _read_hf(path: Path, source: str) -> tuple[pd.DataFrame, list[str]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(
            f"Could not read {source} as a Hugging Face dataset folder ({exc}). Check that it "
            "was written by Dataset.save_to_disk or DatasetDict.save_to_disk."
        ) from exc
    if not isinstance(loaded, datasets.DatasetDict):
        return _hf_frame(loaded), []
    frames = [_hf_frame(ds) for ds in loaded.values()]
    split_col, warnings = "split", []
    if any("split" in f.columns for f in frames):
        split_col = "hf_split"
        warnings.append(
            "The dataset already has a column named 'split'; the names of its splits "
            f"({', '.join(loaded)}) are in the column 'hf_split'."
        )
    for frame, name in zip(frames, loaded, strict=True):
        frame[split_col] = name
    return pd.concat(frames, ignore_index=True), warnings


def _hf_frame(ds: Any) -> pd.DataFrame:
    """A Dataset as a frame, with ClassLabel ints replaced by their names."""
    import datasets

    frame = ds.to_pandas()
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.ClassLabel):
            lookup = np.array([*feature.names, None], dtype=object)
            codes = frame[name].to_numpy()
            valid = (codes >= 0) & (codes < len(feature.names))
            # Index -1 is the trailing None: ClassLabel uses -1 for "no label".
            names = lookup[np.where(valid, codes, -1)]
            frame[name] = pd.Series(names, index=frame.index, dtype="str")
    return frame


# --------------------------------------------------------------------------------------------
# read_table


def _load_source(
    source: str | os.PathLike | bytes | BinaryIO, filename: str | None
) -> tuple[bytes | None, Path | None, str]:
    """The bytes (None for a folder), the path (None for an upload) and the name to show."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), None, filename or "uploaded file"
    if isinstance(source, str | os.PathLike):
        path = Path(source).expanduser()
        if not path.exists():
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            raise DataError(f"No file or folder at {str(path)!r}{where}. Check the path.")
        if path.is_dir():
            return None, path, filename or str(source)
        return path.read_bytes(), path, filename or str(source)
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)  # an upload may have been read already in an earlier rerun
        data = source.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        name = filename or getattr(source, "name", None) or "uploaded file"
        return bytes(data), None, str(name)
    raise TypeError(
        f"source must be a path, bytes or a binary file object, not {type(source).__name__}."
    )


def _resolve_format(format: str | None, name: str, path: Path | None) -> str:
    is_dir = path is not None and path.is_dir()
    if format is not None:
        fmt = _FORMAT_ALIASES.get(format.strip().lower(), format.strip().lower())
        if fmt not in FORMATS:
            raise DataError(f"Unknown format {format!r}. Valid formats: {_VALID_FORMATS_TEXT}.")
    elif is_dir:
        fmt = "hf"
    else:
        suffix = Path(name).suffix.lower()
        fmt = _SUFFIX_FORMATS.get(suffix, "")
        if not fmt:
            raise DataError(
                f"Cannot tell the format of {name!r} from its name (suffix "
                f"{suffix or 'none'!r}). Valid formats: {_VALID_FORMATS_TEXT}. Rename the file "
                "or choose the format."
            )
    if fmt == "hf" and not (is_dir and _is_hf_folder(path)):
        raise DataError(
            f"{name} is not a Hugging Face dataset folder (a folder with dataset_dict.json or "
            "state.json, written by save_to_disk). Give the path of such a folder, or choose "
            "the file's format."
        )
    if is_dir and fmt != "hf":
        raise DataError(
            f"{name} is a folder; the {_FORMAT_NAMES[fmt]} format needs a file. Give the path "
            "of the file, or of a folder written by save_to_disk."
        )
    return fmt


def read_table(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    filename: str | None = None,
    format: str | None = None,
) -> ReadResult:
    """Read a table from a file, an upload or a ``datasets`` folder.

    Parameters
    ----------
    source : path, bytes or binary file object
        A path to a file or to a folder written by ``save_to_disk``, or the bytes / file object
        of an upload.
    filename : str, optional
        Name to show and to take the format from (an upload's name).
    format : {"csv", "tsv", "jsonl", "json", "parquet", "hf"}, optional
        Inferred from the file name's suffix, or "hf" for a folder, when not given.

    Returns
    -------
    ReadResult
        ``affected_rows`` lists the rows whose bytes were not valid UTF-8; those bytes were
        decoded as Windows-1252 and a warning says how many rows.

    Raises
    ------
    DataError
        Missing path, empty file, unknown format, bytes that do not parse as the format.

    Examples
    --------
    >>> r = read_table(b"text,label\\ncaf\\xe9,a\\nok,b\\n", filename="x.csv")
    >>> r.frame["text"].tolist(), r.affected_rows, r.encoding
    (['café', 'ok'], [0], 'utf-8 (cp1252 fallback for 1 row)')
    """
    data, path, name = _load_source(source, filename)
    fmt = _resolve_format(format, name, path)
    warnings: list[str] = []
    if fmt == "hf":
        frame, warnings = _read_hf(path, name)
        result = ReadResult(frame, name, "utf-8", warnings, [])
    elif not data:
        raise DataError(f"{name} is empty (0 bytes). Check that you chose the right file.")
    elif fmt == "parquet":
        result = ReadResult(_read_parquet(data, name), name, "utf-8", [], [])
    else:
        result = _read_text(data, fmt, name)
    if result.frame.shape[1] == 0 or len(result.frame) == 0:
        what = "a header but no data rows" if result.frame.shape[1] else "no rows"
        raise DataError(f"{name} has {what}. Check that you chose the right file.")
    return result
