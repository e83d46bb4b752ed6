"""Team mode, measured on what exists today (issue 15): commits, reads, contention, sign-in.

    python bench/team.py                               # SQLite, 1,000,000 rows, 60 s contention
    python bench/team.py --rows 100000 --seconds 10    # a quicker look
    SECOND_LOOK_TEST_DATABASE_URL='postgresql:///postgres?host=/tmp/devpg&user=postgres' \\
        python bench/team.py --backend postgresql      # the workspace in PostgreSQL

``--backend`` says where the workspace lives: an SQLite file (``store.sqlite``, the default), or
a schema of a PostgreSQL database (``data/store/dialect.py``). For ``postgresql`` the script
takes the server from ``--database-url`` or ``SECOND_LOOK_TEST_DATABASE_URL``, creates a fresh
database on it (``bench_team_<random>``), points ``SECOND_LOOK_DATABASE_URL`` at it for the
whole run (the replica processes inherit it), so ``Workspace.create`` imports by COPY into a
schema of it, and drops it at the end. The accounts directory (``data/store/accounts.py``) is
measured on SQLite, and on PostgreSQL when a server URL is given (a database of its own).
The script builds a seeded synthetic workspace (the texts and fake analysis of
``bench/review.py``), timing the import (rows by ``executemany`` or COPY, then the search
index), then measures:

1. **Relabel commit latency**: ``--relabels`` single ``ws.relabel`` calls on random rows, each
   its own committed transaction (SQLite ``synchronous=FULL``; PostgreSQL as the server is
   set, ``synchronous_commit`` recorded), one process, nobody else writing.
   **Review page read**: what the Review page's ``fetch`` asks with the default filters
   (flagged, quality order): the card (``limit=1``, total capped at 10,000) and the table
   below it (``limit=20``, no count), each and together.
2. **Reviewers x replicas**: ``--replicas`` OS processes (app replicas), each with its own
   ``Workspace`` on the same folder and ``--threads`` threads (one per reviewer, r1..r8),
   for ``--seconds``: each thread reads a row (as the card does) from the first ``--queue``
   rows of the default queue (overlapping rows on purpose), then keeps its label or sets a
   random one. A write counts as acknowledged when ``relabel`` returned its event id. Then, in
   this process: the log's events per reviewer against the acknowledged counts and ids, and
   the materialised state before and after ``ws.rebuild_state()`` (it must not change).
3. **Sign-in**: ``Directory.sign_in`` (Argon2id verify + session insert) and
   ``Directory.session_account`` on an SQLite directory, and on PostgreSQL when a server URL
   is given (a database of its own, dropped afterwards).

Targets (issue 15): relabel p95 < 20 ms; review page read p95 < 200 ms; every acknowledged
write in the log; derived state equal to the state rebuilt from the log.

Prints the figures and writes ``bench/results/team-<machine>-<date>-<backend>.json`` and
``.md``, with the load average (the machine may be shared) before and after each part.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import review as review_bench  # noqa: E402  (bench/review.py: the synthetic data)
from machine import describe  # noqa: E402

from data.prepare import prepare_dataset  # noqa: E402
from data.records import AnalysisSummary  # noqa: E402
from data.store import Workspace  # noqa: E402

RELABEL_TARGET_MS = 20.0
PAGE_TARGET_MS = 200.0
COUNT_CAP = 10_000  # app_pages/review.py COUNT_CAP
PAGE_SIZE = 20  # app_pages/review.py PAGE_SIZE
WINDOW_S = 10  # contention latency over time, in windows of this many seconds
# The Review page's default filter bar once an analysis exists: Flags = "flagged" (the first
# option), every other box "any", order "quality" (app_pages/review.py queue_filters).
DEFAULT_QUEUE = {"flagged": True, "order": "quality"}
TEST_URL_VARIABLE = "SECOND_LOOK_TEST_DATABASE_URL"
DATABASE_URL_VARIABLE = "SECOND_LOOK_DATABASE_URL"  # data/home.py: where workspaces are created
# The server settings a PostgreSQL result records (what a commit waits for, the memory it has).
PG_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "shared_buffers",
    "work_mem",
)
PASSWORD = "correct horse battery staple"
# The materialised state of a row, derived from the label log (Workspace.rebuild_state).
STATE_SQL = (
    "SELECT id, label, excluded, reviewed, reviewer, reviewed_at, n_reviewers, conflict,"
    " text, disagrees FROM samples ORDER BY id"
)


def loadavg() -> list[float]:
    """The 1-, 5- and 15-minute load averages."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def stats_ms(seconds: list[float]) -> dict:
    if not seconds:
        return {"n": 0}
    ms = np.asarray(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "n": len(ms),
    }


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


