"""Second Look from the command line: the same functions the UI calls.

    python cli.py import DATA --name reviews --text-column text --label-column label
    python cli.py analyze workspaces/reviews
    python cli.py review workspaces/reviews                    # the queue, likeliest errors first
    python cli.py review workspaces/reviews --id 17 --label positive --reviewer ana
    python cli.py analyze DATA --text-column text --label-column label --out scores.csv
    python cli.py train DATA --text-column text --label-column label [--eval EVAL] --out DIR
    python cli.py predict MODEL_DIR --text "I love it" [--text ...]
    python cli.py predict MODEL_DIR DATA --text-column text [--out predictions.csv]
    python cli.py serve MODEL_DIR [--host 127.0.0.1 --port 8000]   # POST /predict over HTTP
    python cli.py export WORKSPACE --format csv --out curated.csv
    python cli.py export WORKSPACE --format chat [--split train] --out chat.jsonl
    python cli.py restore WORKSPACE            # a damaged workspace: its backup + newer events
    python cli.py repair WORKSPACE [--kinds mojibake,html_entities] [--list] [--accept-all --reviewer R]
    python cli.py adapt WORKSPACE [--epochs 1 --max-steps N --output DIR]   # masked-LM on its texts
    python cli.py users add NAME --role admin      # team mode: accounts (commands/team.py)
    python cli.py members add WORKSPACE NAME [--role reviewer]

DATA is a CSV, TSV, JSONL/JSON or Parquet file, or a folder saved by ``datasets.save_to_disk``.
Progress goes to stderr; bad arguments print a clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from dataclasses import fields
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class CliError(Exception):
    """A problem with the user's arguments or data; printed without a traceback."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress_printer(prefix: str):
    state = {"last": 0.0}

    def report(info: dict) -> None:
        now = time.monotonic()
        done, total = info.get("done"), info.get("total")
        if now - state["last"] < 1.0 and done != total:
            return
        state["last"] = now
        if total:
            from runtime.progress import describe  # rate and time left, as the UI shows them

            _say(f"{prefix}: {info.get('stage', '')} {describe(info)}")
        elif info.get("step") is not None:
            from runtime.estimates import duration

            loss, rate, left = info.get("loss"), info.get("rate"), info.get("eta_seconds")
            _say(
                f"{prefix}: step {info['step']}/{info.get('total_steps')}"
                + (f" · {rate:.2f} steps/s" if rate else "")
                + (f" · loss {loss:.4f}" if loss is not None else "")
                + (f" · about {duration(left)} left" if left is not None else "")
            )
        else:
            _say(f"{prefix}: {info.get('stage', '')}")

    return report


def _load(path: str, args: argparse.Namespace, *, split_column: str | None = None):
    from data.readers import DataError, prepare_dataset, read_table

    if not args.text_column or not args.label_column:
        raise CliError(f"{path} is a data file: give --text-column and --label-column.")
    try:
        raw = read_table(path, format=getattr(args, "format", None))
        for warning in raw.warnings:
            _say(f"warning: {warning}")
        return prepare_dataset(
            raw,
            text_column=args.text_column,
            label_column=args.label_column,
            id_column=getattr(args, "id_column", None),
            split_column=split_column,
            drop_empty_text=getattr(args, "drop_empty_text", False),
        )
    except DataError as exc:
        raise CliError(str(exc)) from exc


def cmd_analyze(args: argparse.Namespace) -> int:
    from curation.methods import METHODS, detection_seconds
    from curation.pipeline import analyze
    from runtime.device import resolve_device
    from runtime.encoder import EncoderSettings, embed_seconds
    from runtime.estimates import duration

    if args.method is not None and args.method not in METHODS:
        raise CliError(f"Unknown --method {args.method!r}; valid: {', '.join(METHODS)}.")
    if _is_workspace(args.data):
        return _analyze_workspace(args)
    if not args.out:
        raise CliError("--out is required when analysing a data file (a .csv, .jsonl or .parquet).")
    prepared = _load(args.data, args)
    frame = prepared.frame
    settings = EncoderSettings(
        model=args.model or "",
        max_length=args.max_length,
        batch_size=args.batch_size,
        precision=args.precision,
    )
    from curation.methods import DEFAULT_METHOD

    method = args.method or DEFAULT_METHOD
    estimate = detection_seconds(method, len(frame), device=resolve_device("auto"))
    _say(
        f"analyze: {len(frame):,} rows, {len(prepared.label_names)} classes; "
        f"{settings.describe()}; {args.folds}-fold {method}; about "
        f"{duration(embed_seconds(len(frame), settings))} to embed (less for cached texts), "
        f"then about {duration(estimate)}"
    )
    cache = None
    if args.cache:
        cache = _FileCache(Path(args.cache))
    result = analyze(
        frame["text"].tolist(),
        frame["label"].tolist(),
        label_names=prepared.label_names,
        method=method,
        settings=settings,
        n_folds=args.folds,
        seed=args.seed,
        cache=cache,
        progress=_progress_printer("analyze"),
    )
    scores, timings = result.rows, result.summary.timings
    out = scores.assign(id=frame["ext_id"].to_numpy(), text=frame["text"].to_numpy())
    out = out[
        [
            "id",
            "text",
            "analyzed_label",
            "predicted_label",
            "predicted_prob",
            "label_quality",
            "is_label_issue",
            "is_outlier",
            "outlier_score",
            "dup_group",
            "dup_conflict",
        ]
    ]
    from data.export import export_frame

    export_frame(out, args.out)
    _say(
        f"analyze: {int(out['is_label_issue'].sum()):,} likely label errors of {len(out):,} "
        f"rows; wrote {args.out} ({duration(timings['total_seconds'])})"
    )
    return 0


