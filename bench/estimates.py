"""Time estimates against real runs: the analysis and the training run, on the demo data.

    python bench/estimates.py                  # 6,000 demo rows, both conditions (~15 min, 2 cores)
    python bench/estimates.py --conditions calibrated --rows 3000
    python bench/estimates.py --render bench/results/estimates-cpu2-20261130.json  # .md only

Checks the goal "the estimate shown before a run is within +-30% of the real time on a quiet
machine, and the first time-left figure appears within 15 s of the start", for

* an **analysis** (the Predictions & flags page's defaults: default method, 5 folds, the packaged
  encoder): the estimate is the page's, ``detection_seconds(...) + embed_seconds(n)``
  (app_pages/issues.py), launched as ``jobs.launch(ws, "analyze", ...)`` with the page's params;
* a **training run** (a single run with the default ``TrainingConfig()``): the estimate is the
  Train page's ``plan_seconds(summary, config)``, the summary computed as ``plan_summary`` does
  (app_pages/planning.py), launched with ``estimate_seconds`` as the page launches it.

Each under two conditions, each on a freshly imported workspace (nothing cached, so the
analysis embeds every text) and a fresh speeds file (``SECOND_LOOK_SPEEDS``, so earlier runs on
this machine do not count):

* ``defaults``: an empty speeds file, so the estimates use the built-in typical speeds;
* ``calibrated``: ``python cli.py calibrate WORKSPACE`` once, then the estimates.

Both estimates of a condition are taken before either job runs (real runs record speeds too).
Each job is polled every 0.5 s from launch: the first ``eta_seconds`` (the analysis job's
progress; the training run record's progress, as app_pages/progress.py reads it) and the wall
time until the job is done. Before each job the script waits (up to ``--wait`` s) for the
1-minute load average to drop to ``--max-load``; the load before and after is recorded.

The demo corpus is sorted by label (its first 6,000 rows are all negative), so the subset is a
seeded random sample of ``--rows`` rows, written as a clean UTF-8 CSV and imported with the CLI.

Prints the figures and writes ``bench/results/estimates-<tag>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from machine import describe  # noqa: E402

import jobs  # noqa: E402
from curation.methods import DEFAULT_METHOD, detection_seconds  # noqa: E402
from data import demo  # noqa: E402
from data.readers import read_table  # noqa: E402
from data.store import Workspace  # noqa: E402
from runtime.device import resolve_device  # noqa: E402
from runtime.encoder import EncoderSettings, embed_rate, embed_seconds  # noqa: E402
from runtime.encoder import speed_identity as encoder_identity  # noqa: E402
from runtime.estimates import measured_speed  # noqa: E402
from training.config import TrainingConfig  # noqa: E402
from training.experiments import eval_ids  # noqa: E402
from training.finetune import speed_identity  # noqa: E402
from training.runs import plan, split_ids, validation_split, verified_ids  # noqa: E402

TOLERANCE = 0.30
FIRST_ETA_GOAL = 15.0
POLL = 0.5
DONE = ("done", "failed", "cancelled")


def load() -> float:
    return round(os.getloadavg()[0], 2)


def wait_quiet(max_load: float, wait: float) -> dict:
    """Wait until the 1-minute load average is at most ``max_load`` (or ``wait`` s passed)."""
    start = time.monotonic()
    first = load()
    while load() > max_load and time.monotonic() - start < wait:
        time.sleep(10)
    return {"load_first": first, "waited_s": round(time.monotonic() - start, 1)}


def cli(*args: str) -> tuple[str, str]:
    """(stdout, stderr) of ``python cli.py ARGS``."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"cli.py {args[0]} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout.strip(), out.stderr.strip()


def subset_csv(rows: int, path: Path, seed: int) -> dict:
    frame = read_table(demo.demo_csv_path()).frame
    pick = np.sort(np.random.default_rng(seed).choice(len(frame), size=rows, replace=False))
    sub = frame.iloc[pick][["text", "sentiment"]]
    # Quoted: some texts hold a bare carriage return, which an unquoted field splits.
    sub.to_csv(path, index=False, encoding="utf-8", quoting=csv.QUOTE_ALL)
    return {k: int(v) for k, v in sub["sentiment"].value_counts().items()}


