"""The embedding cache and the neighbour graph at 100k rows, through the store's public API:
``put_embeddings`` in the encoder's chunks (1,024), ``get_embeddings`` of every vector in the
encoder's chunks (16,384; first pass in a fresh process, then again), ``put_knn`` /
``get_knn`` of a 100k x 30 graph and ``neighbors`` of one row (the review card).

Runs against whichever checkout ``SECOND_LOOK_CODE`` names (default: this one), so the same
script times the schema-6 tables and the schema-7 files::

    python bench/artifacts.py                                  # this checkout
    SECOND_LOOK_CODE=/tmp/wt-base python bench/artifacts.py    # another (e.g. main)

With ``SECOND_LOOK_DATABASE_URL`` set the workspace lives in PostgreSQL.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

CODE = Path(os.environ.get("SECOND_LOOK_CODE") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(CODE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from data.store import Workspace  # noqa: E402

ROWS, DIM, K = 100_000, 384, 30


def _prepared(n: int) -> SimpleNamespace:
    frame = pd.DataFrame(
        {
            "ext_id": [str(i) for i in range(n)],
            "text": [f"text number {i}" for i in range(n)],
            "label": ["a" if i % 2 else "b" for i in range(n)],
            "split": ["train"] * n,
            "meta": [{} for _ in range(n)],
            "encoding_fixed": [False] * n,
        }
    )
    return SimpleNamespace(
        frame=frame,
        label_names=["a", "b"],
        text_column="text",
        label_column="label",
        id_column=None,
        split_column=None,
        split_seed=0,
        test_size=0.25,
        warnings=[],
        encoding="utf-8",
        dropped_rows=0,
    )


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return round(time.perf_counter() - start, 3)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-artifacts-")) / "ws"
    ws = Workspace.create(folder, _prepared(ROWS), name="bench")
    rng = np.random.default_rng(0)
    hashes = [f"{i:040x}" for i in range(ROWS)]
    vectors = rng.normal(size=(ROWS, DIM)).astype(np.float32)
    out: dict = {"rows": ROWS, "dim": DIM, "k": K, "backend": ws.backend, "code": str(CODE)}

    def put_all() -> None:
        for i in range(0, ROWS, 1024):
            ws.put_embeddings(
                "m", dict(zip(hashes[i : i + 1024], vectors[i : i + 1024], strict=True))
            )

    def get_all() -> None:
        got = 0
        for i in range(0, ROWS, 16_384):
            got += len(ws.get_embeddings("m", hashes[i : i + 16_384]))
        assert got == ROWS

    out["put_embeddings_s"] = _timed(put_all)
    ws.close()
    ws = Workspace(folder)
    try:  # as a new process: no file verified yet (schema 7 hashes each segment once)
        from data.store import vectors as store_vectors

        store_vectors._VERIFIED.clear()
    except ImportError:  # schema 6: rows in the database
        pass
    out["get_embeddings_first_s"] = _timed(get_all)
    out["get_embeddings_again_s"] = _timed(get_all)
    ids = rng.integers(0, ROWS, size=(ROWS, K))
    dist = np.sort(rng.random((ROWS, K), dtype=np.float32), axis=1)
    out["put_knn_s"] = _timed(lambda: ws.put_knn("m", ids, dist))
    out["get_knn_s"] = _timed(lambda: ws.get_knn("m"))
    picks = rng.integers(0, ROWS, size=50)
    out["neighbors_ms"] = round(
        1000 * _timed(lambda: [ws.neighbors(int(i), k=5, model_key="m") for i in picks]) / 50, 2
    )
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))
    ws.close()


if __name__ == "__main__":
    main()
