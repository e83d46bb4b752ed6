"""Review: one sample at a time, keyboard first; bulk actions with a preview.

Every action is committed to the store before the page says it is saved. Button callbacks find
their target sample on the server (the sample at the reviewer's position when the callback
runs), never from the arguments the button was drawn with: a key pressed again before the page
has redrawn then acts on the next sample instead of repeating the last one.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app_pages.keys import review_keys
from app_pages.plain import plain
from app_pages.workspace import require_workspace, reviewer

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
ORDERS = {
    "worst quality first": "quality",
    "least confident first": "uncertainty",
    "random": "random",
    "row order": "row",
}


def reset_position() -> None:
    st.session_state["rv_pos"] = 0
    st.session_state.pop("rv_last_acted", None)
    st.session_state["rv_stack"] = []


def issue_changed() -> None:
    # Outliers and duplicate groups are mostly not flagged as label errors: an issue type
    # filter with Flags = "flagged" would silently hide most of them.
    if st.session_state.get("rv_issue", ANY) != ANY:
        st.session_state["rv_flagged"] = ANY
    reset_position()


def filter_bar() -> None:
    with st.container(horizontal=True):
        for label, options, key, width, help_ in (
            (
                "Queue",
                ["all rows", "my queue"],
                "rv_queue",
                140,
                "My queue: rows nobody reviewed, plus double-review rows waiting for a second "
                "reviewer (see Reviewers).",
            ),
            ("Flags", ["flagged", "not flagged", ANY], "rv_flagged", 140, None),
            ("Prediction vs label", [ANY, "disagree", "agree"], "rv_disagree", 170, None),
            (
                "Issue type",
                [ANY, "outliers", "near-duplicates", "conflicting duplicates"],
                "rv_issue",
                190,
                "Other issues the analysis found: outliers (far from every other text) and "
                "near-duplicate groups; 'conflicting' = a group whose texts carry different "
                "labels. See Dataset health for the groups side by side.",
            ),
            ("Current label", [ANY, *names], "rv_label", 150, None),
            ("Reviewed", [ANY, "not reviewed", "reviewed"], "rv_reviewed", 150, None),
            ("Split", [ANY, "train", "test", "validation"], "rv_split", 120, None),
            (
                "Conflicts",
                [ANY, "conflicting"],
                "rv_conflict",
                130,
                "Samples that two reviewers labeled differently (the later label wins).",
            ),
            (
                "Encoding",
                [ANY, "encoding fixed"],
                "rv_encoding",
                150,
                "Rows whose bytes were not valid UTF-8 and were decoded as Windows-1252.",
            ),
            (
                "Order",
                list(ORDERS),
                "rv_order",
                190,
                "Random order gives an unbiased estimate of the remaining error rate.",
            ),
        ):
            st.selectbox(
                label,
                options,
                key=key,
                on_change=issue_changed if key == "rv_issue" else reset_position,
                width=width,
                help=help_,
            )
        st.text_input("Search text", key="rv_search", on_change=reset_position, width=220)


def tri(key: str, yes: str, no: str) -> bool | None:
    value = st.session_state.get(key, ANY)
    return True if value == yes else False if value == no else None


def queue_filters() -> dict[str, Any]:
    """The review_queue keyword arguments for the current filter bar."""
    label = st.session_state.get("rv_label", ANY)
    split = st.session_state.get("rv_split", ANY)
    mine = st.session_state.get("rv_queue") == "my queue" and reviewer()
    issue = st.session_state.get("rv_issue", ANY) if latest else ANY
    return {
        "flagged": tri("rv_flagged", "flagged", "not flagged") if latest else None,
        "disagrees": tri("rv_disagree", "disagree", "agree") if latest else None,
        "label": None if label == ANY else label,
        "reviewed": tri("rv_reviewed", "reviewed", "not reviewed"),
        "split": None if split == ANY else split,
        "search": st.session_state.get("rv_search") or None,
        "conflict": True if st.session_state.get("rv_conflict") == "conflicting" else None,
        "outlier": True if issue == "outliers" else None,
        "duplicate": True if issue == "near-duplicates" else None,
        "dup_conflict": True if issue == "conflicting duplicates" else None,
        "encoding_fixed": True if st.session_state.get("rv_encoding") == "encoding fixed" else None,
        "for_reviewer": reviewer() if mine else None,
        "order": ORDERS.get(st.session_state.get("rv_order", ""), "quality"),
    }


COUNT_CAP = 10_000  # counting a million matches costs more than showing twenty of them


def fetch(filters: dict[str, Any], pos: int):
    page, total = ws.review_queue(offset=pos, limit=1, count_cap=COUNT_CAP, **filters)
    st.session_state["rv_total_capped"] = page.attrs.get("total_capped", False)
    return (page.iloc[0] if len(page) else None), total


def shown(total: int) -> str:
    """A total as the reviewer reads it: "10,000+" when counting stopped at the cap."""
    return f"{total:,}+" if st.session_state.get("rv_total_capped") else f"{total:,}"


def current_item() -> tuple[Any, int, int]:
    """The sample at the reviewer's position: ``(item or None, total, position)``.

    After an action the sample may still match the filters: step past it. If it no longer
    matches (e.g. "not reviewed"), the next sample has already slid into its position.
    """
    filters = queue_filters()
    pos = st.session_state.setdefault("rv_pos", 0)
    item, total = fetch(filters, pos)
    if item is not None and item["sample_id"] == st.session_state.pop("rv_last_acted", None):
        pos = st.session_state["rv_pos"] = pos + 1
        item, total = fetch(filters, pos)
    if total and pos >= total and not st.session_state.get("rv_total_capped"):
        pos = st.session_state["rv_pos"] = total - 1
        item, total = fetch(filters, pos)
    return item, total, pos


def act(action: str, label_index: int | None = None) -> None:
    """Button callback: commit one action on the current sample, then move on."""
    who = reviewer()
    stack = st.session_state.setdefault("rv_stack", [])
    if action == "undo":
        done = ws.undo(reviewer=who)
        st.session_state["rv_toast"] = "Undone." if done else "Nothing to undo."
        if done and stack:  # go back to the sample whose action was reverted
            st.session_state["rv_pos"] = stack.pop()
            st.session_state.pop("rv_last_acted", None)
        return
    item, _, pos = current_item()
    if item is None:
        return
    sample_id = int(item["sample_id"])
    label = None
    if action in ("exclude", "include"):
        ws.set_excluded(sample_id, action == "exclude", reviewer=who)
    else:
        label = {
            "confirm": item["label"],
            "accept": item["predicted_label"],
            "relabel": names[label_index] if label_index is not None else None,
        }[action]
        if not isinstance(label, str):
            return  # e.g. "accept" on a row without a prediction
        ws.relabel(sample_id, label, reviewer=who, action=action)
    # The store has committed: only now tell the reviewer it is saved.
    stack.append(pos)
    st.session_state["rv_toast"] = (
        f"Saved: {action} → {plain(label)}" if label else f"Saved: {action}"
    )
    st.session_state["rv_last_acted"] = sample_id


def move(delta: int) -> None:
    st.session_state["rv_pos"] = max(0, st.session_state.get("rv_pos", 0) + delta)
    st.session_state.pop("rv_last_acted", None)


def metrics_row(item: Any) -> None:
    cols = st.columns(5)
    # Metric values and deltas render markdown too.
    cols[0].metric("Given label", plain(item["given_label"]))
    cols[1].metric("Current label", plain(item["label"]))
    if isinstance(item["predicted_label"], str):  # None before any analysis
        cols[2].metric(
            "Model predicts",
            plain(item["predicted_label"]),
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
    if item["conflict"]:
        status = "conflict"
    who_when = f" by {plain(item['reviewer'])}" if item["reviewer"] else None
    cols[4].metric("Status", status, who_when, delta_color="off", delta_arrow="off")


@st.cache_data(max_entries=256, show_spinner=False)
def explanation(folder: str, sample_id: int, analysis_id: int, label_version: int) -> dict:
    """What the card shows to explain a flag; cached per sample, analysis and label version
    (neighbors are shown with their *current* labels)."""
    near = ws.neighbors(sample_id, k=5)
    result = ws.result_for(sample_id, analysis_id)
    annotators = latest.summary.annotators and ws.info().get("annotator_columns")
    votes = {}
    if annotators:
        meta = ws.sample(sample_id)["meta"]
        votes = {a: meta.get(a) for a in annotators if meta.get(a) not in (None, "")}
    return {"near": near, "result": result, "votes": votes}


def _p(value: Any) -> str:
    if value is None:
        return "?"
    return "< 0.01" if value < 0.01 else f"= {value:.2f}"


def explain(item: Any) -> None:
    """Why this row is (or is not) flagged: the model's view, other issue types, the
    annotators and the nearest labeled neighbors."""
    if latest is None or not isinstance(item["predicted_label"], str):
        return
    info = explanation(str(ws.folder), int(item["sample_id"]), latest.id, ws.label_version())
    result = info["result"]
    notes = []
    if item["is_label_issue"]:
        notes.append(
            f"cleanlab flags the label: the model gives "
            f"'{plain(result.get('analyzed_label', item['label']))}' only "
            f"p {_p(result.get('analyzed_prob'))} and predicts "
            f"'{plain(item['predicted_label'])}' at p = {item['predicted_prob']:.2f}"
        )
    if item["is_outlier"]:
        notes.append("an **outlier**: far from every other text in embedding space")
    if item["dup_group"] is not None and item["dup_group"] == item["dup_group"]:
        kind = "with **conflicting labels**" if item["dup_conflict"] else "same labels"
        notes.append(f"in near-duplicate group {int(item['dup_group'])} ({kind})")
    if result.get("consensus_label"):
        notes.append(
            f"annotators' consensus (CROWDLAB): '{plain(result['consensus_label'])}', quality "
            f"{result.get('consensus_quality') or 0:.2f}"
        )
    if notes:
        st.markdown("**Why it is here:** " + "; ".join(notes) + ".")
    if info["votes"]:
        st.text("Annotators: " + ", ".join(f"{a}: {v}" for a, v in info["votes"].items()))
    near = info["near"]
    if len(near):
        agree = int((near["label"] == item["label"]).sum())
        st.caption(
            f"Nearest texts in embedding space: {agree} of {len(near)} carry the current label "
            f"'{plain(item['label'])}' (labels as they are now; ✓ = reviewed)."
        )
        st.dataframe(
            near.assign(
                similarity=1 - near["distance"],
                reviewed=near["reviewed"].map({True: "✓", False: ""}),
            )[["text", "label", "similarity", "reviewed"]],
            hide_index=True,
            width="stretch",
            height=35 * (len(near) + 1) + 3,
            key=f"rv_near_{int(item['sample_id'])}",
            column_config={
                "similarity": st.column_config.NumberColumn("cosine sim.", format="%.2f"),
                "reviewed": st.column_config.TextColumn("✓", width="small"),
            },
        )


def action_buttons(item: Any, pos: int, total: int, disabled: bool) -> None:
    """The card's actions; each label shows its key (the keys themselves go through
    :func:`on_key`, which never loses a press)."""
    buttons: list[tuple[str, str, tuple, str]] = [
        (f"Keep '{plain(item['label'])}' · K", "rv_keep", ("confirm",), "Confirm the current label")
    ]
    suggestion = item["predicted_label"]
    if isinstance(suggestion, str) and suggestion != item["label"]:
        buttons.append(
            (
                f"Accept suggestion '{plain(suggestion)}' · A",
                "rv_accept",
                ("accept",),
                "Take the model's prediction",
            )
        )
    buttons += [
        (
            f"{plain(name)} · {i + 1}",
            f"rv_label_{i}",
            ("relabel", i),
            f"Relabel as '{plain(name)}'",
        )
        for i, name in enumerate(names[:9])
        if name != item["label"]
    ]
    if item["excluded"]:
        buttons.append(("Include again · X", "rv_include", ("include",), "Use it for training"))
    else:
        buttons.append(
            (
                "Exclude from training · X",
                "rv_exclude",
                ("exclude",),
                "Ambiguous or junk: leave it out of training",
            )
        )
    buttons.append(
        ("↶ Undo · U", "rv_undo", ("undo",), "Revert your last action, a whole bulk action too")
    )
    with st.container(horizontal=True):
        for label, key, args, help_ in buttons:
            st.button(
                label,
                key=key,
                on_click=act,
                args=args,
                disabled=disabled,
                help=help_,
                type="primary" if key == "rv_keep" else "secondary",
            )
    capped = st.session_state.get("rv_total_capped")
    with st.container(horizontal=True):
        st.button("← Previous", key="rv_prev", on_click=move, args=(-1,), disabled=pos == 0)
        st.button(
            "Next →",
            key="rv_next",
            on_click=move,
            args=(1,),
            disabled=pos + 1 >= total and not capped,
        )
    st.caption(
        "Keys: K keep · A accept suggestion · 1–9 pick a label · X exclude or include · "
        "U undo · ←/→ move (click the page first if the cursor is in a text box)"
    )


KEY_ACTIONS = {"k": ("confirm",), "u": ("undo",)}


def on_key(key: str) -> None:
    """One key press, applied in order (see app_pages/keys.py)."""
    if key == "ArrowLeft":
        move(-1)
    elif key == "ArrowRight":
        move(1)
    elif not reviewer():
        st.session_state["rv_toast"] = "Enter your reviewer name in the sidebar to label."
    elif key == "a":
        item, _, _ = current_item()
        if item is not None and item["predicted_label"] in (None, item["label"]):
            st.session_state["rv_toast"] = "The model agrees with this label: K keeps it."
        else:
            act("accept")
    elif key in KEY_ACTIONS:
        act(*KEY_ACTIONS[key])
    elif key == "x":
        item, _, _ = current_item()
        if item is not None:
            act("include" if item["excluded"] else "exclude")
    elif key.isdigit() and 0 < int(key) <= len(names):
        item, _, _ = current_item()
        if item is not None and names[int(key) - 1] != item["label"]:
            act("relabel", int(key) - 1)


@st.fragment
def review_card() -> None:
    review_keys(key="rv_keys", on_key=on_key)
    item, total, pos = current_item()
    if msg := st.session_state.pop("rv_toast", None):
        st.toast(msg)
    counts = ws.counts()
    n_flagged = latest.summary.n_issues if latest is not None else 0
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
            f"**Sample {pos + 1:,} of {shown(total)}** · id {plain(item['ext_id'])} · "
            f"split {plain(item['split'])}" + (" · double review" if item["overlap"] else "")
        )
        # Plain text only: data never renders as HTML or markdown.
        st.text(item["text"])
        metrics_row(item)
        explain(item)
        if not who:
            st.warning(
                "Enter your **reviewer name** in the sidebar to label: every change is "
                "logged with it."
            )
        action_buttons(item, pos, total, disabled=not who)

    # The page of samples around the current one: a page at a time, never everything.
    start = (pos // PAGE_SIZE) * PAGE_SIZE
    page, _ = ws.review_queue(offset=start, limit=PAGE_SIZE, count_cap=0, **queue_filters())
    page = page.assign(**{"#": range(start + 1, start + 1 + len(page))})
    table = page[
        [
            "#",
            "given_label",
            "label",
            "predicted_label",
            "predicted_prob",
            "label_quality",
            "is_label_issue",
            "reviewed",
            "excluded",
            "text",
        ]
    ].reset_index(drop=True)
    st.dataframe(
        highlight_row(table, pos - start),
        hide_index=True,
        width="stretch",
        key=f"rv_table_{start}",
        column_config={
            "given_label": "given label",
            "label": "current label",
            "predicted_prob": st.column_config.NumberColumn("p(predicted)", format="%.2f"),
            "label_quality": st.column_config.NumberColumn("quality", format="%.3f"),
            "is_label_issue": "flagged",
        },
    )
    st.caption(f"Rows {start + 1:,}–{start + len(page):,} of {shown(total)}.")
    # Inside the fragment: a card action reruns only the fragment, and the bulk preview must
    # not go stale.
    bulk_panel()


def highlight_row(table: pd.DataFrame, row: int) -> Any:
    """The table styled with row ``row`` (the card's sample) shaded, so it is easy to find."""
    shade = "background-color: rgba(255, 75, 75, 0.14); font-weight: 600"

    def style(r: pd.Series) -> list[str]:
        return [shade if r.name == row else ""] * len(r)

    # Styler formats replace column_config's number formats, so the formats are repeated here.
    return table.style.apply(style, axis=1).format(
        {"predicted_prob": "{:.2f}", "label_quality": "{:.3f}"}, na_rep=""
    )


BULK_PLAN_LIMIT = 50_000  # above this, planning the preview would slow every card action

BULK_ACTIONS = {
    "accept the model's suggestion": ("accept", None),
    "keep the current labels (confirm)": ("confirm", None),
    "exclude from training": ("exclude", None),
    **{f"relabel as '{name}'": ("relabel", name) for name in names},
}


def bulk_panel() -> None:
    """Select by the filters above (plus a probability floor), preview, then apply as one
    action that a single undo reverts."""
    with st.expander("Bulk action on the rows these filters select"):
        filters = {k: v for k, v in queue_filters().items() if k != "order"}
        min_prob = st.number_input(
            "…and the model's probability is at least",
            0.0,
            1.0,
            0.0,
            step=0.05,
            key="bulk_min_prob",
            help="0 = no floor. E.g. 0.9 with 'flagged' selects confident disagreements.",
        )
        if min_prob > 0:
            filters["min_prob"] = float(min_prob)
        preview, total = ws.review_queue(order="random", limit=10, **filters)
        st.markdown(f"**{total:,} rows** match. A random sample of them:")
        st.dataframe(
            preview[["text", "label", "predicted_label", "predicted_prob", "label_quality"]],
            hide_index=True,
            width="stretch",
            column_config={
                "label": "current label",
                "predicted_label": "model predicts",
                "predicted_prob": st.column_config.NumberColumn("p(predicted)", format="%.2f"),
                "label_quality": st.column_config.NumberColumn("quality", format="%.3f"),
            },
        )
        choice = st.selectbox("Action", list(BULK_ACTIONS), key="bulk_action")
        action, label = BULK_ACTIONS[choice]
        # Rows the action would not change are skipped; count them when that is cheap.
        changing = (
            len(ws.bulk_plan(action=action, new_label=label, **filters))
            if total <= BULK_PLAN_LIMIT
            else None
        )
        if changing is not None and changing < total:
            st.caption(
                f"{total - changing:,} of these rows already match this action and are left alone."
            )
        who = reviewer()
        if st.button(
            f"Apply to {changing:,} rows"
            if changing is not None
            else f"Apply to up to {total:,} rows",
            key="bulk_apply",
            type="primary",
            disabled=not who or not (changing if changing is not None else total),
        ):
            events = ws.bulk_apply(action=action, new_label=label, reviewer=who, **filters)
            st.session_state["rv_toast"] = (
                f"Saved: {plain(choice)} on {len(events):,} rows. One Undo (U) reverts them all."
            )
            reset_position()
            st.rerun()
        if not who:
            st.caption("Enter your reviewer name in the sidebar to apply bulk actions.")


filter_bar()
review_card()