# -- the workspace ------------------------------------------------------------------------------
class ImportStages:
    """The ``progress`` callback of ``Workspace.create``: when each stage began. The rows stage
    (``executemany`` on SQLite, COPY on PostgreSQL) ends when the next stage begins (the search
    index: FTS5 rebuild, or pg_trgm's GIN index), so COPY's tail (the server catching up after
    the last row was handed over) counts as rows, not as index."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.marks: list[tuple[str, float]] = []

    def __call__(self, info: dict) -> None:
        stage = info["stage"]
        if not self.marks or self.marks[-1][0] != stage:
            self.marks.append((stage, time.perf_counter()))

    def seconds(self, end: float) -> dict[str, float]:
        """Seconds per stage, from the call to ``end``; ``before rows`` is the schema (and on
        PostgreSQL the connection and pg_trgm check)."""
        out = {"before rows": round(self.marks[0][1] - self.t0, 2)} if self.marks else {}
        for (stage, a), (_, b) in zip(self.marks, [*self.marks[1:], ("end", end)], strict=True):
            out[stage] = round(b - a, 2)
        return out


def database_mib(ws: Workspace) -> float:
    """The workspace's size on disk: the SQLite file (WAL checkpointed at import), or the
    PostgreSQL schema's tables with their indexes and TOAST."""
    if ws.backend == "sqlite":
        return round(ws.db_path.stat().st_size / 2**20)
    size = ws._read(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ? AND c.relkind = 'r'",
        [ws.schema],
    )[0][0]
    return round(int(size) / 2**20)


def save_fake_analysis(ws: Workspace, analysis) -> None:
    """Store a fake analysis (bench/review.py ``fake_analysis``) as the latest one."""
    ws.save_analysis(
        analysis,
        method="bench",
        settings={},
        label_version=ws.label_version(),
        summary=AnalysisSummary(n_issues=int(analysis["is_label_issue"].sum())),
    )


def build(folder: Path, rows: int, seed: int) -> dict:
    """A workspace of ``rows`` synthetic rows with a fake analysis (as bench/review.py), in the
    backend ``SECOND_LOOK_DATABASE_URL`` selects (set: a PostgreSQL schema)."""
    t0 = time.perf_counter()
    raw = review_bench.synthetic_frame(rows, seed=seed)
    prepared = prepare_dataset(raw, text_column="text", label_column="sentiment")
    del raw
    t1 = time.perf_counter()
    stages = ImportStages()
    ws = Workspace.create(folder, prepared, name="bench-team", progress=stages)
    del prepared
    t2 = time.perf_counter()
    frame = ws.samples()
    analysis = review_bench.fake_analysis(frame["label"], frame["id"], seed=seed)
    del frame
    save_fake_analysis(ws, analysis)
    t3 = time.perf_counter()
    ws.wait_for_backup()
    out = {
        "backend": ws.backend,
        "schema": ws.schema,
        "rows": ws.counts()["n"],
        "flagged": int(analysis["is_label_issue"].sum()),
        "generate_prepare_seconds": round(t1 - t0, 1),
        "create_seconds": round(t2 - t1, 1),
        "create_stages_seconds": stages.seconds(t2),
        "save_analysis_seconds": round(t3 - t2, 1),
        "database_mib": database_mib(ws),
    }
    ws.close()
    return out


class BackupWatch:
    """Counts the background backups a Workspace starts (every 500 events or 5 minutes; at a
    million rows each copies the whole file) and how long they ran."""

    def __init__(self, ws: Workspace):
        self.runs: list[tuple[float, float]] = []
        original = ws._backup_quietly

        def watched() -> None:
            t0 = time.monotonic()
            try:
                original()
            finally:
                self.runs.append((t0, time.monotonic()))

        ws._backup_quietly = watched  # the thread's target is looked up on the instance

    def report(self) -> dict:
        return {
            "started": len(self.runs),
            "seconds": [round(b - a, 1) for a, b in self.runs],
            "intervals": [[round(a, 4), round(b, 4)] for a, b in self.runs],
        }


# -- 1. one writer, one reader -----------------------------------------------------------------
def relabel_latency(ws: Workspace, n: int, rng: np.random.Generator) -> dict:
    """``n`` relabels of different random rows, one after another, each committed."""
    names = ws.label_names
    ids = rng.choice(ws.counts()["n"], size=n, replace=False).tolist()
    current = ws.samples(ids=ids)["label"].tolist()
    watch = BackupWatch(ws)
    seconds = []
    for sid, label in zip(ids, current, strict=True):
        new = names[(names.index(label) + 1) % len(names)]
        seconds.append(timed(ws.relabel, sid, new, reviewer="bench")[1])
    ws.wait_for_backup()
    return {**stats_ms(seconds), "backups_during": watch.report()}


def alias_capped_counts(ws: Workspace) -> str | None:
    """Make the Review page's capped count run here if the store's statement fails.

    ``review_queue(count_cap=...)`` counts ``SELECT COUNT(*) FROM (SELECT 1 .. LIMIT ?)``; a
    subquery in FROM without an alias is an error before PostgreSQL 16. When the page's read
    fails so, this returns the error and, on this instance only, adds the alias (``AS capped``:
    the same plan) so that the figures can still be taken; the result says so. None when the
    store's own statement works (nothing is changed)."""
    try:
        ws.review_queue(offset=0, limit=1, count_cap=COUNT_CAP, **DEFAULT_QUEUE)
        return None
    except Exception as exc:  # noqa: BLE001 - reported in the result
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    original = ws._read

    def aliased(sql: str, params=()):
        if sql.startswith("SELECT COUNT(*) FROM (") and sql.endswith(" LIMIT ?)"):
            sql += " AS capped"
        return original(sql, params)

    ws._read = aliased
    ws.review_queue(offset=0, limit=1, count_cap=COUNT_CAP, **DEFAULT_QUEUE)  # works now
    return error


