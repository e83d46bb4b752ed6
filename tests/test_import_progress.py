"""A big import says how far along it is: rows written, then each later step."""

from __future__ import annotations

import data.store.workspace as workspace_module
from data.store import Workspace
from runtime.progress import RateMeter, describe


def test_create_reports_rows_written_then_each_step(tmp_path, sentiment_prepared, monkeypatch):
    monkeypatch.setattr(workspace_module, "IMPORT_PROGRESS_ROWS", 5)
    events = []
    ws = Workspace.create(tmp_path / "ws", sentiment_prepared, progress=events.append)
    n = ws.counts()["n"]
    counts = [e["done"] for e in events if "done" in e]
    assert counts[0] == 0 and counts[-1] == n and counts == sorted(counts)
    assert len(counts) >= n // 5  # every 5 rows here, every 20,000 for real
    assert all(e["total"] == n and e["unit"] == "rows" for e in events if "done" in e)
    stages = [e["stage"] for e in events if "done" not in e]
    assert stages == ["building the text search index", "taking the first backup"]


def test_the_rate_and_time_left_read_as_the_ui_and_cli_show_them():
    clock = iter([0.0, 1.0, 2.0]).__next__
    meter = RateMeter(clock=clock)
    meter({"stage": "writing rows", "done": 0, "total": 100_000, "unit": "rows"})
    meter({"stage": "writing rows", "done": 20_000, "total": 100_000, "unit": "rows"})
    said = describe(
        meter({"stage": "writing rows", "done": 40_000, "total": 100_000, "unit": "rows"})
    )
    assert said == "40,000 / 100,000 rows · 20,000 rows/s · about 3 s left"
