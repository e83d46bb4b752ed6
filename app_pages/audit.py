"""Audit log: every review action, filtered by reviewer, action and date, and downloadable."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import streamlit as st

from app_pages.workspace import require_workspace
from data.export import to_bytes
from data.store import ACTIONS

st.title("Audit log")
ws = require_workspace()
ANY = "any"
SHOWN = 1000


def day_start(day: date) -> str:
    """Midnight UTC of ``day`` in the store's timestamp format (ISO, milliseconds)."""
    return datetime.combine(day, time.min, tzinfo=UTC).isoformat(timespec="milliseconds")


reviewers = sorted(ws.reviewer_progress()["reviewer"].astype(str))
with st.container(horizontal=True):
    who = st.selectbox("Reviewer", [ANY, *reviewers], key="audit_reviewer", width=200)
    action = st.selectbox("Action", [ANY, *ACTIONS], key="audit_action", width=150)
    since = st.date_input("From (UTC)", value=None, key="audit_since", width=170)
    until = st.date_input("Until (UTC, inclusive)", value=None, key="audit_until", width=170)

if since and until and since > until:
    st.warning("The **From** date is after the **Until** date: swap them to see events.")
log = ws.audit_log(
    reviewer=None if who == ANY else who,
    action=None if action == ANY else action,
    since=day_start(since) if since else None,
    until=day_start(until + timedelta(days=1)) if until else None,
)
total = len(log)
if total == 0:
    st.info("No events match these filters." if reviewers else "No review actions yet.")
    st.stop()

shown = log.head(SHOWN).assign(
    created_at=lambda f: pd.to_datetime(f["created_at"], utc=True),
    old_excluded=lambda f: f["old_excluded"].astype(bool),
    new_excluded=lambda f: f["new_excluded"].astype(bool),
)
# At 1366 px the columns that say what happened come first and fit: who, what, which row, the
# label and the exclusion before and after; then the text; the ids for cross-checks come last.
columns = [
    "created_at",
    "reviewer",
    "action",
    "ext_id",
    "old_label",
    "new_label",
    "old_excluded",
    "new_excluded",
    "text",
]
if shown["old_text"].notna().any() or shown["new_text"].notna().any():
    columns += ["old_text", "new_text"]  # filled for text repairs (and their undos) only
columns += ["event_id", "sample_id", "batch_id", "undoes_batch"]
st.dataframe(
    shown[columns],
    hide_index=True,
    width="stretch",
    column_config={
        "created_at": st.column_config.DatetimeColumn(
            "time (UTC)", format="YYYY-MM-DD HH:mm:ss", width=150
        ),
        "reviewer": st.column_config.TextColumn("reviewer", width=90),
        "action": st.column_config.TextColumn("action", width=80),
        "ext_id": st.column_config.TextColumn("id", width=60),
        "old_label": st.column_config.TextColumn("label before", width=95),
        "new_label": st.column_config.TextColumn("label after", width=95),
        "old_excluded": st.column_config.CheckboxColumn(
            "excl. before", help="Excluded from training before the action", width=80
        ),
        "new_excluded": st.column_config.CheckboxColumn(
            "excl. after", help="Excluded from training after the action", width=80
        ),
        "text": st.column_config.TextColumn("text", width="large"),
        "old_text": st.column_config.TextColumn("text before (repairs)"),
        "new_text": st.column_config.TextColumn("text after (repairs)"),
    },
)
more = f"; the table shows the newest {SHOWN:,}, the download has them all" if total > SHOWN else ""
st.caption(f"{total:,} events match, newest first{more}.")
st.download_button(
    f"Download {total:,} event{'' if total == 1 else 's'} (CSV)",
    # Built only when clicked; to_bytes neutralises spreadsheet formulas in the text.
    data=lambda: to_bytes(log, "csv"),
    file_name=f"{ws.folder.name}-audit-log.csv",
    mime="text/csv",
    key="download_audit",
    on_click="ignore",
    icon=":material/download:",
)