def page_reads(ws: Workspace, reps: int) -> dict:
    """The Review page's reads with the default filters: the card, then the table."""
    filters = dict(DEFAULT_QUEUE)
    card_call = dict(offset=0, limit=1, count_cap=COUNT_CAP, **filters)
    table_call = dict(offset=0, limit=PAGE_SIZE, count_cap=0, **filters)
    store_error = alias_capped_counts(ws)
    ws.review_queue(**card_call)  # warm
    ws.review_queue(**table_call)
    card, table, both = [], [], []
    total = None
    for _ in range(reps):
        (_, total), a = timed(ws.review_queue, **card_call)
        _, b = timed(ws.review_queue, **table_call)
        card.append(a)
        table.append(b)
        both.append(a + b)
    return {
        "filters": filters,
        "store_error": store_error,
        "total_shown": total,
        "card": stats_ms(card),
        "table": stats_ms(table),
        "card_and_table": stats_ms(both),
    }


# -- 2. reviewers on replicas ------------------------------------------------------------------
def replica_main(spec_path: str) -> None:
    """One replica (an OS process): its own Workspace, one thread per reviewer."""
    spec = json.loads(Path(spec_path).read_text())
    gate = Path(spec["gate"])
    ws = Workspace(spec["folder"])
    watch = BackupWatch(ws)
    names = ws.label_names
    ids = spec["ids"]
    results: dict[str, dict] = {}

    def reviewer(name: str, seed: int, start: threading.Event, stop_at: list[float]) -> None:
        rng = np.random.default_rng(seed)
        acked: list[list] = []  # [event_id, sample_id, action, label]
        latencies, started, errors = [], [], []
        start.wait()
        while time.monotonic() < stop_at[0]:
            sid = int(ids[int(rng.integers(len(ids)))])
            try:
                row = ws.sample(sid)  # the card shows the row before the reviewer acts
                if rng.random() < 0.5:
                    action, label = "confirm", row["label"]  # Keep
                else:
                    action, label = "relabel", names[int(rng.integers(len(names)))]
                started.append(time.monotonic())  # system-wide clock: same in every replica
                t0 = time.perf_counter()
                event_id = ws.relabel(sid, label, reviewer=name, action=action)
                latencies.append(time.perf_counter() - t0)
                acked.append([int(event_id), sid, action, label])
            except Exception as exc:  # noqa: BLE001 - counted and reported, not hidden
                errors.append(f"{type(exc).__name__}: {exc}")
            if spec["think_s"]:
                time.sleep(spec["think_s"])
        results[name] = {
            "acked": acked,
            "latencies_ms": [round(s * 1000, 3) for s in latencies],
            "started": [round(t, 4) for t in started],
            "errors": errors,
        }

    start = threading.Event()
    stop_at = [0.0]
    threads = [
        threading.Thread(target=reviewer, args=(name, spec["seed"] + i, start, stop_at), name=name)
        for i, name in enumerate(spec["reviewers"])
    ]
    for t in threads:
        t.start()
    (gate / f"ready-{spec['index']}").touch()
    deadline = time.monotonic() + 600
    while not (gate / "go").exists():
        if time.monotonic() > deadline:
            sys.exit("no start signal")
        time.sleep(0.001)
    t_start = time.monotonic()
    stop_at[0] = t_start + spec["seconds"]
    start.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t_start
    ws.close()  # waits for a background backup
    Path(spec["result"]).write_text(
        json.dumps(
            {"elapsed_s": elapsed, "reviewers": results, "backups": watch.report()},
        )
    )