class _FileCache:
    """An embedding cache in a workspace-less .npz folder, for repeated CLI analyses."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, model_key: str) -> Path:
        import hashlib

        return self.folder / (hashlib.sha1(model_key.encode()).hexdigest()[:16] + ".npz")

    def get_embeddings(self, model_key, text_hashes):
        import numpy as np

        path = self._path(model_key)
        if not path.exists():
            return {}
        with np.load(path) as data:
            keys = set(data.files)
            return {h: data[h] for h in text_hashes if h in keys}

    def put_embeddings(self, model_key, items):
        import numpy as np

        path = self._path(model_key)
        existing = {}
        if path.exists():
            with np.load(path) as data:
                existing = {k: data[k] for k in data.files}
        existing.update(items)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **existing)
        os.replace(tmp, path)


# --------------------------------------------------------------------------- workspaces


def _is_workspace(path: str) -> bool:
    from data.store.base import is_workspace

    return is_workspace(path)


def _open_workspace(path: str):
    from data.store import StoreError, Workspace

    try:
        return Workspace(path)
    except StoreError as exc:
        raise CliError(str(exc)) from exc


def cmd_import(args: argparse.Namespace) -> int:
    """Create a workspace from a file, with the Data page's column mapping."""
    from data.readers import DataError, prepare_dataset, read_table
    from data.store import StoreError, Workspace, slugify, workspaces_root

    if not args.label_column and len(args.annotator_column or []) < 2:
        raise CliError("Give --label-column, or two or more --annotator-column.")
    try:
        raw = read_table(args.data, format=args.format)
        prepared = prepare_dataset(
            raw,
            text_column=args.text_column,
            label_column=args.label_column,
            id_column=args.id_column,
            split_column=args.split_column,
            annotator_columns=args.annotator_column,
            drop_empty_text=args.drop_empty_text,
            test_size=args.test_size,
            seed=args.seed,
        )
    except DataError as exc:
        raise CliError(str(exc)) from exc
    name = args.name or Path(raw.source).stem or "dataset"
    root = Path(args.home) if args.home else workspaces_root()
    try:
        from runtime.progress import RateMeter

        meter, report = RateMeter(), _progress_printer("import")
        ws = Workspace.create(
            root / slugify(name),
            prepared,
            name=name,
            source=raw.source,
            progress=lambda info: report(meter(info)),
        )
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    for warning in prepared.warnings:
        _say(f"warning: {warning}")
    counts = ws.counts()
    _say(
        f"import: {counts['n']:,} rows ({counts['train']:,} train, {counts['test']:,} test), "
        f"{len(prepared.label_names)} labels, encoding {prepared.encoding}"
    )
    print(ws.folder)
    return 0


