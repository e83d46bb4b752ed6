"""Training throughput: our fine_tune against a naive tutorial-style loop, same model and data.

    python bench/training.py                          # 256 demo rows on the CPU (~6 min, 2 cores)
    python bench/training.py --rows 8192 --batch-size 32   # on a GPU machine (auto-detected)

Ours is :func:`training.finetune.fine_tune` with its defaults (max_length 64, dynamic padding,
length-grouped batches, bf16 autocast on a CPU with native bf16 / bf16 on a GPU), and once more
with ``precision="fp32"`` to split the gain into padding and precision. The naive loop is written
the way the classic tutorials do it: tokenize everything with ``padding="max_length"``,
``max_length=250``; fp32; batches in the data order; a plain PyTorch loop with AdamW. Both train
the packaged all-MiniLM-L6-v2 with a fresh 2-class head on the same demo rows (negative and
positive tweets), with the same batch size, for one pass over the same rows. Tokenization and
model loading are outside the timed part for both.

On a GPU the script also reports model FLOPs utilisation (MFU): 6 x non-embedding parameters x
tokens / seconds / the GPU's peak dense bf16 FLOP/s; for the naive loop both with the padded
tokens it computes and with the real (non-pad) tokens that carry information. The embedding
tables are left out of the parameter count because a lookup does no matmul; attention's own
FLOPs (about 10% more at 250 tokens) are left out as well.

Prints the figures and writes ``bench/results/training-<machine>.json`` and ``.md``. Targets:
ours at least 1.5x the naive loop's samples/s on a CPU, at least 3x on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from machine import describe  # noqa: E402

from data import demo  # noqa: E402
from data.readers import read_table  # noqa: E402
from runtime.device import resolve_device  # noqa: E402
from runtime.models import default_model_dir  # noqa: E402
from training.config import TrainingConfig  # noqa: E402
from training.finetune import fine_tune  # noqa: E402

NAIVE_MAX_LENGTH = 250
# The default for full fine-tuning, set explicitly so both loops take the same steps.
LEARNING_RATE = 1e-4
LABELS = ["negative", "positive"]
# Peak dense bf16 tensor FLOP/s (no sparsity), from NVIDIA's data sheets. More specific names
# first: "H100 PCIe" must match before "H100".
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0))


def machine() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        **describe(),
        "gpu": gpu,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def peak_tflops(gpu_name: str | None, override: float | None) -> float | None:
    """Peak dense bf16 TFLOP/s of the GPU: ``override`` if given, else from its name."""
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS:
        if gpu_name and key.lower() in gpu_name.lower():
            return value
    return None


def demo_rows(n: int) -> tuple[list[str], np.ndarray]:
    """``n`` seeded random negative/positive demo tweets (the file is sorted by label)."""
    frame = read_table(demo.demo_csv_path()).frame
    frame = frame[frame["sentiment"].isin(LABELS)]
    if n > len(frame):
        raise SystemExit(f"--rows {n} is more than the {len(frame):,} negative/positive rows.")
    rows = frame.sample(n=n, random_state=0)
    return rows["text"].astype(str).tolist(), np.array([LABELS.index(v) for v in rows["sentiment"]])


def token_counts(texts: list[str], max_lengths: dict[str, int]) -> dict:
    """Real (non-pad) tokens of all rows at each truncation length, and the naive padded count."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    lengths = np.array([len(ids) for ids in tokenizer(texts)["input_ids"]])
    out = {
        "mean_length": round(float(lengths.mean()), 1),
        "max_length_seen": int(lengths.max()),
        "naive_padded": len(texts) * NAIVE_MAX_LENGTH,
    }
    for name, cap in max_lengths.items():
        out[f"{name}_real"] = int(np.minimum(lengths, cap).sum())
        out[f"{name}_truncated_rows"] = int((lengths > cap).sum())
    return out


def parameter_counts() -> dict:
    from transformers import AutoModelForSequenceClassification

    with quiet():
        model = AutoModelForSequenceClassification.from_pretrained(
            default_model_dir(), num_labels=len(LABELS)
        )
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." in n)
    return {"total": total, "non_embedding": total - embedding}


