"""Export: the curated dataset with provenance, instruction-tuning JSONL, and trained models."""

from __future__ import annotations

import shlex

import streamlit as st

from app_pages import access
from app_pages.plain import plain
from app_pages.workspace import require_workspace
from data.artifacts import artifact_problems
from data.export import (
    DEFAULT_LABEL_FIELD,
    FORMAT_TITLES,
    FORMATS,
    INSTRUCTION_FORMATS,
    SUFFIXES,
    curated_frame,
    default_system_prompt,
    model_archive,
    to_bytes,
    workspace_instruction_bytes,
)
from data.readers import SPLITS
from data.store import slugify
from training.reporting import model_choices

st.title("Export")
ws = require_workspace()
access.require_page("export")  # team mode: curators and admins (not listed for others)
counts = ws.counts()
st.markdown(
    f"**{counts['n']:,} rows** · {counts['changed']:,} labels changed · "
    f"{counts['excluded']:,} excluded · {counts['reviewed']:,} reviewed. "
    "Each row carries its provenance: curated `label`, `given_label`, `changed`, `excluded`, "
    "`reviewer`, `reviewed_at`, and the latest analysis' `label_quality`, `is_label_issue`, "
    "`predicted_label`; metadata columns follow."
)

fmt = st.radio(
    "Format", FORMATS, format_func=FORMAT_TITLES.get, horizontal=True, key="export_format"
)
include_meta = st.checkbox("Include metadata columns", value=True, key="export_meta")


@st.cache_data(max_entries=6, show_spinner="Preparing the export…")
def export_payload(folder: str, version: tuple[int, int | None], fmt: str, meta: bool):
    """The frame preview and file bytes, rebuilt only when labels or the analysis change."""
    frame = curated_frame(ws, include_metadata=meta)
    return frame.head(10), to_bytes(frame, fmt)


latest = ws.latest_analysis()
preview, payload = export_payload(
    str(ws.folder), (ws.label_version(), latest and latest.id), fmt, include_meta
)
st.dataframe(preview, hide_index=True, width="stretch")
suffix = SUFFIXES.get(fmt, fmt)
if fmt == "csv":
    st.caption(
        "Exact: reads back to the same ids, texts, labels and metadata with pandas or any CSV "
        "reader. To open it in Excel or LibreOffice, choose *CSV for spreadsheets* instead."
    )
elif fmt == "csv-spreadsheet":
    st.warning(
        "For opening in a spreadsheet only: cells and headers starting with = + - @ (or a tab "
        "or carriage return) get a leading ' so they are shown as text instead of run as "
        "formulas. That changes those cells (on the demo, every tweet starting with @): "
        "export *CSV (exact)* to train on or to re-import."
    )
st.download_button(
    f"Download curated dataset (.{suffix})",
    data=payload,
    file_name=f"{slugify(ws.name)}-curated{'-for-spreadsheets' if fmt == 'csv-spreadsheet' else ''}.{suffix}",
    mime={"csv": "text/csv", "jsonl": "application/jsonl", "parquet": "application/octet-stream"}[
        suffix
    ],
    type="primary",
    key="download_dataset",
)
st.caption("From the command line:")
st.code(
    f"python cli.py export {shlex.quote(str(ws.folder))} --format {fmt} --out curated.{suffix}",
    language="bash",
)

st.subheader("Instruction-tuning data")
st.markdown(
    "JSON Lines for fine-tuning a generative model on the curated labels: one example per row "
    "that is not excluded, the curated label as the answer. **instruction**: "
    '`{"text": "[Text]: …\\n[Sentiment]: positive"}`; **chat**: '
    '`{"messages": [system, user: the text, assistant: the label]}`.'
)
col_field, col_split = st.columns(2)
label_field = col_field.text_input(
    "Label field name",
    value=DEFAULT_LABEL_FIELD,
    key="export_label_field",
    help="What the label is, as shown in the prompt: Sentiment, Topic, Intent, …",
)
splits = [name for name in SPLITS if counts.get(name)]
split_choice = col_split.selectbox(
    "Rows", ["all splits", *splits], key="export_split", help="Export only one split's rows."
)
split = None if split_choice == "all splits" else split_choice
try:
    prompt_default = default_system_prompt(label_field, ws.label_names)
except ValueError as exc:
    st.error(plain(exc))  # it quotes the label field or a label name
    st.stop()
