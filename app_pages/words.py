"""The page's words for the columns the core and the exports call by their code names.

Tables show ``predicted`` where the data says ``predicted_label``; the code name stays in each
column's help, since it is what exports, the CLI and a notebook use (README "Words").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import streamlit as st

COLUMN_WORDS = {
    "ext_id": "id",
    "given_label": "given label",
    "analyzed_label": "analyzed label",
    "label": "current label",
    "predicted_label": "predicted",
    "predicted_prob": "p(predicted)",
    "label_quality": "label quality",
    "is_label_issue": "flagged",
    "is_outlier": "outlier",
    "is_near_duplicate": "near-duplicate",
    "outlier_score": "outlier score",
    "near_duplicate_score": "near-duplicate score",
    "consensus_label": "crowd consensus",
    "consensus_quality": "consensus quality",
    "annotator_agreement": "annotator agreement",
    "n_reviewers": "reviewers",
    "reviewed_at": "reviewed at",
    "encoding_fixed": "encoding fixed",
    "given_text": "text as imported",
    "text_original": "text as imported",
    "train_rows": "training rows",
    "eval_rows": "test rows",
    "verified_rows": "verified rows",
    "label_source": "labels",
    "noise_rate": "injected noise",
    "learning_rate": "learning rate",
    "batch_size": "batch size",
    "max_length": "max tokens",
}


def setting_help(name: str, text: str) -> str:
    """A setting's help text, ending with the setting's own name (CLI flags, run records)."""
    return f"{text}\n\nSetting: `{name}`."


def column_words(columns: Iterable[Any], **overrides: Any) -> dict[str, Any]:
    """A ``column_config`` naming every known column in plain words, its code name in the help.

    ``overrides`` (a column's own config: a number format, a progress bar) win.
    """
    config: dict[str, Any] = {}
    for name in columns:
        if isinstance(name, str) and name in COLUMN_WORDS:
            config[name] = st.column_config.Column(
                COLUMN_WORDS[name], help=f"`{name}` in exports, the CLI and notebooks."
            )
    return {**config, **overrides}


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or dict in a cell
        return False


def _shown(value: Any, spec: str | None) -> str:
    if _missing(value):
        return ""
    if spec:
        return spec.format(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a job id in a column with gaps is a float: 5, not 5.0
    return str(value)


def blank_empty(frame: pd.DataFrame, **formats: str) -> Any:
    """``frame`` styled so that empty cells are blank instead of Streamlit's grey "None".

    ``formats`` maps a column to a format spec (``accuracy="{:.3f}"``); a Styler's display
    values replace the column_config's number formats, so they are given here.
    """
    return frame.style.format({column: _formatter(formats.get(column)) for column in frame.columns})


def _formatter(spec: str | None):
    return lambda value: _shown(value, spec)
