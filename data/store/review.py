"""What reviewers see: the review queue, its filters and orders."""

from __future__ import annotations

import pandas as pd

from data.store.base import ORDERS


class ReviewMixin:
    def review_queue(
        self,
        *,
        analysis_id: int | None = None,
        flagged: bool | None = None,
        disagrees: bool | None = None,
        label: str | None = None,
        reviewed: bool | None = None,
        split: str | None = None,
        search: str | None = None,
        encoding_fixed: bool | None = None,
        order: str = "quality",
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[pd.DataFrame, int]:
        """One page of samples for review, and the total matching the filters.

        ``order="quality"`` puts the lowest label quality (likeliest errors) first;
        ``"row"`` keeps import order. Filters set to ``None`` are off. ``disagrees`` compares
        the model's prediction with the *current* label. ``search`` is a case-insensitive
        substring of the text.
        """
        if order not in ORDERS:
            raise ValueError(f"Unknown order {order!r}; valid: {list(ORDERS)}.")
        aid = self._analysis_id(analysis_id)
        where, params = [], []

        def cond(flag: bool | None, sql_true: str, sql_false: str) -> None:
            if flag is not None:
                where.append(sql_true if flag else sql_false)

        cond(flagged, "r.is_label_issue = 1", "COALESCE(r.is_label_issue, 0) = 0")
        cond(disagrees, "r.predicted_label != s.label", "r.predicted_label = s.label")
        cond(reviewed, "s.reviewed = 1", "s.reviewed = 0")
        cond(encoding_fixed, "s.encoding_fixed = 1", "s.encoding_fixed = 0")
        if label is not None:
            where.append("s.label = ?")
            params.append(label)
        if split is not None:
            where.append("s.split = ?")
            params.append(split)
        if search:
            where.append("s.text LIKE ? ESCAPE '\\'")
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{escaped}%")
        base = (
            " FROM samples s LEFT JOIN analysis_results r"
            " ON r.sample_id = s.id AND r.analysis_id = ?"
        )
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total = int(self._read("SELECT COUNT(*)" + base + clause, [aid, *params])[0][0])
        order_sql = (
            " ORDER BY r.label_quality IS NULL, r.label_quality, s.id"
            if order == "quality"
            else " ORDER BY s.id"
        )
        page = self._frame(
            "SELECT s.id AS sample_id, s.ext_id, s.text, s.original_label, s.label, s.split,"
            " s.excluded, s.reviewed, s.reviewer, s.reviewed_at, s.encoding_fixed,"
            " r.predicted_label, r.predicted_prob, r.given_prob, r.label_quality,"
            " r.is_label_issue" + base + clause + order_sql + " LIMIT ? OFFSET ?",
            [aid, *params, int(limit), int(offset)],
        )
        for col in ("excluded", "reviewed", "encoding_fixed"):
            page[col] = page[col].astype(bool)
        page["is_label_issue"] = page["is_label_issue"].fillna(0).astype(bool)
        return page, total
