"""Review: one sample at a time, worst label quality first; every action is saved at once."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app_pages.common import require_workspace, reviewer

st.title("Review")
ws = require_workspace()
names = ws.label_names
latest = ws.latest_analysis()
if latest is None:
    st.info(
        "No predictions yet: run the analysis on **Predictions & flags** first. You can still "
        "review in row order."
    )

ANY = "any"
PAGE_SIZE = 20


def reset_position() -> None:
    st.session_state["rv_pos"] = 0


with st.container(horizontal=True):
    st.selectbox(
        "Flags",
        ["flagged", "not flagged", ANY],
        key="rv_flagged",
        on_change=reset_position,
        width=150,
    )
    st.selectbox(
        "Prediction vs label",
        [ANY, "disagree", "agree"],
        key="rv_disagree",
        on_change=reset_position,
        width=170,
    )
    st.selectbox(
        "Current label", [ANY, *names], key="rv_label", on_change=reset_position, width=150
    )
    st.selectbox(
        "Reviewed",
        [ANY, "not reviewed", "reviewed"],
        key="rv_reviewed",
        on_change=reset_position,
        width=150,
    )
    st.selectbox(
        "Split",
        [ANY, "train", "test", "validation"],
        key="rv_split",
        on_change=reset_position,
        width=130,
    )
    st.selectbox(
        "Order",
        ["worst quality first", "row order"],
        key="rv_order",
        on_change=reset_position,
        width=180,
    )
    st.selectbox(
        "Encoding",
        [ANY, "encoding fixed"],
        key="rv_encoding",
        on_change=reset_position,
        width=150,
        help="Rows whose bytes were not valid UTF-8 and were decoded as Windows-1252.",
    )
    st.text_input("Search text", key="rv_search", on_change=reset_position, width=220)


def tri(key: str, yes: str, no: str) -> bool | None:
    value = st.session_state.get(key, ANY)
    return True if value == yes else False if value == no else None


def queue_filters() -> dict[str, Any]:
    label = st.session_state.get("rv_label", ANY)
    split = st.session_state.get("rv_split", ANY)
    flags = tri("rv_flagged", "flagged", "not flagged") if latest else None
    if latest is None and st.session_state.get("rv_flagged") == "flagged":
        flags = None
    return {
        "flagged": flags,
        "disagrees": tri("rv_disagree", "disagree", "agree") if latest else None,
        "label": None if label == ANY else label,
        "reviewed": tri("rv_reviewed", "reviewed", "not reviewed"),
        "split": None if split == ANY else split,
        "search": st.session_state.get("rv_search") or None,
        "encoding_fixed": True if st.session_state.get("rv_encoding") == "encoding fixed" else None,
        "order": "quality" if st.session_state.get("rv_order", "").startswith("worst") else "row",
    }


def act(sample_id: int, action: str, label: str | None = None) -> None:
    """Button callback: commit one action, then move on to the next sample."""
    who = reviewer()
    stack = st.session_state.setdefault("rv_stack", [])
    if action == "undo":
        done = ws.undo(reviewer=who)
        st.session_state["rv_toast"] = "Undone." if done else "Nothing to undo."
        if done and stack:  # go back to the sample whose action was reverted
            st.session_state["rv_pos"] = stack.pop()
            st.session_state.pop("rv_last_acted", None)
        return
    stack.append(st.session_state.get("rv_pos", 0))
    if action in ("exclude", "include"):
        ws.set_excluded(sample_id, action == "exclude", reviewer=who)
    else:
        ws.relabel(sample_id, label, reviewer=who, action=action)
    # The store has committed: only now tell the reviewer it is saved.
    st.session_state["rv_toast"] = f"Saved: {action} → {label}" if label else f"Saved: {action}"
    st.session_state["rv_last_acted"] = sample_id


def move(delta: int) -> None:
    st.session_state["rv_pos"] = max(0, st.session_state.get("rv_pos", 0) + delta)
    st.session_state.pop("rv_last_acted", None)


def fetch(filters: dict[str, Any], pos: int):
    page, total = ws.review_queue(offset=pos, limit=1, **filters)
    return (page.iloc[0] if len(page) else None), total


@st.fragment
def review_card() -> None:
    filters = queue_filters()
    pos = st.session_state.setdefault("rv_pos", 0)
    item, total = fetch(filters, pos)
    # After an action the sample may still match the filters: step past it. If it no longer
    # matches (e.g. "not reviewed"), the next sample has already slid into this position.
    if item is not None and item["sample_id"] == st.session_state.pop("rv_last_acted", None):
        pos = st.session_state["rv_pos"] = pos + 1
        item, total = fetch(filters, pos)
    if total and pos >= total:
        pos = st.session_state["rv_pos"] = total - 1
        item, total = fetch(filters, pos)
    if msg := st.session_state.pop("rv_toast", None):
        st.toast(msg)

    counts = ws.counts()
    n_flagged = int(latest["summary"].get("n_issues", 0)) if latest else 0
    st.caption(
        f"Reviewed {counts['reviewed']:,} of {counts['n']:,} rows · flagged by cleanlab "
        f"{n_flagged:,} · labels changed {counts['changed']:,} · excluded {counts['excluded']:,}"
    )
    if item is None:
        st.success("Nothing matches these filters. Change them to see more samples.")
        return

    who = reviewer()
    with st.container(border=True):
        st.markdown(
            f"**Sample {pos + 1:,} of {total:,}** · id `{item['ext_id']}` · split {item['split']}"
        )
        # Plain text only: data never renders as HTML or markdown.
        st.text(item["text"])
        cols = st.columns(5)
        cols[0].metric("Original label", item["original_label"])
        cols[1].metric("Current label", item["label"])
        if isinstance(item["predicted_label"], str):  # None/NaN before any analysis
            cols[2].metric(
                "Model predicts",
                item["predicted_label"],
                f"p = {item['predicted_prob']:.2f}",
                delta_color="off",
                delta_arrow="off",
            )
            cols[3].metric(
                "Label quality",
                f"{item['label_quality']:.3f}",
                "flagged" if item["is_label_issue"] else "not flagged",
                delta_color="inverse" if item["is_label_issue"] else "off",
                delta_arrow="off",
            )
        status = "excluded" if item["excluded"] else ("reviewed" if item["reviewed"] else "—")
        who_when = f" by {item['reviewer']}" if item["reviewer"] else ""
        cols[4].metric("Status", status, who_when or None, delta_color="off", delta_arrow="off")

        if not who:
            st.warning(
                "Enter your **reviewer name** in the sidebar to label: every change is "
                "logged with it."
            )
        sid = int(item["sample_id"])
        disabled = not who
        with st.container(horizontal=True):
            st.button(
                f"Keep '{item['label']}'",
                key="rv_keep",
                on_click=act,
                args=(sid, "confirm", item["label"]),
                disabled=disabled,
                shortcut="K",
                type="primary",
                help="Confirm the current label (K)",
            )
            suggestion = item["predicted_label"]
            if isinstance(suggestion, str) and suggestion != item["label"]:
                st.button(
                    f"Accept suggestion '{suggestion}'",
                    key="rv_accept",
                    on_click=act,
                    args=(sid, "accept", suggestion),
                    disabled=disabled,
                    shortcut="A",
                    help="Take the model's prediction (A)",
                )
            for i, name in enumerate(names[:9]):
                if name != item["label"]:
                    st.button(
                        f"{i + 1} · {name}",
                        key=f"rv_label_{i}",
                        on_click=act,
                        args=(sid, "relabel", name),
                        disabled=disabled,
                        shortcut=str(i + 1),
                        help=f"Relabel as '{name}' ({i + 1})",
                    )
            if item["excluded"]:
                st.button(
                    "Include again",
                    key="rv_include",
                    on_click=act,
                    args=(sid, "include"),
                    disabled=disabled,
                    shortcut="X",
                )
            else:
                st.button(
                    "Exclude from training",
                    key="rv_exclude",
                    on_click=act,
                    args=(sid, "exclude"),
                    disabled=disabled,
                    shortcut="X",
                    help="Ambiguous or junk: leave it out of training (X)",
                )
            st.button(
                "↶ Undo",
                key="rv_undo",
                on_click=act,
                args=(sid, "undo"),
                disabled=disabled,
                shortcut="U",
                help="Revert your last action (U)",
            )
        with st.container(horizontal=True):
            st.button(
                "← Previous",
                key="rv_prev",
                on_click=move,
                args=(-1,),
                disabled=pos == 0,
                shortcut="Left",
            )
            st.button(
                "Next →",
                key="rv_next",
                on_click=move,
                args=(1,),
                disabled=pos + 1 >= total,
                shortcut="Right",
            )
        st.caption(
            "Keys: K keep · A accept suggestion · 1–9 pick a label · X exclude · U undo · ←/→ move"
        )

    # The page of samples around the current one: a page at a time, never everything.
    start = (pos // PAGE_SIZE) * PAGE_SIZE
    page, _ = ws.review_queue(offset=start, limit=PAGE_SIZE, **filters)
    page = page.assign(**{"#": range(start + 1, start + 1 + len(page))})
    st.dataframe(
        page[
            [
                "#",
                "text",
                "original_label",
                "label",
                "predicted_label",
                "predicted_prob",
                "label_quality",
                "is_label_issue",
                "reviewed",
                "excluded",
            ]
        ],
        hide_index=True,
        width="stretch",
        key=f"rv_table_{start}",
        column_config={
            "label": "current label",
            "predicted_prob": st.column_config.NumberColumn("p(predicted)", format="%.2f"),
            "label_quality": st.column_config.NumberColumn("quality", format="%.3f"),
            "is_label_issue": "flagged",
        },
    )
    st.caption(f"Rows {start + 1:,}–{start + len(page):,} of {total:,}.")


review_card()
