"""Keyboard input for the review card that never loses a key press.

Streamlit's button shortcuts are triggers: presses that arrive while a run is in progress are
merged, so "a", "a" pressed quickly can become one action. This component keeps a numbered log
of key presses in the browser and sends the whole recent log as its *state*; the server applies
every entry it has not applied yet, in order. A merged update still carries every press.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import streamlit as st

REVIEW_KEYS = ("k", "a", "x", "u", *"123456789", "ArrowLeft", "ArrowRight")

_JS = """
export default function(component) {
  const { setStateValue, data } = component;
  const wanted = new Set(data.keys);
  // One log per browser tab: survives reruns, so sequence numbers only ever grow.
  let state = (window.__secondLookKeys = window.__secondLookKeys || { seq: 0, log: [] });
  if (state.listener) document.removeEventListener("keydown", state.listener, true);
  // A new server session (restart, reconnect) has applied none of the logged presses: start a
  // new log, or its first update would replay them all.
  if (state.session !== data.session) {
    state = window.__secondLookKeys = { seq: 0, log: [], session: data.session };
  }
  const listener = (e) => {
    const t = e.target;
    const tag = ((t && t.tagName) || "").toLowerCase();
    // Typing in a text box (search, reviewer name) is not a review action.
    if (tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable)) return;
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (!wanted.has(key)) return;
    e.preventDefault();
    state.seq += 1;
    state.log.push({ seq: state.seq, key: key });
    if (state.log.length > 200) state.log.shift();
    setStateValue("presses", state.log.slice());
  };
  state.listener = listener;
  document.addEventListener("keydown", listener, true);
  return () => {
    document.removeEventListener("keydown", listener, true);
    if (state.listener === listener) state.listener = null;
  };
}
"""

_component = st.components.v2.component("second_look_review_keys", js=_JS)


def review_keys(*, key: str, on_key: Callable[[str], None]) -> None:
    """Mount the key listener; call ``on_key(k)`` once per new press, in the order pressed."""
    done_key = f"{key}_done"

    def apply_new_presses() -> None:
        value = st.session_state.get(key) or {}
        presses = value.get("presses") if hasattr(value, "get") else None
        for press in presses or []:
            if press["seq"] > st.session_state.get(done_key, 0):
                st.session_state[done_key] = press["seq"]
                on_key(press["key"])

    session = st.session_state.setdefault(f"{key}_session", uuid.uuid4().hex)
    _component(
        key=key,
        data={"keys": list(REVIEW_KEYS), "session": session},
        on_presses_change=apply_new_presses,
    )
