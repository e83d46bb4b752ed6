"""Read a user's table and turn it into the dataset the app works on.

Two steps, kept apart so that a UI can show the raw table and let the user pick its columns:

- :func:`read_table` reads CSV, TSV, JSON Lines / JSON, Parquet or a folder written by
  ``datasets``' ``save_to_disk`` into a :class:`ReadResult`: the raw frame, how its bytes were
  decoded, and warnings.
- :func:`prepare_dataset` checks the chosen columns and returns a :class:`PreparedDataset`
  whose frame has exactly the columns ``ext_id, text, label, split, meta, encoding_fixed``.

Text files that are not valid UTF-8 are not refused and not silently garbled: the bytes that
are valid UTF-8 are decoded as UTF-8, only the invalid sequences as Windows-1252, and the rows
that needed it are reported (``ReadResult.affected_rows``, ``encoding_fixed``) so a reviewer can
check them. Every input problem raises :class:`DataError` with a message that names the problem
and the fix.
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

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
SPLITS = ("train", "test", "validation")

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
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "test": "test",
    "testing": "test",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "eval": "validation",
    "evaluation": "validation",
}
# Strings that mean "no value" in a numeric column (pandas' defaults, minus those that are
# plausible text: we read every cell as text first so that a tweet saying "NA" stays a tweet).
_NA_TOKENS = frozenset({"nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None", "#N/A"})
# Starts of common binary files, with what to tell a user who gave one as a text table.
_BINARY_SIGNATURES = (
    (b"PAR1", "Parquet", "choose the Parquet format (or name the file .parquet)"),
    (b"PK\x03\x04", "zip archive (or Excel .xlsx)", "unzip it, or export the sheet as CSV"),
    (b"\x1f\x8b", "gzip-compressed", "decompress it first"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first"),
    (b"\xd0\xcf\x11\xe0", "legacy Excel/Office", "export the sheet as CSV"),
    (b"%PDF", "PDF", "export the table as CSV"),
    (b"SQLite format 3\x00", "SQLite database", "export the table as CSV"),
    (b"ARROW1", "Arrow IPC", "convert it to Parquet"),
)
# C0 control bytes that never occur in text tables (tab, LF, VT, FF, CR and ESC are allowed).
_CONTROL_BYTES = bytes([*range(0, 9), 14, 15, *range(16, 27), *range(28, 32), 127])
_ROWS_SHOWN = 5
_MIN_BYTES_TO_GUESS = 32  # fewer non-ASCII bytes than this: too little to guess an encoding
_ROW_NUMBERING = "numbered as in a spreadsheet, where the header is row 1"


class DataError(ValueError):
    """User-facing input problem; the message names the problem and the fix."""


@dataclass
class ReadResult:
    """A table as read from a file, before the user picks its columns.

    Attributes
    ----------
    frame : pd.DataFrame
        The raw table, all columns.
    source : str
        File name or path, as shown to the user.
    encoding : str
        How the bytes were decoded, e.g. ``"utf-8"`` or
        ``"utf-8 (cp1252 fallback for 4,934 rows)"``.
    warnings : list of str
        Human-readable warnings to show before import.
    affected_rows : list of int
        0-based positions (in ``frame``) of rows whose bytes were not valid UTF-8.
    """

    frame: pd.DataFrame
    source: str
    encoding: str
    warnings: list[str] = field(default_factory=list)
    affected_rows: list[int] = field(default_factory=list)


@dataclass
class PreparedDataset:
    """The dataset the app works on.

    ``frame`` has exactly the columns ``ext_id`` (str), ``text`` (str), ``label`` (str),
    ``split`` ("train", "test" or "validation"), ``meta`` (a JSON-able dict per row holding every
    other column) and ``encoding_fixed`` (bool: the row's bytes were not valid UTF-8).
    ``split_seed`` and ``test_size`` are set when the split was made here, ``None`` when it was
    taken from the data.
    """

    frame: pd.DataFrame
    label_names: list[str]
    text_column: str
    label_column: str
    id_column: str | None
    split_column: str | None
    split_seed: int | None
    test_size: float | None
    warnings: list[str]
    encoding: str
    dropped_rows: int = 0


# --------------------------------------------------------------------------------------------
# Decoding


def _fallback_char(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: undefined in cp1252
        return chr(byte)  # as latin-1 does


_FALLBACK_CHARS = tuple(_fallback_char(b) for b in range(256))
_FALLBACK_ERRORS = "second-look-cp1252-fallback"


def _cp1252_fallback(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: decode the invalid bytes of a UTF-8 decode as Windows-1252."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    bad = bytes(err.object[err.start : err.end])
    return "".join(_FALLBACK_CHARS[b] for b in bad), err.end


codecs.register_error(_FALLBACK_ERRORS, _cp1252_fallback)


@dataclass
class _Decoded:
    text: str
    encoding: str
    # Set when the bytes are not valid UTF-8: the same bytes decoded with errors="replace", so
    # rows with a U+FFFD that the real decoding lacks are exactly the rows with invalid bytes.
    replaced: str | None = None
    body: bytes = b""


def _decode(data: bytes, source: str, fmt: str) -> _Decoded:
    name = _FORMAT_NAMES[fmt]
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return _Decoded(data.decode(codec), codec)
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"Could not parse {source} as {name}: it starts with a {codec.upper()} "
                    f"byte-order mark but is not valid {codec.upper()} ({exc.reason} at byte "
                    f"{exc.start:,}). Check the file: re-save it as UTF-8."
                ) from exc
    body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    _reject_binary(body, source, name)
    if b"\x00" in body:
        utf16 = _utf16_without_bom(body)
        if utf16 is not None:
            return utf16
        raise DataError(
            f"Could not parse {source} as {name}: it contains NUL bytes, so it looks like a "
            "binary file, not text. Check the format: save the table as UTF-8 CSV, TSV or JSON "
            "Lines, or choose Parquet if it is a Parquet file."
        )
    try:
        return _Decoded(body.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    return _Decoded(
        body.decode("utf-8", _FALLBACK_ERRORS),
        "utf-8",
        replaced=body.decode("utf-8", "replace"),
        body=body,
    )


def _reject_binary(body: bytes, source: str, name: str) -> None:
    for signature, kind, fix in _BINARY_SIGNATURES:
        if body.startswith(signature):
            raise DataError(
                f"Could not parse {source} as {name}: it looks like a {kind} file, not text. "
                f"Check the format: {fix}."
            )
    sample = body[:65536]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    # NUL bytes are left to the caller: they may be UTF-16 without a byte-order mark.
    controls -= sample.count(b"\x00")
    if controls > 0.05 * len(sample):
        raise DataError(
            f"Could not parse {source} as {name}: {controls:,} of its first {len(sample):,} "
            "bytes are control characters, so it looks like a binary file, not text. Check the "
            "format: save the table as UTF-8 CSV, TSV or JSON Lines."
        )


def _utf16_without_bom(body: bytes) -> _Decoded | None:
    """UTF-16 text without a byte-order mark: mostly-ASCII text has a NUL in every other byte."""
    half = len(body) // 2
    if half == 0 or len(body) % 2:
        return None
    even, odd = body[0::2].count(0), body[1::2].count(0)
    for codec, zeros, others in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        if zeros > 0.3 * half and others < 0.01 * half:
            try:
                return _Decoded(body.decode(codec), f"{codec} (no byte-order mark)")
            except UnicodeDecodeError:
                return None
    return None


def _count_replacements(frame: pd.DataFrame) -> list[np.ndarray]:
    counts = []
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i]
        if column.dtype.kind in "iufcbmM":
            counts.append(np.zeros(len(frame), dtype=np.int64))
            continue
        n = column.astype(str).str.count("\ufffd").fillna(0)
        counts.append(n.to_numpy(dtype=np.int64))
    return counts


def _rows_with_invalid_bytes(replaced: pd.DataFrame, decoded: pd.DataFrame) -> np.ndarray | None:
    """Mask of rows whose cells got more U+FFFD from errors="replace" than from the decoding."""
    if replaced.shape != decoded.shape:
        return None
    mask = np.zeros(len(decoded), dtype=bool)
    for r, d in zip(_count_replacements(replaced), _count_replacements(decoded), strict=True):
        mask |= r > d
    return mask


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
    decoded = _decode(data, source, fmt)
    frame, warnings = _parse(decoded.text, fmt, source)
    encoding = decoded.encoding
    affected: list[int] = []
    if decoded.replaced is not None:
        replaced, _ = _parse(decoded.replaced, fmt, source)
        frame, encoding, affected, notes = _locate_invalid_bytes(frame, replaced, decoded, fmt)
        warnings.extend(notes)
    if fmt in ("csv", "tsv"):
        frame = _infer_numbers(frame)
    return ReadResult(frame, source, encoding, warnings, affected)


def _locate_invalid_bytes(
    frame: pd.DataFrame, replaced: pd.DataFrame, decoded: _Decoded, fmt: str
) -> tuple[pd.DataFrame, str, list[int], list[str]]:
    """Find the rows with invalid UTF-8; decode the whole file another way if most are."""
    notes = []
    if any("\ufffd" in str(c) for c in replaced.columns):
        notes.append(
            "The header contains bytes that are not valid UTF-8; they were decoded as "
            "Windows-1252. Check the column names."
        )
    mask = _rows_with_invalid_bytes(replaced, frame)
    if mask is None:
        notes.append(
            "The file contains bytes that are not valid UTF-8; they were decoded as "
            "Windows-1252, but the rows that contain them could not be located. Check the text "
            "for odd characters, or re-save the file as UTF-8."
        )
        return frame, "utf-8 (cp1252 fallback)", [], notes
    n, total = int(mask.sum()), len(frame)
    if n > total / 2 and _looks_non_latin(decoded.body):
        guessed = _whole_file_guess(decoded.body, fmt, replaced)
        if guessed is not None:
            frame, codec, mask = guessed
            n = int(mask.sum())
            notes.append(
                f"{n:,} of {_rows(total)} {_verb(n, 'contain')} bytes that are not valid "
                "UTF-8, so the whole "
                f"file was decoded as {codec} (the best guess of charset_normalizer); check them "
                "(filter 'encoding fixed' in review), or re-save the file as UTF-8."
            )
            return frame, f"{codec} (detected; {_rows(n)} not valid UTF-8)", _positions(mask), notes
    notes.append(
        f"{_rows(n)} {_verb(n, 'contain')} bytes that are not valid UTF-8; those bytes were "
        "decoded as "
        "Windows-1252 and the rest as UTF-8; check them (filter 'encoding fixed' in review)."
    )
    return frame, f"utf-8 (cp1252 fallback for {_rows(n)})", _positions(mask), notes


def _looks_non_latin(body: bytes) -> bool:
    """Whether the non-ASCII bytes look like a non-Latin script rather than Windows-1252.

    In Western text the bytes >= 0x80 are accented letters and punctuation, mostly alone between
    ASCII letters ("d\xe9j\xe0"); Cyrillic, Greek or CJK text puts them in runs (whole words).
    Only then is charset_normalizer asked: on Western text it often picks a wrong cousin of
    Windows-1252 (cp1257 turns "\xe0" into "ą"), and on a few bytes its guess is noise.
    """
    high = np.frombuffer(body, dtype=np.uint8) >= 0x80
    n_high = int(high.sum())
    if n_high < _MIN_BYTES_TO_GUESS:
        return False
    pair = high[1:] & high[:-1]  # byte i and i + 1 both non-ASCII
    in_run = np.zeros_like(high)
    in_run[1:] |= pair
    in_run[:-1] |= pair
    return int(in_run.sum()) > n_high / 2


def _whole_file_guess(
    body: bytes, fmt: str, replaced: pd.DataFrame
) -> tuple[pd.DataFrame, str, np.ndarray] | None:
    """charset_normalizer's guess for a file that is mostly not UTF-8, if it parses the same."""
    import charset_normalizer

    best = charset_normalizer.from_bytes(body).best()
    if best is None or best.encoding.replace("-", "_") in ("utf_8", "ascii"):
        return None
    try:
        text = body.decode(best.encoding)
        frame, _ = _parse(text, fmt, "")
    except (UnicodeDecodeError, LookupError, DataError):
        return None
    mask = _rows_with_invalid_bytes(replaced, frame)
    if mask is None:
        return None
    return frame, best.encoding, mask


def _rows(n: int) -> str:
    return f"{int(n):,} row" + ("" if n == 1 else "s")


def _verb(n: int, plural: str) -> str:
    """The verb agreeing with n rows: "contain" -> "contains" for one row."""
    if n != 1:
        return plural
    return "has" if plural == "have" else plural + "s"


def _positions(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


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


# --------------------------------------------------------------------------------------------
# prepare_dataset


def _scalar_str(value: Any) -> str | None:
    """One cell as label/id text: 1 -> "1", 1.0 -> "1", missing -> None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dict | list | tuple | np.ndarray):
        return json.dumps(_jsonable(value), ensure_ascii=False)
    return str(value)


def _to_strings(column: pd.Series) -> pd.Series:
    """The column as str dtype, missing values as NaN; converts each distinct value once."""
    if isinstance(column.dtype, pd.StringDtype):
        return column
    if column.dtype.kind in "iub":
        return column.astype("str")  # vectorised: 1M unique ids would be 1M Python calls
    if column.dtype.kind == "f":
        finite = column.dropna().to_numpy(dtype=float)
        whole = np.isfinite(finite).all() and np.array_equal(finite, np.round(finite))
        if whole and np.abs(finite).max(initial=0) < 2**53:
            return column.astype("Int64").astype("str")  # 1.0 -> "1"; NaN stays missing
    try:
        codes, uniques = pd.factorize(column)
    except TypeError:  # unhashable cells (lists, dicts from JSON)
        return pd.Series([_scalar_str(v) for v in column], index=column.index, dtype="str")
    lookup = np.array([*(_scalar_str(v) for v in uniques), None], dtype=object)
    return pd.Series(lookup[codes], index=column.index, dtype="str")  # code -1 -> None


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _jsonable_values(column: pd.Series) -> list:
    values = column.astype(object).where(column.notna(), None).tolist()
    if column.dtype.kind in "iufb" or isinstance(column.dtype, pd.StringDtype):
        return values  # tolist() already gives Python scalars; missing became None
    return [_jsonable(v) for v in values]


def _meta_records(frame: pd.DataFrame, columns: list) -> list[dict]:
    if not columns:
        return [{} for _ in range(len(frame))]
    keys = [str(c) for c in columns]
    values = [_jsonable_values(frame[c]) for c in columns]
    return [dict(zip(keys, row, strict=True)) for row in zip(*values, strict=True)]


def _rows_text(positions: np.ndarray) -> str:
    shown = ", ".join(str(p + 2) for p in positions[:_ROWS_SHOWN])
    more = ", ..." if len(positions) > _ROWS_SHOWN else ""
    word = "row" if len(positions) == 1 else "rows"
    return f"{word} {shown}{more} ({_ROW_NUMBERING})"


def _check_columns(frame: pd.DataFrame, roles: dict[str, Any]) -> None:
    if frame.columns.duplicated().any():
        dups = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise DataError(f"Column names must be unique; repeated: {', '.join(dups)}. Rename them.")
    available = ", ".join(repr(c) for c in frame.columns)
    for role, column in roles.items():
        if column is not None and column not in frame.columns:
            raise DataError(
                f"Unknown {role} {column!r}. Available columns: {available}. Choose one of them."
            )
    chosen = [c for c in roles.values() if c is not None]
    if len(set(chosen)) != len(chosen):
        raise DataError(
            "The text, label, id and split columns must be different columns; got "
            + ", ".join(f"{role}={c!r}" for role, c in roles.items() if c is not None)
            + ". Choose a different column for each."
        )


def _empty_text_rows(text: pd.Series, column: str, drop: bool) -> tuple[np.ndarray, list[str]]:
    """Mask of the rows to keep, and a warning when some were dropped."""
    empty = text.fillna("").str.strip().eq("").to_numpy()
    n = int(empty.sum())
    if not n:
        return ~empty, []
    where = _rows_text(np.flatnonzero(empty))
    if not drop:
        raise DataError(
            f"{_rows(n)} {_verb(n, 'have')} empty text in column {column!r} ({where}). Fill them "
            "in, or "
            "choose 'Drop rows with empty text' (drop_empty_text=True)."
        )
    return ~empty, [f"Dropped {_rows(n)} with empty text in column {column!r} ({where})."]


def _clean_labels(raw: pd.Series, column: str) -> pd.Series:
    labels = _to_strings(raw).str.strip()
    missing = (labels.isna() | labels.eq("")).to_numpy()
    if missing.any():
        raise DataError(
            f"{_rows(missing.sum())} {_verb(missing.sum(), 'have')} no label in column {column!r} "
            f"({_rows_text(np.flatnonzero(missing))}). Fill in their labels or remove those rows."
        )
    return labels


def _clean_ids(raw: pd.Series, column: str) -> pd.Series:
    ids = _to_strings(raw)
    missing = ids.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"{_rows(missing.sum())} {_verb(missing.sum(), 'have')} no id in column {column!r} "
            f"({_rows_text(np.flatnonzero(missing))}). Fill them in, or choose no id column to "
            "use row numbers."
        )
    repeated = ids.duplicated(keep=False).to_numpy()
    if repeated.any():
        counts = ids[repeated].value_counts(sort=False)
        shown = ", ".join(f"{v!r} ({c}x)" for v, c in counts.head(_ROWS_SHOWN).items())
        more = ", ..." if len(counts) > _ROWS_SHOWN else ""
        raise DataError(
            f"{len(counts):,} ids in column {column!r} appear more than once: {shown}{more}. "
            "Ids must be unique: fix them, or choose no id column to use row numbers."
        )
    return ids


def _clean_splits(raw: pd.Series, column: str) -> tuple[np.ndarray, list[str]]:
    given = _to_strings(raw)
    splits = given.str.strip().str.lower().map(_SPLIT_ALIASES)
    unknown = splits.isna().to_numpy()
    if unknown.any():
        values = pd.unique(given[unknown].fillna("(empty)"))
        shown = ", ".join(repr(v) for v in values[:_ROWS_SHOWN])
        more = ", ..." if len(values) > _ROWS_SHOWN else ""
        raise DataError(
            f"{_rows(unknown.sum())} in column {column!r} {_verb(unknown.sum(), 'have')} a split "
            "that is not known: "
            f"{shown}{more} ({_rows_text(np.flatnonzero(unknown))}). Valid splits: train, test, "
            "validation (also accepted, in any case: training; testing; valid, val, dev, eval). "
            "Fix those values, or choose no split column to have a split made for you."
        )
    values = splits.to_numpy(dtype=object)
    warnings = []
    if not (values == "train").any():
        raise DataError(
            f"No row of column {column!r} is in the train split, so nothing could be trained. "
            "Mark some rows as train, or choose no split column to have a split made for you."
        )
    if not (values != "train").any():
        warnings.append(
            f"Every row of column {column!r} is in the train split; there is no held-out data "
            "to measure a retrained model on."
        )
    return values, warnings


def _make_split(labels: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, list[str]]:
    """Stratified, seeded train/test split; classes with one row go to train."""
    from sklearn.model_selection import train_test_split

    split = np.full(len(labels), "train", dtype=object)
    codes, uniques = pd.factorize(labels)
    counts = np.bincount(codes, minlength=len(uniques))
    eligible = np.flatnonzero(counts[codes] >= 2)
    warnings = []
    singletons = [str(u) for u, c in zip(uniques, counts, strict=True) if c < 2]
    if singletons:
        warnings.append(
            f"{len(singletons):,} labels have only one row ({', '.join(singletons[:5])}); "
            "those rows are all in train."
        )
    try:
        _, test = train_test_split(
            eligible, test_size=test_size, random_state=seed, stratify=codes[eligible]
        )
    except ValueError:
        # Too few rows for every class to appear on both sides: split without stratifying.
        try:
            _, test = train_test_split(eligible, test_size=test_size, random_state=seed)
        except ValueError:
            warnings.append("Too few rows to hold out a test split; all rows are in train.")
            return split, warnings
        warnings.append(
            "Too few rows per label for a stratified split; the test split was drawn at random."
        )
    split[test] = "test"
    return split, warnings


def prepare_dataset(
    raw: ReadResult | pd.DataFrame,
    *,
    text_column: str,
    label_column: str,
    id_column: str | None = None,
    split_column: str | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    drop_empty_text: bool = False,
) -> PreparedDataset:
    """Check the chosen columns and build the dataset the app works on.

    Parameters
    ----------
    raw : ReadResult or pd.DataFrame
        The table; it is not modified.
    text_column, label_column : str
        Columns with the text and the (given, possibly wrong) label. Labels become strings with
        surrounding whitespace stripped; whole-number labels become "0", "1", not "0.0".
    id_column : str, optional
        Column of unique ids; without it ``ext_id`` is the 0-based row position in ``raw``.
    split_column : str, optional
        Column of train/test/validation (common aliases such as "dev" or "Training" are
        accepted). Without it a stratified split is made with ``test_size`` and ``seed``;
        labels with a single row go to train.
    test_size : float
        Share of rows held out as "test" when the split is made here; in (0, 1).
    seed : int
        Seed of that split: the same seed gives the same split.
    drop_empty_text : bool
        Drop rows with empty or whitespace-only text (counted in ``dropped_rows``) instead of
        raising.

    Returns
    -------
    PreparedDataset

    Raises
    ------
    DataError
        Unknown columns, empty text, missing labels, a single class, repeated ids or unknown
        split values; the message names the rows and the fix.

    Examples
    --------
    >>> df = pd.DataFrame({"t": ["a", "b", "c", "d"], "y": [0, 1, 0, 1]})
    >>> ds = prepare_dataset(df, text_column="t", label_column="y", test_size=0.5)
    >>> ds.label_names, sorted(ds.frame["split"])
    (['0', '1'], ['test', 'test', 'train', 'train'])
    """
    if isinstance(raw, ReadResult):
        frame, warnings, encoding = raw.frame, list(raw.warnings), raw.encoding
        affected = raw.affected_rows
    elif isinstance(raw, pd.DataFrame):
        frame, warnings, encoding, affected = raw, [], "n/a (DataFrame)", []
    else:
        raise TypeError(f"raw must be a ReadResult or a DataFrame, not {type(raw).__name__}.")
    if not 0 < test_size < 1:
        raise DataError(f"test_size must be between 0 and 1 (exclusive), got {test_size!r}.")
    roles = {
        "text column": text_column,
        "label column": label_column,
        "id column": id_column,
        "split column": split_column,
    }
    _check_columns(frame, roles)
    if len(frame) == 0:
        raise DataError("The table has no rows. Check that you chose the right file.")
    return _prepare(frame, roles, warnings, encoding, affected, test_size, seed, drop_empty_text)


def _plain(column: pd.Series) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """The values without the index, so that columns from different frames line up."""
    return column.array


def _prepare(
    frame: pd.DataFrame,
    roles: dict[str, Any],
    warnings: list[str],
    encoding: str,
    affected: list[int],
    test_size: float,
    seed: int,
    drop_empty_text: bool,
) -> PreparedDataset:
    text_column, label_column = roles["text column"], roles["label column"]
    id_column, split_column = roles["id column"], roles["split column"]
    text = _to_strings(frame[text_column])
    keep, notes = _empty_text_rows(text, text_column, drop_empty_text)
    warnings.extend(notes)
    positions = np.flatnonzero(keep)
    if len(positions) == 0:
        raise DataError(f"Every row has empty text in column {text_column!r}. Choose the column.")
    kept = frame.iloc[positions] if len(positions) < len(frame) else frame
    labels = _clean_labels(kept[label_column], label_column)
    label_names = sorted(pd.unique(labels))
    if len(label_names) < 2:
        raise DataError(
            f"Column {label_column!r} has only one class ({label_names[0]!r}); at least two "
            "classes are needed. Choose the label column, or add rows of other classes."
        )
    if id_column is not None:
        ext_id = _clean_ids(kept[id_column], id_column)
    else:
        ext_id = pd.Series(positions).astype("str")  # position in the file, even after drops
    if split_column is not None:
        split, notes = _clean_splits(kept[split_column], split_column)
        split_seed, used_test_size = None, None
    else:
        split, notes = _make_split(labels.to_numpy(dtype=object), test_size, seed)
        split_seed, used_test_size = seed, test_size
    warnings.extend(notes)
    fixed = np.zeros(len(frame), dtype=bool)
    fixed[np.asarray(affected, dtype=np.int64)] = True
    used = {c for c in roles.values() if c is not None}
    meta = np.empty(len(kept), dtype=object)
    meta[:] = _meta_records(kept, [c for c in frame.columns if c not in used])
    out = pd.DataFrame(
        {
            "ext_id": _plain(ext_id),
            "text": _plain(text.iloc[positions] if len(positions) < len(frame) else text),
            "label": _plain(labels),
            "split": pd.array(split, dtype="str"),
            "meta": meta,
            "encoding_fixed": fixed[positions],
        }
    )
    return PreparedDataset(
        frame=out,
        label_names=label_names,
        text_column=text_column,
        label_column=label_column,
        id_column=id_column,
        split_column=split_column,
        split_seed=split_seed,
        test_size=used_test_size,
        warnings=warnings,
        encoding=encoding,
        dropped_rows=len(frame) - len(positions),
    )
