"""Review: one sample at a time, keyboard first; bulk actions with a preview.

Every action is committed to the store before the page says it is saved. Button callbacks find
their target sample on the server (the sample at the reviewer's position when the callback
runs), never from the arguments the button was drawn with: a key pressed again before the page
has redrawn then acts on the next sample instead of repeating the last one.

Layout (issue 14): at 1366×768 the card (text, labels, prediction) and every action are on
screen without scrolling. The filters fold into one expander whose label sums up what is
active; the card's facts are one line, not metric numbers; the suggested action is the primary
button (see :data:`ACCEPT_MIN_PROB`). The card is a fragment: an action or a key press reruns
only the card, the table and the bulk panel below it, not the page.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app_pages import access
from app_pages.keys import review_keys
from app_pages.plain import plain
from app_pages.workspace import require_workspace, reviewer
from runtime.progress import describe as describe_progress

st.title("Review")
ws = require_workspace()
names = ws.label_names
latest = ws.latest_analysis()
if latest is None:
    analysing = next((j for j in ws.jobs(active=True) if j.kind == "analyze"), None)
    if analysing is not None:  # not "run the analysis" while it runs
        said = describe_progress(analysing.progress)
        st.info(
            "The analysis is running"
            + (f" ({plain(analysing.progress.get('stage') or '')} · {plain(said)})" if said else "")
            + ": predictions and flags appear here when it ends. You can review in row order "
            "meanwhile."
        )
    else:
        st.info(
            "No predictions yet: run the analysis on **Predictions & flags** first. You can "
            "still review in row order."
        )

ANY = "any"
# Texts longer than this (or over 6 lines) get a scrolling box of this height (px) on the card.
LONG_TEXT_CHARS = 600
LONG_TEXT_HEIGHT = 150
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


# The filter boxes, in the order they are drawn: (label, options, session key, width, help).
# The first option of each is its default. The three that need an analysis are left out
# before there is one (they would filter nothing).
ANALYSIS_FILTERS = ("rv_flagged", "rv_disagree", "rv_issue")


def order_options() -> list[str]:
    """The Order box's options: quality and confidence come from the analysis, so before one
    there are only row order (the default) and random."""
    return list(ORDERS) if latest is not None else ["row order", "random"]


def filter_specs() -> list[tuple[str, list[str], str, int, str | None]]:
    specs = [
        (
            "Flags",
            ["flagged", "not flagged", ANY],
            "rv_flagged",
            130,
            "Flagged: rows the analysis (cleanlab) marks as likely label errors.",
        ),
        ("Prediction vs label", [ANY, "disagree", "agree"], "rv_disagree", 160, None),
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
        ("Reviewed", [ANY, "not reviewed", "reviewed"], "rv_reviewed", 140, None),
        ("Split", [ANY, "train", "test", "validation"], "rv_split", 120, None),
        (
            "Queue",
            ["all rows", "my queue"],
            "rv_queue",
            130,
            "My queue: rows nobody reviewed, plus double-review rows waiting for a second "
            "reviewer (see Reviewers).",
        ),
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
            order_options(),
            "rv_order",
            190,
            "Random order gives an unbiased estimate of the remaining error rate.",
        ),
    ]
    if latest is None:
        specs = [s for s in specs if s[2] not in ANALYSIS_FILTERS]
    return specs


# How an active filter reads in the one-line summary; a filter at its default is left out.
SUMMARY_WORDS = {
    ("rv_flagged", "flagged"): "flagged",
    ("rv_flagged", "not flagged"): "not flagged",
    ("rv_disagree", "disagree"): "prediction ≠ label",
    ("rv_disagree", "agree"): "prediction = label",
    ("rv_queue", "my queue"): "my queue",
    ("rv_conflict", "conflicting"): "reviewers disagree",
}


def filter_summary() -> str:
    """The active filters in one line, e.g. "flagged · prediction ≠ label · label: positive"
    (plain text for an expander label: label names go through :func:`plain`)."""
    parts = []
    for label, options, key, _, _ in filter_specs():
        value = st.session_state.get(key, options[0])
        if key == "rv_order":
            continue  # not a filter: filter_bar names it at the end of the line
        if (key, value) in SUMMARY_WORDS:
            parts.append(SUMMARY_WORDS[key, value])
        elif value not in (options[0], ANY):  # "any" filters nothing, default or not
            parts.append(f"{label.lower()}: {plain(value)}")
    if search := st.session_state.get("rv_search"):
        parts.append(f"text contains “{plain(search)}”")
    return " · ".join(parts) if parts else "all rows"


def filter_bar() -> None:
    """All filters folded into one expander whose label says what is active, so the card and
    its buttons stay above the fold (issue 14)."""
    order = st.session_state.get("rv_order", order_options()[0])
    with st.expander(
        f"Showing: {filter_summary()} · {order}", icon=":material/filter_list:", key="rv_filters"
    ):
        with st.container(horizontal=True):
            for label, options, key, width, help_ in filter_specs():
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
        "order": ORDERS.get(st.session_state.get("rv_order", ""), "quality" if latest else "row"),
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
    if not access.require("review"):  # checked again here: a disabled button is not a permission
        return
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
    word = "keep" if action == "confirm" else action  # the button's word, not the log's
    st.session_state["rv_toast"] = f"Saved: {word} → {plain(label)}" if label else f"Saved: {word}"
    st.session_state["rv_last_acted"] = sample_id


def move(delta: int) -> None:
    st.session_state["rv_pos"] = max(0, st.session_state.get("rv_pos", 0) + delta)
    st.session_state.pop("rv_last_acted", None)


def filled(value: Any) -> bool:
    """Whether a cell has a value to show (None, NaN and "" are shown as nothing)."""
    return value is not None and value == value and value != ""


def labels_line(item: Any) -> None:
    """Given label, current label, the model's prediction and the row's status on one small
    line: the words a reviewer decides on, without four big metric numbers above the buttons."""
    parts = [
        f"Given label **{plain(item['given_label'])}**",
        f"current label **{plain(item['label'])}**",
    ]
    if isinstance(item["predicted_label"], str):  # None before any analysis
        parts.append(
            f"model predicts **{plain(item['predicted_label'])}** "
            f"(p = {item['predicted_prob']:.2f})"
        )
        flag = ":red[**flagged**]" if item["is_label_issue"] else "not flagged"
        parts.append(f"label quality {item['label_quality']:.3f}, {flag}")
    status = "excluded" if item["excluded"] else ("reviewed" if item["reviewed"] else None)
    if item["conflict"]:
        status = "reviewers disagree"
    if status:
        by = f" by {plain(item['reviewer'])}" if filled(item["reviewer"]) else ""
        parts.append(f"{status}{by}")
    st.markdown(" · ".join(parts))


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


def item_explanation(item: Any) -> dict | None:
    """:func:`explanation` for the card's row; None before any analysis."""
    if latest is None or not isinstance(item["predicted_label"], str):
        return None
    return explanation(str(ws.folder), int(item["sample_id"]), latest.id, ws.label_version())


