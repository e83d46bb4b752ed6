"""Serving latency and throughput over HTTP: ``cli.py serve`` with a real saved classifier.

    python bench/serve.py                      # fine-tunes a small model on 200 demo rows first
    python bench/serve.py --model DIR          # any folder `cli.py serve` takes

Starts ``python cli.py serve MODEL --port 0`` in a subprocess (a free port, 127.0.0.1), then from
this process, over one keep-alive HTTP connection, one request at a time:

- single texts: ``--singles`` requests of one demo tweet each: latency p50/p95 and texts/s;
- batches: ``--batches`` requests of ``--batch`` tweets each: latency p50/p95 and texts/s.

The tweets are demo rows the model was not trained on. Afterwards, with the server stopped, the
same requests' texts go straight through :meth:`serving.model.ServedModel.predict` in this
process (no HTTP), so the HTTP + JSON share of the latency can be read off.

Prints the figures and writes ``bench/results/serve-<machine>-<date>.json`` and ``.md``.
Targets (CPU): p95 < 50 ms for a single text; >= 500 texts/s in batches of 64.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import describe  # noqa: E402

from data import demo  # noqa: E402
from data.readers import read_table  # noqa: E402
from serving.model import load_served_model  # noqa: E402
from training.config import TrainingConfig  # noqa: E402
from training.finetune import fine_tune  # noqa: E402

LABELS = ["negative", "positive"]
TARGET_SINGLE_P95_MS = 50.0
TARGET_BATCH_TEXTS_PER_SECOND = 500.0


def demo_tweets(n_train: int, n_requests: int) -> tuple[list[str], np.ndarray, list[str]]:
    """Seeded negative/positive demo tweets: ``n_train`` labelled rows to train on and
    ``n_requests`` other tweets to send."""
    frame = read_table(demo.demo_csv_path()).frame
    frame = frame[frame["sentiment"].isin(LABELS)].sample(frac=1.0, random_state=0)
    train, rest = frame.iloc[:n_train], frame.iloc[n_train : n_train + n_requests]
    labels = np.array([LABELS.index(v) for v in train["sentiment"]])
    return train["text"].astype(str).tolist(), labels, rest["text"].astype(str).tolist()


def train_model(texts: list[str], labels: np.ndarray, out: Path) -> dict:
    config = TrainingConfig(epochs=1.0, max_train_samples=None, max_eval_samples=None)
    start = time.monotonic()
    result = fine_tune(texts, labels, label_names=LABELS, config=config, output_dir=out)
    return {
        "trained_here": True,
        "rows": len(texts),
        "seconds": round(time.monotonic() - start, 1),
        "max_length": config.max_length,
        "technique": result.technique,
    }


def start_server(model: Path, log: Path, threads: int | None) -> tuple[subprocess.Popen, str, int]:
    """``cli.py serve MODEL --port 0``; its log goes to ``log``, where the port is read."""
    command = [sys.executable, "cli.py", "serve", str(model), "--port", "0", "--device", "cpu"]
    if threads:
        command += ["--threads", str(threads)]
    with log.open("w") as sink:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"listening on http://([\d.]+):(\d+)", log.read_text())
        if match:
            return process, match.group(1), int(match.group(2))
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start:\n" + log.read_text())


def timed_requests(host: str, port: int, bodies: list[bytes]) -> list[float]:
    """Seconds per request, one at a time over one keep-alive connection."""
    connection = http.client.HTTPConnection(host, port, timeout=120)
    headers = {"Content-Type": "application/json"}
    seconds = []
    for body in bodies:
        start = time.perf_counter()
        connection.request("POST", "/predict", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        seconds.append(time.perf_counter() - start)
        if response.status != 200:
            raise SystemExit(f"/predict answered {response.status}: {payload[:300]!r}")
    connection.close()
    return seconds


def summarise(seconds: list[float], texts_per_request: int) -> dict:
    ms = np.array(seconds) * 1000
    return {
        "requests": len(seconds),
        "texts_per_request": texts_per_request,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "texts_per_second": round(len(seconds) * texts_per_request / float(np.sum(seconds)), 1),
    }


def in_process(model: Path, groups: list[list[str]]) -> list[float]:
    served = load_served_model(model, device="cpu")
    for group in groups[:5]:
        served.predict(group)
    seconds = []
    for group in groups:
        start = time.perf_counter()
        served.predict(group)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a folder `cli.py serve` takes (default: train one)")
    parser.add_argument("--train-rows", type=int, default=200)
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, help="torch threads of the server and in-process")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    n_requests = max(args.singles, args.batches * args.batch)
    train_texts, train_labels, tweets = demo_tweets(args.train_rows, n_requests)
    results: dict = {
        "benchmark": "serve",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            **describe(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        if args.model:
            model = Path(args.model)
            results["model"] = {"trained_here": False, "folder": model.name}
        else:
            model = Path(tmp) / "model"
            print(f"fine-tuning on {args.train_rows} demo rows ...", flush=True)
            results["model"] = train_model(train_texts, train_labels, model)
        process, host, port = start_server(model, Path(tmp) / "server.log", args.threads)
        try:
            connection = http.client.HTTPConnection(host, port, timeout=60)
            connection.request("GET", "/model")
            info = json.loads(connection.getresponse().read())
            connection.close()
            results["model"].update(
                labels=info["labels"], max_length=info["max_length"], device=info["device"]
            )
            singles = [[t] for t in tweets[: args.singles]]
            batches = [tweets[i * args.batch : (i + 1) * args.batch] for i in range(args.batches)]
            encode = [json.dumps({"texts": group}).encode() for group in singles + batches]
            timed_requests(host, port, encode[:10] + encode[len(singles) : len(singles) + 3])
            print(f"{len(singles)} single-text requests ...", flush=True)
            single = timed_requests(host, port, encode[: len(singles)])
            print(f"{len(batches)} requests of {args.batch} texts ...", flush=True)
            batched = timed_requests(host, port, encode[len(singles) :])
        finally:
            process.terminate()
            process.wait(timeout=60)
        results["http"] = {
            "single": summarise(single, 1),
            "batch": summarise(batched, args.batch),
        }
        print("the same texts in-process (no HTTP) ...", flush=True)
        results["in_process"] = {
            "single": summarise(in_process(model, singles), 1),
            "batch": summarise(in_process(model, batches), args.batch),
        }
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = {
        "single_p95_ms": TARGET_SINGLE_P95_MS,
        "batch_texts_per_second": TARGET_BATCH_TEXTS_PER_SECOND,
        "single_met": results["http"]["single"]["p95_ms"] < TARGET_SINGLE_P95_MS,
        "batch_met": results["http"]["batch"]["texts_per_second"] >= TARGET_BATCH_TEXTS_PER_SECOND,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"serve-cpu{results['machine']['cores']}-{datetime.now(UTC):%Y%m%d}"
    if args.threads:
        stem = stem.with_name(f"{stem.name}-threads{args.threads}")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
    stem.with_suffix(".md").write_text(to_markdown(results))
    print(to_markdown(results))
    print(f"wrote {stem}.json and .md")
    return 0


def to_markdown(r: dict) -> str:
    m, model, t = r["machine"], r["model"], r["targets"]
    trained = (
        f"fine-tuned here on {model['rows']} demo rows ({model['seconds']} s)"
        if model.get("trained_here")
        else f"given: {model['folder']}"
    )
    lines = [
        f"# bench/serve.py — {r['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), Python {m['python']}.",
        f"Model: all-MiniLM-L6-v2 classifier, {trained}; max length {model['max_length']}, "
        f"{model['device']} fp32. Texts: demo tweets it was not trained on.",
        "Client: one keep-alive HTTP connection, one request at a time (no concurrency).",
        f"Load average (1/5/15 min) at start {r['load_average_at_start']}, at end "
        f"{r['load_average_at_end']} (the benchmark itself adds about 1-2; more means other "
        "work shared the cores).",
        "",
        "| requests | path | p50 ms | p95 ms | mean ms | texts/s |",
        "|---|---|---|---|---|---|",
    ]
    for where in ("http", "in_process"):
        for kind in ("single", "batch"):
            s = r[where][kind]
            what = "1 text" if kind == "single" else f"{s['texts_per_request']} texts"
            path = "HTTP (`cli.py serve`)" if where == "http" else "in-process, no HTTP"
            lines.append(
                f"| {s['requests']} x {what} | {path} | {s['p50_ms']} | {s['p95_ms']} | "
                f"{s['mean_ms']} | {s['texts_per_second']:,} |"
            )
    lines += [
        "",
        f"Targets: single-text p95 < {t['single_p95_ms']:.0f} ms "
        f"({'met' if t['single_met'] else 'NOT met'}); >= {t['batch_texts_per_second']:.0f} "
        f"texts/s in batches ({'met' if t['batch_met'] else 'NOT met'}).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