@contextlib.contextmanager
def quiet():
    """Hide the expected 'newly initialised classifier' load report and progress bar."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def naive_loop(
    texts: list[str], labels: np.ndarray, *, batch_size: int, device: str, learning_rate: float
) -> dict:
    """The tutorial loop: pad everything to 250, fp32, data order, plain AdamW steps."""
    from torch.utils.data import DataLoader, TensorDataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    source = default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(source)
    with quiet():
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(LABELS))
    model.to(device)
    encoded = tokenizer(
        texts,
        padding="max_length",
        truncation=True,
        max_length=NAIVE_MAX_LENGTH,
        return_tensors="pt",
    )
    dataset = TensorDataset(
        encoded["input_ids"],
        encoded["attention_mask"],
        encoded["token_type_ids"],
        torch.tensor(labels, dtype=torch.long),
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    sync(device)
    start = time.perf_counter()
    for input_ids, attention_mask, token_type_ids, y in loader:
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            token_type_ids=token_type_ids.to(device),
            labels=y.to(device),
        )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "precision": "fp32",
        "seconds": round(seconds, 3),
        "samples_per_second": round(len(texts) / seconds, 2),
        "final_loss": round(out.loss.detach().item(), 4),
    }


def ours(
    texts: list[str], labels: np.ndarray, *, batch_size: int, device: str, precision: str
) -> dict:
    """fine_tune with its defaults for one pass over every row (no cap, no evaluation)."""
    settings = {
        "epochs": 1.0,
        "batch_size": batch_size,
        "learning_rate": LEARNING_RATE,
        "max_train_samples": None,
        # Train on every row, with no validation passes inside the timed part (on configs
        # that hold rows out for validation).
        "validation_fraction": 0.0,
        "device": device,
        "precision": precision,
    }
    known = {f.name for f in fields(TrainingConfig)}
    config = TrainingConfig(**{k: v for k, v in settings.items() if k in known})
    with tempfile.TemporaryDirectory() as tmp:
        result = fine_tune(texts, labels, label_names=LABELS, config=config, output_dir=tmp)
    return {
        "precision": result.precision,
        "seconds": round(result.train_seconds, 3),
        "samples_per_second": round(result.train_samples_per_second, 2),
        "final_loss": round(result.history[-1]["loss"], 4) if result.history else None,
        "max_length": config.max_length,
    }


def add_flops(run: dict, tokens: int, params: int, peak: float | None, key: str) -> None:
    """Model TFLOP/s (6 x params x tokens / s) and, with a known peak, the MFU in percent."""
    tflops = 6 * params * tokens / run["seconds"] / 1e12
    run[f"tflops_{key}"] = round(tflops, 3)
    if peak:
        run[f"mfu_{key}_percent"] = round(100 * tflops / peak, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="default: 256 on CPU, 8192 on GPU")
    parser.add_argument(
        "--batch-size", type=int, default=TrainingConfig().batch_size, help="default: %(default)s"
    )
    parser.add_argument("--repeats", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="GPU peak dense bf16 TFLOP/s for MFU"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = args.rows or (8192 if device == "cuda" else 256)
    info = machine()
    peak = peak_tflops(info["gpu"], args.peak_tflops) if device == "cuda" else None
    print(f"machine: {info}", flush=True)

    texts, labels = demo_rows(rows)
    lr = LEARNING_RATE
    results: dict = {
        "machine": info,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device,
        "rows": rows,
        "batch_size": args.batch_size,
        "learning_rate": lr,
        "naive_max_length": NAIVE_MAX_LENGTH,
        "ours_max_length": TrainingConfig().max_length,
        "peak_bf16_tflops": peak,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if device == "cuda" else None,
        "tokens": token_counts(
            texts, {"ours": TrainingConfig().max_length, "naive": NAIVE_MAX_LENGTH}
        ),
        "params": parameter_counts(),
        "repeats": [],
        # Other jobs on a shared machine slow every variant; the ratios are the point.
        "load_average_start": round(os.getloadavg()[0], 2),
    }
    tokens, n_params = results["tokens"], results["params"]["non_embedding"]
    print(
        f"{rows} rows, batch {args.batch_size}, mean {tokens['mean_length']} tokens per row; "
        f"naive pads {tokens['naive_padded']:,} tokens for {tokens['naive_real']:,} real ones",
        flush=True,
    )
    runs = {
        "naive": lambda: naive_loop(
            texts, labels, batch_size=args.batch_size, device=device, learning_rate=lr
        ),
        "ours": lambda: ours(
            texts, labels, batch_size=args.batch_size, device=device, precision="auto"
        ),
        "ours_fp32": lambda: ours(
            texts, labels, batch_size=args.batch_size, device=device, precision="fp32"
        ),
    }
    names = list(runs)
    for r in range(args.repeats):
        # Rotate the order so no variant always runs first (cold caches) or last.
        order = names[r % len(names) :] + names[: r % len(names)]
        rep = {"order": order}
        for name in order:
            rep[name] = runs[name]()
            print(f"repeat {r + 1}: {name}: {rep[name]}", flush=True)
        add_flops(rep["ours"], tokens["ours_real"], n_params, peak, "real")
        add_flops(rep["ours_fp32"], tokens["ours_real"], n_params, peak, "real")
        add_flops(rep["naive"], tokens["naive_real"], n_params, peak, "real")
        add_flops(rep["naive"], tokens["naive_padded"], n_params, peak, "padded")
        naive_sps = rep["naive"]["samples_per_second"]
        rep["speedup"] = round(rep["ours"]["samples_per_second"] / naive_sps, 2)
        rep["speedup_padding_only"] = round(rep["ours_fp32"]["samples_per_second"] / naive_sps, 2)
        rep["speedup_precision_only"] = round(
            rep["ours"]["samples_per_second"] / rep["ours_fp32"]["samples_per_second"], 2
        )
        results["repeats"].append(rep)
        print(
            f"repeat {r + 1}: ours {rep['ours']['samples_per_second']:.1f} samples/s "
            f"({rep['ours']['precision']}), naive {naive_sps:.1f}: {rep['speedup']}x "
            f"(padding {rep['speedup_padding_only']}x, precision "
            f"{rep['speedup_precision_only']}x)",
            flush=True,
        )

    results["load_average_end"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"training-{machine_tag(info, device)}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2))
    stem.with_suffix(".md").write_text(to_markdown(results, " ".join(sys.argv)))
    print(f"wrote {stem}.json and .md")
    return 0


def machine_tag(info: dict, device: str) -> str:
    if device == "cuda":
        words = [w for w in (info["gpu"] or "gpu").lower().split() if w != "nvidia"]
        return "gpu-" + "-".join(words[:2])
    return f"cpu{info['cores']}"


def to_markdown(r: dict, command: str) -> str:
    m, t = r["machine"], r["tokens"]
    on = m["gpu"] if r["device"] == "cuda" else f"{m['cpu']}, {m['cores']} cores"
    lines = [
        f"# bench/training.py — {r['date']}",
        "",
        f"Command: `python {command.split('/', 1)[-1] if command.startswith('/') else command}`",
        "",
        f"Device: {on}; torch {m['torch']}, transformers {m['transformers']}. Load average "
        f"{r.get('load_average_start')} at the start, {r.get('load_average_end')} at the end.",
        f"Packaged all-MiniLM-L6-v2 with a fresh 2-class head; {r['rows']:,} demo tweets "
        f"(negative/positive), batch {r['batch_size']}, one pass, AdamW lr {r['learning_rate']}.",
        f"Tokens per row: mean {t['mean_length']}, max {t['max_length_seen']}. Naive: padded "
        f"to {r['naive_max_length']} = {t['naive_padded']:,} tokens, {t['naive_real']:,} real "
        f"({100 * t['naive_real'] / t['naive_padded']:.0f}%). Ours: max length "
        f"{r['ours_max_length']}, {t['ours_real']:,} real tokens ({t['ours_truncated_rows']} rows "
        "truncated).",
        "",
        "| repeat | naive fp32 (samples/s) | ours fp32 | ours (default) | speed-up "
        "| of which padding | of which precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, rep in enumerate(r["repeats"], 1):
        lines.append(
            f"| {i} | {rep['naive']['samples_per_second']} | "
            f"{rep['ours_fp32']['samples_per_second']} | {rep['ours']['samples_per_second']} "
            f"({rep['ours']['precision']}) | **{rep['speedup']}x** | "
            f"{rep['speedup_padding_only']}x | {rep['speedup_precision_only']}x |"
        )
    lines += [
        "",
        "Model TFLOP/s = 6 x non-embedding parameters "
        f"({r['params']['non_embedding'] / 1e6:.1f}M of {r['params']['total'] / 1e6:.1f}M) x "
        "tokens / seconds (attention FLOPs not counted)"
        + (
            f"; MFU against {r['peak_bf16_tflops']} TFLOP/s peak dense bf16."
            if r["peak_bf16_tflops"]
            else "."
        ),
        "",
        "| repeat | ours, real tokens | ours fp32, real | naive, real tokens | naive, padded tokens |",
        "|---|---|---|---|---|",
    ]
    for i, rep in enumerate(r["repeats"], 1):
        cells = [
            _flops_cell(rep["ours"], "real"),
            _flops_cell(rep["ours_fp32"], "real"),
            _flops_cell(rep["naive"], "real"),
            _flops_cell(rep["naive"], "padded"),
        ]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _flops_cell(run: dict, key: str) -> str:
    cell = f"{run[f'tflops_{key}']} TFLOP/s"
    if f"mfu_{key}_percent" in run:
        cell += f" (MFU {run[f'mfu_{key}_percent']}%)"
    return cell


if __name__ == "__main__":
    sys.exit(main())
