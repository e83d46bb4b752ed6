"""The review store at scale: import, analysis, review pages, relabels, bulk actions, timed.

    python bench/review.py                  # 1,000,000 synthetic rows (about 10-15 minutes)
    python bench/review.py --rows 50000     # a quicker look

Generates a seeded synthetic dataset of short tweet-like texts (3 labels) and a fake analysis
(random label quality, predictions and probabilities; about 5% flagged), then measures what a
reviewer waits for. Prints the figures and writes ``bench/results/review-<machine>-<date>.json``
and ``.md``. Targets: import without exhausting memory; one review page (20 rows, any filter
and order, also 10,000 rows deep) under 200 ms; one relabel, committed with fsync, under 20 ms.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from machine import describe  # noqa: E402

from data.readers import prepare_dataset, read_table  # noqa: E402
from data.records import AnalysisSummary  # noqa: E402
from data.store import Workspace  # noqa: E402

# The private SQL of the queue, only to time its two statements apart and EXPLAIN the slow ones.
from data.store.review import _ORDER_SQL, _PAGE_COLUMNS  # noqa: E402

LABELS = ("negative", "neutral", "positive")
PAGE_TARGET_MS = 200.0
RELABEL_TARGET_MS = 20.0
UI_COUNT_CAP = 10_000  # as app_pages/review.py's COUNT_CAP: the card shows "10,000+"
DEEP_OFFSET = 10_000
# Frequent words first: drawn with Zipf-like weights, so these dominate as in real tweets.
COMMON = (
    "the i to a and is in it you of for my on that this me so was be have just but with at "
    "not are get like all no good love day your out up what now when one can do got today time "
    "know new great lol we back see its go how going really will too well people need work "
    "think happy sad night still home thanks want much last hate best oh bad"
).split()
SYLLABLES = (
    "ka lo mi ta ne ru so vi pe da zu fo ri be no ga tu he li mo sa wi ke pa do re ni bu ta ce "
    "lu ma fi go ro ve ha ji ko"
).split()


# -- machine and memory ----------------------------------------------------------------------
def machine() -> dict:
    return {
        **describe(),
        "ram_gib": round(_total_ram() / 2**30, 1),
        "sqlite": sqlite3.sqlite_version,
        "pandas": pd.__version__,
    }


def _total_ram() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _rss() -> int:
    """Resident memory of this process now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int | None:
    """Peak resident memory since the last reset (VmHWM), in bytes; None where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak RSS of one phase: resets the kernel's high-water mark (Linux) and also samples RSS
    from a thread, in case the reset is not allowed."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM to the current RSS
            self._reset = True
        except OSError:
            self._reset = False
        self.before = _rss()
        self._sampled = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._sampled = max(self._sampled, _rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.after = _rss()
        hwm = _hwm() if self._reset else None
        self.peak = max(self._sampled, self.after, hwm or 0)

    def report(self) -> dict:
        mib = 2**20
        return {
            "rss_before_mib": round(self.before / mib),
            "peak_rss_mib": round(self.peak / mib),
            "peak_above_before_mib": round((self.peak - self.before) / mib),
            "rss_after_mib": round(self.after / mib),
        }


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def stats_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {
        "median_ms": round(float(np.median(ms)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "max_ms": round(float(ms.max()), 2),
        "n": len(ms),
    }


# -- synthetic data ---------------------------------------------------------------------------
def vocabulary(size: int, rng: np.random.Generator) -> np.ndarray:
    """Common English words, then made-up words of 2-4 syllables (distinct, seeded)."""
    words = list(dict.fromkeys(COMMON))
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 5))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return np.array(words, dtype=object)


def synthetic_frame(n: int, *, seed: int = 0, vocab_size: int = 5000) -> pd.DataFrame:
    """``n`` tweet-like rows: text (5-20 words, Zipf word frequencies, some @mentions and
    #hashtags), sentiment (3 labels, 30/40/30) and a crowd confidence with some missing."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(vocab_size, rng)
    weights = 1.0 / np.arange(1, vocab_size + 1)
    tokens = rng.choice(vocab_size, size=(n, 20), p=weights / weights.sum())
    lengths = rng.integers(5, 21, size=n)
    mention = rng.random(n) < 0.3
    hashtag = rng.random(n) < 0.2
    handles = rng.integers(0, 50_000, size=n)
    texts = []
    for i in range(n):
        words = vocab[tokens[i, : lengths[i]]].tolist()
        if mention[i]:
            words.insert(0, f"@user{handles[i]}")
        if hashtag[i]:
            words.append("#" + words[-1])
        texts.append(" ".join(words))
    confidence = rng.uniform(0.33, 1.0, size=n).round(4)
    confidence[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "text": texts,
            "sentiment": rng.choice(np.array(LABELS, dtype=object), size=n, p=[0.3, 0.4, 0.3]),
            "confidence": confidence,
        }
    )


