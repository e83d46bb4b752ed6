"""The whole loop on the demo, timed: import, embedding, re-analysis after a relabel, fine-tuning.

    python bench/loop.py                 # full demo (about 6-8 minutes on 2 CPU cores)
    python bench/loop.py --rows 5000     # a quicker look

Prints the figures and writes ``bench/results/loop-<machine>-<date>.json`` and ``.md``. Targets:
first analysis of the demo under 5 minutes; re-analysis after one relabel under 2 s at 10k rows.
"""

from __future__ import annotations

import argparse
import json
import os
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
import torch  # noqa: E402
from machine import describe  # noqa: E402

from curation.pipeline import analyze_workspace  # noqa: E402
from data import demo  # noqa: E402
from data.readers import prepare_dataset, read_table  # noqa: E402
from data.store import Workspace  # noqa: E402
from runtime.encoder import EncoderSettings, text_hash  # noqa: E402
from training.config import TrainingConfig  # noqa: E402
from training.finetune import fine_tune  # noqa: E402


def machine() -> dict:
    return {
        **describe(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def subset(prepared, n: int):
    """A seeded random ``n`` rows of a prepared dataset (the demo file is sorted by label)."""
    import copy

    small = copy.copy(prepared)
    small.frame = prepared.frame.sample(n=n, random_state=0).reset_index(drop=True)
    return small


def reanalysis_seconds(ws: Workspace, settings: EncoderSettings, repeats: int = 3) -> float:
    """Median wall time of relabel-one-row-then-re-analyse with every embedding cached."""
    times = []
    names = ws.label_names
    for i in range(repeats):
        row = ws.sample(i)
        new = names[(names.index(row["label"]) + 1) % len(names)]
        ws.relabel(i, new, reviewer="bench")
        _, seconds = timed(analyze_workspace, ws, settings=settings)
        times.append(seconds)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="demo rows to use (default all)")
    parser.add_argument("--train-rows", type=int, default=512)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    results: dict = {"machine": machine(), "date": datetime.now(UTC).isoformat(timespec="seconds")}
    settings = EncoderSettings()
    results["encoder"] = settings.describe()
    print(f"machine: {results['machine']}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        # 1. Import: read + validate + store, as the Data page does.
        (raw, t_read) = timed(read_table, demo.demo_csv_path())
        prepared, t_prep = timed(
            prepare_dataset,
            raw,
            text_column=demo.DEMO_TEXT_COLUMN,
            label_column=demo.DEMO_LABEL_COLUMN,
        )
        if args.rows:
            prepared = subset(prepared, args.rows)
        ws, t_store = timed(Workspace.create, Path(tmp) / "demo", prepared)
        n = ws.counts()["n"]
        t_import = t_read + t_prep + t_store
        results["import"] = {
            "rows": n,
            "seconds": round(t_import, 2),
            "rows_per_second": round(n / t_import),
        }
        print(f"import: {n:,} rows in {t_import:.2f} s ({n / t_import:,.0f} rows/s)", flush=True)

        # 2. First analysis: embeds every row (nothing cached yet).
        aid, t_first = timed(analyze_workspace, ws, settings=settings)
        timings = ws.latest_analysis().summary.timings
        results["first_analysis"] = {
            "rows": n,
            "seconds": round(t_first, 1),
            **timings,
            "embed_sentences_per_second": round(n / timings["embed_seconds"], 1),
            "flagged": ws.latest_analysis().summary.n_issues,
        }
        print(
            f"first analysis: {t_first:.1f} s; embedding "
            f"{n / timings['embed_seconds']:.0f} sentences/s",
            flush=True,
        )

        # 3. Re-analysis after one relabel, everything cached, at 10k rows and at full size.
        sizes = sorted({min(10_000, n), n})
        results["reanalysis_after_relabel"] = {}
        for size in sizes:
            if size == n:
                target = ws
            else:
                target = Workspace.create(Path(tmp) / f"ws{size}", subset(prepared, size))
                texts = target.samples()["text"].tolist()
                target.put_embeddings(
                    settings.key(), ws.get_embeddings(settings.key(), [text_hash(t) for t in texts])
                )
            seconds = reanalysis_seconds(target, settings)
            results["reanalysis_after_relabel"][str(size)] = round(seconds, 2)
            print(f"re-analysis after a relabel at {size:,} rows: {seconds:.2f} s", flush=True)

        # 4. Fine-tuning throughput with the default config (one epoch on a sample).
        rows = ws.samples().sample(n=min(args.train_rows, n), random_state=0)
        names = ws.label_names
        y = np.array([names.index(v) for v in rows["label"]])
        config = TrainingConfig(epochs=1.0, max_train_samples=None, max_eval_samples=None)
        result = fine_tune(
            rows["text"].tolist(), y, label_names=names, config=config, output_dir=Path(tmp) / "ft"
        )
        results["fine_tuning"] = {
            "rows": len(rows),
            "device": result.device,
            "precision": result.precision,
            "seconds": round(result.train_seconds, 1),
            "samples_per_second": round(result.train_samples_per_second, 1),
            "max_length": config.max_length,
            "batch_size": config.batch_size,
        }
        print(
            f"fine-tuning: {result.train_samples_per_second:.1f} samples/s on {result.device} "
            f"({result.precision})",
            flush=True,
        )
        ws.close()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "gpu" if results["machine"]["gpu"] else f"cpu{results['machine']['cores']}"
    stem = out / f"loop-{tag}-{datetime.now(UTC):%Y%m%d}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
    stem.with_suffix(".md").write_text(to_markdown(results))
    print(f"wrote {stem}.json and .md")
    return 0


def to_markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# bench/loop.py — {r['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}, torch {m['torch']}.",
        f"Encoder: {r['encoder']}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| rows imported per second | {r['import']['rows_per_second']:,} "
        f"({r['import']['rows']:,} rows in {r['import']['seconds']} s) |",
        f"| first analysis of {r['first_analysis']['rows']:,} rows | "
        f"{r['first_analysis']['seconds']} s |",
        f"| embedding throughput | {r['first_analysis']['embed_sentences_per_second']} "
        "sentences/s |",
    ]
    for size, seconds in r["reanalysis_after_relabel"].items():
        lines.append(
            f"| re-analysis after one relabel, {int(size):,} rows (cached) | {seconds} s |"
        )
    ft = r["fine_tuning"]
    lines.append(
        f"| fine-tuning ({ft['device']}, {ft['precision']}, batch {ft['batch_size']}, "
        f"max length {ft['max_length']}) | {ft['samples_per_second']} samples/s |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