def explain(item: Any, info: dict | None) -> None:
    """Why this row is (or is not) flagged, in a line or two above the buttons: the model's
    view, other issue types and the annotators."""
    if info is None:
        return
    result = info["result"]
    notes = []
    if item["is_label_issue"]:
        analyzed = result.get("analyzed_label", item["label"])
        # Once relabelled, the flag is about the label the analysis scored, not the current one:
        # say which, or "flags the label" reads as a verdict on the reviewer's choice.
        then = (
            f"when analysed the label was '{plain(analyzed)}' (now '{plain(item['label'])}'): "
            if analyzed != item["label"]
            else ""
        )
        notes.append(
            f"{then}the model gives '{plain(analyzed)}' only "
            f"p {_p(result.get('analyzed_prob'))} and predicts "
            f"'{plain(item['predicted_label'])}' at p = {item['predicted_prob']:.2f}, so the "
            "analysis (cleanlab) flags "
            + ("that label" if then else "the label")
            + " as a likely error"
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


def nearest_texts(item: Any, info: dict | None) -> None:
    """The nearest labeled texts, below the buttons (a five-row table would push them down)."""
    if info is None:
        return
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


# The model's suggestion is the primary (highlighted) button when it confidently disagrees
# with the current label: it puts more than half its probability on another label (so that
# label beats all the others together, whatever the number of classes), or the analysis flags
# the row. A row a reviewer has already decided keeps Keep as primary: a person's decision
# outranks the model's. Otherwise Keep is primary.
ACCEPT_MIN_PROB = 0.5


def suggests_accept(item: Any) -> bool:
    """Whether "Accept suggestion" is the suggested (primary) action for ``item``."""
    predicted = item["predicted_label"]
    if not isinstance(predicted, str) or predicted == item["label"] or item["reviewed"]:
        return False
    return bool(item["is_label_issue"]) or item["predicted_prob"] >= ACCEPT_MIN_PROB


def action_buttons(item: Any, pos: int, total: int, disabled: bool) -> None:
    """The card's actions, the suggested one first and primary; each label shows its key (the
    keys themselves go through :func:`on_key`, which never loses a press)."""
    keep = (
        f"Keep '{plain(item['label'])}' · K",
        "rv_keep",
        ("confirm",),
        "The current label is right: mark the row reviewed",
    )
    buttons: list[tuple[str, str, tuple, str]] = [keep]
    suggestion = item["predicted_label"]
    if isinstance(suggestion, str) and suggestion != item["label"]:
        accept = (
            f"Accept suggestion '{plain(suggestion)}' · A",
            "rv_accept",
            ("accept",),
            "Take the model's prediction as the label",
        )
        buttons = [accept, keep] if suggests_accept(item) else [keep, accept]
    primary = buttons[0][1]
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
                "Exclude · X",
                "rv_exclude",
                ("exclude",),
                "Exclude from training: ambiguous or junk, leave it out",
            )
        )
    buttons.append(
        ("↶ Undo · U", "rv_undo", ("undo",), "Revert your last action, a whole bulk action too")
    )
    capped = st.session_state.get("rv_total_capped")
    # Two compact rows (they wrap on a narrow window): the actions, then the moves beside the
    # key legend, so every action fits above the fold at 1366×768.
    with st.container(horizontal=True, key="rv_actions", gap="xsmall"):
        for label, key, args, help_ in buttons:
            st.button(
                label,
                key=key,
                on_click=act,
                args=args,
                disabled=disabled,
                help=help_,
                type="primary" if key == primary else "secondary",
            )
    with st.container(horizontal=True, gap="xsmall", vertical_alignment="center"):
        st.button(
            "← Prev",
            key="rv_prev",
            help="Previous sample",
            on_click=move,
            args=(-1,),
            disabled=pos == 0,
        )
        st.button(
            "Next →",
            key="rv_next",
            help="Next sample",
            on_click=move,
            args=(1,),
            disabled=pos + 1 >= total and not capped,
        )
        keys = (
            "Keys: K keep · A accept suggestion · 1–9 pick a label · X exclude/include · "
            "U undo · ←/→ move"
            if not disabled
            else "Keys: ←/→ move"
        )
        st.caption(
            keys,
            help="Keys do nothing while the cursor is in a text box: click the page first.",
            width="content",
        )