def analysis_estimate(ws: Workspace, settings: EncoderSettings, n_folds: int) -> dict:
    """What app_pages/issues.py shows for the first analysis with ``settings``."""
    n = ws.counts()["n"]
    done_before = any(a.settings.get("model_key") == settings.key() for a in ws.analyses())
    detect = detection_seconds(
        DEFAULT_METHOD, n, device=resolve_device("auto"), n_folds=n_folds, cached=done_before
    )
    embed = 0.0 if done_before else embed_seconds(n, settings)
    return {
        "rows": n,
        "detection_s": round(detect, 1),
        "embed_s": round(embed, 1),
        "embed_rate": round(embed_rate(settings), 1),
        "embed_rate_measured": measured_speed("embed", **encoder_identity(settings)) is not None,
        "seconds": round(detect + embed, 1),
    }


def training_estimate(ws: Workspace, config: TrainingConfig) -> dict:
    """What app_pages/train.py shows for a single run (plan_summary's body, uncached)."""
    from app_pages.planning import plan_seconds  # streamlit import only; no page code runs

    train, test = split_ids(ws)
    train, validation, _ = validation_split(ws, train, config=config)
    specs = plan(ws, "single", config=config, train_ids=train)
    summary = {
        "train_rows": [len(s.train_ids) for s in specs],
        "eval_rows": len(eval_ids(test, seed=config.seed, cap=config.max_eval_samples)),
        "verified_rows": len(verified_ids(ws, test)),
        "validation_rows": len(validation),
    }
    rates = {
        task: measured_speed(task, **speed_identity(config, task)) for task in ("train", "predict")
    }
    return {
        "summary": summary,
        "measured_rates": rates,
        "seconds": round(plan_seconds(summary, config), 1),
    }


def watch_analysis(ws: Workspace, job_id: int, t0: float) -> dict:
    first_eta = first_embed_eta = None
    stages: dict[str, float] = {}
    while True:
        job = ws.job(job_id)
        now = time.monotonic() - t0
        progress = job.progress or {}
        stage = progress.get("stage")
        if stage and stage not in stages:
            stages[stage] = round(now, 1)
        eta = progress.get("eta_seconds")
        if eta is not None and first_eta is None:
            first_eta = {"at_s": round(now, 1), "stage": stage, "eta_s": eta}
        if eta is not None and first_embed_eta is None and "embed" in str(stage):
            first_embed_eta = {"at_s": round(now, 1), "eta_s": eta, "done": progress.get("done")}
        if job.status in DONE:
            break
        time.sleep(POLL)
    result = {"status": job.status, "wall_s": round(now, 1), "first_eta": first_eta}
    result["first_embed_eta"] = first_embed_eta
    result["stage_first_seen_s"] = stages
    if job.status == "done":
        timings = ws.latest_analysis().summary.timings
        result["timings"] = {k: round(float(v), 1) for k, v in timings.items() if v is not None}
    else:
        result["error"] = job.error
    return result


def watch_training(ws: Workspace, job_id: int, t0: float) -> dict:
    first_eta = run_seen = first_step = None
    while True:
        job = ws.job(job_id)
        now = time.monotonic() - t0
        runs = ws.runs(job_id=job_id)
        progress = runs[-1].progress if runs else {}
        if runs and run_seen is None:
            run_seen = round(now, 1)
        if progress.get("step") and first_step is None:
            first_step = round(now, 1)
        if progress.get("eta_seconds") is not None and first_eta is None:
            first_eta = {
                "at_s": round(now, 1),
                "eta_s": progress["eta_seconds"],
                "step": progress.get("step"),
                "total_steps": progress.get("total_steps"),
            }
        if job.status in DONE:
            break
        time.sleep(POLL)
    result = {
        "status": job.status,
        "wall_s": round(now, 1),
        "first_eta": first_eta,
        "run_record_s": run_seen,
        "first_step_s": first_step,
    }
    if runs:
        run = ws.runs(job_id=job_id)[-1]
        start, end = run.created_at, run.finished_at
        if start and end:
            seconds = datetime.fromisoformat(end) - datetime.fromisoformat(start)
            result["run_record_wall_s"] = round(seconds.total_seconds(), 1)
        result["run_data"] = {
            k: v for k, v in (run.data or {}).items() if not str(k).endswith("hash")
        }
    if job.status != "done":
        result["error"] = job.error
    return result


def measure(kind: str, ws: Workspace, params: dict, args) -> dict:
    quiet = wait_quiet(args.max_load, args.wait)
    before = load()
    t0 = time.monotonic()
    job_id = jobs.launch(ws, kind, params)
    watch = watch_analysis if kind == "analyze" else watch_training
    result = watch(ws, job_id, t0)
    return {**result, **quiet, "load_before": before, "load_after": load()}


