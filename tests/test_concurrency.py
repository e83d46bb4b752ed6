"""Eight concurrent reviewer sessions relabeling different samples lose no update.

Sessions are either separate processes on the same workspace folder (several app servers, or
the app and a CLI) or threads sharing one ``Workspace`` object (Streamlit serves its sessions
from threads and caches one workspace for all of them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from data.store import Workspace
from tests.conftest import make_prepared

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = 8
PER_SESSION = 25
ROUNDS = 3  # each sample is relabeled this many times, so "the last label set" is meaningful
LABELS = ["negative", "neutral", "positive"]

# One reviewer session: announce it is ready, wait for the start signal, then read and relabel
# its own samples, with a millisecond between clicks; print what it set last for each sample.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from data.store import Workspace
    folder, k, sessions, rounds, gate = sys.argv[1], *map(int, sys.argv[2:5]), Path(sys.argv[5])
    ws = Workspace(folder)
    names = ws.label_names
    mine = [sid for sid in range(ws.counts()["n"]) if sid % sessions == k]
    (gate / f"ready-{k}").touch()
    deadline = time.monotonic() + 60
    while not (gate / "go").exists():
        if time.monotonic() > deadline:
            sys.exit("no start signal")
        time.sleep(0.001)
    last, issued = {}, 0
    for r in range(rounds):
        for sid in mine:
            # As the review page does: show the sample, then save the reviewer's choice. The
            # label shown must be the one this session set last (no other session touched it).
            row = ws.sample(sid)
            if row["label"] != last.get(sid, row["given_label"]):
                sys.exit(f"sample {sid} shows {row['label']!r}, not {last.get(sid)!r}")
            new = names[(sid + r + 1) % len(names)]
            ws.relabel(sid, new, reviewer=f"reviewer-{k}")
            last[sid], issued = new, issued + 1
            # Without a pause one session keeps the write lock while the others sleep in
            # SQLite's busy handler, and the sessions' writes barely interleave.
            time.sleep(0.001)
    ws.close()
    print(json.dumps({"issued": issued, "last": last}))
    """
)


def _workspace(folder: Path) -> Workspace:
    n = SESSIONS * PER_SESSION
    texts = [f"review number {i} of the concurrency test" for i in range(n)]
    labels = [LABELS[i % len(LABELS)] for i in range(n)]
    return Workspace.create(folder, make_prepared(texts, labels, label_names=LABELS))


def _expected_last(sid: int) -> str:
    return LABELS[(sid + ROUNDS) % len(LABELS)]  # the label of the last round (r = ROUNDS - 1)


def _assert_no_update_lost(ws: Workspace, last: dict[int, str], issued: int) -> None:
    n = ws.counts()["n"]
    assert issued == n * ROUNDS
    events = ws.events()
    assert len(events) == issued, f"{issued - len(events)} relabels were lost"
    assert events["id"].is_unique
    # Each session's events, per sample, are in the order it issued them.
    for sid, group in events.sort_values("id").groupby("sample_id"):
        expected = [LABELS[(sid + r + 1) % len(LABELS)] for r in range(ROUNDS)]
        assert group["new_label"].tolist() == expected, f"sample {sid}"
        assert set(group["reviewer"]) == {f"reviewer-{sid % SESSIONS}"}
    rows = ws.samples()
    assert dict(zip(rows["id"], rows["label"], strict=True)) == last
    assert rows["reviewed"].all()
    before = ws.samples()
    ws.rebuild_state()
    assert before.equals(ws.samples())


def test_eight_processes_relabeling_lose_no_update(tmp_path):
    _workspace(tmp_path / "ws").close()
    gate = tmp_path / "gate"
    gate.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(tmp_path / "ws"),
                str(k),
                str(SESSIONS),
                str(ROUNDS),
                str(gate),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(SESSIONS)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(gate.glob("ready-*"))) < SESSIONS:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.01)
        (gate / "go").touch()  # all sessions start relabeling at once
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for k, (p, (_, err)) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"session {k} failed:\n{err}"
    last: dict[int, str] = {}
    issued = 0
    for out, _ in outputs:
        report = json.loads(out)
        issued += report["issued"]
        last.update({int(sid): label for sid, label in report["last"].items()})
    assert last == {sid: _expected_last(sid) for sid in range(SESSIONS * PER_SESSION)}

    ws = Workspace(tmp_path / "ws")
    _assert_no_update_lost(ws, last, issued)
    ws.close()


def test_eight_threads_sharing_one_workspace_lose_no_update(tmp_path):
    ws = _workspace(tmp_path / "ws")
    n = ws.counts()["n"]
    start = threading.Barrier(SESSIONS)
    last: dict[int, str] = {}
    issued = [0] * SESSIONS
    errors: list[BaseException] = []

    def session(k: int) -> None:
        try:
            mine = [sid for sid in range(n) if sid % SESSIONS == k]
            start.wait(timeout=30)
            for r in range(ROUNDS):
                for sid in mine:
                    new = LABELS[(sid + r + 1) % len(LABELS)]
                    ws.relabel(sid, new, reviewer=f"reviewer-{k}")
                    # Read your own write while the other sessions keep writing.
                    assert ws.sample(sid)["label"] == new
                    last[sid] = new
                    issued[k] += 1
                ws.review_queue(order="random", limit=5, reviewed=True)
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(k,)) for k in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a session hung"
    if errors:
        raise errors[0]
    assert last == {sid: _expected_last(sid) for sid in range(n)}
    _assert_no_update_lost(ws, last, sum(issued))
    ws.close()