def fake_analysis(labels: pd.Series, ids: pd.Series, *, seed: int = 0) -> pd.DataFrame:
    """Random analysis results in the shape ``save_analysis`` takes; ~5% flagged, and flagged
    rows mostly predicted as another label (as cleanlab's flags are)."""
    rng = np.random.default_rng(seed + 1)
    n = len(labels)
    given = labels.to_numpy(dtype=object)
    quality = rng.beta(5, 1.5, size=n)
    flagged = quality < np.quantile(quality, 0.05)
    other = np.array(LABELS, dtype=object)[rng.integers(0, len(LABELS), size=n)]
    swap = flagged | (rng.random(n) < 0.05)
    predicted = np.where(swap, other, given)
    predicted_prob = rng.uniform(1 / len(LABELS), 1.0, size=n)
    return pd.DataFrame(
        {
            "sample_id": ids.to_numpy(),
            "analyzed_label": given,
            "predicted_label": predicted,
            "predicted_prob": predicted_prob,
            "analyzed_prob": np.where(predicted == given, predicted_prob, quality * 0.5),
            "label_quality": quality,
            "is_label_issue": flagged,
        }
    )


# -- review pages -----------------------------------------------------------------------------
def query_cases(common: str, rare: str, reviewer: str) -> list[tuple[str, str, int, dict]]:
    """(name, order, offset, filters) for every page the Review page can ask for."""
    cases: list[tuple[str, str, int, dict]] = [
        ("no filter", "quality", 0, {}),
        ("flagged", "quality", 0, {"flagged": True}),
        ("disagrees", "quality", 0, {"disagrees": True}),
        ("label=neutral", "quality", 0, {"label": "neutral"}),
        ("reviewed=False", "quality", 0, {"reviewed": False}),
        ("reviewed=True", "quality", 0, {"reviewed": True}),
        ("split=test", "quality", 0, {"split": "test"}),
        (f"search common {common!r}", "quality", 0, {"search": common}),
        (f"search rare {rare!r}", "quality", 0, {"search": rare}),
        ("search 2 chars 'zu'", "quality", 0, {"search": "zu"}),
        ("conflict", "quality", 0, {"conflict": True}),
        ("min_prob=0.9", "quality", 0, {"min_prob": 0.9}),
        (f"for_reviewer={reviewer!r}", "quality", 0, {"for_reviewer": reviewer}),
        (
            "flagged + label + not reviewed",
            "quality",
            0,
            {"flagged": True, "label": "neutral", "reviewed": False},
        ),
        (f"flagged + search {common!r}", "quality", 0, {"flagged": True, "search": common}),
        ("flagged + search rare", "quality", 0, {"flagged": True, "search": rare}),
    ]
    for order in ("quality", "uncertainty", "random", "row"):
        cases.append((f"order={order}", order, 0, {}))
        cases.append((f"order={order}, deep", order, DEEP_OFFSET, {}))
    cases.append(("flagged, deep", "quality", DEEP_OFFSET, {"flagged": True}))
    cases.append(("reviewed=False, deep", "quality", DEEP_OFFSET, {"reviewed": False}))
    cases.append(("flagged, order=uncertainty", "uncertainty", 0, {"flagged": True}))
    cases.append(("label=neutral, order=random", "random", 0, {"label": "neutral"}))
    # A narrow filter with an order whose index it does not share.
    cases.append(("reviewed=True, order=uncertainty", "uncertainty", 0, {"reviewed": True}))
    cases.append(("reviewed=True, order=random", "random", 0, {"reviewed": True}))
    cases.append(("conflict, order=random", "random", 0, {"conflict": True}))
    cases.append(("disagrees + split=test", "quality", 0, {"disagrees": True, "split": "test"}))
    cases.append(
        (
            f"for_reviewer={reviewer!r} + flagged",
            "quality",
            0,
            {"for_reviewer": reviewer, "flagged": True},
        )
    )
    return cases


