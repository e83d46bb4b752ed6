"""Second Look: find and fix label errors in a text-classification dataset.

A router only: page setup, the shared sidebar (workspace, reviewer), and navigation over
``app_pages/``. Start it with ``streamlit run app.py``.
"""

import os
import sqlite3
import threading

import streamlit as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The page and its navigation are drawn before anything heavy is imported (pandas and the store,
# in app_pages.workspace): on a cold server that takes seconds, and the browser would stay blank.
# The icon is an emoji: the browser draws it itself, while a ":material/..." icon would be
# fetched from fonts.gstatic.com (the app must fetch nothing from outside).
st.set_page_config(page_title="Second Look", page_icon="🔎", layout="wide")

# Before anything is drawn: solo mode serves the loopback address only, team mode a signed-in
# account (the sign-in form otherwise). Solo mode decides this without importing the store.
from app_pages.access import asked_page, gate, highest_role  # noqa: E402

account = gate()

# Sections follow the loop: get the labels right, then see what they buy a model, then share.
pages = {
    "Label": [
        st.Page("app_pages/data.py", title="Data", icon=":material/upload_file:", default=True),
        st.Page("app_pages/repair.py", title="Text repair", icon=":material/build:"),
        st.Page("app_pages/issues.py", title="Predictions & flags", icon=":material/flag:"),
        st.Page("app_pages/health.py", title="Dataset health", icon=":material/monitor_heart:"),
        st.Page("app_pages/review.py", title="Review", icon=":material/rate_review:"),
    ],
    "Model": [
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/charts.py", title="Charts", icon=":material/show_chart:"),
        st.Page("app_pages/history.py", title="Run history", icon=":material/history_edu:"),
    ],
    "Team": [
        st.Page("app_pages/reviewers.py", title="Reviewers", icon=":material/groups:"),
        st.Page("app_pages/audit.py", title="Audit log", icon=":material/history:"),
        st.Page("app_pages/team.py", title="Accounts & members", icon=":material/badge:"),
    ],
    "Share": [
        st.Page("app_pages/export.py", title="Export", icon=":material/download:"),
    ],
}
if account is not None:  # team mode: list only the pages this account's roles may use
    from data.store.accounts import allowed

    best = highest_role()
    needs = {"Train": "train", "Export": "export", "Accounts & members": "manage"}
    pages = {
        section: [p for p in entries if allowed(best, needs.get(p.title, "read"))]
        for section, entries in pages.items()
    }
    pages = {section: entries for section, entries in pages.items() if entries}
page = st.navigation(pages)
if account is not None:
    # A page's URL opened while signed out (/review): open it now, if listed for this account.
    asked = asked_page(pages)
    if asked is not None and asked is not page:
        st.switch_page(asked)


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Import torch (the device check of Predictions & flags, Train and Charts) and the training
    code (scikit-learn) in the background, once per server, after its first page is drawn:
    those pages then open seconds sooner."""

    def run() -> None:
        try:
            import torch  # noqa: F401

            import training.runs  # noqa: F401
        except Exception:  # noqa: BLE001, S110 - the page that needs it reports the failure
            pass

    thread = threading.Thread(target=run, name="second-look-warm-up", daemon=True)
    thread.start()
    return thread


from app_pages.progress import running_jobs_sidebar  # noqa: E402 - after the first paint
from app_pages.workspace import (  # noqa: E402
    database_unreachable,
    show_database_error,
    sidebar,
)

sidebar()
running_jobs_sidebar()  # every page says what runs in the background, and how far along
try:
    page.run()
except sqlite3.DatabaseError as exc:  # the workspace was damaged after it was opened?
    show_database_error(exc)
except Exception as exc:  # noqa: BLE001 - only the team database being unreachable is handled
    if not database_unreachable(exc):
        raise
finally:
    warm_up()