KEY_ACTIONS = {"k": ("confirm",), "u": ("undo",)}


def on_key(key: str) -> None:
    """One key press, applied in order (see app_pages/keys.py)."""
    if key == "ArrowLeft":
        move(-1)
    elif key == "ArrowRight":
        move(1)
    elif not access.can("review"):
        st.session_state["rv_toast"] = access.refusal("review")
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
    if item is None:
        st.success("Nothing matches these filters. Change them to see more samples.")
        progress_line()
        return
    who = reviewer()
    with st.container(border=True):
        header = [f"**Sample {pos + 1:,} of {shown(total)}**"]
        if filled(item["ext_id"]):
            header.append(f"id {plain(item['ext_id'])}")
        if filled(item["split"]):
            header.append(f"{plain(item['split'])} split")
        if item["overlap"]:
            header.append("double review")
        st.markdown(" · ".join(header))
        # Plain text only: data never renders as HTML or markdown. A long text (a ticket, a
        # review) scrolls in its own box, so the labels and the buttons stay above the fold.
        if len(item["text"]) > LONG_TEXT_CHARS or item["text"].count("\n") > 6:
            with st.container(height=LONG_TEXT_HEIGHT, key="rv_long_text"):
                st.text(item["text"])
        else:
            st.text(item["text"])
        labels_line(item)
        info = item_explanation(item)
        explain(item, info)
        may_review = access.can("review")
        if not may_review:
            st.info(access.refusal("review"), icon=":material/visibility:")
        elif not who:
            st.warning(
                "Enter your **reviewer name** in the sidebar to label: every change is "
                "logged with it."
            )
        action_buttons(item, pos, total, disabled=not who or not may_review)
        nearest_texts(item, info)
    # Below the card: counting the whole workspace is the slowest read of a card action, and
    # Streamlit draws elements in order, so the card comes first.
    progress_line()

    # The page of samples around the current one: a page at a time, never everything.
    start = (pos // PAGE_SIZE) * PAGE_SIZE
    page, _ = ws.review_queue(offset=start, limit=PAGE_SIZE, count_cap=0, **queue_filters())
    # The card's row is marked in the table (a Styler shading cost more than the card itself).
    page = page.assign(
        **{
            "#": [
                f"▶ {i:,}" if i == pos + 1 else f"{i:,}"
                for i in range(start + 1, start + 1 + len(page))
            ]
        }
    )
    columns = ["#", "given_label", "label"]
    if latest is not None:  # before any analysis these columns would all be empty
        columns += ["predicted_label", "predicted_prob", "label_quality", "is_label_issue"]
    table = page[[*columns, "reviewed", "excluded", "text"]].reset_index(drop=True)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key=f"rv_table_{start}",
        column_config={
            "#": st.column_config.TextColumn("#", help="▶ = the sample on the card"),
            "given_label": "given label",
            "label": "current label",
            "predicted_label": "model predicts",
            "predicted_prob": st.column_config.NumberColumn("p(predicted)", format="%.2f"),
            "label_quality": st.column_config.NumberColumn("quality", format="%.3f"),
            "is_label_issue": st.column_config.CheckboxColumn(
                "flagged", help="Flagged by the analysis (cleanlab) as a likely label error"
            ),
        },
    )
    st.caption(f"Rows {start + 1:,}–{start + len(page):,} of {shown(total)}.")
    # Inside the fragment: a card action reruns only the fragment, and the bulk preview must
    # not go stale.
    bulk_panel()


def progress_line() -> None:
    """Where the whole review stands, as one small caption."""
    counts = ws.counts()
    st.caption(
        f"Reviewed {counts['reviewed']:,} of {counts['n']:,} rows · "
        + (f"flagged {latest.summary.n_issues:,}" if latest is not None else "no analysis yet")
        + f" · labels changed {counts['changed']:,} · excluded {counts['excluded']:,}"
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
    if not access.can("bulk"):  # curators and admins only
        return
    # Its preview and plan are queries of their own: only an open panel runs them, not every
    # card action (on_change="rerun" makes the open state known to the script).
    with st.expander(
        "Bulk action on the rows these filters select", key="rv_bulk", on_change="rerun"
    ) as panel:
        if not panel.open:
            return
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
        ) and access.require("bulk"):
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
