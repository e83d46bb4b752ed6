"""The schema 7 upgrade at scale: how long opening a version-6 workspace takes while it moves
its embedding cache and neighbour graph from table rows into checksummed files.

    python bench/upgrade.py --rows 1000000            # SQLite
    python bench/upgrade.py --rows 1000000 --backend postgresql   # needs SECOND_LOOK_TEST_DATABASE_URL

Builds a workspace of ``--rows`` synthetic texts (bench/review.py), stores one random 384-float
vector per text and a 30-neighbour graph, closes it and turns it back into what version 6 left
(tests/legacy.py: the vectors and graph as table rows, no files). Then times the first open,
which upgrades in one transaction holding the workspace's write lock (and, on SQLite, VACUUMs
the freed pages), checks a sample of vectors and the graph came through bit for bit, and
records the database file's size before and after. Writes
``bench/results/upgrade-<machine>-<date>-<backend>-<rows>.json`` and prints a markdown row.
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
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import review as review_bench  # noqa: E402
from machine import describe  # noqa: E402

from data.prepare import prepare_dataset  # noqa: E402
from data.store import Workspace  # noqa: E402
from data.store.base import DB_NAME  # noqa: E402
from tests.legacy import downgrade_to_6  # noqa: E402

DIM, K, MODEL_KEY = 384, 30, "bench-encoder"
CHUNK = 16_384


def build(folder: Path, rows: int, seed: int) -> dict[str, np.ndarray]:
    """A workspace of ``rows`` texts with a vector per text and a graph; a sample of both."""
    raw = review_bench.synthetic_frame(rows, seed=seed)
    prepared = prepare_dataset(raw, text_column="text", label_column="sentiment")
    ws = Workspace.create(folder, prepared, name="bench-upgrade")
    rng = np.random.default_rng(seed)
    hashes = [f"{i:016x}" for i in range(rows)]
    sample = {}
    for start in range(0, rows, CHUNK):
        block = rng.standard_normal((min(CHUNK, rows - start), DIM), dtype=np.float32)
        ws.put_embeddings(
            MODEL_KEY, dict(zip(hashes[start : start + len(block)], block, strict=True))
        )
        sample[hashes[start]] = block[0]
    ids = (np.arange(rows)[:, None] + np.arange(1, K + 1)) % rows
    distances = rng.random((rows, K), dtype=np.float32)
    ws.put_knn(MODEL_KEY, ids, distances)
    ws.close()
    return {"vectors": sample, "ids": ids[::997].copy(), "distances": distances[::997].copy()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", help="folder for the workspace (default: the system's temp)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if args.backend == "postgresql":
        url = os.environ.get("SECOND_LOOK_TEST_DATABASE_URL")
        if not url:
            raise SystemExit("--backend postgresql needs SECOND_LOOK_TEST_DATABASE_URL.")
        os.environ["SECOND_LOOK_DATABASE_URL"] = url
    else:
        os.environ.pop("SECOND_LOOK_DATABASE_URL", None)
    out: dict = {
        "benchmark": "upgrade",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "backend": args.backend,
        "rows": args.rows,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench-upgrade-") as tmp:
        folder = Path(tmp) / "ws"
        t0 = time.perf_counter()
        want = build(folder, args.rows, args.seed)
        out["build_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"built {args.rows:,} rows with vectors and a graph in {out['build_seconds']} s")
        t0 = time.perf_counter()
        downgrade_to_6(folder)
        out["downgrade_seconds"] = round(time.perf_counter() - t0, 1)
        db = folder / DB_NAME
        if db.exists():
            out["database_bytes_version_6"] = db.stat().st_size
        print(f"turned into version 6 in {out['downgrade_seconds']} s", flush=True)
        out["load_average_before_open"] = [round(x, 2) for x in os.getloadavg()]
        t0 = time.perf_counter()
        ws = Workspace(folder)
        out["open_and_upgrade_seconds"] = round(time.perf_counter() - t0, 1)
        try:
            got = ws.get_embeddings(MODEL_KEY, list(want["vectors"]))
            same_vectors = all(
                np.array_equal(got[h], v) for h, v in want["vectors"].items()
            ) and len(got) == len(want["vectors"])
            graph = ws.get_knn(MODEL_KEY)
            same_graph = graph is not None and bool(
                np.array_equal(graph[0][::997], want["ids"])
                and np.array_equal(graph[1][::997], want["distances"])
            )
            out["same_vectors_and_graph"] = bool(same_vectors and same_graph)
        finally:
            ws.close()
        if db.exists():
            out["database_bytes_version_7"] = db.stat().st_size
        out["artifact_bytes"] = sum(
            p.stat().st_size for p in (folder / "artifacts").rglob("*") if p.is_file()
        )
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results = Path(args.out)
    results.mkdir(parents=True, exist_ok=True)
    name = f"upgrade-cpu{out['machine']['cores']}-{datetime.now(UTC):%Y%m%d}-{args.backend}"
    path = results / f"{name}-{args.rows}.json"
    path.write_text(json.dumps(out, indent=2))
    mb = 1 / 2**20
    print(
        f"| {args.backend} | {args.rows:,} | {out['open_and_upgrade_seconds']} s | "
        f"{out.get('database_bytes_version_6', 0) * mb:,.0f} MB -> "
        f"{out.get('database_bytes_version_7', 0) * mb:,.0f} MB | "
        f"{out['artifact_bytes'] * mb:,.0f} MB | {out['same_vectors_and_graph']} | "
        f"{out['load_average_before_open']} |"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
