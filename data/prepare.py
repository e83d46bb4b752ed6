"""Check the columns a user chose in a raw table and build the dataset the app works on.

:func:`prepare_dataset` takes what :func:`data.readers.read_table` read (or a DataFrame), checks
the chosen text, label, id and split columns (empty text, missing labels, a single class,
repeated ids, unknown split names) and returns a :class:`PreparedDataset` whose frame has
exactly the columns ``ext_id, text, label, split, meta, encoding_fixed``; without a split column
it makes a stratified, seeded train/test split. Every problem raises :class:`DataError` with a
message that names the rows and the fix.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from data.table import DataError, ReadResult, rows, verb

__all__ = ["SPLITS", "PreparedDataset", "lonely_labels", "prepare_dataset"]

SPLITS = ("train", "test", "validation")
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
_ROWS_SHOWN = 5
_ROW_NUMBERING = "numbered as in a spreadsheet, where the header is row 1"


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
    # Columns holding individual annotators' labels (multi-annotator data); they stay in
    # ``meta`` too, so the analysis can run cleanlab's CROWDLAB consensus on them.
    annotator_columns: list[str] = field(default_factory=list)
    # Labels with a single row: the analysis refuses them, so the import does not start it.
    lonely_labels: list[str] = field(default_factory=list)


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
            f"{rows(n)} {verb(n, 'have')} empty text in column {column!r} ({where}). Fill them "
            "in, or "
            "choose 'Drop rows with empty text' (drop_empty_text=True)."
        )
    return ~empty, [f"Dropped {rows(n)} with empty text in column {column!r} ({where})."]


def _clean_labels(raw: pd.Series, column: str) -> pd.Series:
    labels = _to_strings(raw).str.strip()
    missing = (labels.isna() | labels.eq("")).to_numpy()
    if missing.any():
        raise DataError(
            f"{rows(missing.sum())} {verb(missing.sum(), 'have')} no label in column {column!r} "
            f"({_rows_text(np.flatnonzero(missing))}). Fill in their labels or remove those rows."
        )
    return labels


def _clean_ids(raw: pd.Series, column: str) -> pd.Series:
    ids = _to_strings(raw)
    # An empty id names nothing (and a CSV cannot tell it from a missing one).
    missing = (ids.isna() | ids.eq("")).to_numpy()
    if missing.any():
        raise DataError(
            f"{rows(missing.sum())} {verb(missing.sum(), 'have')} no id in column {column!r} "
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
            f"{rows(unknown.sum())} in column {column!r} {verb(unknown.sum(), 'have')} a split "
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
    warnings = []  # labels with one row (kept in train) are named by _prepare's warning
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
    label_column: str | None,
    id_column: str | None = None,
    split_column: str | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    drop_empty_text: bool = False,
    annotator_columns: Sequence[str] | None = None,
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
    annotator_columns : sequence of str, optional
        Two or more columns, one per annotator, each holding that annotator's label (empty
        where the annotator did not label the row). With ``label_column=None`` the label is
        the annotators' majority vote (ties go to the label that is more common overall).

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
    annotators = list(annotator_columns or [])
    if annotators and len(annotators) < 2:
        raise DataError(
            f"Multi-annotator consensus needs at least two annotator columns; got {annotators}. "
            "Choose more columns, or none."
        )
    if label_column is None and not annotators:
        raise DataError("Choose a label column (or two or more annotator columns).")
    for i, column in enumerate(annotators):
        roles[f"annotator column {i + 1}"] = column
    _check_columns(frame, roles)
    if len(frame) == 0:
        raise DataError("The table has no rows. Check that you chose the right file.")
    if isinstance(raw, ReadResult):
        frame = _as_spelled(frame, raw.spellings, [c for c in roles.values() if c is not None])
    return _prepare(frame, roles, warnings, encoding, affected, test_size, seed, drop_empty_text)


def _as_spelled(
    frame: pd.DataFrame, spellings: dict[str, list[str | None]], columns: list[str]
) -> pd.DataFrame:
    """The frame with numbers in the chosen columns as spelled in the file (JSON ``1.50``
    stays the id "1.50", not "1.5"); metadata columns keep the numbers."""
    spelled = [c for c in columns if c in spellings]
    if not spelled:
        return frame
    frame = frame.copy(deep=False)
    for column in spelled:
        values = frame[column].to_numpy(dtype=object, copy=True)
        literal = np.array(spellings[column], dtype=object)
        has = np.array([v is not None for v in spellings[column]], dtype=bool)
        values[has] = literal[has]
        frame[column] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def lonely_labels(labels: Sequence[str]) -> list[str]:
    """Labels held by a single row: no out-of-sample model can learn them.

    >>> lonely_labels(["a", "a", "b", "c", "c"])
    ['b']
    """
    counts = pd.Series(list(labels), dtype=object).value_counts()
    return sorted(str(label) for label in counts.index[counts.to_numpy() == 1])


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
    annotators = [c for role, c in roles.items() if role.startswith("annotator")]
    votes = annotator_labels(kept, annotators)
    if label_column is not None:
        labels = _clean_labels(kept[label_column], label_column)
    else:
        labels = majority_vote(votes)
        label_column = "majority vote of " + ", ".join(annotators)
    label_names = sorted(set(pd.unique(labels)) | set(votes.stack().dropna().tolist()))
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
    lonely = lonely_labels(labels)
    if lonely:
        warnings.append(
            f"The label(s) {', '.join(repr(v) for v in lonely[:10])} have a single row. The "
            "analysis needs at least two rows per label to score it out-of-sample: relabel "
            "that row in review, or add rows of that label, before analysing."
        )
    fixed = np.zeros(len(frame), dtype=bool)
    fixed[np.asarray(affected, dtype=np.int64)] = True
    # Annotator columns stay in meta: the analysis reads them from there.
    used = {c for role, c in roles.items() if c is not None and not role.startswith("annotator")}
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
        annotator_columns=annotators,
        lonely_labels=lonely,
    )


def annotator_labels(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The annotators' labels as stripped strings, ``None`` where a row was not labeled."""
    votes = pd.DataFrame(index=range(len(frame)))
    for column in columns:
        values = _to_strings(frame[column]).str.strip().array
        votes[column] = [None if pd.isna(v) or v == "" else v for v in values]
    if columns:
        none = votes.isna().all(axis=1).to_numpy()
        if none.any():
            raise DataError(
                f"{rows(none.sum())} {verb(none.sum(), 'have')} no label from any annotator "
                f"column ({_rows_text(np.flatnonzero(none))}). Fill them in or remove those rows."
            )
    return votes


def majority_vote(votes: pd.DataFrame) -> pd.Series:
    """Each row's most frequent annotator label; a tie goes to the label that is more common
    over the whole table (then to the first in sorted order), so the result is deterministic.

    Examples
    --------
    >>> majority_vote(pd.DataFrame({"a": ["x", "y"], "b": ["x", None], "c": ["y", "z"]})).tolist()
    ['x', 'y']
    """
    overall = votes.stack().value_counts()
    rank = {
        label: i for i, label in enumerate(sorted(overall.index, key=lambda v: (-overall[v], v)))
    }
    out = []
    for row in votes.itertuples(index=False):
        counts: dict[str, int] = {}
        for v in row:
            if v is not None and not (isinstance(v, float) and np.isnan(v)):
                counts[v] = counts.get(v, 0) + 1
        out.append(min(counts, key=lambda v: (-counts[v], rank[v])))
    return pd.Series(out, dtype="str")
