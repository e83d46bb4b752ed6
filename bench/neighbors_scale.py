"""Near duplicates, outliers and class noise at scale, on synthetic embeddings.

    python bench/neighbors_scale.py                # 100k rows x 384 (about 2-3 minutes on 2 cores)
    python bench/neighbors_scale.py --rows 20000   # a quicker look

Random unit vectors stand in for MiniLM embeddings, with planted exact copies and near copies;
labels and probabilities are random. Times the one-off exact kNN graph, saving and loading it,
and what runs again after every relabel (find_data_issues on the cached graph,
class noise). Prints the figures and writes ``bench/results/neighbors_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from machine import describe  # noqa: E402

from curation.datalab import class_noise, find_data_issues  # noqa: E402
from curation.neighbors import knn_graph, load_graph, save_graph  # noqa: E402

NAMES = ["negative", "neutral", "positive"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synthetic(n: int, d: int, *, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Unit vectors with 1% of rows overwritten by exact copies and 1% by near copies."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rows = rng.permutation(n)
    n_plant = max(1, n // 100)
    exact_src, exact_dst = rows[:n_plant], rows[n_plant : 2 * n_plant]
    near_src, near_dst = rows[2 * n_plant : 3 * n_plant], rows[3 * n_plant : 4 * n_plant]
    x[exact_dst] = x[exact_src]
    noise = rng.standard_normal((n_plant, d), dtype=np.float32)
    noise *= 0.2 / np.linalg.norm(noise, axis=1, keepdims=True)  # cosine distance ~0.02
    near = x[near_src] + noise
    x[near_dst] = near / np.linalg.norm(near, axis=1, keepdims=True)
    pairs = {
        "exact": np.stack([exact_src, exact_dst], 1),
        "near": np.stack([near_src, near_dst], 1),
    }
    return x, pairs


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - t0, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    # Imports first, so the timings below are the work itself (the pipeline imports once).
    t0 = time.perf_counter()
    import cleanlab.datalab  # noqa: F401
    import cleanlab.internal.neighbor.knn_graph  # noqa: F401

    import_seconds = round(time.perf_counter() - t0, 3)
    x, pairs = synthetic(args.rows, args.dim)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, len(NAMES), args.rows)
    probs = rng.dirichlet(np.ones(len(NAMES)), args.rows)
    figures: dict = {"rows": args.rows, "dim": args.dim, "k": args.k}
    figures["import_cleanlab_seconds"] = import_seconds
    figures["rss_mb_after_data"] = round(peak_rss_mb(), 1)
    figures["load_average_before"] = round(os.getloadavg()[0], 2)

    # CPU seconds as well: on a shared machine the wall time includes waiting for the cores;
    # with the cores to itself the wall time is about cpu / threads.
    cpu0 = cpu_seconds()
    graph, figures["knn_graph_seconds"] = timed(knn_graph, x, k=args.k, threads=args.threads)
    figures["knn_graph_cpu_seconds"] = round(cpu_seconds() - cpu0, 1)
    figures["rss_mb_after_graph"] = round(peak_rss_mb(), 1)
    with tempfile.TemporaryDirectory() as tmp:
        path, figures["save_graph_seconds"] = timed(save_graph, graph, Path(tmp) / "knn.npz")
        figures["graph_file_mb"] = round(path.stat().st_size / 2**20, 1)
        graph, figures["load_graph_seconds"] = timed(load_graph, path, n_rows=args.rows)

    call = dict(knn_graph=graph, label_names=NAMES)
    _, figures["find_data_issues_cold_seconds"] = timed(find_data_issues, None, labels, **call)
    (issues, summary), figures["find_data_issues_seconds"] = timed(
        find_data_issues, None, labels, **call
    )
    labels[pairs["exact"][0, 1]] = (labels[pairs["exact"][0, 0]] + 1) % len(NAMES)  # a relabel
    _, figures["class_noise_cold_seconds"] = timed(class_noise, labels, probs, label_names=NAMES)
    noise, figures["class_noise_seconds"] = timed(class_noise, labels, probs, label_names=NAMES)
    figures["rescore_after_relabel_seconds"] = round(
        figures["find_data_issues_seconds"] + figures["class_noise_seconds"],
        3,
    )
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    figures["load_average_after"] = round(os.getloadavg()[0], 2)

    group = issues["near_duplicate_group"].to_numpy()
    planted = np.concatenate([pairs["exact"], pairs["near"]])
    found = (group[planted[:, 0]] >= 0) & (group[planted[:, 0]] == group[planted[:, 1]])
    figures["planted_pairs"] = len(planted)
    figures["planted_pairs_grouped"] = int(found.sum())
    figures["summary"] = summary
    figures["duplicate_group_rows"] = int((issues["near_duplicate_group"] >= 0).sum())
    figures["num_label_issues"] = noise["num_label_issues"]

    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "figures": figures,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "neighbors_scale.json").write_text(json.dumps(record, indent=2) + "\n")
    for key, value in figures.items():
        if key != "summary":
            print(f"{key:34s} {value}")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
