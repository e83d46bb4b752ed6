"""Export: the curated dataset with provenance, and trained models."""

from __future__ import annotations

import streamlit as st

from app_pages.common import require_workspace
from data.export import FORMATS, curated_frame, model_archive, to_bytes
from data.store import slugify

st.title("Export")
ws = require_workspace()
counts = ws.counts()
st.markdown(
    f"**{counts['n']:,} rows** · {counts['changed']:,} labels changed · "
    f"{counts['excluded']:,} excluded · {counts['reviewed']:,} reviewed. "
    "Each row carries its provenance: curated `label`, `original_label`, `changed`, `excluded`, "
    "`reviewer`, `reviewed_at`, and the latest analysis' `label_quality`, `is_label_issue`, "
    "`predicted_label`; metadata columns follow."
)

fmt = st.radio("Format", FORMATS, horizontal=True, key="export_format")
include_meta = st.checkbox("Include metadata columns", value=True, key="export_meta")


@st.cache_data(max_entries=6, show_spinner="Preparing the export…")
def export_payload(folder: str, version: tuple[int, int | None], fmt: str, meta: bool):
    """The frame preview and file bytes, rebuilt only when labels or the analysis change."""
    frame = curated_frame(ws, include_metadata=meta)
    return frame.head(10), to_bytes(frame, fmt)


latest = ws.latest_analysis()
preview, payload = export_payload(
    str(ws.folder), (ws.label_version(), latest and latest["id"]), fmt, include_meta
)
st.dataframe(preview, hide_index=True, width="stretch")
if fmt == "csv":
    st.caption(
        "CSV cells starting with = + - @ are prefixed with ' so a spreadsheet shows them "
        "as text instead of running them as formulas."
    )
st.download_button(
    f"Download curated dataset (.{fmt})",
    data=payload,
    file_name=f"{slugify(ws.name)}-curated.{fmt}",
    mime={"csv": "text/csv", "jsonl": "application/jsonl", "parquet": "application/octet-stream"}[
        fmt
    ],
    type="primary",
    key="download_dataset",
)
st.caption(
    f"From the command line: `python cli.py export {ws.folder} --format {fmt} --out curated.{fmt}`"
)

st.subheader("Trained models")
runs = [r for r in ws.runs() if r["status"] == "done" and r["model_dir"]]
if not runs:
    st.caption("No trained model yet: train one on the **Train** page.")
else:
    choice = st.selectbox(
        "Model",
        [r["id"] for r in reversed(runs)],
        key="export_run",
        format_func=lambda i: next(
            f"run {r['id']}: {r['name']} (accuracy {(r['metrics'] or {}).get('accuracy', 0):.3f})"
            for r in runs
            if r["id"] == i
        ),
    )
    run = ws.run(choice)
    st.caption(f"Folder: `{run['model_dir']}` (load it with `from_pretrained`).")
    if st.button("Prepare model download", key="prepare_model"):
        st.session_state["model_zip"] = (choice, model_archive(run["model_dir"]))
    prepared = st.session_state.get("model_zip")
    if prepared and prepared[0] == choice:
        st.download_button(
            "Download model (.zip)",
            data=prepared[1],
            file_name=f"model-run-{choice}.zip",
            mime="application/zip",
            key="download_model",
        )
