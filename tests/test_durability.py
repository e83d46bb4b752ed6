"""Acknowledged relabels survive a crash.

Two different guarantees, tested separately:

- a relabel is *committed* before the store returns: a process killed with SIGKILL loses
  nothing it acknowledged (the SIGKILL test; the operating system still holds what was
  written, so this test alone cannot tell whether the commit was also flushed to the disk);
- every commit is *flushed* (``PRAGMA synchronous=FULL`` in WAL mode: fsync at each commit),
  so a power loss cannot lose an acknowledged relabel either. A power cut cannot be staged in
  a test; the connection's setting is checked instead, on every connection the store opens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from data.store import Workspace

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import sys
    from data.store import Workspace
    ws = Workspace(sys.argv[1])
    names = ws.label_names
    n = ws.counts()["n"]
    i = 0
    while True:  # relabel until killed; acknowledge each commit on stdout
        sid = i % n
        current = ws.sample(sid)["label"]
        new = names[(names.index(current) + 1) % len(names)]
        event = ws.relabel(sid, new, reviewer="child")
        print(f"{event} {sid} {new}", flush=True)
        i += 1
    """
)


def test_acknowledged_relabels_survive_sigkill(tmp_path, sentiment_prepared):
    Workspace.create(tmp_path / "ws", sentiment_prepared).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "ws")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    acks = []
    for line in proc.stdout:
        acks.append(line.split())
        if len(acks) >= 60:
            break
    os.kill(proc.pid, signal.SIGKILL)  # no chance to flush or close anything
    proc.wait()

    ws = Workspace(tmp_path / "ws")
    events = ws.events().set_index("id")
    for event_id, sid, label in acks:
        assert int(event_id) in events.index, f"acknowledged event {event_id} was lost"
        assert events.loc[int(event_id), "new_label"] == label
        assert events.loc[int(event_id), "sample_id"] == int(sid)
    # The derived state agrees with the log after the crash.
    before = ws.samples()
    ws.rebuild_state()
    assert before.equals(ws.samples())


def test_every_store_connection_flushes_each_commit(tmp_path, sentiment_prepared):
    ws = Workspace.create(tmp_path / "ws", sentiment_prepared)
    # 2 = FULL: in WAL mode, the WAL is fsynced at every commit (NORMAL, 1, may lose the last
    # commits on power loss; OFF, 0, anything).
    assert ws._read("PRAGMA synchronous")[0][0] == 2
    assert ws._read("PRAGMA journal_mode")[0][0] == "wal"
    ws.close()
    reopened = Workspace(tmp_path / "ws")
    assert reopened._read("PRAGMA synchronous")[0][0] == 2
    reopened.close()
