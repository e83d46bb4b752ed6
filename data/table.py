"""What reading and preparing share: the table as read, the input error, and row wording.

:mod:`data.readers` (with :mod:`data.encoding`) produces a :class:`ReadResult` and
:mod:`data.prepare` consumes it; all three raise :class:`DataError`. They live here, below all
three, so that ``data.readers`` can re-export ``data.prepare`` without an import cycle. Import
them from ``data.readers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["DataError", "ReadResult", "rows", "verb"]


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
        0-based positions (in ``frame``) of rows whose bytes were not valid UTF-8 (or whose
        strings held lone surrogates), so their text was decoded with a fallback.
    spellings : dict of str to list
        JSON only: for a column holding numbers, each row's number as spelled in the file
        (``"1.50"``, ``"1e3"``), ``None`` where the cell was not a number. ``frame`` has the
        numbers; ids, texts and labels take the spelling, so nothing the user typed changes.
    """

    frame: pd.DataFrame
    source: str
    encoding: str
    warnings: list[str] = field(default_factory=list)
    affected_rows: list[int] = field(default_factory=list)
    spellings: dict[str, list[str | None]] = field(default_factory=dict)


def rows(n: int) -> str:
    """``n`` rows as a message says it: 1 -> "1 row", 4934 -> "4,934 rows"."""
    return f"{int(n):,} row" + ("" if n == 1 else "s")


def verb(n: int, plural: str) -> str:
    """The verb agreeing with n rows: "contain" -> "contains" for one row."""
    if n != 1:
        return plural
    return "has" if plural == "have" else plural + "s"
