"""Accuracy with and without domain-adaptive pretraining, on the same test rows and seeds.

    PYTHONPATH=. python bench/adaptation.py WORKSPACE [MAX_STEPS]   # e.g. the imported demo, 60

Adapts the packaged encoder to the workspace's texts (masked-LM, ``MAX_STEPS`` steps of 32
texts), then trains the default single run (TrainingConfig(): full fine-tuning, capped at 2,000
training rows x 3 epochs, scored on the same 1,000 test rows) on the base and on the adapted
encoder, for seeds 0 and 1. Prints each run and writes ``/tmp/dapt.json``; the figures of a run
are copied into ``bench/results/adaptation-*.md``. The Charts page draws the same comparison
from a workspace's runs (training.reporting.adaptation_pairs).
"""

import json
import sys
import time

from data.store import Workspace
from training.adapt import AdaptConfig, adapt_workspace
from training.config import TrainingConfig
from training.runs import run_experiment


def main() -> None:
    ws = Workspace(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    started = time.time()
    result = adapt_workspace(ws, AdaptConfig(max_steps=steps, epochs=1.0))
    summary = {k: v for k, v in result.summary().items() if k != "history"}
    print("adapt", json.dumps(summary, default=str), flush=True)
    out = {"adapt_seconds": round(time.time() - started, 1), "adapt": summary, "runs": []}
    for seed in (0, 1):
        for model in ("", result.model_dir):
            t = time.time()
            [run_id] = run_experiment(ws, "single", config=TrainingConfig(seed=seed, model=model))
            run = ws.run(run_id)
            out["runs"].append(
                {
                    "seed": seed,
                    "model": model or "packaged",
                    "accuracy": run.test.get("accuracy"),
                    "f1": run.test.get("f1"),
                    "n": run.test.get("n"),
                    "seconds": round(time.time() - t, 1),
                }
            )
            print(out["runs"][-1], flush=True)
    with open("/tmp/dapt.json", "w") as f:
        json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
