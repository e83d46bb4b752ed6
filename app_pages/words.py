"""The page's words for the columns the core and the exports call by their code names.

Tables show ``predicted`` where the data says ``predicted_label``; the code name stays in each
column's help, since it is what exports, the CLI and a notebook use (README "Words").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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
    "train_rows": "training rows",
    "eval_rows": "test rows",
    "verified_rows": "verified rows",
    "label_source": "labels",
    "noise_rate": "injected noise",
    "learning_rate": "learning rate",
    "batch_size": "batch size",
    "max_length": "max tokens",
}


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
