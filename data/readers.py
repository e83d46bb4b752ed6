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
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from data.encoding import FALLBACK_ERRORS, decode, locate_invalid_bytes
from data.prepare import SPLITS, PreparedDataset, prepare_dataset
from data.table import DataError, ReadResult, verb
from data.table import rows as rows_text

__all__ = [
    "DATA_DIR_ENV",
    "FORMATS",
    "UPLOAD_SUFFIXES",
    "SPLITS",
    "DataError",
    "PreparedDataset",
    "ReadResult",
    "prepare_dataset",
    "data_dir",
    "read_table",
    "resolve_data_path",
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
# What a file picker may offer: exactly the suffixes read_table can tell the format from.
UPLOAD_SUFFIXES = tuple(sorted(suffix.lstrip(".") for suffix in _SUFFIX_FORMATS))
# The one folder the app's "path on this server" box may read from; unset, the box is hidden.
DATA_DIR_ENV = "SECOND_LOOK_DATA_DIR"
_VALID_FORMATS_TEXT = (
    "csv (.csv), tsv (.tsv), jsonl (.jsonl, .ndjson), json (.json: an array of objects or "
    "JSON Lines), parquet (.parquet), hf (a folder written by datasets' save_to_disk)"
)


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
        # Every cell as the exact text in the file, and only empty cells as missing: a tweet
        # that says "NA" is text, "007" and "1.50" are ids, and a CSV has no types to infer:
        # parsing "1e3" as 1000 would change what the user typed.
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


class _Number(str):
    """A JSON number as spelled in the file (``1.50``, ``1e3``, ``-0``).

    ``json`` would turn ``1.50`` into ``1.5``: ids, texts and labels keep the spelling (see
    :attr:`ReadResult.spellings`), other columns get the number.
    """


def _json_loads(text: str) -> Any:
    return json.loads(text, strict=False, parse_float=_Number, parse_int=_Number)


def _too_deep(source: str, where: str) -> DataError:
    return DataError(
        f"Could not parse {source} as JSON: {where} nests arrays or objects too deeply (Python's "
        f"limit is about {sys.getrecursionlimit():,} levels). Check the file: a table's cells "
        "hold text, numbers or shallow lists, not deeply nested structures."
    )


def _parse_json_lines(text: str, source: str) -> list[dict]:
    records = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line separators.
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            record = _json_loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"Could not parse {source} as JSON Lines: line {lineno:,}, column {exc.colno}: "
                f"{exc.msg}. Check the format: each line must hold one JSON object."
            ) from exc
        except RecursionError as exc:
            raise _too_deep(source, f"line {lineno:,}") from exc
        if not isinstance(record, dict):
            raise DataError(
                f"Could not parse {source} as JSON Lines: line {lineno:,} is a JSON "
                f"{_json_type(record)}, not an object. Check the format: each line must hold "
                'one JSON object such as {"text": "...", "label": "..."}.'
            )
        records.append(record)
    return records


def _json_type(value: Any) -> str:
    if isinstance(value, _Number):
        return "number"
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _records(doc: Any, source: str) -> list[dict]:
    if isinstance(doc, dict):
        lists = {k: v for k, v in doc.items() if isinstance(v, list)}
        if lists and len(lists) == len(doc) and len(doc) > 1:
            return _columns_to_records(lists, source)  # {"text": [...], "label": [...]}
        if len(doc) == 1 and lists:
            doc = next(iter(lists.values()))  # wrapped: {"data": [{...}, ...]}
        else:
            doc = [doc]  # a single record
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise DataError(
            f"Could not parse {source} as JSON: expected an array of objects such as "
            '[{"text": "...", "label": "..."}, ...]. Check the format.'
        )
    return doc


def _columns_to_records(columns: dict[str, list], source: str) -> list[dict]:
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k!r}: {n:,}" for k, n in lengths.items())
        raise DataError(
            f"Could not parse {source} as JSON: it holds one list per column, but the lists "
            f"have different lengths ({shown}). Check the file: every column needs one value "
            "per row (use null for a missing value)."
        )
    keys = list(columns)
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _parse_json(text: str, fmt: str, source: str) -> list[dict]:
    head = text.lstrip()[:1]
    if head != "[" and fmt == "jsonl":
        return _parse_json_lines(text, source)
    try:
        doc = _json_loads(text)
    except json.JSONDecodeError as exc:
        if head == "{" and exc.msg == "Extra data":
            return _parse_json_lines(text, source)  # one object per line in a ".json" file
        raise DataError(
            f"Could not parse {source} as JSON: line {exc.lineno:,}, column {exc.colno}: "
            f"{exc.msg}. Check the format: a JSON array of objects, or JSON Lines."
        ) from exc
    except RecursionError as exc:
        raise _too_deep(source, "the file") from exc
    return _records(doc, source)