system_prompt = st.text_area(
    "System prompt (chat)",
    value="",
    placeholder=prompt_default,
    key="export_system_prompt",
    help="Leave empty for the default shown.",
).strip()


@st.cache_data(max_entries=6, show_spinner="Preparing the instruction data…")
def model_label(run, *, best: bool) -> str:
    """How a run reads in the model list: what it was and how well it did."""
    accuracy = (run.test or {}).get("accuracy")
    score = f"test accuracy {accuracy:.3f}" if isinstance(accuracy, int | float) else "no accuracy"
    kind = (run.data or {}).get("experiment", "single")
    group = "" if kind == "single" else f"{kind.replace('_', ' ')} experiment · "
    return f"{group}run {run.id}: {run.name} ({score}){' · best' if best else ''}"


def instruction_payload(
    folder: str,
    version: int,
    style: str,
    split: str | None,
    label_field: str,
    system_prompt: str | None,
) -> tuple[str, bytes]:
    """The first example (for the preview) and the JSONL bytes of one style."""
    data = workspace_instruction_bytes(
        ws, style, split=split, label_field=label_field, system_prompt=system_prompt
    )
    return data.split(b"\n", 1)[0].decode("utf-8"), data


for style, column in zip(INSTRUCTION_FORMATS, st.columns(len(INSTRUCTION_FORMATS)), strict=True):
    first, data = instruction_payload(
        str(ws.folder), ws.label_version(), style, split, label_field, system_prompt or None
    )
    n_examples = data.count(b"\n")
    column.download_button(
        f"Download {style} JSONL ({n_examples:,} example{'' if n_examples == 1 else 's'})",
        data=data,
        file_name=f"{slugify(ws.name)}-{style}.jsonl",
        mime="application/jsonl",
        key=f"download_{style}",
        disabled=n_examples == 0,
    )
    column.code(first or "(no rows)", language="json", wrap_lines=True)
split_arg = f" --split {split}" if split else ""
field_arg = (
    f" --label-field {shlex.quote(label_field)}" if label_field != DEFAULT_LABEL_FIELD else ""
)
st.caption("From the command line:")
st.code(
    f"python cli.py export {shlex.quote(str(ws.folder))} --format chat{split_arg}"
    f"{field_arg} --out chat.jsonl",
    language="bash",
)

st.subheader("Trained models")
all_runs = ws.runs()
show_experiments = st.checkbox(
    "Also list the charts' experiment runs",
    key="export_experiments",
    help="Runs of the data-size, label-quality and learning-rate experiments, listed after "
    "your own runs. They are usually trained on part of the data or on noised labels.",
)
runs = model_choices(all_runs, experiments=show_experiments)
if not runs:
    st.caption(
        "No trained model yet: train one on the **Train** page."
        if not model_choices(all_runs, experiments=True)
        else "Only the charts' experiment runs have saved models: tick the box above to list "
        "them, or train one on the **Train** page."
    )
else:
    by_id = {r.id: r for r in runs}
    best = runs[0].id if (runs[0].data or {}).get("experiment", "single") == "single" else None
    choice = st.selectbox(
        "Model",
        list(by_id),
        key="export_run",
        format_func=lambda i: model_label(by_id[i], best=i == best),
        help="Your own runs come first, the best test accuracy first.",
    )
    run = ws.run(choice)
    # The folder must be what training saved: a missing or changed file is reported, not served.
    problems = artifact_problems(run.model_dir, run.data.get("model_files") or {})
    if problems:
        st.error(
            f"The model of run {choice} is not as training saved it: "
            f"{plain('; '.join(problems[:5]))}. Train it again (Train page), or put the folder "
            f"{plain(run.model_dir)} back from a copy.",
            icon=":material/gpp_bad:",
        )
        st.stop()
    st.caption(f"Folder: {plain(run.model_dir)} (load it with `from_pretrained`).")
    st.caption("Serve it over HTTP (`POST /predict`, `GET /model`; see the README):")
    st.code(f"python cli.py serve {shlex.quote(str(run.model_dir))} --port 8000", language="bash")
    if st.button("Prepare model download", key="prepare_model"):
        st.session_state["model_zip"] = (choice, model_archive(run.model_dir))
    prepared = st.session_state.get("model_zip")
    if prepared and prepared[0] == choice:
        st.download_button(
            "Download model (.zip)",
            data=prepared[1],
            file_name=f"model-run-{choice}.zip",
            mime="application/zip",
            key="download_model",
        )