def _analyze_workspace(args: argparse.Namespace) -> int:
    from curation.pipeline import analyze_workspace
    from runtime.encoder import EncoderSettings

    ws = _open_workspace(args.data)
    settings = EncoderSettings(
        model=args.model or "",
        max_length=args.max_length,
        batch_size=args.batch_size,
        precision=args.precision,
    )
    _say(f"analyze: workspace {ws.name!r}, {ws.counts()['n']:,} rows; {settings.describe()}")
    try:
        analysis_id = analyze_workspace(
            ws,
            method=args.method,
            settings=settings,
            n_folds=args.folds,
            seed=args.seed,
            progress=_progress_printer("analyze"),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    summary = ws.latest_analysis().summary
    _say(
        f"analyze: analysis {analysis_id}: {summary.n_issues:,} likely label errors; "
        f"review them with: python cli.py review {ws.folder}"
    )
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """Show the review queue, or record reviewers' decisions on samples by id."""
    from data.store import StoreError

    ws = _open_workspace(args.workspace)
    actions = [a for a in ("label", "accept", "keep", "exclude", "include") if getattr(args, a)]
    if not args.id:
        if actions:
            raise CliError("Say which samples with --id (repeat it for more).")
        page, total = ws.review_queue(order=args.order, limit=args.limit, flagged=args.flagged)
        columns = ["ext_id", "label", "predicted_label", "predicted_prob", "label_quality", "text"]
        _say(f"review: {total:,} rows in the queue (order {args.order}); the first {len(page)}:")
        page = page[columns].rename(columns={"ext_id": "id"})
        page["text"] = page["text"].str.slice(0, 80).str.replace("\n", " ", regex=False)
        print(page.to_string(index=False))
        return 0
    if len(actions) != 1:
        raise CliError("Give exactly one of --label LABEL, --accept, --keep, --exclude, --include.")
    if not (args.reviewer or "").strip():
        raise CliError("Give --reviewer NAME: every label event records who made it.")
    _team_reviewer(ws, args.reviewer, "review")
    try:
        ids = ws.sample_ids(args.id)
        triples = [_review_action(ws, sample_id, actions[0], args.label) for sample_id in ids]
        events = ws.apply_actions(triples, reviewer=args.reviewer)
    except (StoreError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    _say(f"review: {len(events):,} event(s) saved ({actions[0]}) by {args.reviewer.strip()}")
    return 0


def _team_reviewer(ws, name: str, action: str) -> None:
    """In team mode, --reviewer must be an account allowed ``action`` in this workspace."""
    from commands.team import TeamCommandError, check_reviewer

    try:
        check_reviewer(ws.folder, name, action)
    except TeamCommandError as exc:
        raise CliError(str(exc)) from exc


def _review_action(ws, sample_id: int, action: str, label: str | None):
    if action == "label":
        return (sample_id, "relabel", label)
    if action in ("exclude", "include"):
        return (sample_id, action, None)
    if action == "keep":
        return (sample_id, "confirm", ws.sample(sample_id)["label"])
    predicted = ws.result_for(sample_id).get("predicted_label")
    if predicted is None:
        raise CliError("--accept takes the model's suggestion: analyse the workspace first.")
    return (sample_id, "accept", predicted)


def cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from training.config import TrainingConfig
    from training.finetune import fine_tune

    values = {
        f.name: getattr(args, f.name)
        for f in fields(TrainingConfig)
        if getattr(args, f.name, None) is not None
    }
    if args.no_cap:
        values.update(max_train_samples=None, max_eval_samples=None)
    try:
        config = TrainingConfig.from_dict(values)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    prepared = _load(args.data, args, split_column=args.split_column)
    frame, names = prepared.frame, prepared.label_names
    if args.eval:
        eval_prepared = _load(args.eval, args)
        unknown = sorted(set(eval_prepared.label_names) - set(names))
        if unknown:
            raise CliError(
                f"The eval data has labels {unknown} that the training data lacks; "
                f"training labels: {names}."
            )
        train, test = frame, eval_prepared.frame
    else:
        train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
        _say(
            f"train: no --eval given; using a stratified split of DATA: {len(train):,} train, "
            f"{len(test):,} test rows (seed {prepared.split_seed})"
        )
    index = {n: i for i, n in enumerate(names)}
    result = fine_tune(
        train["text"].tolist(),
        np.array([index[v] for v in train["label"]]),
        label_names=names,
        config=config,
        output_dir=args.out,
        eval_texts=test["text"].tolist(),
        eval_labels=np.array([index[v] for v in test["label"]]),
        progress=_progress_printer("train"),
    )
    metrics_path = Path(args.out) / "metrics.json"
    if not metrics_path.exists():
        metrics_path.write_text(json.dumps(result.metrics, indent=2))
    m = result.metrics or {}
    _say(
        f"train: {result.train_samples:,} rows on {result.device} ({result.precision}), "
        f"{result.train_samples_per_second:.1f} samples/s; accuracy {m.get('accuracy', 0):.3f}, "
        f"f1 {m.get('f1', 0):.3f}; model in {result.model_dir}"
    )
    for warning in result.warnings:  # e.g. a tracker that failed: the run itself is saved
        _say(f"warning: {warning}")
    print(json.dumps(result.metrics, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from data.export import INSTRUCTION_FORMATS, export_dataset

    ws = _open_workspace(args.workspace)
    try:
        path = export_dataset(
            ws,
            args.out,
            fmt=args.format,
            include_metadata=not args.no_metadata,
            split=args.split,
            label_field=args.label_field,
            system_prompt=args.system_prompt,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.format in INSTRUCTION_FORMATS:
        n = path.read_bytes().count(b"\n")
        _say(f"export: {n:,} {args.format} examples (excluded rows left out) to {path}")
    else:
        splits = ws.samples()["split"]
        n = int((splits == args.split).sum()) if args.split else len(splits)
        _say(f"export: {n:,} rows to {path}")
    return 0


# --------------------------------------------------------------------------- damaged workspaces


def cmd_restore(args: argparse.Namespace) -> int:
    """Put back a damaged workspace's newest backup, keeping the newer label events."""
    from data.store import StoreError, restore_workspace

    try:
        report = restore_workspace(args.workspace, force=args.force)
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    _say(f"restore: {report.describe()}")
    _say(f"restore: the workspace now holds label events up to #{report.label_version:,}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """Take a backup of a workspace now (the app also takes them on its own)."""
    from data.store import StoreError

    ws = _open_workspace(args.workspace)
    try:
        path = ws.backup()
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    _say(f"backup: label events up to #{ws.label_version():,} saved to {path}")
    ws.close()
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure this machine's embedding, training and prediction speeds (about a minute on a 2-core CPU),
    so that the next estimates are measured ones."""
    from runtime.encoder import EncoderSettings
    from runtime.estimates import speeds_path
    from training.calibration import calibrate
    from training.config import TrainingConfig

    ws = _open_workspace(args.workspace)
    rows = ws.samples()
    index = {name: i for i, name in enumerate(ws.label_names)}
    config = TrainingConfig(technique=args.technique, device=args.device)
    speeds = calibrate(
        rows["text"].tolist(),
        [index[label] for label in rows["label"]],
        label_names=list(ws.label_names),
        config=config,
        settings=EncoderSettings(device=args.device),
        progress=_progress_printer("calibrate"),
    )
    units = {"embed": "texts/s", "train": f"rows/s ({args.technique})", "predict": "texts/s"}
    for task, rate in speeds.items():
        said = f"{rate:,.0f} {units[task]}" if rate else "too quick to time (kept: nothing)"
        _say(f"calibrate: {task}: {said}")
    _say(f"calibrate: kept in {speeds_path()}")
    ws.close()
    return 0


def _add_store_commands(sub) -> None:
    c = sub.add_parser(
        "calibrate",
        help="measure this machine's speeds (about a minute on a 2-core CPU) for the time estimates",
    )
    c.add_argument("workspace", help="workspace folder (its texts are timed)")
    c.add_argument("--technique", default="full", choices=("full", "lora", "head"))
    c.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    c.set_defaults(func=cmd_calibrate)
    r = sub.add_parser("restore", help="restore a damaged workspace from its backup")
    r.add_argument("workspace", help="workspace folder (holds store.sqlite)")
    r.add_argument(
        "--force",
        action="store_true",
        help="restore even when the workspace is not damaged (label events are kept)",
    )
    r.set_defaults(func=cmd_restore)
    b = sub.add_parser("backup", help="take a backup of a workspace now")
    b.add_argument("workspace", help="workspace folder (holds store.sqlite)")
    b.set_defaults(func=cmd_backup)


def _damage_message(args: argparse.Namespace, exc: Exception) -> str:
    """The damaged-workspace message for an SQLite error in the middle of a command (the
    workspace was damaged after it was opened); any other error is raised again."""
    from data.store import DamagedWorkspace, diagnose

    for path in (getattr(args, "workspace", None), getattr(args, "data", None)):
        problem = diagnose(path) if isinstance(path, str) else None
        if problem is not None:
            return str(DamagedWorkspace(path, problem))
    raise exc


# --------------------------------------------------------------------------- predict


def _classifier_dir(model_dir: str) -> Path:
    """The folder holding the classifier's config.json: MODEL_DIR itself or MODEL_DIR/model.

    ``cli.py train --out DIR`` saves the model in DIR/model, so both DIR and DIR/model work.
    """
    from training.inference import classifier_dir

    folder = Path(model_dir).expanduser()
    fix = (
        "Train one first: python cli.py train DATA --text-column TEXT --label-column LABEL "
        "--out DIR, then pass DIR (or DIR/model)."
    )
    if not folder.is_dir():
        raise CliError(f"No model folder at {folder}. {fix}")
    try:
        found = classifier_dir(folder)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from exc
    config_path = found / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"Cannot read {config_path}: {exc}") from exc
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        raise CliError(
            f"{found} holds a {', '.join(map(str, architectures)) or 'model'} without a "
            f"classification head (its config.json has no *ForSequenceClassification "
            f"architecture and id2label of your classes). {fix}"
        )
    return found


def _training_max_length(model_dir: Path) -> int | None:
    """The max_length the model was trained with, from fine_tune's training_run.json."""
    from training.finetune import RUN_FILE

    for folder in (model_dir.parent, model_dir):
        path = folder / RUN_FILE
        if path.exists():
            try:
                return int(json.loads(path.read_text())["config"]["max_length"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
    return None


def _predict_inputs(args: argparse.Namespace):
    """The texts to score and the input frame whose columns the output keeps."""
    import pandas as pd

    if args.text and args.data:
        raise CliError("Pass either --text (one or more) or DATA with --text-column, not both.")
    if args.text:
        if args.text_column:
            raise CliError("--text-column goes with DATA; drop it when passing --text.")
        return list(args.text), pd.DataFrame({"text": list(args.text)})
    if not args.data:
        raise CliError(
            "Nothing to predict: pass --text TEXT (repeatable) or DATA --text-column COL."
        )
    if not args.text_column:
        raise CliError("DATA needs --text-column naming the column that holds the texts.")
    from data.readers import DataError, read_table

    try:
        raw = read_table(args.data)
    except DataError as exc:
        raise CliError(str(exc)) from exc
    for warning in raw.warnings:
        _say(f"warning: {warning}")
    frame = raw.frame
    if args.text_column not in frame.columns:
        raise CliError(
            f"No column {args.text_column!r} in {args.data}; its columns are: "
            f"{', '.join(map(str, frame.columns))}. Pass one of them as --text-column."
        )
    column = frame[args.text_column]
    missing = int(column.isna().sum())
    if missing:
        _say(f"warning: {missing:,} rows have no text; they are scored as empty text")
    return ["" if pd.isna(v) else str(v) for v in column], frame


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from runtime.estimates import duration
    from training.inference import predict_proba

    model_dir = _classifier_dir(args.model_dir)
    texts, frame = _predict_inputs(args)
    max_length = args.max_length or _training_max_length(model_dir) or 64
    _say(f"predict: {len(texts):,} texts with {model_dir} (max length {max_length})")
    start = time.monotonic()
    try:
        probs = predict_proba(
            model_dir,
            texts,
            batch_size=args.batch_size,
            max_length=max_length,
            device=args.device,
            precision=args.precision,
        )
    except ValueError as exc:  # bad --batch-size, --max-length, --device or --precision
        raise CliError(str(exc)) from exc
    seconds = time.monotonic() - start
    names = _class_names(model_dir, probs.shape[1])
    best = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
    predicted = [names[i] for i in best]
    predicted_prob = probs[np.arange(len(probs)), best]
    _say(f"predict: done in {duration(seconds)}")
    if not args.out:
        _print_predictions(texts, predicted, predicted_prob)
        return 0
    new = {f"prob_{name}": probs[:, j] for j, name in enumerate(names)}
    new.update(predicted_label=predicted, predicted_prob=predicted_prob)
    clash = [c for c in new if c in frame.columns]
    if clash:
        _say(f"warning: replacing the input column(s) {clash} with this model's predictions")
    out = frame.drop(columns=clash).assign(**new)
    from data.export import export_frame

    try:
        path = export_frame(out, args.out)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    _say(f"predict: wrote {len(out):,} rows to {path}")
    return 0


def _class_names(model_dir: Path, k: int) -> list[str]:
    config = json.loads((model_dir / "config.json").read_text())
    id2label = {int(i): str(name) for i, name in (config.get("id2label") or {}).items()}
    return [id2label.get(j, f"LABEL_{j}") for j in range(k)]


def _print_predictions(texts: list[str], labels: list[str], probs) -> None:
    width = max([5, *(len(label) for label in labels)])
    print(f"{'label':<{width}}  probability  text")
    for text, label, p in zip(texts, labels, probs, strict=True):
        one_line = " ".join(text.split())
        if len(one_line) > 80:
            one_line = one_line[:79] + "…"
        print(f"{label:<{width}}  {p:>11.3f}  {one_line}")


def cmd_serve(args: argparse.Namespace) -> int:
    from serving.app import Limits, ServeError, serve

    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0-65535 (got {args.port}); 0 picks a free port.")
    model_dir = _classifier_dir(args.model_dir)
    token = os.environ.get("SECOND_LOOK_SERVE_TOKEN") or None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"Cannot read the token file {args.token_file}: {exc}.") from exc
    try:
        return serve(
            model_dir,
            host=args.host,
            port=args.port,
            limits=Limits(max_texts=args.max_texts, max_chars=args.max_chars),
            device=args.device,
            batch_size=args.batch_size,
            max_length=args.max_length,
            precision=args.precision,
            threads=args.threads,
            token=token,
        )
    except (ServeError, ValueError) as exc:  # ModelLoadError is a ValueError
        raise CliError(str(exc)) from exc


def cmd_adapt(args: argparse.Namespace) -> int:
    """Domain-adaptive pretraining in the foreground: masked-LM training on a workspace's
    texts (never its labels), as the Train page's background job does."""
    from training.adapt import AdaptConfig, adapt_workspace

    values = {f.name: getattr(args, f.name) for f in fields(AdaptConfig)}
    try:
        config = AdaptConfig.from_dict({k: v for k, v in values.items() if v is not None})
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    ws = _open_workspace(args.workspace)
    result = adapt_workspace(
        ws, config, model=args.model, output_dir=args.output, progress=_progress_printer("adapt")
    )
    _say(
        f"adapt: {result.rows:,} texts, {result.steps} steps in {result.train_seconds:.0f} s on "
        f"{result.device} ({result.precision}); masked-LM loss on {result.heldout_rows:,} "
        f"held-out texts {result.loss_before} -> {result.loss_after}; encoder in "
        f"{result.model_dir}"
    )
    print(result.model_dir)
    return 0


def _add_adapt_command(sub) -> None:
    from training.adapt import AdaptConfig

    d = sub.add_parser(
        "adapt",
        help="continue masked-LM pretraining of the encoder on a workspace's texts (all "
        "splits, never the labels); prints the adapted encoder's folder",
    )
    d.add_argument("workspace", help="workspace folder (holds store.sqlite)")
    d.add_argument("--model", default="", help="encoder folder or hub id (default: packaged)")
    d.add_argument("--output", help="default: WORKSPACE/models/adapted-<timestamp>")
    defaults = AdaptConfig()
    for f in fields(AdaptConfig):
        default = getattr(defaults, f.name)
        kind = (
            str if isinstance(default, str) else (int if f.name == "max_steps" else type(default))
        )
        d.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            default=None,
            type=kind,
            help=f"{AdaptConfig.FIELD_HELP[f.name]} (default: {default})",
        )
    d.set_defaults(func=cmd_adapt)


def _add_serve_command(sub) -> None:
    from serving import DEFAULT_MAX_CHARS, DEFAULT_MAX_TEXTS

    s = sub.add_parser("serve", help="answer POST /predict over HTTP with a trained classifier")
    s.add_argument("model_dir", help="folder written by `train --out` (or its model/ folder)")
    s.add_argument("--host", default="127.0.0.1", help="default: %(default)s (this machine only)")
    s.add_argument("--port", type=int, default=8000, help="default: %(default)s; 0: a free one")
    s.add_argument("--max-texts", type=int, default=DEFAULT_MAX_TEXTS, help="per request")
    s.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="per text")
    s.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    s.add_argument(
        "--max-length", type=int, default=None, help="default: the length it was trained with"
    )
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument(
        "--precision",
        default="fp32",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="fp32 (default) gives the same probabilities as `predict`; bf16 is faster on "
        "recent CPUs and GPUs",
    )
    s.add_argument("--threads", type=int, help="torch CPU threads (default: one per core)")
    s.add_argument(
        "--token-file",
        help="a file holding the bearer token every request but GET /health must carry "
        "(required off 127.0.0.1; or set SECOND_LOOK_SERVE_TOKEN)",
    )
    s.set_defaults(func=cmd_serve)


def cmd_worker(args: argparse.Namespace) -> int:
    """Claim and run queued jobs (team mode queues them) until stopped; jobs/worker.py."""
    from jobs.worker import parse_gpus, run_worker

    try:
        gpus = parse_gpus(args.gpus)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.poll <= 0:
        raise CliError(f"--poll must be more than 0 seconds (got {args.poll}).")
    run_worker(root=args.home, gpus=gpus, once=args.once, poll_seconds=args.poll)
    return 0


def _add_worker_command(sub) -> None:
    w = sub.add_parser("worker", help="claim and run queued background jobs of every workspace")
    w.add_argument("--home", help="workspaces folder (default: $SECOND_LOOK_HOME or ./workspaces)")
    w.add_argument("--gpus", help="GPUs the jobs may use, e.g. 0,1 (default: every visible one)")
    w.add_argument("--once", action="store_true", help="run at most one job, then exit")
    w.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the queues")
    w.set_defaults(func=cmd_worker)


def build_parser() -> argparse.ArgumentParser:
    from commands.team import add_team_commands
    from training.config import TrainingConfig

    parser = argparse.ArgumentParser(prog="cli.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    from data.readers import FORMATS as READ_FORMATS

    def data_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
        p.add_argument("data", help="CSV/TSV/JSONL/JSON/Parquet file or datasets folder")
        p.add_argument("--format", choices=READ_FORMATS, help="default: from the file's suffix")
        p.add_argument("--text-column", required=required)
        p.add_argument("--label-column", required=required)
        p.add_argument("--id-column")
        p.add_argument(
            "--drop-empty-text",
            action="store_true",
            help="drop rows whose text is empty instead of stopping",
        )

    i = sub.add_parser("import", help="create a workspace from a file (as the Data page does)")
    data_args(i, required=False)
    i.add_argument("--name", help="workspace name (default: the file's name)")
    i.add_argument("--split-column", help="column of train/test/validation (else a split is made)")
    i.add_argument(
        "--annotator-column",
        action="append",
        help="a column of one annotator's labels (repeat; 2+ make CROWDLAB consensus possible)",
    )
    i.add_argument("--test-size", type=float, default=0.2)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument(
        "--home", help="where workspaces live (default: $SECOND_LOOK_HOME or ./workspaces)"
    )
    i.set_defaults(func=cmd_import)

    a = sub.add_parser(
        "analyze",
        help="score every label with cleanlab: a workspace (stored, for review) or a data file "
        "(written to --out)",
    )
    data_args(a, required=False)
    a.add_argument("--out", help="with a data file: output .csv, .jsonl or .parquet")
    a.add_argument("--model", default="", help="encoder folder or hub id (default: packaged)")
    a.add_argument("--max-length", type=int, default=64)
    a.add_argument("--batch-size", type=int, default=64)
    a.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    a.add_argument(
        "--method",
        help="where the out-of-sample probabilities come from (default: the measured best "
        "CPU method; see README 'Which method when')",
    )
    a.add_argument("--folds", type=int, default=5)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--cache", help="folder to cache embeddings between runs")
    a.set_defaults(func=cmd_analyze)

    t = sub.add_parser("train", help="fine-tune a classifier; write metrics.json and the model")
    data_args(t)
    t.add_argument("--split-column", help="column with train/test values (else a split is made)")
    t.add_argument("--eval", help="evaluation data (same columns); default: a split of DATA")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--no-cap", action="store_true", help="train and evaluate on all rows")
    defaults = TrainingConfig()
    for f in fields(TrainingConfig):
        default = getattr(defaults, f.name)
        kind = type(default) if default is not None and not isinstance(default, str) else None
        t.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            default=None,
            type=kind or (int if "samples" in f.name else str),
            help=f"{TrainingConfig.FIELD_HELP.get(f.name, '')} (default: {default})",
        )
    t.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="label texts with a classifier trained by `train`")
    p.add_argument("model_dir", help="folder written by `train --out` (or its model/ folder)")
    p.add_argument("data", nargs="?", help="CSV/TSV/JSONL/JSON/Parquet file or datasets folder")
    p.add_argument("--text", action="append", help="a text to label (repeat for more)")
    p.add_argument("--text-column", help="with DATA: the column holding the texts")
    p.add_argument(
        "--out",
        help="write .csv, .jsonl or .parquet: the input columns, prob_<class> per class, "
        "predicted_label and predicted_prob (default: print a table)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="default: the length the model was trained with",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="fp32 (default) is reproducible; bf16 is faster on recent CPUs and GPUs",
    )
    p.set_defaults(func=cmd_predict)

    from data.export import DEFAULT_LABEL_FIELD, EXPORT_FORMATS

    e = sub.add_parser("export", help="export a workspace's curated dataset with provenance")
    e.add_argument("workspace", help="workspace folder (holds store.sqlite)")
    e.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        required=True,
        help="csv/jsonl/parquet: every row with provenance, exactly as imported plus the "
        "reviewers' changes; csv-spreadsheet: CSV whose formula-like cells and headers get a "
        "leading ' (for opening in a spreadsheet; changes those cells); instruction/chat: "
        "JSONL for generative fine-tuning (excluded rows left out)",
    )
    e.add_argument("--out", required=True)
    e.add_argument("--no-metadata", action="store_true")
    e.add_argument("--split", help="export only this split's rows (e.g. train)")
    e.add_argument(
        "--label-field",
        default=DEFAULT_LABEL_FIELD,
        help="instruction/chat: what the label is, shown in the prompt (default: %(default)s)",
    )
    e.add_argument("--system-prompt", help="chat: the system message (default: built from labels)")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("review", help="show the review queue, or relabel / keep / exclude by id")
    r.add_argument("workspace", help="workspace folder (holds store.sqlite)")
    r.add_argument("--id", action="append", help="a sample's id as imported (repeat for more)")
    r.add_argument("--label", help="set this label")
    r.add_argument("--accept", action="store_true", help="take the model's suggestion")
    r.add_argument("--keep", action="store_true", help="confirm the current label")
    r.add_argument("--exclude", action="store_true", help="leave the row out of training")
    r.add_argument("--include", action="store_true", help="take an excluded row back")
    r.add_argument("--reviewer", help="who decides (recorded with every event)")
    r.add_argument(
        "--order", default="quality", choices=["quality", "uncertainty", "random", "row"]
    )
    r.add_argument("--limit", type=int, default=20)
    r.add_argument(
        "--all",
        dest="flagged",
        action="store_const",
        const=None,
        default=True,
        help="list every row, not only the flagged ones",
    )
    r.set_defaults(func=cmd_review)
    _add_store_commands(sub)
    _add_serve_command(sub)
    _add_worker_command(sub)
    add_team_commands(sub)
    _add_adapt_command(sub)
    _add_repair_command(sub)
    _add_orphans_command(sub)
    return parser


def cmd_repair(args: argparse.Namespace) -> int:
    """Text repair proposals for a workspace: count them, list them, or accept them all (one
    batch of repair_text events that one undo reverts)."""
    from curation.repair import kind_counts, propose_repairs
    from data.store import StoreError

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    ws = _open_workspace(args.workspace)
    texts = ws.current_texts()
    try:
        found = propose_repairs(texts["text"], texts["sample_id"].tolist(), kinds=kinds)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    counts = kind_counts(found)
    _say(
        f"repair: {len(found):,} of {len(texts):,} texts have proposals ("
        + ", ".join(f"{k}: {counts[k]:,}" for k in kinds)
        + ")"
    )
    if args.list:
        ext = texts.set_index("sample_id")["ext_id"]
        for row in found.itertuples(index=False):
            record = {
                "id": ext.at[row.sample_id],
                "kinds": row.kinds,
                "original": row.original,
                "proposed": row.proposed,
            }
            print(json.dumps(record, ensure_ascii=False))
    if args.accept_all:
        if not (args.reviewer or "").strip():
            raise CliError("Give --reviewer NAME: every repair event records who accepted it.")
        _team_reviewer(ws, args.reviewer, "bulk")
        try:
            events = ws.repair_texts(
                zip(found["sample_id"].astype(int), found["proposed"], strict=True),
                reviewer=args.reviewer,
                expected=dict(zip(found["sample_id"].astype(int), found["original"], strict=True)),
            )
        except (StoreError, ValueError) as exc:
            raise CliError(str(exc)) from exc
        _say(
            f"repair: {len(events):,} texts repaired by {args.reviewer.strip()} (one batch; "
            "undo it on the Text repair page)"
        )
    elif not args.list and len(found):
        _say("repair: list them with --list, accept them with --accept-all --reviewer NAME")
    return 0


def _add_repair_command(sub) -> None:
    from curation.repair import DEFAULT_KINDS, KINDS

    f = sub.add_parser(
        "repair",
        help="propose text repairs (mojibake, HTML entities, ...): count, list or accept them",
    )
    f.add_argument("workspace", help="workspace folder (holds store.sqlite)")
    f.add_argument(
        "--kinds",
        default=",".join(DEFAULT_KINDS),
        help=f"comma-separated, of {', '.join(KINDS)} (default: %(default)s)",
    )
    f.add_argument(
        "--list",
        action="store_true",
        help="print each proposal as a JSON line: id, kinds, original, proposed",
    )
    f.add_argument(
        "--accept-all",
        action="store_true",
        help="accept every proposal as one batch of repair_text events (needs --reviewer)",
    )
    f.add_argument("--reviewer", help="who accepts (recorded with every event)")
    f.set_defaults(func=cmd_repair)


def cmd_orphans(args: argparse.Namespace) -> int:
    """List (or, with --drop, drop) PostgreSQL schemas that no workspace folder names."""
    from data.home import database_url
    from data.store import StoreError
    from data.store.orphans import drop_orphans, find_orphans

    if not database_url():
        raise CliError("No team database: set SECOND_LOOK_DATABASE_URL.")
    try:
        orphans = find_orphans(args.home, min_age_minutes=args.min_age)
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    for o in orphans:
        print(f"{o.schema}\t{o.name}\tcreated {o.created_at} ({o.age_minutes:.0f} min ago)")
    if not orphans:
        _say(f"orphans: none older than {args.min_age:g} minutes")
    elif not args.drop:
        # Another home (or `import --home` elsewhere) may name them: a person decides.
        _say(
            f"orphans: {len(orphans)} schema(s) no folder under the home names. If no other "
            "SECOND_LOOK_HOME uses this database, drop them with --drop."
        )
    else:
        dropped = drop_orphans(orphans, args.home)
        _say(f"orphans: dropped {len(dropped)} schema(s): {', '.join(dropped)}")
    return 0


def _add_orphans_command(sub) -> None:
    from data.store.orphans import MIN_AGE_MINUTES

    o = sub.add_parser(
        "orphans",
        help="team database: list the workspace schemas no folder names (a crashed import); "
        "--drop drops them",
    )
    o.add_argument("--home", help="workspaces folder (default: $SECOND_LOOK_HOME or ./workspaces)")
    o.add_argument(
        "--min-age",
        type=float,
        default=MIN_AGE_MINUTES,
        help="only schemas created at least this many minutes ago (default: %(default)s)",
    )
    o.add_argument(
        "--drop",
        action="store_true",
        help="drop the schemas listed (only when no other home uses the same database)",
    )
    o.set_defaults(func=cmd_orphans)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        _say(f"error: {exc}")
        return 2
    except sqlite3.DatabaseError as exc:
        _say(f"error: {_damage_message(args, exc)}")
        return 2
    except (ValueError, FileNotFoundError, OSError) as exc:
        _say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
