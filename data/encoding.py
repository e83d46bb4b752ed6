"""Decode the bytes of a text table into a str, and report where that needed a fallback.

Text files that are not valid UTF-8 are not refused and not silently garbled: the bytes that are
valid UTF-8 are decoded as UTF-8, only the invalid sequences as Windows-1252 (a codecs error
handler), and :func:`locate_invalid_bytes` finds the rows that needed it so a reviewer can check
them. A file that is mostly not UTF-8 and looks like a non-Latin script is decoded whole with
charset_normalizer's guess instead. UTF-16/32 (with or without a byte-order mark) is decoded as
such, and binary files (zip, Parquet, PDF, ...) are refused with a :class:`DataError` that says
what the file looks like and what to do.

Parsing is not done here: :func:`locate_invalid_bytes` takes the parser as an argument.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.table import DataError, rows, verb

__all__ = ["FALLBACK_ERRORS", "Decoded", "decode", "is_rows_note", "locate_invalid_bytes"]

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
# How locate_invalid_bytes' notes about located rows begin ("4,934 rows contain bytes that are
# not valid UTF-8; ...", "3 of 10 rows contain ..."): see is_rows_note.
_ROWS_NOTE = re.compile(r"^[\d,]+ (?:of [\d,]+ )?rows? contains? bytes that are not valid UTF-8")
# C0 control bytes that never occur in text tables (tab, LF, VT, FF, CR and ESC are allowed).
_CONTROL_BYTES = bytes([*range(0, 9), 14, 15, *range(16, 27), *range(28, 32), 127])
_MIN_BYTES_TO_GUESS = 32  # fewer non-ASCII bytes than this: too little to guess an encoding


def is_rows_note(note: str) -> bool:
    """Whether an import warning is the note that rows held bytes that were not valid UTF-8
    (and were located: those rows are marked ``encoding_fixed``), rather than another warning
    (about the header, or rows that could not be located).

    >>> is_rows_note("4,934 rows contain bytes that are not valid UTF-8; those bytes were ...")
    True
    >>> is_rows_note("The header contains bytes that are not valid UTF-8; ...")
    False
    """
    return bool(_ROWS_NOTE.match(note))


def _fallback_char(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: undefined in cp1252
        return chr(byte)  # as latin-1 does


_FALLBACK_CHARS = tuple(_fallback_char(b) for b in range(256))
# The codecs error handler that decodes invalid UTF-8 bytes as Windows-1252 (bytes.decode).
FALLBACK_ERRORS = "second-look-cp1252-fallback"


def _cp1252_fallback(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: decode the invalid bytes of a UTF-8 decode as Windows-1252."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    bad = bytes(err.object[err.start : err.end])
    return "".join(_FALLBACK_CHARS[b] for b in bad), err.end


codecs.register_error(FALLBACK_ERRORS, _cp1252_fallback)


@dataclass
class Decoded:
    """A table's text, and what :func:`locate_invalid_bytes` needs when it was not all UTF-8."""

    text: str
    encoding: str
    # Set when the bytes are not valid UTF-8: the same bytes decoded with errors="replace", so
    # rows with a U+FFFD that the real decoding lacks are exactly the rows with invalid bytes.
    replaced: str | None = None
    body: bytes = b""


