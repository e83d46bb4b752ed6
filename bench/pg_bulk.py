"""The store's bulk writes, statement by statement: ``save_analysis`` and ``rebuild_state``.

    python bench/pg_bulk.py --rows 200000                        # SQLite
    SECOND_LOOK_TEST_DATABASE_URL='postgresql:///postgres?host=/tmp/pgB&user=postgres' \\
        python bench/pg_bulk.py --rows 200000 --backend postgresql

Builds a seeded synthetic workspace (bench/review.py's texts; on PostgreSQL in a fresh database
``bench_bulk_<random>`` of the server, dropped at the end), then times, with every statement
the store runs inside each call listed with its seconds (a proxy around the store's
connection; the SQL is cut to its first words):

1. ``save_analysis`` of a fake analysis on the fresh import (every row's analysis columns
   change);
2. a mix of reviewers' events: ``--relabels`` relabels and ``--excludes`` excludes in batches of
   50, ``--repairs`` text repairs, and ``--undos`` undos of the last batches;
3. ``save_analysis`` of the same values again (a re-analysis that changed nothing), then of a
   new fake analysis (another seed: most rows change);
4. ``rebuild_state`` (the derived state must come out equal to the live one).

Writes ``bench/results/pg_bulk-<machine>-<date>-<backend>-<rows>[-tag].json`` with the load
average (the machine may be shared) before and after each call.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import review as review_bench  # noqa: E402
from machine import describe  # noqa: E402
from team import (  # noqa: E402
    DATABASE_URL_VARIABLE,
    STATE_SQL,
    _restore_env,
    fresh_database,
    loadavg,
    save_fake_analysis,
    server_url_of,
)

from data.prepare import prepare_dataset  # noqa: E402
from data.store import Workspace  # noqa: E402

# The state compared before and after the rebuild: STATE_SQL plus what an analysis sets.
FULL_STATE_SQL = STATE_SQL.replace(
    " FROM samples",
    ", predicted_label, predicted_prob, label_quality, is_label_issue, is_outlier,"
    " outlier_score, dup_group, dup_conflict FROM samples",
)


class TimedConnection:
    """A store connection that records each statement's seconds (``execute``, ``executemany``;
    a COPY through ``raw`` is timed by the caller's step around it)."""

    def __init__(self, conn: Any, steps: list[tuple[str, float]]):
        self._conn = conn
        self._steps = steps

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _timed(self, method: str, sql: str, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = getattr(self._conn, method)(sql, *args)
        self._steps.append((" ".join(sql.split()[:8]), time.perf_counter() - t0))
        return out

    def execute(self, sql: str, *args: Any) -> Any:
        return self._timed("execute", sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._timed("executemany", sql, *args)


def profiled(ws: Workspace, fn, *args, **kwargs) -> dict:
    """Run ``fn`` with the store's connection timed: total seconds, and the seconds per
    statement (the same statement summed, with its count), slowest first."""
    steps: list[tuple[str, float]] = []
    raw = ws._conn
    ws._conn = TimedConnection(raw, steps)
    load = loadavg()[0]
    t0 = time.perf_counter()
    try:
        fn(*args, **kwargs)
    finally:
        total = time.perf_counter() - t0
        ws._conn = raw
    summed: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for sql, s in steps:
        summed[sql][0] += s
        summed[sql][1] += 1
    listed = sorted(summed.items(), key=lambda kv: -kv[1][0])
    return {
        "seconds": round(total, 2),
        "statements_seconds": round(sum(s for _, s in steps), 2),
        # the rest: Python, and a COPY (it goes through the driver's own cursor)
        "other_seconds": round(total - sum(s for _, s in steps), 2),
        "load_1min_before": load,
        "load_1min_after": loadavg()[0],
        "steps": [{"sql": k, "seconds": round(v[0], 3), "count": v[1]} for k, v in listed],
    }


def reviewers_events(ws: Workspace, args: argparse.Namespace, rng: np.random.Generator) -> int:
    """Relabels, excludes, repairs and undos on random rows; the number of events added."""
    n = ws.counts()["n"]
    labels = ws.label_names
    before = int(ws._read("SELECT COUNT(*) FROM label_events")[0][0])
    for start in range(0, args.relabels, 50):
        ids = rng.integers(0, n, size=min(50, args.relabels - start))
        ws.apply_actions(
            [(int(i), "relabel", labels[int(rng.integers(len(labels)))]) for i in ids],
            reviewer=f"r{start // 50 % 4 + 1}",
        )
    for start in range(0, args.excludes, 50):
        ids = rng.integers(0, n, size=min(50, args.excludes - start))
        ws.apply_actions([(int(i), "exclude", None) for i in ids], reviewer="r5")
    ids = rng.choice(n, size=args.repairs, replace=False)
    texts = ws.samples(ids=ids.tolist())["text"]
    fixed = [(int(i), t + " (fixed)") for i, t in zip(ids, texts, strict=True)]
    half = len(fixed) // 2  # two batches: the undos below revert one of them
    ws.repair_texts(fixed[:half], reviewer="r6")
    ws.repair_texts(fixed[half:], reviewer="r6")
    for k in range(args.undos):
        ws.undo(reviewer=f"r{k % 6 + 1}")
    return int(ws._read("SELECT COUNT(*) FROM label_events")[0][0]) - before


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench-bulk-") as tmp:
        folder = Path(tmp) / "ws"
        t0 = time.perf_counter()
        raw = review_bench.synthetic_frame(args.rows, seed=args.seed)
        prepared = prepare_dataset(raw, text_column="text", label_column="sentiment")
        del raw
        ws = Workspace.create(folder, prepared, name="bench-bulk")
        del prepared
        out["import_seconds"] = round(time.perf_counter() - t0, 1)
        ws.backup = lambda **kw: None  # the file copy is not what this measures
        frame = ws.samples()
        first = review_bench.fake_analysis(frame["label"], frame["id"], seed=args.seed)
        print(f"imported {args.rows:,} rows in {out['import_seconds']} s", flush=True)
        out["save_analysis_first"] = profiled(ws, save_fake_analysis, ws, first)
        print(f"save_analysis (first): {out['save_analysis_first']['seconds']} s", flush=True)
        t0 = time.perf_counter()
        out["events"] = reviewers_events(ws, args, rng)
        out["events_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"{out['events']:,} events in {out['events_seconds']} s", flush=True)
        out["save_analysis_same"] = profiled(ws, save_fake_analysis, ws, first)
        print(f"save_analysis (same values): {out['save_analysis_same']['seconds']} s", flush=True)
        frame = ws.samples()
        second = review_bench.fake_analysis(frame["label"], frame["id"], seed=args.seed + 7)
        del frame
        out["save_analysis_new"] = profiled(ws, save_fake_analysis, ws, second)
        print(f"save_analysis (new values): {out['save_analysis_new']['seconds']} s", flush=True)
        before = ws._frame(FULL_STATE_SQL)
        out["rebuild_state"] = profiled(ws, ws.rebuild_state)
        out["state_equals_rebuilt"] = bool(before.equals(ws._frame(FULL_STATE_SQL)))
        print(
            f"rebuild_state: {out['rebuild_state']['seconds']} s, state equal: "
            f"{out['state_equals_rebuilt']}",
            flush=True,
        )
        ws.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--relabels", type=int, default=5000)
    parser.add_argument("--excludes", type=int, default=1000)
    parser.add_argument("--repairs", type=int, default=500)
    parser.add_argument("--undos", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    results: dict[str, Any] = {
        "backend": args.backend,
        "rows": args.rows,
        "machine": describe(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "load_start": loadavg(),
    }
    with contextlib.ExitStack() as stack:
        saved = os.environ.pop(DATABASE_URL_VARIABLE, None)
        stack.callback(_restore_env, DATABASE_URL_VARIABLE, saved)
        if args.backend == "postgresql":
            server = server_url_of(args)
            if not server:
                parser.error("--backend postgresql needs --database-url or the test URL")
            url, settings = stack.enter_context(fresh_database(server, "bench_bulk"))
            results["postgresql"] = settings
            os.environ[DATABASE_URL_VARIABLE] = url
        results.update(run(args))
    results["load_end"] = loadavg()
    name = f"pg_bulk-cpu{results['machine']['cores']}-{datetime.now(UTC):%Y%m%d}"
    name += f"-{args.backend}-{args.rows}" + (f"-{args.tag}" if args.tag else "")
    path = Path(args.out) / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
