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

Then the same batches with int8 linear layers (:func:`int8_in_process`: speed and how far
the answers move). Last, the machine's compute ceiling for this model (:func:`ceiling`): the arithmetic one
request of ``--batch`` texts needs (counted from the model's shape and the batches' padded
lengths) against the fp32 matrix-multiply rate this CPU reaches at the model's own matrix
shapes. No server can answer faster than that rate allows, so it says whether a throughput
target is within this machine's reach at all.

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


def forward_flops(config: object, padded_lengths: list[int]) -> float:
    """Floating-point operations of one encoder forward pass over sequences of these (padded)
    lengths: per layer and token, the Q/K/V/output projections (4 h^2 multiply-adds), the
    feed-forward block (2 h f) and attention over the sequence (2 s h); 2 flops per
    multiply-add. Embedding look-ups, norms, softmax and the classifier head are left out
    (under 2% here), so this is a lower bound of the work."""
    h = int(config.hidden_size)
    f = int(config.intermediate_size)
    layers = int(config.num_hidden_layers)
    per_token = 4 * h * h + 2 * h * f
    return float(sum(2 * layers * s * (per_token + 2 * s * h) for s in padded_lengths))


def gemm_rate(config: object, tokens: int, seconds: float = 3.0) -> float:
    """The best fp32 GFLOP/s of ``torch.mm`` at the model's own matrix shapes (``tokens`` rows
    times hidden x hidden and hidden x intermediate), with this process's torch threads."""
    h, f = int(config.hidden_size), int(config.intermediate_size)
    x = torch.randn(tokens, h)
    weights = [torch.randn(h, h), torch.randn(h, f)]
    flops = sum(2 * tokens * w.shape[0] * w.shape[1] for w in weights)
    best = 0.0
    deadline = time.perf_counter() + seconds
    with torch.inference_mode():
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            for _ in range(10):
                for w in weights:
                    torch.mm(x, w)
            best = max(best, 10 * flops / (time.perf_counter() - start) / 1e9)
    return best


def int8_in_process(model: Path, batches: list[list[str]]) -> dict:
    """The same batches with the linear layers quantised to int8 (``quantize_dynamic``): its
    texts/s and how far its probabilities stray from fp32's, the one CPU speed-up that changes
    no code path but the weights. Not a serving option: it changes the answers."""
    served = load_served_model(model, device="cpu")
    reference = [served.predict(group) for group in batches]
    served.model = torch.ao.quantization.quantize_dynamic(
        served.model, {torch.nn.Linear}, dtype=torch.qint8
    )
    for group in batches[:3]:
        served.predict(group)
    start = time.perf_counter()
    quantised = [served.predict(group) for group in batches]
    seconds = time.perf_counter() - start
    ref, got = np.concatenate(reference), np.concatenate(quantised)
    return {
        "texts_per_second": round(len(ref) / seconds, 1),
        "same_label": round(float((ref.argmax(1) == got.argmax(1)).mean()), 4),
        "max_probability_difference": round(float(np.abs(ref - got).max()), 4),
    }


def ceiling(model: Path, batches: list[list[str]], *, max_length: int) -> dict:
    """How many texts/s this CPU could score at most in requests like ``batches``, at the best
    matrix-multiply rate measured at the model's shapes: with each request padded to its
    longest text, as served (one batch per request of up to 64), and with no padding at all
    (every text at its own length: the least arithmetic any implementation can do)."""
    from transformers import AutoConfig, AutoTokenizer

    from training.inference import classifier_dir

    folder = classifier_dir(model)
    config = AutoConfig.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    padded_flops = unpadded_flops = 0.0
    lengths_all: list[int] = []
    tokens = []
    for group in batches:
        encoded = tokenizer(group, truncation=True, max_length=max_length)["input_ids"]
        lengths = [len(ids) for ids in encoded]
        padded = [max(lengths)] * len(lengths)
        padded_flops += forward_flops(config, padded)
        unpadded_flops += forward_flops(config, lengths)
        lengths_all += lengths
        tokens.append(sum(padded))
    rate = gemm_rate(config, int(np.median(tokens)))
    texts = len(lengths_all)
    return {
        "mean_tokens": round(float(np.mean(lengths_all)), 1),
        "gemm_gflops": round(rate, 1),
        "gflop_per_text": round(padded_flops / texts / 1e9, 3),
        "texts_per_second": round(rate * 1e9 * texts / padded_flops, 1),
        "gflop_per_text_unpadded": round(unpadded_flops / texts / 1e9, 3),
        "texts_per_second_unpadded": round(rate * 1e9 * texts / unpadded_flops, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a folder `cli.py serve` takes (default: train one)")
    parser.add_argument("--train-rows", type=int, default=200)
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, help="torch threads of the server and in-process")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--tag", help="added to the results' file names (keeps earlier ones)")
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
        print("the same batches with int8 linear layers ...", flush=True)
        results["int8_in_process"] = int8_in_process(model, batches)
        print("this CPU's ceiling for such batches ...", flush=True)
        results["ceiling"] = ceiling(model, batches, max_length=results["model"]["max_length"])
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
    if args.tag:
        stem = stem.with_name(f"{stem.name}-{args.tag}")
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
    if "ceiling" in r:
        c = r["ceiling"]
        lines += [
            "",
            f"Ceiling of this CPU for batches of {r['http']['batch']['texts_per_request']}: "
            f"fp32 matrix multiplies at the model's shapes reach {c['gemm_gflops']} GFLOP/s "
            f"here. A text needs {c['gflop_per_text']} GFLOP padded to its request's longest "
            f"(as served), at most {c['texts_per_second']:,.0f} texts/s; "
            f"{c['gflop_per_text_unpadded']} GFLOP at its own length (mean "
            f"{c['mean_tokens']} word pieces, no padding at all: the least any implementation "
            f"computes), at most {c['texts_per_second_unpadded']:,.0f} texts/s. Measured "
            f"in-process: {r['in_process']['batch']['texts_per_second']:,} texts/s.",
        ]
    if "int8_in_process" in r:
        q = r["int8_in_process"]
        lines += [
            "",
            f"int8 linear layers (`quantize_dynamic`, in-process, not a serving option): "
            f"{q['texts_per_second']:,} texts/s; same label as fp32 on {q['same_label']:.2%} of "
            f"the texts, probabilities up to {q['max_probability_difference']} apart.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
