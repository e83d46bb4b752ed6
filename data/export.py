"""Export the curated dataset with provenance, and a trained model folder.

CSV exports are safe to open in a spreadsheet: a cell that starts with ``=``, ``+``, ``-``,
``@`` (or a tab / carriage return) is prefixed with ``'`` so it is shown as text instead of run
as a formula (OWASP's CSV-injection advice). JSONL and Parquet keep values exactly.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

FORMATS = ("csv", "jsonl", "parquet")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def curated_frame(ws: Any, *, include_metadata: bool = True) -> pd.DataFrame:
    """The curated dataset in import order, with provenance (and metadata) columns.

    ``label`` is the current (curated) label, ``original_label`` the imported one; the
    quality columns come from the latest analysis (empty before any analysis).
    """
    rows = ws.samples(with_meta=include_metadata)
    results = ws.analysis_results()
    out = pd.DataFrame(
        {
            "id": rows["ext_id"],
            "text": rows["text"],
            "label": rows["label"],
            "original_label": rows["original_label"],
            "changed": rows["label"] != rows["original_label"],
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
        meta = pd.DataFrame(list(rows["meta"]), index=rows.index)
        meta = meta[[c for c in meta.columns if c not in out.columns]]
        out = pd.concat([out, meta], axis=1)
    return out


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula with ``'``.

    >>> neutralize_formulas(pd.DataFrame({"t": ["=1+1", "ok", "-2"]}))["t"].tolist()
    ["'=1+1", 'ok', "'-2"]
    """
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(_neutralize_cell)
    return out


def _neutralize_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """Serialise a frame as ``csv`` (formula-safe, UTF-8 with BOM for Excel), ``jsonl`` or
    ``parquet``."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; valid: {list(FORMATS)}.")
    if fmt == "csv":
        return neutralize_formulas(frame).to_csv(index=False).encode("utf-8-sig")
    if fmt == "jsonl":
        return frame.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def export_dataset(
    ws: Any, path: str | os.PathLike, *, fmt: str | None = None, include_metadata: bool = True
) -> Path:
    """Write the curated dataset to ``path``; the format comes from ``fmt`` or the suffix.

    Written to a temporary file and moved into place, so a failed export never leaves a
    truncated file where a good one was.
    """
    return export_frame(curated_frame(ws, include_metadata=include_metadata), path, fmt=fmt)


def export_frame(frame: pd.DataFrame, path: str | os.PathLike, *, fmt: str | None = None) -> Path:
    """Write any frame as csv/jsonl/parquet (format from ``fmt`` or the suffix), atomically."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(
            f"Cannot tell the export format from {path.name!r}; use a .csv, .jsonl or .parquet "
            f"file name or pass one of {list(FORMATS)}."
        )
    data = to_bytes(frame, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".part") as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
    return path


def model_archive(model_dir: str | os.PathLike) -> bytes:
    """A trained model folder (``save_pretrained`` output) as zip bytes, for download."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a saved model folder (no config.json).")
    with tempfile.TemporaryDirectory() as tmp:
        archive = shutil.make_archive(str(Path(tmp) / "model"), "zip", model_dir)
        return Path(archive).read_bytes()
