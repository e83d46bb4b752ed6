"""What reviewers see and do in bulk: the review queue, its filters and orders, bulk actions,
the double-review overlap, per-reviewer progress.

Everything here reads the ``samples`` table alone: the latest analysis is copied into it, and
its indexes cover each filter with the order, so a page of samples stays fast at a million rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from data.store.base import ORDERS

_ORDER_SQL = {
    # Likeliest label errors first.
    # (No "IS NULL" term: it would stop the index from serving the order. Rows lack a quality
    # only before the first analysis, when this order is the row order anyway.)
    "quality": " ORDER BY s.label_quality, s.id",
    # Most useful for the model: its least confident predictions first.
    "uncertainty": " ORDER BY s.predicted_prob, s.id",
    # For unbiased estimates of the error rate: a fixed random order.
    "random": " ORDER BY s.rand, s.id",
    "row": " ORDER BY s.id",
}
_PAGE_COLUMNS = (
    "s.id AS sample_id, s.ext_id, s.text, s.given_label, s.label, s.split, s.excluded,"
    " s.reviewed, s.reviewer, s.reviewed_at, s.n_reviewers, s.conflict, s.overlap,"
    " s.encoding_fixed, s.predicted_label, s.predicted_prob, s.label_quality, s.is_label_issue,"
    " s.is_outlier, s.outlier_score, s.dup_group, s.dup_conflict"
)


class ReviewMixin:
    def _where(
        self,
        *,
        flagged: bool | None = None,
        disagrees: bool | None = None,
        label: str | None = None,
        reviewed: bool | None = None,
        split: str | None = None,
        search: str | None = None,
        encoding_fixed: bool | None = None,
        conflict: bool | None = None,
        outlier: bool | None = None,
        duplicate: bool | None = None,
        dup_conflict: bool | None = None,
        min_prob: float | None = None,
        for_reviewer: str | None = None,
        ids: list[int] | None = None,
    ) -> tuple[str, list[Any], bool]:
        """The WHERE clause, its parameters, and whether a narrow filter leads the plan.

        The planner's statistics average over a boolean column's two values, so it takes
        "flagged" for half the table. When a narrow filter is present (flagged, prediction
        disagrees, reviewed, conflicting, a rare search, ids), the broad conditions are written
        ``+s.col`` so that no index serves them, and the narrow filter's index leads.
        """
        where: list[str] = []
        params: list[Any] = []
        sqlite = self.dialect.name == "sqlite"
        phrase = '"' + search.replace('"', '""') + '"' if search else ""  # quoted = literal
        rare = sqlite and bool(search) and len(search) >= 3 and self._rare(phrase)
        narrow = (
            rare
            or ids is not None
            or True in (flagged, disagrees, reviewed, conflict, outlier, duplicate, dup_conflict)
        )
        broad = self.dialect.hint if narrow else ""
        for flag, column in (
            (flagged, "is_label_issue"),
            (disagrees, "disagrees"),
            (reviewed, "reviewed"),
            (encoding_fixed, "encoding_fixed"),
            (conflict, "conflict"),
            (outlier, "is_outlier"),
            (dup_conflict, "dup_conflict"),
        ):
            if flag is not None:
                where.append(f"{'' if flag else broad}s.{column} = {1 if flag else 0}")
        if duplicate is not None:
            where.append("s.dup_group IS NOT NULL" if duplicate else f"{broad}s.dup_group IS NULL")
        if label is not None:
            where.append(f"{broad}s.label = ?")
            params.append(label)
        if split is not None:
            where.append(f"{broad}s.split = ?")
            params.append(split)
        if min_prob is not None:
            where.append("s.predicted_prob >= ?")
            params.append(float(min_prob))
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            if rare:
                # The trigram index finds the few rows of a rare substring at once.
                where.append("s.id IN (SELECT rowid FROM samples_fts WHERE samples_fts MATCH ?)")
                params.append(phrase)
            elif sqlite:
                # A common (or short) substring: scanning in the queue's order finds a page of
                # matches after a few rows, where the index would list most of the table.
                where.append("s.text LIKE ? ESCAPE '\\'")
                params.append(f"%{escaped}%")
            else:
                # PostgreSQL: the planner weighs the pg_trgm index against the scan itself.
                where.append("s.text ILIKE ? ESCAPE '\\'")
                params.append(f"%{escaped}%")
        if for_reviewer is not None:
            # A reviewer's queue: rows nobody reviewed, plus double-review rows still waiting
            # for a second reviewer that this reviewer has not labeled yet.
            where.append(
                "(s.reviewed = 0 OR (s.overlap = 1 AND s.n_reviewers < 2 AND NOT EXISTS ("
                "SELECT 1 FROM label_events e WHERE e.sample_id = s.id AND e.reviewer = ?"
                " AND e.action NOT IN ('undo', 'repair_text'))))"
            )
            params.append(for_reviewer)
        if ids is not None:
            where.append(f"s.id IN ({','.join(str(int(i)) for i in ids) or 'NULL'})")
        return ((" WHERE " + " AND ".join(where)) if where else ""), params, narrow

    def _rare(self, phrase: str, *, threshold: int = 2000) -> bool:
        """Whether a search phrase matches at most ``threshold`` rows (by the trigram index)."""
        rows = self._read(
            "SELECT COUNT(*) FROM (SELECT 1 FROM samples_fts WHERE samples_fts MATCH ? LIMIT ?) AS capped",
            (phrase, threshold + 1),
        )
        return int(rows[0][0]) <= threshold

    def review_queue(
        self,
        *,
        order: str = "quality",
        offset: int = 0,
        limit: int = 20,
        count_cap: int | None = None,
        **filters: Any,
    ) -> tuple[pd.DataFrame, int]:
        """One page of samples for review, and the total matching the filters.

        Orders: ``"quality"`` (lowest label quality, the likeliest errors, first),
        ``"uncertainty"`` (the model's least confident predictions first), ``"random"`` (a
        fixed random order, for unbiased estimates) and ``"row"`` (import order).

        Filters (``None`` = off): ``flagged``, ``disagrees`` (prediction != current label),
        ``label`` (current), ``reviewed``, ``split``, ``search`` (case-insensitive substring),
        ``encoding_fixed``, ``conflict``, ``outlier``, ``duplicate`` (in a near-duplicate
        group), ``dup_conflict`` (its group had conflicting labels), ``min_prob`` (predicted probability >= value),
        ``for_reviewer`` (that reviewer's queue, double review included), ``ids``.

        ``count_cap`` bounds the work of counting: with it, a total above the cap is returned
        as ``count_cap`` and ``page.attrs["total_capped"]`` is True (the UI shows "10,000+").
        Counting a million matches costs more than showing the first twenty of them.
        """
        if order not in ORDERS:
            raise ValueError(f"Unknown order {order!r}; valid: {list(ORDERS)}.")
        clause, params, narrow = self._where(**filters)
        order_sql = _ORDER_SQL[order]
        by_quality_index = order == "quality" and True in (
            filters.get("flagged"),
            filters.get("disagrees"),
            filters.get("reviewed"),
        )
        if narrow and not by_quality_index and self.dialect.hint:
            # Sort the few matches; walking the order's index would visit most of the table.
            order_sql = order_sql.replace("ORDER BY s.", f"ORDER BY {self.dialect.hint}s.")
        if count_cap is None:
            total = int(self._read("SELECT COUNT(*) FROM samples s" + clause, params)[0][0])
        else:
            total = int(
                self._read(
                    f"SELECT COUNT(*) FROM (SELECT 1 FROM samples s{clause} LIMIT ?) AS capped",
                    [*params, int(count_cap) + 1],
                )[0][0]
            )
        page = self._frame(
            f"SELECT {_PAGE_COLUMNS} FROM samples s{clause}{order_sql} LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        for col in (
            "excluded",
            "reviewed",
            "conflict",
            "overlap",
            "encoding_fixed",
            "is_label_issue",
            "is_outlier",
            "dup_conflict",
        ):
            page[col] = page[col].astype(bool)
        capped = count_cap is not None and total > count_cap
        page.attrs["total_capped"] = capped
        return page, (int(count_cap) if capped else total)

    def review_ids(self, **filters: Any) -> list[int]:
        """Every sample id matching the filters (see :meth:`review_queue`), in row order."""
        clause, params, _ = self._where(**filters)
        return [
            int(r[0])
            for r in self._read(f"SELECT s.id FROM samples s{clause} ORDER BY s.id", params)
        ]

    def bulk_plan(
        self, *, action: str, new_label: str | None = None, **filters: Any
    ) -> list[tuple[int, str, str | None]]:
        """The ``(sample_id, action, label)`` triples a bulk action would apply.

        ``action="accept"`` takes each row's own model suggestion; ``"relabel"`` needs
        ``new_label``; ``"confirm"`` keeps each row's current label (or ``new_label``);
        ``"exclude"``/``"include"`` change exclusion. Rows the action would not change are
        left out, so applying twice logs nothing new; confirming is the exception, as it is
        itself the reviewer's statement.
        """
        valid = ("accept", "relabel", "confirm", "exclude", "include")
        if action not in valid:
            raise ValueError(f"Unknown bulk action {action!r}; valid: {list(valid)}.")
        if action == "relabel" and new_label is None:
            raise ValueError("A bulk relabel needs the new label: pass new_label=...")
        clause, params, _ = self._where(**filters)
        rows = self._read(
            f"SELECT s.id, s.label, s.predicted_label, s.excluded FROM samples s{clause}"
            " ORDER BY s.id",
            params,
        )
        actions: list[tuple[int, str, str | None]] = []
        for sample_id, current, predicted, excluded in rows:
            if action == "accept":
                if predicted is not None and predicted != current:
                    actions.append((int(sample_id), "accept", predicted))
            elif action == "relabel":
                if new_label != current:
                    actions.append((int(sample_id), "relabel", new_label))
            elif action == "confirm":
                actions.append((int(sample_id), "confirm", new_label or current))
            elif bool(excluded) != (action == "exclude"):
                actions.append((int(sample_id), action, None))
        return actions

    def bulk_apply(
        self, *, action: str, reviewer: str, new_label: str | None = None, **filters: Any
    ) -> list[int]:
        """Apply :meth:`bulk_plan`'s actions as one batch that a single :meth:`undo` reverts;
        returns the new event ids."""
        actions = self.bulk_plan(action=action, new_label=new_label, **filters)
        return self.apply_actions(actions, reviewer=reviewer) if actions else []

    # -- double review and reviewers -------------------------------------------------------
    def set_overlap(self, share: float) -> int:
        """Put a fixed random ``share`` of the samples in the double-review set.

        Those samples are shown to two reviewers (see ``for_reviewer``) so their agreement can
        be measured. Returns the number of samples in the set.
        """
        if not 0 <= share <= 1:
            raise ValueError(f"share must be between 0 and 1 (got {share}).")
        cutoff = int(round(share * 2**31))

        def write(conn) -> int:
            conn.execute(
                f"UPDATE samples SET overlap = {self.dialect.as_int('rand < ?')}", (cutoff,)
            )
            return int(conn.execute("SELECT COUNT(*) FROM samples WHERE overlap = 1").fetchone()[0])

        n = self._write(write)
        self.set_info("overlap_share", float(share))
        return n

    def reviewer_labels(self) -> pd.DataFrame:
        """Each reviewer's latest label per sample (undone actions left out).

        Columns: sample_id, reviewer, label. The input to ``curation.reviewing.agreement``.
        """
        return self._frame(
            "SELECT e.sample_id, e.reviewer, e.new_label AS label FROM label_events e"
            " WHERE e.action IN ('confirm', 'accept', 'relabel')"
            " AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id)"
            " AND e.id = (SELECT MAX(f.id) FROM label_events f WHERE f.sample_id = e.sample_id"
            "   AND f.reviewer = e.reviewer AND f.action IN ('confirm', 'accept', 'relabel')"
            "   AND NOT EXISTS (SELECT 1 FROM label_events v WHERE v.undoes_batch = f.batch_id))"
            " ORDER BY e.sample_id, e.reviewer"
        )

    def reviewer_progress(self) -> pd.DataFrame:
        """Per reviewer: actions, samples touched, labels changed, undos, first and last action."""
        n = self.dialect.count_if
        changed = n("action IN ('accept', 'relabel', 'resolve') AND new_label != old_label")
        confirmed, excluded, undos = (n(f"action = '{a}'") for a in ("confirm", "exclude", "undo"))
        return self._frame(
            "SELECT reviewer, COUNT(*) AS actions, COUNT(DISTINCT sample_id) AS samples,"
            f" {changed} AS labels_changed, {confirmed} AS confirmed, {excluded} AS excluded,"
            f" {undos} AS undos, MIN(created_at) AS first_action,"
            " MAX(created_at) AS last_action"
            " FROM label_events GROUP BY reviewer ORDER BY actions DESC"
        )

    def flag_review_counts(self) -> dict[str, int]:
        """Flagged rows of the latest analysis: reviewed, of those found wrong (label changed or
        excluded), and not yet reviewed. The input to ``curation.reviewing.remaining_errors``."""
        # (the flags are INTEGER 0/1, compared: PostgreSQL has no truth value for an integer)
        errors = self.dialect.count_if("reviewed = 1 AND (label != given_label OR excluded = 1)")
        unreviewed = self.dialect.count_if("reviewed = 0")
        row = self._read(
            f"SELECT SUM(reviewed) AS reviewed, {errors} AS errors,"
            f" {unreviewed} AS unreviewed FROM samples WHERE is_label_issue = 1"
        )[0]
        return {k: int(row[k] or 0) for k in ("reviewed", "errors", "unreviewed")}

    def audit_log(
        self,
        *,
        reviewer: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The event log joined with each sample's id and current text, newest first, filtered
        by reviewer, action and ISO time bounds (``since`` inclusive, ``until`` exclusive).
        ``old_text``, ``new_text``: a text event's text before and after (else empty)."""
        where, params = [], []
        for value, sql in (
            (reviewer, "e.reviewer = ?"),
            (action, "e.action = ?"),
            (since, "e.created_at >= ?"),
            (until, "e.created_at < ?"),
        ):
            if value:
                where.append(sql)
                params.append(value)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        return self._frame(
            "SELECT e.id AS event_id, e.created_at, e.reviewer, e.action, s.ext_id, e.sample_id,"
            " e.old_label, e.new_label, e.old_excluded, e.new_excluded, e.batch_id,"
            " e.undoes_batch, s.text, e.old_text, e.new_text"
            " FROM label_events e JOIN samples s ON s.id = e.sample_id"
            f"{clause} ORDER BY e.id DESC{tail}",
            params,
        )