def queue_sql(ws: Workspace, order: str, offset: int, filters: dict) -> dict:
    """The statements ``review_queue`` runs (exact count, capped count, page), with parameters."""
    clause, params = ws._where(**filters)
    return {
        "count": ("SELECT COUNT(*) FROM samples s" + clause, params),
        "capped count": (
            f"SELECT COUNT(*) FROM (SELECT 1 FROM samples s{clause} LIMIT ?)",
            [*params, UI_COUNT_CAP + 1],
        ),
        "page": (
            f"SELECT {_PAGE_COLUMNS} FROM samples s{clause}{_ORDER_SQL[order]} LIMIT ? OFFSET ?",
            [*params, 20, int(offset)],
        ),
    }


def explain(ws: Workspace, sql: str, params) -> list[str]:
    rows = ws._read("EXPLAIN QUERY PLAN " + sql, params)
    depth = {0: 0}
    lines = []
    for r in rows:
        depth[r[0]] = depth.get(r[1], 0) + 1
        lines.append("  " * (depth[r[0]] - 1) + r[3])
    return lines


def time_pages(ws: Workspace, cases, reps: int) -> list[dict]:
    """Each page as the Review page asks for it (total capped at ``UI_COUNT_CAP``), and with
    the exact total (``review_queue``'s default)."""
    out = []
    for name, order, offset, filters in cases:
        row = {"case": name, "order": order, "offset": offset, "filters": filters}
        for mode, cap in (("ui", UI_COUNT_CAP), ("exact", None)):
            call = dict(order=order, offset=offset, limit=20, count_cap=cap, **filters)
            page, total = ws.review_queue(**call)  # warm the cache
            seconds = [timed(ws.review_queue, **call)[1] for _ in range(reps)]
            row[mode] = {"total": total, "page_rows": len(page), **stats_ms(seconds)}
        over = max(row["ui"]["p95_ms"], row["exact"]["p95_ms"]) > PAGE_TARGET_MS
        if over:
            row["diagnosis"] = diagnose(ws, order, offset, filters)
        out.append(row)
        ui, exact = row["ui"], row["exact"]
        print(
            f"  {name:36s} {ui['median_ms']:7.1f} {ui['p95_ms']:7.1f}"
            f" | {exact['median_ms']:7.1f} {exact['p95_ms']:7.1f} ms"
            f"  ({exact['total']:,} match){'   <-- over target' if over else ''}",
            flush=True,
        )
    return out


def diagnose(ws: Workspace, order: str, offset: int, filters: dict) -> dict:
    """Which statement is slow, and the query plans."""
    out = {}
    for part, (sql, params) in queue_sql(ws, order, offset, filters).items():
        seconds = [timed(ws._read, sql, params)[1] for _ in range(5)]
        out[part] = {
            "median_ms": round(float(np.median(seconds)) * 1000, 1),
            "plan": explain(ws, sql, params),
        }
    return out


# -- writes -------------------------------------------------------------------------------------
def time_relabels(ws: Workspace, n: int, rng: np.random.Generator) -> dict:
    """``n`` single relabels of different samples, each its own committed transaction."""
    ids = rng.choice(ws.counts()["n"], size=n, replace=False)
    current = ws.samples(ids=ids.tolist())["label"].tolist()
    seconds = []
    for sid, label in zip(ids.tolist(), current, strict=True):
        new = LABELS[(LABELS.index(label) + 1) % len(LABELS)]
        seconds.append(timed(ws.relabel, sid, new, reviewer="bench")[1])
    return stats_ms(seconds)


def make_conflicts(ws: Workspace, n: int) -> int:
    """Two reviewers give ``n`` double-review samples different labels."""
    ids = ws.review_ids(flagged=True)[:n]
    for sid in ids:
        ws.relabel(sid, "positive", reviewer="ana")
        ws.relabel(sid, "negative", reviewer="bo")
    return len(ids)


def time_bulk(ws: Workspace, n: int, rng: np.random.Generator) -> dict:
    """Accept the model's suggestion on ``n`` rows as one batch, then undo it."""
    # Rows where the model disagrees, so that accepting changes every one of them.
    candidates = np.asarray(ws.review_ids(disagrees=True, reviewed=False))
    ids = sorted(rng.choice(candidates, size=min(n, len(candidates)), replace=False).tolist())
    events, t_apply = timed(ws.bulk_apply, action="accept", reviewer="bulk", ids=ids)
    undone, t_undo = timed(ws.undo, reviewer="bulk")
    return {
        "rows": len(events),
        "apply_seconds": round(t_apply, 3),
        "undo_rows": len(undone),
        "undo_seconds": round(t_undo, 3),
    }


