"""Text repair: proposed fixes of the texts (mojibake, HTML entities, optionally URLs and
@mentions), original beside fixed with the changed characters highlighted; accept one by one
or all shown at once. Nothing changes until a reviewer accepts: each acceptance is a
``repair_text`` event in the log, and Undo reverts it (a bulk acceptance as a whole).

The texts are data: every piece of them goes through :func:`plain` (markdown that shows its
characters literally, never HTML), and the highlight is Streamlit's own colour directive
around such pieces.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import access
from app_pages.plain import plain
from app_pages.workspace import require_workspace, reviewer
from curation.repair import DEFAULT_KINDS, KIND_HELP, KINDS, kind_counts, pieces, propose_repairs

PAGE_SIZE = 20
ANY = "every kind"
TITLES = {
    "mojibake": "mis-decoded characters",
    "html_entities": "HTML entities",
    "urls": "URLs → <url>",
    "mentions": "@mentions → <user>",
}


def title(kind: str) -> str:
    """What people read for a repair kind (the id stays in the CLI and the log)."""
    return TITLES.get(kind, kind)


def count(n: int, noun: str) -> str:
    """``n`` and ``noun`` agreeing: 1 text, 2 texts."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


@st.cache_data(show_spinner="Looking for texts to repair…", max_entries=8)
def proposals(folder: str, version: int, kinds: tuple[str, ...]) -> pd.DataFrame:
    """The proposals for the workspace's current texts (``version``, the last event id, keys
    the cache: any accepted repair or undo makes a new one)."""
    texts = ws.current_texts()
    found = propose_repairs(texts["text"], texts["sample_id"].tolist(), kinds=kinds)
    fixed = texts.set_index("sample_id")["encoding_fixed"]
    found["encoding_fixed"] = fixed.loc[found["sample_id"]].to_numpy() if len(found) else []
    found["ext_id"] = (
        texts.set_index("sample_id")["ext_id"].loc[found["sample_id"]].to_numpy()
        if len(found)
        else []
    )
    return found


def visible(piece: str) -> str:
    """A changed piece that shows: characters nobody sees (controls, line breaks, a space on its
    own) are named, e.g. ⟨U+0092⟩."""
    if piece.isprintable() and piece.strip() == piece and piece:
        return plain(piece)
    return plain(
        "".join(ch if ch.isprintable() and ch != " " else f"⟨U+{ord(ch):04X}⟩" for ch in piece)
    )


def highlighted(text: str, spans: list[tuple[int, int]], colour: str) -> str:
    """``text`` as markdown showing its characters literally, the ``spans`` in colour (a
    background would pad them: "caf é"). Built from escaped pieces only: the data never
    becomes markup."""
    out = []
    for piece, changed in pieces(text, spans):
        out.append(f":{colour}[{visible(piece)}]" if changed else plain(piece))
    return "".join(out)


def accept(items: list[tuple[int, str, str]], note: str) -> None:
    """Button callback: accept ``(sample_id, original, proposed)`` repairs as one batch."""
    if not access.require("bulk" if len(items) > 1 else "review"):
        return
    who = reviewer()
    if not who:
        st.session_state["rp_toast"] = "Enter your reviewer name in the sidebar first."
        return
    events = ws.repair_texts(
        [(sid, new) for sid, _, new in items],
        reviewer=who,
        expected={sid: old for sid, old, _ in items},
    )
    skipped = len(items) - len(events)
    st.session_state["rp_toast"] = (
        f"Saved: {note} ({count(len(events), 'text')})."
        + (f" {skipped:,} had changed meanwhile and were left alone." if skipped else "")
        + " Undo reverts it."
    )


def undo() -> None:
    if not access.require("review"):
        return
    who = reviewer()
    if not who:
        st.session_state["rp_toast"] = "Enter your reviewer name in the sidebar first."
        return
    done = ws.undo(reviewer=who)
    st.session_state["rp_toast"] = (
        f"Undone ({count(len(done), 'event')})." if done else "Nothing to undo."
    )