def _json_frame(records: list[dict], source: str) -> Parsed:
    """Records as a frame: numbers as numbers, their spellings aside, lone surrogates replaced."""
    spellings: dict[str, list[str | None]] = {}
    mended: list[int] = []
    rows = []
    try:
        for i, record in enumerate(records):
            row, bad = {}, False
            for key, value in record.items():
                key, bad_key = _mend(key)
                if isinstance(value, _Number):
                    if key not in spellings:
                        spellings[key] = [None] * len(records)
                    spellings[key][i] = str(value)
                value, bad_value = _plain_json(value)
                row[key] = value
                bad = bad or bad_key or bad_value
            if bad:
                mended.append(i)
            rows.append(row)
    except RecursionError as exc:
        raise _too_deep(source, "a record") from exc
    # dtype=object keeps each value's JSON type: a column of 2 and 0.5 stays [2, 0.5] rather
    # than becoming [2.0, 0.5], so an export writes back the same numbers.
    frame = pd.DataFrame(rows, dtype=object) if rows else pd.DataFrame()
    warnings = []
    if mended:
        n = len(mended)
        warnings.append(
            f"{rows_text(n)} {verb(n, 'contain')} a \\uD800-style escape that is half of a "
            "character pair (a lone surrogate), which is not a character; each was replaced by "
            "U+FFFD (\ufffd). Check them (filter 'encoding fixed' in review), or fix the file."
        )
    return Parsed(frame, warnings, spellings, mended)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _mend(value: str) -> tuple[str, bool]:
    """A string without lone surrogates (which UTF-8 cannot store), and whether it had any."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value), True
    return value, False


def _plain_json(value: Any) -> tuple[Any, bool]:
    """A parsed JSON value with numbers as int/float and strings mended; and whether mended."""
    if isinstance(value, _Number):
        text = str(value)
        return (float(text) if any(c in text for c in ".eE") else int(text)), False
    if isinstance(value, str):
        return _mend(value)
    if isinstance(value, list):
        pairs = [_plain_json(v) for v in value]
        return [v for v, _ in pairs], any(b for _, b in pairs)
    if isinstance(value, dict):
        out, bad = {}, False
        for k, v in value.items():
            k, bad_key = _mend(k)
            out[k], bad_value = _plain_json(v)
            bad = bad or bad_key or bad_value
        return out, bad
    return value, False


@dataclass
class Parsed:
    """A text table parsed: the frame, warnings, number spellings, rows with mended strings."""

    frame: pd.DataFrame
    warnings: list[str]
    spellings: dict[str, list[str | None]]
    mended: list[int]


def _parse(text: str, fmt: str, source: str) -> Parsed:
    if fmt in ("csv", "tsv"):
        frame, warnings = _parse_delimited(text, fmt, source)
        return Parsed(frame, warnings, {}, [])
    return _json_frame(_parse_json(text, fmt, source), source)


def _read_text(data: bytes, fmt: str, source: str) -> ReadResult:
    decoded = decode(data, source, _FORMAT_NAMES[fmt])
    parsed = _parse(decoded.text, fmt, source)
    frame, warnings, encoding = parsed.frame, parsed.warnings, decoded.encoding
    affected: list[int] = []
    if decoded.replaced is not None:
        replaced = _parse(decoded.replaced, fmt, source).frame
        frame, encoding, affected, notes = locate_invalid_bytes(
            frame, replaced, decoded, parse=lambda text: _parse(text, fmt, "").frame
        )
        warnings.extend(notes)
    affected = sorted(set(affected) | set(parsed.mended))
    return ReadResult(frame, source, encoding, warnings, affected, parsed.spellings)


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


def _decode_binary_columns(frame: pd.DataFrame, source: str) -> tuple[list[str], list[int]]:
    """Decode cells holding bytes (Parquet/Arrow binary) as UTF-8, in place, as files are:
    invalid sequences as Windows-1252, those rows reported. ``str(b"great")`` would be
    ``"b'great'"``, which is not what the user stored."""
    warnings: list[str] = []
    affected: set[int] = set()
    for i, column in enumerate(frame.columns):
        values = frame.iloc[:, i]
        if values.dtype != object:
            continue
        is_bytes = values.map(lambda v: isinstance(v, bytes | bytearray)).to_numpy(dtype=bool)
        if not is_bytes.any():
            continue
        decoded = values.to_numpy(dtype=object, copy=True)
        bad = []
        for pos in np.flatnonzero(is_bytes):
            raw = bytes(decoded[pos])
            try:
                decoded[pos] = raw.decode("utf-8")
            except UnicodeDecodeError:
                decoded[pos] = raw.decode("utf-8", FALLBACK_ERRORS)
                bad.append(int(pos))
        frame.isetitem(i, pd.Series(decoded, index=frame.index, dtype=object))
        note = f"Column {str(column)!r} holds bytes, not text; they were decoded as UTF-8"
        if bad:
            note += (
                f"; {rows_text(len(bad))} {verb(len(bad), 'contain')} bytes that are not valid "
                "UTF-8, decoded as Windows-1252: check them (filter 'encoding fixed' in review)"
            )
        warnings.append(note + ".")
        affected.update(bad)
    return warnings, sorted(affected)


def _string_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Column names as strings: Parquet and pandas allow integer names, which the column
    pickers (and a CSV export) can only show as text."""
    if all(isinstance(c, str) for c in frame.columns):
        return frame
    names = [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"{source} has columns whose names are the same once written as text: "
            f"{', '.join(repr(n) for n in repeated)} (e.g. the number 0 and the text '0'). "
            "Rename them so that every column name is different."
        )
    frame = frame.copy(deep=False)
    frame.columns = names
    return frame


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
# The server's data folder


