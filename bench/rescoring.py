"""Re-scoring at 100k rows: after the first embedding pass, how long does a re-analysis after
one relabel take, and how much memory does it use?

    python bench/rescoring.py                    # 100,000 rows, the default method
    python bench/rescoring.py --rows 20000 --method embedding

The rows are synthetic but shaped like real data: each embedding is a random mix of two real
demo embeddings (all-MiniLM-L6-v2, computed once and cached under ``--cache``), so the
neighbour structure is realistic; texts are unique variants of the parents' texts; labels
follow the dominant parent with 10% flipped. The embeddings go straight into the workspace's
cache, so the figures are the pipeline *after* the first embedding pass, which is what the
target is about (< 15 s and < 4 GB on a 2-core machine). Each analysis runs in a fresh child
process, as the app's background job does, so its peak memory is its own.

Writes ``bench/results/rescoring-<machine>-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
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

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from curation.pipeline import analyze_workspace
from data.store import Workspace
ws = Workspace({folder!r})
t1 = time.perf_counter()
aid = analyze_workspace(ws, method={method!r})
t2 = time.perf_counter()
summary = ws.latest_analysis().summary
print(json.dumps({{"analysis_id": aid, "import_seconds": t1 - t0, "analyze_seconds": t2 - t1,
    "timings": summary.timings, "n_issues": summary.n_issues,
    "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""


def demo_embeddings(cache_dir: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """Embeddings, texts and labels of the demo (cached in ``cache_dir`` after the first run)."""
    from data import demo
    from data.readers import read_table
    from runtime.encoder import embed_texts

    frame = read_table(demo.demo_csv_path()).frame
    texts = frame[demo.DEMO_TEXT_COLUMN].astype(str).tolist()
    labels = frame[demo.DEMO_LABEL_COLUMN].astype(str).tolist()
    path = cache_dir / "demo_embeddings.npy"
    if path.exists():
        return np.load(path), texts, labels
    cache_dir.mkdir(parents=True, exist_ok=True)
    print("embedding the demo once (a few minutes on CPU)…", flush=True)
    vectors = embed_texts(texts)
    np.save(path, vectors)
    return vectors, texts, labels


def synthetic(rows: int, seed: int, cache_dir: Path):
    base, texts, labels = demo_embeddings(cache_dir)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(base), rows)
    b = rng.integers(0, len(base), rows)
    w = rng.uniform(0.6, 0.9, rows)[:, None].astype(np.float32)
    vectors = w * base[a] + (1 - w) * base[b]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = sorted(set(labels))
    y = np.array([labels[i] for i in a], dtype=object)
    flip = rng.random(rows) < 0.1
    y[flip] = [names[(names.index(v) + 1) % len(names)] for v in y[flip]]
    text = [f"{texts[i]} [{j}]" for j, i in enumerate(a)]
    return vectors.astype(np.float32), text, y.tolist(), names


def make_workspace(folder: Path, rows: int, seed: int, cache_dir: Path):
    from data.store import Workspace
    from runtime.encoder import EncoderSettings, text_hash
    from tests.conftest import make_prepared

    vectors, texts, labels, names = synthetic(rows, seed, cache_dir)
    prepared = make_prepared(texts, labels, label_names=names)
    t0 = time.perf_counter()
    ws = Workspace.create(folder, prepared, name="rescoring")
    key = EncoderSettings().key()
    hashes = [text_hash(t) for t in texts]
    for start in range(0, rows, 20_000):
        ws.put_embeddings(
            key,
            dict(zip(hashes[start : start + 20_000], vectors[start : start + 20_000], strict=True)),
        )
    return ws, time.perf_counter() - t0


def run_child(folder: Path, method: str) -> dict:
    code = CHILD.format(root=str(ROOT), folder=str(folder), method=method)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"analysis failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--method", default=None, help="default: curation.methods.DEFAULT_METHOD")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "second-look-bench"))
    args = parser.parse_args()
    from curation.methods import DEFAULT_METHOD

    method = args.method or DEFAULT_METHOD
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ws"
        ws, create_seconds = make_workspace(folder, args.rows, args.seed, Path(args.cache))
        print(f"workspace with {args.rows:,} rows and cached embeddings: {create_seconds:.1f} s")
        first = run_child(folder, method)
        print(
            f"first analysis (builds the neighbour graph): {first['analyze_seconds']:.1f} s, "
            f"peak {first['peak_rss_gib']:.2f} GiB; {first['timings']}"
        )
        ws.relabel(
            0,
            ws.label_names[0] if ws.sample(0)["label"] != ws.label_names[0] else ws.label_names[1],
            reviewer="bench",
        )
        again = run_child(folder, method)
        print(
            f"re-scoring after one relabel: {again['analyze_seconds']:.1f} s "
            f"(process {again['process_seconds']:.1f} s incl. imports), "
            f"peak {again['peak_rss_gib']:.2f} GiB; {again['timings']}"
        )
        ws.close()
    record = {
        "benchmark": "rescoring",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "rows": args.rows,
        "method": method,
        "workspace_create_seconds": round(create_seconds, 2),
        "first_analysis": first,
        "rescoring": again,
        "targets": {"rescoring_seconds": 15, "peak_rss_gib": 4},
    }
    out_dir = ROOT / "bench" / "results"
    stem = f"rescoring-cpu{os.cpu_count()}-{datetime.now(UTC):%Y%m%d}"
    (out_dir / f"{stem}.json").write_text(json.dumps(record, indent=2))
    md = [
        f"# Re-scoring at {args.rows:,} rows ({method})",
        "",
        f"Machine: {record['machine']['cpu']}, {record['machine']['cores']} cores.",
        "",
        "| step | seconds | peak memory |",
        "|---|---|---|",
        f"| first analysis (neighbour graph built) | {first['analyze_seconds']:.1f} | "
        f"{first['peak_rss_gib']:.2f} GiB |",
        f"| re-scoring after one relabel | **{again['analyze_seconds']:.1f}** | "
        f"**{again['peak_rss_gib']:.2f} GiB** |",
        "",
        "Re-scoring stages (s): "
        + ", ".join(f"{k} {v}" for k, v in (again["timings"] or {}).items()),
        "",
        "Targets: < 15 s and < 4 GB.",
    ]
    (out_dir / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {out_dir / stem}.json/.md")


if __name__ == "__main__":
    main()