def decode(data: bytes, source: str, name: str) -> Decoded:
    """Decode a text table's bytes; invalid UTF-8 bytes are decoded as Windows-1252.

    Parameters
    ----------
    data : bytes
        The whole file.
    source : str
        File name, as shown in error messages.
    name : str
        Name of the format being read, as shown in error messages (e.g. "CSV").

    Returns
    -------
    Decoded
        ``replaced`` is ``None`` when the bytes were valid UTF-8, UTF-16 or UTF-32.

    Raises
    ------
    DataError
        The bytes look like a binary file (zip, Parquet, PDF, control bytes, NUL bytes that are
        not UTF-16), or a UTF-16/32 byte-order mark is followed by invalid bytes.

    Examples
    --------
    >>> d = decode(b"caf\\xc3\\xa9 caf\\xe9", "x.csv", "CSV")
    >>> d.text, d.encoding, "\\ufffd" in d.replaced
    ('café café', 'utf-8', True)
    """
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return Decoded(data.decode(codec), codec)
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
        return Decoded(body.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    return Decoded(
        body.decode("utf-8", FALLBACK_ERRORS),
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


def _utf16_without_bom(body: bytes) -> Decoded | None:
    """UTF-16 text without a byte-order mark: mostly-ASCII text has a NUL in every other byte."""
    half = len(body) // 2
    if half == 0 or len(body) % 2:
        return None
    even, odd = body[0::2].count(0), body[1::2].count(0)
    for codec, zeros, others in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        if zeros > 0.3 * half and others < 0.01 * half:
            try:
                return Decoded(body.decode(codec), f"{codec} (no byte-order mark)")
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


def locate_invalid_bytes(
    frame: pd.DataFrame,
    replaced: pd.DataFrame,
    decoded: Decoded,
    *,
    parse: Callable[[str], pd.DataFrame],
) -> tuple[pd.DataFrame, str, list[int], list[str]]:
    """Find the rows with invalid UTF-8; decode the whole file another way if most are.

    Parameters
    ----------
    frame : pd.DataFrame
        ``decoded.text`` parsed.
    replaced : pd.DataFrame
        ``decoded.replaced`` parsed the same way.
    decoded : Decoded
        What :func:`decode` returned for bytes that were not valid UTF-8.
    parse : callable
        Parses a whole file's text into a frame (raising :class:`DataError` if it cannot); used
        to try charset_normalizer's guess on files that are mostly not UTF-8.

    Returns
    -------
    frame : pd.DataFrame
        ``frame``, or the file parsed from charset_normalizer's guess.
    encoding : str
        How the bytes were decoded, e.g. ``"utf-8 (cp1252 fallback for 3 rows)"``.
    affected_rows : list of int
        0-based positions of the rows whose bytes were not valid UTF-8.
    notes : list of str
        Warnings for the user.
    """
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
        guessed = _whole_file_guess(decoded.body, parse, replaced)
        if guessed is not None:
            frame, codec, mask = guessed
            n = int(mask.sum())
            notes.append(
                f"{n:,} of {rows(total)} {verb(n, 'contain')} bytes that are not valid "
                "UTF-8, so the whole "
                f"file was decoded as {codec} (the best guess of charset_normalizer); check them "
                "(filter 'encoding fixed' in review), or re-save the file as UTF-8."
            )
            return frame, f"{codec} (detected; {rows(n)} not valid UTF-8)", _positions(mask), notes
    notes.append(
        f"{rows(n)} {verb(n, 'contain')} bytes that are not valid UTF-8; those bytes were "
        "decoded as "
        "Windows-1252 and the rest as UTF-8; check them (filter 'encoding fixed' in review)."
    )
    return frame, f"utf-8 (cp1252 fallback for {rows(n)})", _positions(mask), notes


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
    body: bytes, parse: Callable[[str], pd.DataFrame], replaced: pd.DataFrame
) -> tuple[pd.DataFrame, str, np.ndarray] | None:
    """charset_normalizer's guess for a file that is mostly not UTF-8, if it parses the same."""
    import charset_normalizer

    best = charset_normalizer.from_bytes(body).best()
    if best is None or best.encoding.replace("-", "_") in ("utf_8", "ascii"):
        return None
    try:
        text = body.decode(best.encoding)
        frame = parse(text)
    except (UnicodeDecodeError, LookupError, DataError):
        return None
    mask = _rows_with_invalid_bytes(replaced, frame)
    if mask is None:
        return None
    return frame, best.encoding, mask


def _positions(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()
