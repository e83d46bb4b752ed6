"""Reviewers: who did what, double review and agreement, conflicts to settle, errors left."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app_pages import access
from app_pages.plain import plain, plain_chart
from app_pages.words import blank_empty
from app_pages.workspace import open_workspace, require_workspace, reviewer
from curation.reviewing import agreement, disagreements, remaining_errors

st.title("Reviewers")
ws = require_workspace()
names = ws.label_names
PAGE_SIZE = 20
OPEN, ALL = "open conflicts", "all disagreements"


@st.cache_data(max_entries=16, show_spinner=False)
def review_stats(folder: str, version: int, label_names: tuple[str, ...]) -> dict[str, Any]:
    """Agreement and disagreements for one version of the labels (cached until the next event)."""
    labels = open_workspace(folder).reviewer_labels()
    # Only samples with two or more reviewers can agree or disagree; dropping the rest first
    # keeps both computations small when thousands of samples were reviewed once.
    shared = labels[labels.duplicated("sample_id", keep=False)]
    stats = agreement(shared, label_names=list(label_names))
    return {**stats, "disagreements": disagreements(shared)}


if msg := st.session_state.pop("rvw_toast", None):
    st.toast(msg)

# --- progress -----------------------------------------------------------------------------
st.subheader("Progress")
progress = ws.reviewer_progress()
if progress.empty:
    st.info(
        "No review actions yet. Label samples on the **Review** page: every action is logged "
        "with the reviewer's name from the sidebar."
    )
else:
    import plotly.express as px

    table = progress.assign(
        first_action=pd.to_datetime(progress["first_action"], utc=True),
        last_action=pd.to_datetime(progress["last_action"], utc=True),
    )
    st.dataframe(
        table,
        hide_index=True,
        width="content",
        column_config={
            "labels_changed": "labels changed",
            "first_action": st.column_config.DatetimeColumn(
                "first action (UTC)", format="YYYY-MM-DD HH:mm"
            ),
            "last_action": st.column_config.DatetimeColumn(
                "last action (UTC)", format="YYYY-MM-DD HH:mm"
            ),
        },
    )
    # Plotly reads HTML tags in tick labels: reviewer names are escaped for it.
    chart = progress.assign(reviewer=progress["reviewer"].map(plain_chart))
    fig = px.bar(chart, x="reviewer", y="actions", text_auto=True)
    fig.update_layout(height=200, margin=dict(l=0, r=0, t=10, b=0), xaxis_title=None)
    st.plotly_chart(fig, width=min(900, 160 + 80 * len(progress)))

# --- double review ------------------------------------------------------------------------
st.subheader("Double review")
info = ws.info()
share = float(info.get("overlap_share") or 0)


def apply_overlap() -> None:
    if not access.require("bulk"):
        return
    new_share = st.session_state["overlap_share"] / 100
    n = ws.set_overlap(new_share)
    st.session_state["rvw_toast"] = f"Double review: {n:,} samples."


with st.container(horizontal=True, vertical_alignment="bottom"):
    st.slider(
        "Share of samples reviewed twice (%)",
        min_value=0,
        max_value=50,
        value=int(round(share * 100)),
        step=1,
        key="overlap_share",
        width=360,
        help="A fixed random share of the samples; their two labels measure agreement.",
    )
    st.button("Apply", key="apply_overlap", on_click=apply_overlap, disabled=not access.can("bulk"))

if share == 0:
    st.caption("No double review: each sample is shown to one reviewer.")
else:
    st.markdown(
        f"**{ws.counts()['overlap']:,}** samples ({share:.0%}) are in the "
        "double-review set: the Review page's *my queue* filter shows each of them to two "
        "reviewers, so their agreement can be measured below."
    )

# --- agreement ----------------------------------------------------------------------------
st.subheader("Agreement")
stats = review_stats(str(ws.folder), ws.label_version(), tuple(names))
pairs = stats["pairs"].query("n > 0")


# An undefined kappa shows as an empty cell, not "None" (the caption says what it means).
KAPPA_FORMATS = {"kappa": "{:.2f}", "agreement": "{:.0%}"}

if pairs.empty:
    st.info("No samples labeled by two reviewers yet.")
else:
    st.caption(
        "Cohen's kappa is the agreement beyond what chance would give: 1 = always agree, "
        "0 = no better than chance, below 0 = worse. Blank = undefined (under 2 shared "
        "samples, or no variation to agree on)."
    )
    kappa_config = {
        "reviewer_a": "reviewer A",
        "reviewer_b": "reviewer B",
        "n": st.column_config.NumberColumn("shared samples"),
        "agreement": st.column_config.NumberColumn("agreement", format="percent"),
        "kappa": st.column_config.NumberColumn("kappa", format="%.2f"),
    }
    st.dataframe(
        blank_empty(pairs, **KAPPA_FORMATS),
        hide_index=True,
        column_config=kappa_config,
        width="content",
    )
    with st.expander("Kappa per class (this class vs. the rest)"):
        per_class = stats["per_class"].query("n > 0")
        st.dataframe(
            blank_empty(per_class, **KAPPA_FORMATS),
            hide_index=True,
            column_config=kappa_config,
            width="content",
        )

# --- disagreements and conflicts ----------------------------------------------------------
st.subheader("Disagreements to settle")
open_ids = ws.review_ids(conflict=True)
dis = stats["disagreements"]
given = dict(zip(dis["sample_id"].astype(int), dis["labels"], strict=True))
open_set = set(open_ids)
settled = sorted(i for i in given if i not in open_set)
st.caption(
    f"{len(open_ids):,} open conflict{'' if len(open_ids) == 1 else 's'} (reviewers' latest "
    f"labels differ) · {len(settled):,} disagreement{'' if len(settled) == 1 else 's'} "
    "already settled by a resolve. Resolving sets the final label and clears "
    "the conflict; the reviewers' own labels stay in the log for the agreement above."
)


def resolve(sample_id: int, label: str) -> None:
    if not access.require("bulk"):  # settling reviewers' disagreements is a curator's call
        return
    ws.relabel(sample_id, label, reviewer=reviewer(), action="resolve")
    st.session_state["rvw_toast"] = f"Resolved as {plain(label)}."


def card(row: pd.Series, who: str) -> None:
    sid = int(row["sample_id"])
    chosen = given.get(sid, {})
    with st.container(border=True):
        status = "open conflict" if row["conflict"] else "settled"
        predicted = row["predicted_label"]
        model = f" · model {plain(predicted)}" if isinstance(predicted, str) else ""
        st.markdown(
            f"**Sample {plain(row['ext_id'])}** · {status} · current {plain(row['label'])} · "
            f"given {plain(row['given_label'])}{model}"
        )
        st.text(row["text"])  # plain text: data never renders as markdown or HTML
        if chosen:
            st.markdown(
                "Reviewers: "
                + " · ".join(f"{plain(r)} → {plain(lab)}" for r, lab in chosen.items())
            )
        with st.container(horizontal=True):
            for i, name in enumerate(names):
                by = [r for r, lab in chosen.items() if lab == name]
                st.button(
                    f"Resolve as {plain(name)}",
                    key=f"resolve_{sid}_{i}",
                    on_click=resolve,
                    args=(sid, name),
                    disabled=not who,
                    help=f"Chosen by {', '.join(plain(r) for r in by)}" if by else None,
                )


if not open_ids and not settled:
    st.success("No disagreements between reviewers.")
else:
    who = reviewer() if access.can("bulk") else ""
    show = st.radio("Show", [OPEN, ALL], key="adj_show", horizontal=True)
    items = open_ids + (settled if show == ALL else [])
    if len(items) > PAGE_SIZE:
        pages = (len(items) - 1) // PAGE_SIZE + 1
        page_no = st.number_input(f"Page (of {pages})", 1, pages, 1, key="adj_page", width=160)
        start = (int(page_no) - 1) * PAGE_SIZE
    else:
        start = 0
    page_ids = items[start : start + PAGE_SIZE]
    if items:
        st.caption(f"Showing {start + 1:,}–{start + len(page_ids):,} of {len(items):,}.")
    if not who:
        st.warning("Enter your **reviewer name** in the sidebar to resolve: it is logged.")
    if page_ids:
        rows, _ = ws.review_queue(ids=page_ids, order="row", limit=len(page_ids))
        rows = rows.set_index("sample_id", drop=False).loc[page_ids]
        for _, row in rows.iterrows():
            card(row, who)
    else:
        st.success("No open conflicts. Choose *all disagreements* to revisit settled ones.")

# --- remaining errors ---------------------------------------------------------------------
st.subheader("Label errors left")
counts = ws.flag_review_counts()
estimate = remaining_errors(**counts)
if ws.latest_analysis() is None:
    st.info("No analysis yet: run it on **Predictions & flags** to flag likely label errors.")
elif estimate["rate"] is None:
    st.info(estimate["note"])
else:
    st.markdown(
        f"About **{estimate['remaining']:,.0f}** ({estimate['remaining_low']:,.0f}–"
        f"{estimate['remaining_high']:,.0f}) label errors remain among the "
        f"**{counts['unreviewed']:,}** unreviewed flagged rows (error rate "
        f"{estimate['rate']:.0%}, {estimate['rate_low']:.0%}–{estimate['rate_high']:.0%}, from "
        f"{counts['reviewed']:,} reviewed flagged rows; 95% interval)."
    )
st.caption(
    "An error is a reviewed flagged row whose label was changed or that was excluded. The "
    "estimate is unbiased only when the reviewed flagged rows were picked in random order "
    "(Review page: Order = random); reviewing worst-first sees the likeliest errors first and "
    "over-estimates."
)
