"""Second Look: find and fix label errors in a text-classification dataset.

A router only: page setup, the shared sidebar (workspace, reviewer), and navigation over
``app_pages/``. Start it with ``streamlit run app.py``.
"""

import os

import streamlit as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from app_pages.common import sidebar  # noqa: E402 - after the environment is set

st.set_page_config(page_title="Second Look", page_icon=":material/search:", layout="wide")

pages = [
    st.Page("app_pages/data.py", title="Data", icon=":material/upload_file:", default=True),
    st.Page("app_pages/issues.py", title="Predictions & flags", icon=":material/flag:"),
    st.Page("app_pages/health.py", title="Dataset health", icon=":material/monitor_heart:"),
    st.Page("app_pages/review.py", title="Review", icon=":material/rate_review:"),
    st.Page("app_pages/reviewers.py", title="Reviewers", icon=":material/groups:"),
    st.Page("app_pages/audit.py", title="Audit log", icon=":material/history:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/charts.py", title="Charts", icon=":material/show_chart:"),
    st.Page("app_pages/runs.py", title="Run history", icon=":material/history_edu:"),
    st.Page("app_pages/export.py", title="Export", icon=":material/download:"),
]
page = st.navigation(pages)
sidebar()
page.run()