def contention(folder: Path, tmp: Path, args: argparse.Namespace) -> dict:
    ws = Workspace(folder)
    alias_capped_counts(ws)  # (reported by page_reads)
    page, _ = ws.review_queue(offset=0, limit=args.queue, count_cap=0, **DEFAULT_QUEUE)
    ids = [int(i) for i in page["sample_id"]]
    events_before = int(ws._read("SELECT COUNT(*) FROM label_events")[0][0])
    gate = tmp / "gate"
    gate.mkdir()
    procs, specs = [], []
    for k in range(args.replicas):
        reviewers = [f"r{k * args.threads + j + 1}" for j in range(args.threads)]
        spec = {
            "index": k,
            "folder": str(folder),
            "gate": str(gate),
            "ids": ids,
            "reviewers": reviewers,
            "seconds": args.seconds,
            "think_s": args.think_ms / 1000,
            "seed": args.seed * 1000 + k * 100,
            "result": str(tmp / f"replica-{k}.json"),
        }
        path = tmp / f"replica-{k}-spec.json"
        path.write_text(json.dumps(spec))
        specs.append(spec)
        procs.append(subprocess.Popen([sys.executable, __file__, "--replica", str(path)], cwd=ROOT))
    deadline = time.monotonic() + 600
    while not all((gate / f"ready-{k}").exists() for k in range(args.replicas)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise RuntimeError("a replica did not get ready")
        time.sleep(0.01)
    load_start = loadavg()
    t0 = time.monotonic()
    (gate / "go").touch()
    codes = [p.wait(timeout=args.seconds + 900) for p in procs]
    wall = time.monotonic() - t0
    load_end = loadavg()
    if any(codes):
        raise RuntimeError(f"replica exit codes {codes}")

    acked: dict[str, list] = {}
    latencies: list[float] = []
    started: list[float] = []
    backups: list[list[float]] = []
    errors: list[str] = []
    per_replica = []
    for spec in specs:
        res = json.loads(Path(spec["result"]).read_text())
        n = 0
        backups += res["backups"]["intervals"]
        for name, r in res["reviewers"].items():
            acked[name] = r["acked"]
            latencies += [ms / 1000 for ms in r["latencies_ms"]]
            started += r["started"]
            errors += [f"{name}: {e}" for e in r["errors"]]
            n += len(r["acked"])
        per_replica.append(
            {
                "replica": spec["index"],
                "reviewers": spec["reviewers"],
                "acked": n,
                "latency": stats_ms(
                    [ms / 1000 for r in res["reviewers"].values() for ms in r["latencies_ms"]]
                ),
                "elapsed_s": round(res["elapsed_s"], 2),
                "backups": res["backups"],
            }
        )

    # The log against what the reviewers were told.
    log = ws._frame(
        "SELECT id, sample_id, action, new_label, reviewer FROM label_events WHERE id > ?",
        [events_before],
    )
    in_log = Counter(log["reviewer"])
    by_id = {int(r.id): r for r in log.itertuples(index=False)}
    per_reviewer, missing, mismatched = [], 0, 0
    for name in sorted(acked, key=lambda s: int(s[1:])):
        for event_id, sid, action, label in acked[name]:
            e = by_id.get(event_id)
            if e is None:
                missing += 1
            elif (e.sample_id, e.action, e.new_label, e.reviewer) != (sid, action, label, name):
                mismatched += 1
        per_reviewer.append(
            {"reviewer": name, "acknowledged": len(acked[name]), "in_log": in_log.get(name, 0)}
        )
    acked_ids = {a[0] for v in acked.values() for a in v}
    unacknowledged_in_log = len(set(by_id) - acked_ids)

    # The materialised state against the state rebuilt from the log alone.
    before, t_read = timed(ws._frame, STATE_SQL)
    _, t_rebuild = timed(ws.rebuild_state)
    after = ws._frame(STATE_SQL)
    equal = before.equals(after)
    differing = 0
    if not equal:
        both = before.merge(after, on="id", suffixes=("", "_rebuilt"))
        cols = [c for c in before.columns if c != "id"]
        diff = np.zeros(len(both), dtype=bool)
        for c in cols:
            a, b = both[c], both[c + "_rebuilt"]
            diff |= ~((a == b) | (a.isna() & b.isna())).to_numpy()
        differing = int(diff.sum())
    touched = int(log["sample_id"].nunique())
    conflicts = int(ws._read("SELECT COUNT(*) FROM samples WHERE conflict = 1")[0][0])
    ws.close()

    total = sum(len(v) for v in acked.values())
    # Commits that overlapped a background backup in any replica, and the others.
    t_start, lat = np.asarray(started), np.asarray(latencies)
    overlaps = np.zeros(len(lat), dtype=bool)
    for a, b in backups:
        overlaps |= (t_start < b) & (t_start + lat > a)
    # Over time: commits by when they started, in windows of WINDOW_S.
    windows = []
    if len(lat):
        first = float(t_start.min())
        slot = ((t_start - first) // WINDOW_S).astype(int)
        for k in range(int(slot.max()) + 1):
            inside = slot == k
            a, b = first + k * WINDOW_S, first + (k + 1) * WINDOW_S
            windows.append(
                {
                    "from_s": k * WINDOW_S,
                    **stats_ms(lat[inside].tolist()),
                    "backup_running": any(x < b and y > a for x, y in backups),
                }
            )
    return {
        "replicas": args.replicas,
        "threads_per_replica": args.threads,
        "seconds": args.seconds,
        "think_ms": args.think_ms,
        "queue_rows": len(ids),
        "rows_touched": touched,
        "conflicting_rows_after": conflicts,
        "wall_s_including_close": round(wall, 2),
        "acknowledged": total,
        "events_in_log": len(log),
        "commits_per_s": round(total / max(r["elapsed_s"] for r in per_replica), 1),
        "latency": stats_ms(latencies),
        "latency_during_backup": stats_ms(lat[overlaps].tolist()),
        "latency_no_backup": stats_ms(lat[~overlaps].tolist()),
        "latency_by_window": windows,
        "errors": len(errors),
        "error_kinds": dict(Counter(e.split(": ", 1)[1][:120] for e in errors)),
        "per_reviewer": per_reviewer,
        "per_replica": per_replica,
        "acknowledged_missing_from_log": missing,
        "acknowledged_mismatched_in_log": mismatched,
        "in_log_not_acknowledged": unacknowledged_in_log,
        "counts_equal": all(r["acknowledged"] == r["in_log"] for r in per_reviewer),
        "state_equals_rebuilt": equal,
        "rows_differing_after_rebuild": differing,
        "state_read_s": round(t_read, 2),
        "rebuild_state_s": round(t_rebuild, 2),
        "load_at_start": load_start,
        "load_at_end": load_end,
    }


# -- 3. sign-in --------------------------------------------------------------------------------
def _with_database(url: str, name: str) -> str:
    """``url`` with its database replaced (as tests/pg.py; keeps ``?host=`` URLs intact)."""
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    _, query_mark, query = path.partition("?")
    return f"{scheme}://{netloc}/{name}{query_mark}{query}"


def sign_in_costs(target: str, signins: int, lookups: int) -> dict:
    from data.store.accounts import Directory

    (directory, t_open) = timed(Directory, target)
    directory.add_account("bench-user", PASSWORD, role="reviewer")
    sign, look = [], []
    token = None
    for _ in range(signins):
        token, s = timed(directory.sign_in, "bench-user", PASSWORD)
        sign.append(s)
    for _ in range(lookups):
        account, s = timed(directory.session_account, token)
        assert account is not None and account.name == "bench-user"
        look.append(s)
    directory.db.close()
    return {
        "open_s": round(t_open, 3),
        "sign_in": stats_ms(sign),
        "session_account": stats_ms(look),
    }


def sign_in_all(tmp: Path, args: argparse.Namespace, server_url: str) -> dict:
    out = {"sqlite": sign_in_costs(str(tmp / "accounts.sqlite"), args.signins, args.lookups)}
    if not server_url:
        out["postgresql"] = None
        return out
    with fresh_database(server_url, "bench_accounts") as (url, settings):
        res = sign_in_costs(url, args.signins, args.lookups)
        out["postgresql"] = {
            **res,
            "server": settings["server_version"],
            "connection": connection_kind(server_url),
        }
    return out


# -- PostgreSQL databases for a run ---------------------------------------------------------
def server_url_of(args: argparse.Namespace) -> str:
    """The PostgreSQL server to use: ``--database-url``, else ``SECOND_LOOK_TEST_DATABASE_URL``
    (a database on it that the script may connect to, to create and drop its own)."""
    return (args.database_url or os.environ.get(TEST_URL_VARIABLE, "")).strip()


def connection_kind(url: str) -> str:
    """How the script reaches the server, in words (for the result)."""
    rest = url.partition("://")[2]
    netloc = rest.partition("/")[0].rpartition("@")[2]
    if not netloc or netloc.startswith("/") or "host=/" in url:
        return "Unix socket, same machine"
    return f"TCP to {netloc.split(':')[0]}"


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str):
    """A new empty database ``<prefix>_<random>`` on the server, dropped on the way out (its
    connections closed by force, e.g. of a replica that died); yields its URL and the server's
    :data:`PG_SETTINGS`."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        settings = {k: admin.execute(f"SHOW {k}").fetchone()[0] for k in PG_SETTINGS}
    try:
        yield _with_database(server_url, name), settings
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- main --------------------------------------------------------------------------------------
def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--replica":
        replica_main(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--relabels", type=int, default=300)
    parser.add_argument("--reads", type=int, default=100, help="repetitions of the page read")
    parser.add_argument("--seconds", type=float, default=60.0, help="of contention")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="reviewers per replica")
    parser.add_argument("--queue", type=int, default=200, help="rows of the shared queue")
    parser.add_argument("--think-ms", type=float, default=0.0, help="pause after each action")
    parser.add_argument("--signins", type=int, default=20)
    parser.add_argument("--lookups", type=int, default=200, help="session_account calls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=None, help="folder for the temporary workspace")
    parser.add_argument("--tag", default="", help="appended to the result's file name")
    parser.add_argument("--note", default="", help="a line for the result (e.g. the load)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="where the workspace lives: an SQLite file, or a schema of a fresh PostgreSQL "
        "database (created on the --database-url server, dropped at the end)",
    )
    parser.add_argument(
        "--database-url",
        default="",
        help=f"a PostgreSQL server (a database on it to connect to); default ${TEST_URL_VARIABLE}",
    )
    args = parser.parse_args()
    server_url = server_url_of(args)
    if args.backend == "postgresql" and not server_url:
        parser.error(f"--backend postgresql needs --database-url or ${TEST_URL_VARIABLE}")
    results: dict = {
        "backend": args.backend,
        "machine": {**describe(), "sqlite": __import__("sqlite3").sqlite_version},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "note": args.note,
        "targets": {"relabel_p95_ms": RELABEL_TARGET_MS, "page_p95_ms": PAGE_TARGET_MS},
        "load": {"start": loadavg()},
    }
    print(f"machine: {results['machine']}; load {results['load']['start']}", flush=True)
    with contextlib.ExitStack() as stack:
        if args.backend == "postgresql":
            url, settings = stack.enter_context(fresh_database(server_url, "bench_team"))
            results["postgresql"] = {**settings, "connection": connection_kind(server_url)}
            print(f"PostgreSQL: {results['postgresql']}", flush=True)
        else:
            url = ""
        # The replicas inherit it: a PostgreSQL workspace is found by its folder's marker and
        # reached through this variable; an SQLite run must not have it (create would use it).
        saved = os.environ.pop(DATABASE_URL_VARIABLE, None)
        if url:
            os.environ[DATABASE_URL_VARIABLE] = url
        stack.callback(_restore_env, DATABASE_URL_VARIABLE, saved)
        run(results, args, server_url)
    results["load"]["end"] = loadavg()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"team-cpu{results['machine']['cores']}-{datetime.now(UTC):%Y%m%d}"
    stem = stem.with_name(stem.name + f"-{args.backend}")
    if args.rows != 1_000_000:
        stem = stem.with_name(stem.name + f"-{args.rows}")
    if args.seconds != 60:
        stem = stem.with_name(stem.name + f"-{args.seconds:g}s")
    if args.tag:
        stem = stem.with_name(stem.name + f"-{args.tag}")
    stem.with_name(stem.name + ".json").write_text(json.dumps(results, indent=2))
    stem.with_name(stem.name + ".md").write_text(to_markdown(results))
    print(f"wrote {stem}.json and .md")
    return 0


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def run(results: dict, args: argparse.Namespace, server_url: str) -> None:
    """Build the workspace, then the three parts; fills ``results``."""
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench-team-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "ws"
        print(f"building a {args.backend} workspace of {args.rows:,} rows ...", flush=True)
        results["workspace"] = build(folder, args.rows, args.seed)
        results["load"]["after_build"] = loadavg()
        print(f"  {results['workspace']}", flush=True)

        ws = Workspace(folder)
        print(f"relabel x{args.relabels}, one writer", flush=True)
        results["relabel"] = relabel_latency(ws, args.relabels, rng)
        print(f"  {results['relabel']}", flush=True)
        print(f"review page reads x{args.reads}", flush=True)
        results["page"] = page_reads(ws, args.reads)
        print(f"  {results['page']}", flush=True)
        ws.close()
        results["load"]["after_single"] = loadavg()

        print(
            f"{args.replicas} replicas x {args.threads} reviewers for {args.seconds:g} s",
            flush=True,
        )
        results["contention"] = contention(folder, tmp, args)
        c = results["contention"]
        print(
            f"  {c['acknowledged']:,} acknowledged, {c['events_in_log']:,} in the log, "
            f"{c['commits_per_s']}/s, latency {c['latency']}, errors {c['errors']}, "
            f"state equals rebuilt: {c['state_equals_rebuilt']}",
            flush=True,
        )
        results["load"]["after_contention"] = loadavg()

        print("sign-in", flush=True)
        results["sign_in"] = sign_in_all(tmp, args, server_url)
        print(f"  {results['sign_in']}", flush=True)


def command_line() -> str:
    """The command as typed, with the PostgreSQL URL it used (passwords redacted)."""
    from data.store.sql import redact

    url = os.environ.get(TEST_URL_VARIABLE, "").strip()
    prefix = f"{TEST_URL_VARIABLE}='{redact(url)}' " if url else ""
    argv = list(sys.argv)
    for i, arg in enumerate(argv):
        if arg.startswith("--database-url="):
            argv[i] = "--database-url=" + redact(arg.split("=", 1)[1])
        elif i and argv[i - 1] == "--database-url":
            argv[i] = redact(arg)
    return prefix + "python " + shlex.join(argv)


def _latency(s: dict) -> str:
    if not s.get("n"):
        return "no commits"
    return f"{s['p50_ms']} / {s['p95_ms']} / {s['p99_ms']} / {s['max_ms']} ms ({s['n']:,} commits)"


def _met(value: float, target: float) -> str:
    return "met" if value < target else "**not met**"


def to_markdown(r: dict) -> str:
    m, w, rl, page, c, si = (
        r["machine"],
        r["workspace"],
        r["relabel"],
        r["page"],
        r["contention"],
        r["sign_in"],
    )
    backend = r.get("backend", "sqlite")
    on_pg = backend == "postgresql"
    server = r.get("postgresql") or {}
    where = "PostgreSQL workspace" if on_pg else "SQLite workspace"
    load = r["load"]
    busy = max(v[0] for v in load.values()) > 3
    lines = [
        f"# bench/team.py — {backend} — {r['date']}",
        "",
        f"Command: `{r['command']}`",
        "",
    ]
    if r["note"]:
        lines += [f"Note: {r['note']}", ""]
    if on_pg:
        machine_db = (
            f"PostgreSQL {server['server_version']} ({server['connection']}; fsync "
            f"{server['fsync']}, synchronous_commit {server['synchronous_commit']}, "
            f"full_page_writes {server['full_page_writes']}, wal_sync_method "
            f"{server['wal_sync_method']}, shared_buffers {server['shared_buffers']}, work_mem "
            f"{server['work_mem']}) holds the workspace; SQLite {m['sqlite']} for the SQLite "
            "accounts directory."
        )
        backups_note = "no file backups (a PostgreSQL workspace's backups are the database's)"
    else:
        machine_db = f"SQLite {m['sqlite']}."
        backups_note = "plus their background backup threads"
    stages = w.get("create_stages_seconds") or {}
    stage_text = ", ".join(f"{k} {v} s" for k, v in stages.items())
    rows_stage = stages.get("writing rows")
    import_how = "COPY" if on_pg else "executemany"
    lines += [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; {machine_db} "
        "Shared with other work: 1-minute load average "
        + ", ".join(f"{k.replace('_', ' ')} {v[0]}" for k, v in load.items())
        + (" (**above 3 at times: other work competed for the 2 cores**)." if busy else ".")
        + " The load counts this script's own processes too (one while building and timing "
        f"alone; two replicas of four threads under contention, {backups_note}"
        + ("; and the PostgreSQL server's backends" if on_pg else "")
        + ").",
        f"Workspace: {w['rows']:,} synthetic rows (bench/review.py's texts), fake analysis with "
        f"{w['flagged']:,} flagged; database {w['database_mib']:,} MiB"
        + (" (the schema's tables, indexes and TOAST)" if on_pg else "")
        + "; built in "
        f"{w['generate_prepare_seconds'] + w['create_seconds'] + w['save_analysis_seconds']:.0f}"
        f" s (generate+prepare {w['generate_prepare_seconds']} s, create "
        f"{w['create_seconds']} s, save_analysis {w['save_analysis_seconds']} s).",
        "",
        f"Import (`Workspace.create`): {w['create_seconds']} s"
        + (f", of which the rows by {import_how} {rows_stage} s" if rows_stage is not None else "")
        + (f" (stages: {stage_text})" if stage_text else "")
        + ".",
        "",
        f"## One writer, one reader ({where})",
        "",
        "| figure | p50 ms | p95 ms | max ms | n | target p95 |",
        "|---|---|---|---|---|---|",
        f"| `ws.relabel` on a random row, committed "
        f"({'synchronous_commit ' + server['synchronous_commit'] if on_pg else 'fsync'}) | "
        f"{rl['p50_ms']} | {rl['p95_ms']} | {rl['max_ms']} | {rl['n']} | "
        f"< {RELABEL_TARGET_MS:.0f} ms, {_met(rl['p95_ms'], RELABEL_TARGET_MS)} |",
    ]
    for key, what in (
        ("card", "review card: `review_queue(limit=1, count_cap=10,000)`"),
        ("table", "table under it: `review_queue(limit=20, count_cap=0)`"),
        ("card_and_table", "both (the page's main read)"),
    ):
        s = page[key]
        lines.append(
            f"| {what} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} | {s['n']} | "
            f"< {PAGE_TARGET_MS:.0f} ms, {_met(s['p95_ms'], PAGE_TARGET_MS)} |"
        )
    b = rl["backups_during"]
    if page.get("store_error"):
        lines += [
            "",
            f"**The store's page read failed here**: `review_queue(count_cap=...)` raised "
            f"`{page['store_error']}` (its capped count, `SELECT COUNT(*) FROM (SELECT 1 .. "
            "LIMIT ?)`, has no alias for the subquery, which PostgreSQL before 16 requires; "
            "the card and the table both pass a `count_cap`). The figures above are with the "
            "alias added by this script (`AS capped`, the same plan), not the store as it is.",
        ]
    lines += [
        "",
        f"Page reads use the Review page's default filters ({page['filters']}; the card shows "
        f"{page['total_shown']:,}{'+' if page['total_shown'] >= COUNT_CAP else ''} rows). "
        + (
            "No background backups (PostgreSQL)."
            if on_pg
            else f"Background backups started during the relabels: {b['started']}."
        ),
        "",
        f"## {c['replicas']} replicas × {c['threads_per_replica']} reviewers, "
        f"{c['seconds']:g} s, same {where}"
        + (" (one schema of a fresh database)" if on_pg else ""),
        "",
        f"Each replica is an OS process with its own `Workspace`; each reviewer a thread that "
        f"reads a row (`ws.sample`) from the first {c['queue_rows']} rows of the default queue "
        f"and keeps its label or sets a random one (think time {c['think_ms']:g} ms), so "
        f"reviewers hit the same rows ({c['rows_touched']} rows touched, "
        f"{c['conflicting_rows_after']} conflicting afterwards). 1-minute load "
        f"{c['load_at_start'][0]} at the start, {c['load_at_end'][0]} at the end.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| writes acknowledged (relabel returned its event id) | {c['acknowledged']:,} | — |",
        f"| events in the log from r1..r{len(c['per_reviewer'])} | {c['events_in_log']:,} | "
        f"equal: {'yes' if c['events_in_log'] == c['acknowledged'] else '**no**'} |",
        f"| acknowledged events missing from the log / with other content | "
        f"{c['acknowledged_missing_from_log']} / {c['acknowledged_mismatched_in_log']} | 0 |",
        f"| events in the log never acknowledged | {c['in_log_not_acknowledged']} | 0 |",
        f"| per-reviewer counts equal | {'yes' if c['counts_equal'] else '**no**'} | yes |",
        f"| materialised state equals the state rebuilt from the log | "
        f"{'yes' if c['state_equals_rebuilt'] else '**no**'} "
        f"({c['rows_differing_after_rebuild']} rows differ) | yes |",
        f"| commits/s, all replicas | {c['commits_per_s']} | — |",
        f"| commit latency (`relabel` call) p50 / p95 / p99 / max ms | {c['latency']['p50_ms']} "
        f"/ {c['latency']['p95_ms']} / {c['latency']['p99_ms']} / {c['latency']['max_ms']} | "
        f"p95 < {RELABEL_TARGET_MS:.0f} ms, {_met(c['latency']['p95_ms'], RELABEL_TARGET_MS)} |",
    ]
    if not on_pg:
        nb = c["latency_no_backup"]
        lines += [
            f"| … while a background backup ran in either replica | "
            f"{_latency(c['latency_during_backup'])} | — |",
            f"| … while none ran | {_latency(nb)} | "
            f"p95 < {RELABEL_TARGET_MS:.0f} ms"
            + (f", {_met(nb['p95_ms'], RELABEL_TARGET_MS)}" if nb.get("n") else "")
            + " |",
        ]
    lines += [
        f"| errors | {c['errors']} {c['error_kinds'] or ''} | 0 |",
        f"| `rebuild_state()` on {w['rows']:,} rows | {c['rebuild_state_s']} s | — |",
        "",
        "| reviewer | acknowledged | in the log |",
        "|---|---|---|",
        *(
            f"| {p['reviewer']} | {p['acknowledged']:,} | {p['in_log']:,} |"
            for p in c["per_reviewer"]
        ),
        "",
        "| replica | reviewers | acknowledged | commit p50 / p95 ms | background backups (s each) |",
        "|---|---|---|---|---|",
        *(
            f"| {p['replica']} | {', '.join(p['reviewers'])} | {p['acked']:,} | "
            + (
                f"{p['latency']['p50_ms']} / {p['latency']['p95_ms']} | "
                if p.get("latency", {}).get("n")
                else "— | "
            )
            + (
                "none (PostgreSQL)"
                if on_pg
                else f"{p['backups']['started']} "
                f"({', '.join(map(str, p['backups']['seconds'])) or '—'})"
            )
            + " |"
            for p in c["per_replica"]
        ),
    ]
    if c.get("latency_by_window"):
        lines += [
            "",
            f"Commit latency over time (commits by when they started, {WINDOW_S} s windows):",
            "",
            "| from s | commits | p50 ms | p95 ms | max ms | a backup ran |",
            "|---|---|---|---|---|---|",
            *(
                f"| {x['from_s']} | {x['n']:,} | {x.get('p50_ms', '—')} | "
                f"{x.get('p95_ms', '—')} | {x.get('max_ms', '—')} | "
                f"{'yes' if x['backup_running'] else 'no'} |"
                for x in c["latency_by_window"]
            ),
        ]
    lines += [
        "",
        "## Sign-in (accounts directory)",
        "",
        "| directory | `sign_in` p50 ms | p95 ms | n | `session_account` p50 ms | p95 ms | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("sqlite", "postgresql"):
        s = si.get(kind)
        if s is None:
            lines.append(f"| {kind} | not measured (no PostgreSQL server URL given) | | | | | |")
            continue
        place = f" {s['server']}, {s['connection']}" if kind == "postgresql" else " file"
        a, b = s["sign_in"], s["session_account"]
        lines.append(
            f"| {kind}{place} | {a['p50_ms']} | {a['p95_ms']} | {a['n']} | {b['p50_ms']} | "
            f"{b['p95_ms']} | {b['n']} |"
        )
    lines += [
        "",
        "`sign_in` = one Argon2id verify (argon2-cffi defaults) + one write transaction; "
        "`session_account` = a SHA-256 of the token + two reads (its `last_seen_at` write "
        "happens at most once a minute per session, so not in these calls).",
        "",
        "## What this does not measure yet",
        "",
    ]
    if on_pg:
        lines += [
            "- **A PostgreSQL server on another host**: the server ran on this machine, reached "
            f"by {server.get('connection', '?')}, sharing the 2 cores with the script and its "
            "replicas; a network round trip per statement is not in these figures. The dev "
            "cluster keeps PostgreSQL's default settings (above), not a tuned production one.",
            "- **Backups**: a PostgreSQL workspace takes no file backups (pg_dump / base "
            "backups are the operator's); their cost under review is not measured.",
        ]
    else:
        lines += [
            "- **Replicas on different hosts**: the replicas here share one SQLite file on one "
            "machine's disk (WAL, `synchronous=FULL`, busy timeout 30 s). A PostgreSQL "
            "workspace: `--backend postgresql`.",
        ]
    lines += [
        "- **Streamlit replicas in browsers**: no app server, no browser, no network; the "
        "reviewers call the store directly and act without thinking time, far faster than "
        "people do (see bench/review_ui.py for press → committed in one browser).",
        "- The other reads of the Review page (progress line, neighbours, explanation) and "
        "their cost under write contention; sign-in under concurrent sign-ins.",
        "- A cold cache: the workspace was just built, so its data are in memory"
        + (" (page cache and PostgreSQL's shared buffers)." if on_pg else "."),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