st.title("Text repair")
ws = require_workspace()
st.caption(
    "Proposed fixes of the texts. Nothing changes until you accept: each acceptance is an "
    "event in the log (with your name), **Undo** reverts your last one (a bulk acceptance as "
    "a whole), the export keeps the imported text beside the repaired one, and the next "
    "analysis and training use the repaired text."
)
if msg := st.session_state.pop("rp_toast", None):
    st.toast(plain(msg))

kinds = st.multiselect(
    "Repairs to propose",
    list(KINDS),
    default=list(DEFAULT_KINDS),
    format_func=title,
    key="rp_kinds",
    help=plain("; ".join(f"{k}: {v}" for k, v in KIND_HELP.items())),
)
counts = ws.counts()
if counts.get("repaired"):
    st.caption(f"Repaired so far: {count(counts['repaired'], 'text')}.")
if not kinds:
    st.info("Choose at least one kind of repair.")
    st.stop()

found = proposals(str(ws.folder), ws.label_version(), tuple(kinds))
may_review, may_bulk = access.can("review"), access.can("bulk")
who = reviewer() if may_review else ""
if not may_review:
    st.info(access.refusal("review"), icon=":material/visibility:")
with st.container(horizontal=True):
    shown_kind = st.selectbox("Show", [ANY, *kinds], format_func=title, key="rp_kind", width=220)
    only_fixed = st.checkbox(
        "only rows decoded with the fallback",
        key="rp_only_fixed",
        help="Rows whose bytes were not valid UTF-8 at import (marked 'encoding fixed').",
    )
    st.button("↶ Undo", key="rp_undo", on_click=undo, disabled=not who)

shown = found
if shown_kind != ANY:
    shown = shown[shown["kinds"].map(lambda ks: shown_kind in ks)]
if only_fixed:
    shown = shown[shown["encoding_fixed"]]
by_kind = kind_counts(found)
st.markdown(
    f"**{len(found):,} proposals** ("
    + ", ".join(f"{plain(title(k))}: {by_kind[k]:,}" for k in kinds)
    + f"); {len(shown):,} match the filters."
)
if "mojibake" in kinds and by_kind.get("mojibake") and shown_kind in (ANY, "mojibake"):
    st.warning(
        "Fixes of mis-decoded characters are guesses: ftfy undoes one wrong decoding, and a "
        "text garbled twice gets a wrong guess (in the demo, Œæ → ξ where a space or a quote "
        "was meant). Check them one by one before accepting."
    )
if shown.empty:
    st.info("No texts to repair here." if found.empty else "No proposals match these filters.")
    st.stop()

items = list(zip(shown["sample_id"].astype(int), shown["original"], shown["proposed"], strict=True))
st.button(
    f"Accept all {len(shown):,} matching (every page)",
    key="rp_accept_all",
    type="primary",
    disabled=not who or not may_bulk,
    on_click=accept,
    args=(items, f"{len(shown):,} repairs accepted"),
)
if may_review and not who:
    st.caption("Enter your reviewer name in the sidebar to accept repairs.")

pages = max(1, -(-len(shown) // PAGE_SIZE))
page = 1
if pages > 1:
    page = int(st.number_input(f"Page (of {pages:,})", 1, pages, 1, key="rp_page", width=160))
start = (page - 1) * PAGE_SIZE
for row in shown.iloc[start : start + PAGE_SIZE].itertuples(index=False):
    with st.container(border=True):
        sid = int(row.sample_id)
        st.caption(f"id {plain(row.ext_id)} · {plain(', '.join(title(k) for k in row.kinds))}")
        left, right, button = st.columns([5, 5, 1], vertical_alignment="center")
        left.markdown(highlighted(row.original, [(a, b) for a, b, _, _ in row.spans], "red"))
        right.markdown(highlighted(row.proposed, [(c, d) for _, _, c, d in row.spans], "green"))
        button.button(
            "Accept",
            key=f"rp_accept_{sid}",
            disabled=not who,
            on_click=accept,
            args=([(sid, row.original, row.proposed)], "repair accepted"),
        )