def data_dir() -> Path | None:
    """The folder named by ``$SECOND_LOOK_DATA_DIR`` (resolved), or ``None`` when unset."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def resolve_data_path(path: str, root: str | os.PathLike) -> Path:
    """``path`` (relative to ``root``, or absolute) if it names something inside ``root``.

    A browser user may read only what the server's data folder holds. A path that leaves it
    (``..``, an absolute path elsewhere, a symbolic link pointing out) gets the very message a
    missing file gets, so the box cannot be used to learn what exists elsewhere.

    Raises
    ------
    DataError
        The path is empty, missing, unreadable, or outside ``root``.

    Examples
    --------
    >>> resolve_data_path("../etc/passwd", "/tmp")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    DataError: No file or folder '../etc/passwd' in the data folder. ...
    """
    root = Path(root).expanduser().resolve()
    text = path.strip()
    missing = DataError(
        f"No file or folder {text!r} in the data folder. Check the name: paths are relative "
        "to the data folder this server reads from."
    )
    if not text or "\x00" in text:
        raise missing
    try:
        resolved = (root / Path(text).expanduser()).resolve()
        inside = resolved == root or resolved.is_relative_to(root)
        if not inside or not resolved.exists() or not os.access(resolved, os.R_OK):
            raise missing
    except (OSError, RuntimeError, ValueError) as exc:  # loops, names too long, odd bytes
        raise missing from exc
    return resolved


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
        try:
            return path.read_bytes(), path, filename or str(source)
        except OSError as exc:
            raise DataError(
                f"Could not read {str(path)!r} ({exc.strerror or exc}). Check that the file is "
                "readable by the user running Second Look."
            ) from exc
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
                f"{suffix or 'none'!r}). Second Look reads {_VALID_FORMATS_TEXT}. Save or "
                "rename the file with one of those suffixes (the command line also takes "
                "--format)."
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
    result.frame = _string_columns(result.frame, name)
    if fmt in ("parquet", "hf"):
        notes, affected = _decode_binary_columns(result.frame, name)
        result.warnings.extend(notes)
        result.affected_rows = sorted(set(result.affected_rows) | set(affected))
        if affected:
            result.encoding = f"utf-8 (cp1252 fallback for {rows_text(len(affected))})"
    if result.frame.shape[1] == 0 or len(result.frame) == 0:
        what = "a header but no data rows" if result.frame.shape[1] else "no rows"
        raise DataError(f"{name} has {what}. Check that you chose the right file.")
    return result