# -- main ----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20, help="repetitions per review page")
    parser.add_argument("--relabels", type=int, default=200)
    parser.add_argument("--bulk", type=int, default=1000, help="rows in the bulk action")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=None, help="folder for the temporary workspace")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    results: dict = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": args.rows,
        "targets": {"page_ms": PAGE_TARGET_MS, "relabel_ms": RELABEL_TARGET_MS},
    }
    print(f"machine: {results['machine']}", flush=True)
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench-review-") as tmp:
        folder = Path(tmp) / "ws"
        raw, t_gen = timed(synthetic_frame, args.rows, seed=args.seed)
        print(f"generated {len(raw):,} rows in {t_gen:.1f} s", flush=True)
        csv = Path(tmp) / "bench.csv"
        raw.to_csv(csv, index=False)
        del raw  # the import starts from the file, as the Data page does
        run_import(results, csv, folder)
        csv.unlink()
        ws = Workspace(folder)
        run_analysis(results, ws)
        ws.set_overlap(0.1)

        print(f"relabel x{args.relabels} (each commits with fsync)", flush=True)
        results["relabel"] = time_relabels(ws, args.relabels, rng)
        r = results["relabel"]
        print(f"  median {r['median_ms']} ms, p95 {r['p95_ms']} ms, max {r['max_ms']} ms")
        results["conflicts_made"] = make_conflicts(ws, 20)
        results["bulk"] = time_bulk(ws, args.bulk, rng)
        b = results["bulk"]
        print(
            f"bulk accept of {b['rows']:,} rows: {b['apply_seconds']} s; "
            f"undo ({b['undo_rows']:,} rows): {b['undo_seconds']} s",
            flush=True,
        )
        # A reviewer with some history, so their queue has rows to exclude.
        for sid in ws.review_ids(flagged=True, reviewed=False)[:30]:
            ws.relabel(sid, "neutral", reviewer="ana")

        print(
            f"review page (limit 20), {args.reps} repetitions: median p95 with the total capped"
            f" at {UI_COUNT_CAP:,} (as the Review page asks) | with the exact total",
            flush=True,
        )
        common, rare = "the", pick_rare(args.seed)
        results["pages"] = time_pages(ws, query_cases(common, rare, "ana"), args.reps)
        ws.close()
    results["peak_rss_process_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"review-cpu{results['machine']['cores']}-{datetime.now(UTC):%Y%m%d}"
    if args.rows != 1_000_000:
        stem = stem.with_name(stem.name + f"-{args.rows}")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
    stem.with_suffix(".md").write_text(to_markdown(results))
    print(f"wrote {stem}.json and .md")
    return 0


def run_import(results: dict, csv: Path, folder: Path) -> None:
    """read_table + prepare_dataset + Workspace.create, each with its time and peak memory."""
    with PeakMemory() as mem_read:
        raw, t_read = timed(read_table, csv)
    with PeakMemory() as mem_prep:
        prepared, t_prep = timed(prepare_dataset, raw, text_column="text", label_column="sentiment")
    del raw
    with PeakMemory() as mem_create:
        ws, t_create = timed(Workspace.create, folder, prepared, name="bench")
    del prepared
    n = ws.counts()["n"]
    ws.close()
    db_mib = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    total = t_read + t_prep + t_create
    results["import"] = {
        "rows": n,
        "csv_mib": round(csv.stat().st_size / 2**20),
        "read_seconds": round(t_read, 2),
        "prepare_seconds": round(t_prep, 2),
        "create_seconds": round(t_create, 2),
        "rows_per_second": round(n / total),
        "read_memory": mem_read.report(),
        "prepare_memory": mem_prep.report(),
        "create_memory": mem_create.report(),
        "database_mib": round(db_mib),
    }
    for step, seconds, mem in (
        ("read_table (CSV)", t_read, mem_read),
        ("prepare_dataset", t_prep, mem_prep),
        ("Workspace.create", t_create, mem_create),
    ):
        print(
            f"import: {step} {seconds:.1f} s, peak RSS {mem.peak / 2**20:,.0f} MiB "
            f"(+{(mem.peak - mem.before) / 2**20:,.0f} over {mem.before / 2**20:,.0f})",
            flush=True,
        )
    print(f"import: {n:,} rows in {total:.1f} s; database {db_mib:,.0f} MiB", flush=True)


def run_analysis(results: dict, ws: Workspace) -> None:
    rows = ws.samples()
    analysis = fake_analysis(rows["label"], rows["id"])
    del rows
    with PeakMemory() as mem:
        _, t_save = timed(
            ws.save_analysis,
            analysis,
            method="bench",
            settings={},
            label_version=ws.label_version(),
            summary=AnalysisSummary(n_issues=int(analysis["is_label_issue"].sum())),
        )
    results["save_analysis"] = {
        "rows": len(analysis),
        "flagged": int(analysis["is_label_issue"].sum()),
        "seconds": round(t_save, 2),
        "memory": mem.report(),
    }
    print(f"save_analysis of {len(analysis):,} rows: {t_save:.1f} s", flush=True)


def pick_rare(seed: int) -> str:
    """The last made-up word of the vocabulary ``synthetic_frame`` drew (its rarest word)."""
    return str(vocabulary(5000, np.random.default_rng(seed))[-1])


def to_markdown(r: dict) -> str:
    m, imp, sa = r["machine"], r["import"], r["save_analysis"]
    rm, pm, cm = imp["read_memory"], imp["prepare_memory"], imp["create_memory"]
    lines = [
        f"# bench/review.py — {r['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}, "
        f"SQLite {m['sqlite']}, pandas {m['pandas']}.",
        f"Synthetic dataset: {r['rows']:,} tweet-like rows, 3 labels; fake analysis with "
        f"{sa['flagged']:,} flagged.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| read_table of the {imp['csv_mib']:,} MiB CSV | {imp['read_seconds']} s, peak RSS "
        f"{rm['peak_rss_mib']:,} MiB (+{rm['peak_above_before_mib']:,} MiB) |",
        f"| prepare_dataset | {imp['prepare_seconds']} s, peak RSS {pm['peak_rss_mib']:,} MiB "
        f"(+{pm['peak_above_before_mib']:,} MiB) |",
        f"| Workspace.create | {imp['create_seconds']} s, peak RSS {cm['peak_rss_mib']:,} MiB "
        f"(+{cm['peak_above_before_mib']:,} MiB); database {imp['database_mib']:,} MiB |",
        f"| save_analysis of {sa['rows']:,} rows | {sa['seconds']} s |",
        f"| relabel, committed (target {r['targets']['relabel_ms']:.0f} ms) | median "
        f"{r['relabel']['median_ms']} ms, p95 {r['relabel']['p95_ms']} ms "
        f"({r['relabel']['n']} relabels) |",
        f"| bulk accept of {r['bulk']['rows']:,} rows, one batch | {r['bulk']['apply_seconds']} s |",
        f"| its undo | {r['bulk']['undo_seconds']} s |",
        f"| peak RSS of the whole run | {r['peak_rss_process_mib']:,} MiB |",
        "",
        f"Review page, 20 rows (target {r['targets']['page_ms']:.0f} ms; "
        f"{r['pages'][0]['ui']['n']} repetitions): server-side time of `review_queue` with the "
        f"total capped at {UI_COUNT_CAP:,} as the Review page asks (`count_cap`), and with the "
        "exact total.",
        "",
        "| filter | order | offset | matches | median ms | p95 ms | exact total: median | p95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    target = r["targets"]["page_ms"]
    for p in r["pages"]:
        ui, exact = p["ui"], p["exact"]
        lines.append(
            f"| {p['case']} | {p['order']} | {p['offset']:,} | {exact['total']:,} | "
            f"{ui['median_ms']} | {ui['p95_ms']}{' **over**' if ui['p95_ms'] > target else ''} | "
            f"{exact['median_ms']} | "
            f"{exact['p95_ms']}{' **over**' if exact['p95_ms'] > target else ''} |"
        )
    slow = [p for p in r["pages"] if "diagnosis" in p]
    if slow:
        lines += ["", "## Over target: each statement, timed alone, and its plan", ""]
    for p in slow:
        lines.append(f"### {p['case']} (order {p['order']}, offset {p['offset']:,})")
        for part, d in p["diagnosis"].items():
            lines += [f"{part}: {d['median_ms']} ms", "```", *d["plan"], "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