def verdict(estimate: float, actual: dict) -> dict:
    ratio = actual["wall_s"] / estimate if estimate else None
    first = (actual.get("first_eta") or {}).get("at_s")
    return {
        "ratio": None if ratio is None else round(ratio, 2),
        "within_30pct": ratio is not None and abs(ratio - 1) <= TOLERANCE,
        "first_eta_within_15s": first is not None and first <= FIRST_ETA_GOAL,
    }


def condition(name: str, csv: Path, tmp: Path, args) -> dict:
    home = tmp / name
    home.mkdir()
    os.environ["SECOND_LOOK_HOME"] = str(home)
    os.environ["SECOND_LOOK_SPEEDS"] = str(home / "speeds.json")  # fresh: nothing measured
    folder, said = cli(
        "import", str(csv), "--name", f"demo-{name}", "--text-column", "text",
        "--label-column", "sentiment", "--home", str(home),
    )  # fmt: skip
    ws = Workspace(folder.splitlines()[-1])
    out: dict = {"import": said.splitlines()[-1]}
    if name == "calibrated":
        quiet = wait_quiet(args.max_load, args.wait)
        start, before = time.monotonic(), load()
        said = "\n".join(cli("calibrate", str(ws.folder)))
        out["calibration"] = {
            "seconds": round(time.monotonic() - start, 1),
            "output": said.splitlines(),
            **quiet,
            "load_before": before,
            "load_after": load(),
        }
        print(f"[{name}] calibrated in {out['calibration']['seconds']} s", flush=True)
    settings = EncoderSettings()
    config = TrainingConfig()
    # Both estimates before either job: the analysis records an embedding speed when it ends.
    est_a = analysis_estimate(ws, settings, args.folds)
    est_t = training_estimate(ws, config)
    print(f"[{name}] estimates: analysis {est_a}, training {est_t['seconds']}", flush=True)

    params = {
        "encoder": settings.__dict__,
        "method": DEFAULT_METHOD,
        "n_folds": args.folds,
        "seed": 0,
    }
    actual_a = measure("analyze", ws, params, args)
    out["analysis"] = {"estimate": est_a, "actual": actual_a, **verdict(est_a["seconds"], actual_a)}
    print(f"[{name}] analysis: {json.dumps(out['analysis'])}", flush=True)

    params = {"config": config.to_dict(), "estimate_seconds": est_t["seconds"]}
    actual_t = measure("train", ws, params, args)
    out["training"] = {"estimate": est_t, "actual": actual_t, **verdict(est_t["seconds"], actual_t)}
    print(f"[{name}] training: {json.dumps(out['training'])}", flush=True)
    try:
        out["speeds_file_after"] = json.loads((home / "speeds.json").read_text())
    except OSError:
        out["speeds_file_after"] = None
    ws.close()
    return out


