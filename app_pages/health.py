"""Dataset health: how noisy the labels look per class, outliers, near-duplicate groups side by
side (conflicting labels called out), and annotator quality when the data has annotators."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.plain import plain, plain_chart
from app_pages.words import column_words
from app_pages.workspace import require_workspace

st.title("Dataset health")
ws = require_workspace()
latest = ws.latest_analysis()
if latest is None:
    st.info("No analysis yet: run it on **Predictions & flags** first.")
    st.page_link("app_pages/issues.py", label="Predictions & flags", icon=":material/flag:")
    st.stop()

summary = latest.summary
health = summary.health


@st.cache_data(max_entries=4, show_spinner=False)
def results_table(folder: str, analysis_id: int, label_version: int) -> pd.DataFrame:
    return ws.analysis_results(analysis_id)


results = results_table(str(ws.folder), latest.id, ws.label_version())
n = len(results)
n_groups = int(results["dup_group"].dropna().nunique())
conflict_groups = int(results.loc[results["dup_conflict"], "dup_group"].dropna().nunique())
estimate = health.get("num_label_issues")

cols = st.columns(5)
cols[0].metric("Rows", f"{n:,}")
cols[1].metric(
    "Estimated label errors",
    f"{estimate:,}" if estimate is not None else "—",
    f"{estimate / max(n, 1):.1%} of rows" if estimate is not None else None,
    delta_color="off",
    delta_arrow="off",
    help="cleanlab's confident-learning estimate of how many analyzed labels are wrong "
    "(from the joint distribution of analyzed and true labels), not just the flagged count.",
)
cols[2].metric("Flagged label issues", f"{int(results['is_label_issue'].sum()):,}")
cols[3].metric("Outliers", f"{int(results['is_outlier'].sum()):,}")
cols[4].metric(
    "Near-duplicate groups",
    f"{n_groups:,}",
    f"{conflict_groups:,} with conflicting labels",
    delta_color="inverse" if conflict_groups else "off",
    delta_arrow="off",
)
st.caption(
    f"Analysis {latest.id} ({plain(summary.method)}) at "
    f"{latest.created_at[:19]} UTC on label version {latest.label_version}; "
    f"{plain(summary.encoder)}."
)

tab_noise, tab_dups, tab_outliers, tab_annot = st.tabs(
    ["Per-class noise", "Near-duplicates", "Outliers", "Annotators"]
)

with tab_noise:
    per_class = health.get("per_class")
    matrix = health.get("noise_matrix")
    if per_class:
        table = (
            pd.DataFrame(**per_class) if isinstance(per_class, dict) else pd.DataFrame(per_class)
        )
        st.subheader("Per class")
        st.caption(
            "cleanlab's estimates from the calibrated joint distribution of analyzed and true "
            "labels. They differ from the flagged counts on Predictions & flags, which are "
            "the individual rows it is confident about."
        )
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={
                "label": "class",
                "given": "rows given this label",
                "label_issues": st.column_config.NumberColumn(
                    "estimated wrong", help="Given this label but truly another class."
                ),
                "inverse_label_issues": st.column_config.NumberColumn(
                    "estimated missed", help="Truly this class but given another label."
                ),
                "label_noise": st.column_config.NumberColumn("noise rate", format="percent"),
                "inverse_label_noise": st.column_config.NumberColumn(
                    "missed rate", format="percent"
                ),
                "label_quality": st.column_config.NumberColumn("quality", format="%.3f"),
            },
        )
    if matrix:
        frame = pd.DataFrame(**matrix) if "data" in matrix else pd.DataFrame(matrix)
        # Plotly reads HTML tags in tick labels: class names are escaped for it.
        frame = frame.rename(index=plain_chart, columns=plain_chart)
        st.subheader("Which class is confused with which")
        st.caption(
            "Rows: the analyzed label; columns: the label cleanlab estimates is true. Off-diagonal "
            "cells are the estimated share of rows given one label that truly belong to another."
        )
        fig = px.imshow(
            frame,
            text_auto=".1%",
            color_continuous_scale="Reds",
            labels={"x": "estimated true label", "y": "analyzed label", "color": "share"},
        )
        fig.update_layout(height=320, width=560, margin=dict(l=0, r=0, t=10, b=0))
        st.plotly_chart(fig, width="content", key="noise_matrix")
    if not per_class and not matrix:
        st.info("This analysis predates the health summary: re-analyse to see it.")

with tab_dups:
    only_conflicts = st.toggle("Only groups with conflicting labels", key="dup_conflicts")
    page_size = 10
    _, total = ws.duplicate_groups(conflicting_only=only_conflicts, limit=0)
    if not total:
        st.info("No near-duplicate groups in this analysis.")
    else:
        pages = max(1, -(-total // page_size))
        page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="dup_page") - 1
        members, _ = ws.duplicate_groups(
            conflicting_only=only_conflicts, limit=page_size, offset=page * page_size
        )
        st.caption(
            f"{total:,} groups. Groups whose texts carry different labels come first: at most "
            "one of those labels can be right. Labels shown are the current ones."
        )
        for group, g in members.groupby("dup_group", sort=False):
            with st.container(border=True):
                head = f"Group {int(group)} · {len(g)} texts"
                if g["conflicting"].iloc[0]:
                    head += (
                        " · :red[conflicting labels: "
                        + ", ".join(plain(lab) for lab in sorted(set(g["label"])))
                        + "]"
                    )
                st.markdown(head)
                # One text per label first, so a conflicting group shows its conflict.
                firsts = g.drop_duplicates("label")
                shown = pd.concat([firsts, g.drop(firsts.index)]).head(4)
                for col, (_, row) in zip(st.columns(len(shown)), shown.iterrows(), strict=True):
                    with col:
                        st.text(row["text"])
                        st.caption(
                            f"id {plain(row['ext_id'])} · **{plain(row['label'])}**"
                            + (" · reviewed" if row["reviewed"] else "")
                            + (" · excluded" if row["excluded"] else "")
                        )
                if len(g) > len(shown):
                    st.caption(f"… and {len(g) - len(shown)} more.")
        st.caption(
            "To relabel or exclude them, choose Issue type = conflicting duplicates on Review "
            "(the Flags filter then switches to 'any')."
        )
        st.page_link("app_pages/review.py", label="Review", icon=":material/rate_review:")

with tab_outliers:
    outliers = results[results["is_outlier"]].sort_values("outlier_score").head(50)
    if not len(outliers):
        st.info("No outliers in this analysis.")
    else:
        st.caption(
            "Texts far from every other text in embedding space (lowest outlier score first): "
            "often junk, another language, or a different task. Exclude them on Review "
            "(Issue type = outliers)."
        )
        st.dataframe(
            outliers[["ext_id", "text", "label", "outlier_score"]],
            hide_index=True,
            width="stretch",
            column_config=column_words(
                outliers.columns,
                outlier_score=st.column_config.NumberColumn("outlier score", format="%.3f"),
            ),
        )

with tab_annot:
    annotators = summary.annotators
    if not annotators:
        st.info(
            "This dataset has no annotator columns. Import one with a column per annotator to "
            "get cleanlab's multi-annotator consensus (CROWDLAB): a consensus label and quality "
            "per row and a quality score per annotator."
        )
    else:
        st.metric(
            "Rows whose consensus differs from the label",
            f"{summary.consensus_differs:,}",
        )
        st.dataframe(pd.DataFrame(annotators), hide_index=True, width="stretch")
        low = results.sort_values("consensus_quality").head(50)
        st.subheader("Lowest consensus quality")
        st.dataframe(
            low[["ext_id", "text", "label", "consensus_label", "consensus_quality"]],
            hide_index=True,
            width="stretch",
            column_config=column_words(low.columns),
        )