def table(results: dict) -> list[str]:
    lines = [
        "| condition | job | estimate | actual | actual / estimate | within ±30% | "
        "first time left | load before → after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        for job in ("analysis", "training"):
            r = res[job]
            first = r["actual"].get("first_eta") or {}
            where = f" ({first['stage']})" if first.get("stage") else ""
            lines.append(
                f"| {name} | {job} | {r['estimate']['seconds']:.0f} s | "
                f"{r['actual']['wall_s']:.0f} s | {r['ratio']} | "
                f"{'yes' if r['within_30pct'] else '**no**'} | "
                f"{first.get('at_s', '—')} s{where} | "
                f"{r['actual']['load_before']} → {r['actual']['load_after']} |"
            )
    return lines


def components(results: dict) -> list[str]:
    """Where each estimate's seconds went against the run's own stage timings."""
    lines = [
        "| condition | job | component | estimated | measured |",
        "|---|---|---|---|---|",
    ]
    for name, res in results.items():
        a, t = res["analysis"], res["training"]
        est, act = a["estimate"], a["actual"]
        timings = act.get("timings", {})
        embed = timings.get("embed_seconds")
        rate = f"{est['rows'] / embed:.0f} texts/s" if embed else "?"
        rows = [
            (
                "embedding",
                f"{est['embed_s']} s at {est['embed_rate']:.0f} texts/s",
                f"{embed} s, {rate}",
            ),
            (
                "rest of the analysis",
                f"{est['detection_s']} s (detection_seconds)",
                f"{act['wall_s'] - (embed or 0):.1f} s (launch to done minus embedding)",
            ),
        ]
        rows += training_components(t)
        lines += [
            f"| {name} | {'analysis' if i < 2 else 'training'} | {c} | {e} | {m} |"
            for i, (c, e, m) in enumerate(rows)
        ]
    return lines


def training_components(t: dict) -> list[tuple[str, str, str]]:
    """plan_seconds's parts (app_pages/planning.py) against the run's own timings."""
    from app_pages.planning import RUN_OVERHEAD_SECONDS, default_rates

    config, summary = TrainingConfig(), t["estimate"]["summary"]
    rates = t["estimate"]["measured_rates"]
    default_train, default_predict = default_rates(config)
    train_rate = rates["train"] or default_train
    predict_rate = rates["predict"] or default_predict
    said = {k: "measured" if rates[k] else "default" for k in rates}
    samples = summary["train_rows"][0] * config.epochs
    validated = summary["validation_rows"] * max(1.0, config.epochs)
    scored = summary["eval_rows"] + summary["verified_rows"] + 16
    actual, data = t["actual"], t["actual"].get("run_data", {})
    trained = (data.get("train_seconds") or 0) - (data.get("validation_seconds") or 0)
    first_step = actual.get("first_step_s") or 0
    after = actual["wall_s"] - first_step - (data.get("train_seconds") or 0)
    return [
        (
            "training steps",
            f"{samples / train_rate:.1f} s at {train_rate:.1f} rows/s ({said['train']})",
            f"{trained:.1f} s, {samples / trained:.1f} rows/s ({data.get('precision')})"
            if trained
            else "?",
        ),
        (
            "validation passes",
            f"{validated / predict_rate:.1f} s ({validated:.0f} texts at {predict_rate:.0f}/s, "
            f"{said['predict']})",
            f"{data.get('validation_seconds')} s",
        ),
        (
            "launch to first step / after training (scoring, saving)",
            f"{RUN_OVERHEAD_SECONDS:.0f} s overhead + {scored / predict_rate:.1f} s scoring "
            f"({scored} texts)",
            f"{first_step} s / about {after:.1f} s",
        ),
    ]


def load_note(results: dict, max_load: float) -> str:
    loads = [
        v
        for res in results.values()
        for job in ("analysis", "training")
        for v in (res[job]["actual"]["load_before"], res[job]["actual"]["load_after"])
    ]
    quiet = max(loads) <= max_load
    return (
        f"1-minute load average {min(loads)} to {max(loads)} around the jobs (the job itself "
        f"adds about 2 on 2 cores): {'quiet' if quiet else 'LOADED'} by this script's "
        f"threshold of {max_load}."
    )


def render(report: dict) -> str:
    """The .md for a report (also from a saved .json: ``--render PATH``)."""
    results, machine = report["results"], report["machine"]
    md = [
        f"# bench/estimates.py — {report['started']}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores. {report['rows']:,} demo rows "
        f"({report['classes']}), {report['method']} with {report['folds']} folds, "
        "default TrainingConfig.",
        "",
        *table(results),
        "",
        load_note(results, report["max_load"]),
        "",
        *components(results),
        "",
    ]
    for name, res in results.items():
        if "calibration" in res:
            c = res["calibration"]
            md.append(
                f"Calibration ({name}): {c['seconds']} s, load {c['load_before']} → "
                f"{c['load_after']}; "
                + "; ".join(
                    line.removeprefix("calibrate: ")
                    for line in c["output"]
                    if line.startswith("calibrate: ") and "/s" in line and "kept in" not in line
                )
            )
    if report.get("notes"):  # findings, added to the .json by hand after a run
        md += ["", "## Notes", "", *(f"- {note}" for note in report["notes"])]
    return "\n".join(md) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--conditions", default="defaults,calibrated")
    parser.add_argument("--max-load", type=float, default=2.5)
    parser.add_argument("--wait", type=float, default=180.0, help="seconds to wait for quiet")
    parser.add_argument("--tag", default=f"cpu{os.cpu_count()}-{datetime.now(UTC):%Y%m%d}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render", type=Path, help="only rewrite the .md of this saved .json")
    args = parser.parse_args()
    if args.render:
        report = json.loads(args.render.read_text())
        report.setdefault("command", "python bench/estimates.py")
        args.render.with_suffix(".md").write_text(render(report))
        return 0

    started = datetime.now(UTC).isoformat(timespec="seconds")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="second-look-estimates-") as folder:
        tmp = Path(folder)
        csv = tmp / "demo-subset.csv"
        classes = subset_csv(args.rows, csv, args.seed)
        for name in args.conditions.split(","):
            results[name] = condition(name, csv, tmp, args)
    report = {
        "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
        "machine": describe(),
        "rows": args.rows,
        "classes": classes,
        "folds": args.folds,
        "method": DEFAULT_METHOD,
        "max_load": args.max_load,
        "results": results,
    }
    out = ROOT / "bench" / "results" / f"estimates-{args.tag}"
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
