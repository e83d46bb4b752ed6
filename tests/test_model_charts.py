"""Charts people defend models with: ROC curves (stored with each run at evaluation time), the
confusion-matrix heatmap (counts and row shares) and the learning-rate sweep.

Pure parts (the ROC function, the sweep's plan and table, the figures) are tested on toy
arrays; one tiny real sweep checks what a run records, and AppTest checks the pages.
"""

from __future__ import annotations

import dataclasses
import json
from itertools import product

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from data.records import RunRecord, run_metrics
from data.store import Workspace
from tests.conftest import TINY, app
from training.experiments import DEFAULT_RATE_GRID, plan_learning_rate, rate_label
from training.metrics import classification_metrics, roc_curves
from training.reporting import confusion_table, rate_sweep_table, roc_frame, runs_frame
from training.runs import plan, run_experiment

HOSTILE = ["<b>x</b>", "=cmd", '<a href="http://evil.example/">a</a>']


# --------------------------------------------------------------------------- ROC curves


def test_binary_roc_has_one_curve_with_the_known_auc():
    # The textbook case: 3 of the 4 positive/negative pairs are ranked right, AUC 0.75.
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    roc = roc_curves(y, np.column_stack([1 - scores, scores]), label_names=["neg", "pos"])
    assert roc["scheme"] == "binary"
    [curve] = roc["curves"]
    assert curve["label"] == "pos" and curve["auc"] == pytest.approx(0.75)
    assert (curve["positives"], curve["negatives"]) == (2, 2)
    assert (curve["fpr"][0], curve["tpr"][0]) == (0.0, 0.0)
    assert (curve["fpr"][-1], curve["tpr"][-1]) == (1.0, 1.0)
    assert curve["fpr"] == [0.0, 0.0, 0.5, 0.5, 1.0] and curve["tpr"] == [0.0, 0.5, 0.5, 1.0, 1.0]
    json.dumps(roc)  # stored as it is


def test_three_classes_get_one_vs_rest_curves_with_known_aucs():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.6, 0.3, 0.1],
            [0.2, 0.7, 0.1],  # class b: above every other row...
            [0.3, 0.2, 0.5],  # ...and this one below two of them
            [0.1, 0.1, 0.8],
            [0.1, 0.4, 0.5],
        ]
    )
    roc = roc_curves(y, probs, label_names=["a", "b", "c"])
    assert roc["scheme"] == "one-vs-rest"
    aucs = {c["label"]: c["auc"] for c in roc["curves"]}
    # a is perfectly separated; b's rows (0.7, 0.2) vs the rest (0.1, 0.3, 0.1, 0.4): 6 of 8
    # pairs right; c's rows (0.8, 0.5) vs the rest (0.1, 0.1, 0.1, 0.5): 7.5 (a tie is half).
    assert aucs == pytest.approx({"a": 1.0, "b": 6 / 8, "c": 7.5 / 8})
    for c, curve in enumerate(roc["curves"]):
        assert curve["auc"] == pytest.approx(roc_auc_score(y == c, probs[:, c]))
    # The stored macro AUC is the mean of these curves' AUCs.
    macro = classification_metrics(y, probs, label_names=["a", "b", "c"])["roc_auc"]
    assert macro == pytest.approx(np.mean(list(aucs.values())))


def test_an_absent_class_has_no_curve_and_long_curves_are_thinned():
    probs = np.full((4, 3), 1 / 3)
    roc = roc_curves(np.array([0, 0, 1, 1]), probs, label_names=["a", "b", "c"])
    assert [c["label"] for c in roc["curves"]] == ["a", "b"]  # c has no positives
    one = roc_curves(np.array([0, 0]), probs[:2], label_names=["a", "b", "c"])
    assert one["curves"] == []

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 4000)
    noisy = rng.dirichlet([1, 1, 1], 4000) + np.eye(3)[y] * 0.3
    roc = roc_curves(y, noisy, label_names=["a", "b", "c"], max_points=50)
    for c, curve in enumerate(roc["curves"]):
        assert len(curve["fpr"]) == len(curve["tpr"]) <= 50
        assert (curve["fpr"][0], curve["tpr"][-1]) == (0.0, 1.0)
        assert np.all(np.diff(curve["fpr"]) >= 0) and np.all(np.diff(curve["tpr"]) >= 0)
        # The AUC comes from the whole curve, not the thinned one.
        assert curve["auc"] == pytest.approx(roc_auc_score(y == c, noisy[:, c]))
    with pytest.raises(ValueError, match="max_points"):
        roc_curves(y, noisy, label_names=["a", "b", "c"], max_points=1)


def test_a_run_recorded_before_roc_curves_reads_as_none():
    legacy = {"accuracy": 0.8, "n": 4, "labels": ["a", "b"], "confusion_matrix": [[2, 0], [1, 1]]}
    run = RunRecord.from_dict(
        {
            "id": 1,
            "status": "done",
            "metrics": json.dumps(run_metrics(test=legacy, verified=None, examples=None)),
        }
    )
    assert run.roc() is None and run.roc("verified") is None
    assert roc_frame([run]).empty
    with pytest.raises(ValueError, match="subset"):
        run.roc("train")


def test_the_confusion_table_normalises_rows():
    metrics = {"labels": ["a", "b"], "confusion_matrix": [[3, 1], [0, 0]]}
    assert confusion_table(metrics).to_numpy().tolist() == [[3, 1], [0, 0]]
    shares = confusion_table(metrics, normalise=True)
    assert shares.to_numpy().tolist() == [[0.75, 0.25], [0.0, 0.0]]  # an empty row stays 0


# --------------------------------------------------------------------------- figures


def roc_metrics(labels: list[str]) -> dict:
    y = np.array([0, 1, 2, 0, 1, 2][: max(4, len(labels) * 2)]) % len(labels)
    probs = np.eye(len(labels))[y] * 0.6 + 0.4 / len(labels)
    return {
        **classification_metrics(y, probs, label_names=labels),
        "roc": roc_curves(y, probs, label_names=labels),
    }


def test_hostile_labels_are_escaped_in_the_heatmap_and_the_roc_legend():
    from app_pages.figures import confusion_figure, roc_figure

    metrics = roc_metrics(HOSTILE)
    run = RunRecord(id=3, status="done", test=metrics)
    for fig in (
        confusion_figure(metrics),
        confusion_figure(metrics, normalise=True),
        roc_figure(roc_frame([run])),
        roc_figure(roc_frame([run, dataclasses.replace(run, id=4)]), side_by_side=True),
    ):
        text = json.dumps(json.loads(fig.to_json()))  # plotly's JSON escapes < and &
        assert "<b>x</b>" not in text and "<a href" not in text
        assert "&lt;b&gt;x&lt;/b&gt;" in text and "=cmd" in text
    names = [t.name for t in roc_figure(roc_frame([run])).data]
    assert "&lt;b&gt;x&lt;/b&gt; (AUC 1.000)" in names and "chance (AUC 0.5)" in names


def test_the_heatmap_shows_counts_or_row_shares():
    from app_pages.figures import confusion_figure

    metrics = {"labels": ["a", "b"], "confusion_matrix": [[3, 1], [2, 2]]}
    counts = confusion_figure(metrics).data[0]
    assert counts.z == ((3, 1), (2, 2)) or [list(r) for r in counts.z] == [[3, 1], [2, 2]]
    shares = confusion_figure(metrics, normalise=True).data[0]
    assert [list(r) for r in shares.z] == [[0.75, 0.25], [0.5, 0.5]]
    assert [list(r) for r in shares.text] == [["75%", "25%"], ["50%", "50%"]]


def test_overlaid_roc_colours_runs_and_side_by_side_makes_a_panel_per_run():
    from app_pages.figures import roc_figure

    runs = [RunRecord(id=i, status="done", test=roc_metrics(["a", "b", "c"])) for i in (1, 2)]
    overlaid = roc_figure(roc_frame(runs))
    curves = [t for t in overlaid.data if t.name.startswith("run")]
    assert len(curves) == 6 and {t.line.color for t in curves[:3]} != {
        t.line.color for t in curves[3:]
    }
    side = roc_figure(roc_frame(runs), side_by_side=True)
    assert {t.xaxis for t in side.data} == {"x", "x2"}


# --------------------------------------------------------------------------- learning-rate sweep


def test_the_learning_rate_plan_is_rates_times_seeds_on_the_same_rows(workspace):
    specs = plan(
        workspace, "learning_rate", config=TINY, learning_rates=[1e-3, 1e-5, 3e-4], seeds=[0, 1]
    )
    # Seed by seed, smallest rate first: one run per (rate, seed).
    assert [(s.seed, s.learning_rate) for s in specs] == list(product([0, 1], [1e-5, 3e-4, 1e-3]))
    for seed in (0, 1):
        rows = {tuple(s.train_ids) for s in specs if s.seed == seed}
        assert len(rows) == 1  # every rate of a seed trains on the same rows
    assert all(s.experiment == "learning_rate" and s.x == s.learning_rate for s in specs)
    assert all(s.notes["series"] == "learning rate" for s in specs)
    default = plan(workspace, "learning_rate", config=TINY)
    assert len(default) == len(DEFAULT_RATE_GRID) * 3
    assert sorted({s.learning_rate for s in default}) == [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]
    with pytest.raises(ValueError, match="learning rates"):
        plan_learning_rate(range(5), rates=[0.0, 1e-4])


def test_rates_read_as_people_write_them():
    assert [rate_label(r) for r in DEFAULT_RATE_GRID] == ["1e-5", "3e-5", "1e-4", "3e-4", "1e-3"]
    assert rate_label(2.5e-4) == "2.5e-4" and rate_label(0.1) == "0.1"


def sweep_run(run_id: int, rate: float, seed: int, accuracy: float, job: int = 7) -> RunRecord:
    return RunRecord(
        id=run_id,
        job_id=job,
        status="done",
        config={"seed": seed, "learning_rate": rate},
        data={
            "experiment": "learning_rate",
            "series": "learning rate",
            "x": rate,
            "seed": seed,
            "train_rows": 10,
        },
        test={"accuracy": accuracy, "n": 6},
    )


SWEEP = [(1e-5, 0, 0.5), (1e-5, 1, 0.6), (1e-4, 0, 0.9), (1e-4, 1, 0.8), (1e-3, 0, 0.4)]


def test_the_sweep_table_has_mean_and_spread_per_rate_and_marks_the_best():
    runs = [sweep_run(i, *point) for i, point in enumerate(SWEEP, start=1)]
    table = rate_sweep_table(runs_frame(runs))
    assert table["learning_rate"].tolist() == [1e-5, 1e-4, 1e-3]
    assert table["rate"].tolist() == ["1e-5", "1e-4", "1e-3"]
    assert table["mean"].tolist() == pytest.approx([0.55, 0.85, 0.4])
    assert table["std"].iloc[:2].tolist() == pytest.approx([np.std([0.5, 0.6], ddof=1)] * 2)
    assert np.isnan(table["std"].iloc[2])  # one seed: no spread
    assert table["min"].tolist() == pytest.approx([0.5, 0.8, 0.4])
    assert table["max"].tolist() == pytest.approx([0.6, 0.9, 0.4])
    assert table["n"].tolist() == [2, 2, 1]
    assert table["best"].tolist() == [False, True, False]
    assert rate_sweep_table(runs_frame([])).empty


def test_the_sweep_figure_has_a_log_axis_with_readable_ticks_and_the_best_rate_starred():
    from app_pages.figures import rate_sweep_figure

    runs = [sweep_run(i, *point) for i, point in enumerate(SWEEP, start=1)]
    frame = runs_frame(runs)
    fig = rate_sweep_figure(rate_sweep_table(frame), frame, metric="accuracy")
    axis = fig.layout.xaxis
    assert axis.type == "log"
    assert list(axis.tickvals) == [1e-5, 1e-4, 1e-3]
    assert list(axis.ticktext) == ["1e-5", "1e-4", "1e-3"]
    mean = next(t for t in fig.data if t.name.startswith("full test split"))
    assert list(mean.y) == pytest.approx([0.55, 0.85, 0.4])
    assert list(mean.error_y.array) == pytest.approx([np.std([0.5, 0.6], ddof=1)] * 2 + [0.0])
    best = next(t for t in fig.data if t.name.startswith("best"))
    assert best.name == "best: 1e-4" and list(best.x) == [1e-4]
    seeds = next(t for t in fig.data if t.name == "each run (seed)")
    assert len(seeds.x) == len(SWEEP)


# --------------------------------------------------------------------------- real runs + pages


@pytest.fixture
def ws(home, sentiment_prepared):
    workspace = Workspace.create(home / "reviews", sentiment_prepared, name="reviews")
    yield workspace
    workspace.close()


@pytest.mark.slow
def test_a_tiny_sweep_records_a_run_per_rate_and_seed_with_roc_curves_that_run_history_draws(ws):
    config = dataclasses.replace(TINY, validation_fraction=0.0)
    job = ws.create_job("experiment", {})
    run_ids = run_experiment(
        ws, "learning_rate", config=config, job_id=job, learning_rates=[1e-4, 1e-3], seeds=[0, 1]
    )
    ws.update_job(job, status="done")
    runs = [ws.run(i) for i in run_ids]
    assert all(r.done for r in runs)
    got = sorted((r.config["learning_rate"], r.config["seed"]) for r in runs)
    assert got == sorted(product([1e-4, 1e-3], [0, 1]))
    assert all(r.data["learning_rate"] == r.config["learning_rate"] for r in runs)
    assert all(r.data["series"] == "learning rate" for r in runs)

    roc = runs[0].roc()
    [curve] = roc["curves"]  # two classes: one curve, "positive" vs "negative"
    assert roc["scheme"] == "binary" and curve["label"] == "positive"
    assert curve["auc"] == pytest.approx(runs[0].test["roc_auc"])
    assert len(curve["fpr"]) <= 200
    stored = json.loads((ws.run_dir(run_ids[0]) / "evaluation.json").read_text())
    assert stored["test"]["roc"] == roc

    table = rate_sweep_table(runs_frame(runs)[lambda f: f["job"] == job])
    assert table["n"].tolist() == [2, 2]

    at = app("app_pages/history.py")
    assert not at.exception, at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [json.dumps(s["layout"].get("xaxis", {}).get("title", "")) for s in specs]
    assert any("false positive rate" in t for t in titles)  # one run's ROC (and the compare)
    assert any(s["data"][0]["type"] == "heatmap" for s in specs)
    assert not [i for i in at.info if "before ROC curves" in i.value]


def legacy_run(ws: Workspace, job: int, **extra) -> int:
    test = {
        "accuracy": 0.5,
        "roc_auc": 0.6,
        "n": 6,
        "labels": ["negative", "positive"],
        "confusion_matrix": [[2, 1], [2, 1]],
        **extra,
    }
    run = ws.create_run(name="old run", config={"technique": "full"}, data={}, job_id=job)
    ws.update_run(run, status="done", metrics=run_metrics(test=test, verified=None, examples=None))
    return run


def test_a_legacy_run_shows_the_message_and_still_its_heatmap(ws):
    job = ws.create_job("train", {})
    ws.update_job(job, status="done")
    legacy_run(ws, job)
    for page in ("app_pages/history.py", "app_pages/train.py"):
        at = app(page)
        assert not at.exception, at.exception
        assert any("recorded before ROC curves were kept; retrain" in i.value for i in at.info)
        specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        assert any(s["data"][0]["type"] == "heatmap" for s in specs)
    at.toggle(key="cm_normalise").set_value(True).run()
    heat = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if json.loads(c.proto.spec)["data"][0]["type"] == "heatmap"
    )
    assert heat["data"][0]["z"] == [[2 / 3, 1 / 3], [2 / 3, 1 / 3]]


def test_run_history_compares_roc_curves_overlaid_or_side_by_side(ws):
    job = ws.create_job("train", {})
    ws.update_job(job, status="done")
    metrics = roc_metrics(["negative", "positive"])
    first = legacy_run(ws, job, roc=metrics["roc"])
    second = legacy_run(ws, job, roc=metrics["roc"])
    old = legacy_run(ws, job)
    at = app("app_pages/history.py")
    at.multiselect(key="compare_runs").set_value([first, second, old]).run()
    assert not at.exception, at.exception
    assert any(f"Run {old} was recorded before ROC curves" in i.value for i in at.info)

    def compare_roc():
        names = [
            [t.get("name", "") for t in json.loads(c.proto.spec)["data"]]
            for c in at.get("plotly_chart")
        ]
        return next(n for n in names if any(x.startswith(f"run {first}") for x in n))

    assert any(n.startswith(f"run {second} · positive (AUC") for n in compare_roc())
    at.toggle(key="compare_roc_side").set_value(True).run()
    assert not at.exception, at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("xaxis2" in s["layout"] for s in specs)


def test_charts_page_draws_the_sweep_and_launches_one_with_an_estimate(ws, launched):
    job = ws.create_job("experiment", {})
    ws.update_job(job, status="done")
    for rate, seed, accuracy in SWEEP:
        run = ws.create_run(
            name=f"lr {rate_label(rate)}",
            config={"seed": seed, "learning_rate": rate, "technique": "full"},
            data={
                "experiment": "learning_rate",
                "series": "learning rate",
                "x": rate,
                "seed": seed,
            },
            job_id=job,
        )
        test = {"accuracy": accuracy, "n": 6, "labels": ["negative", "positive"]}
        ws.update_run(
            run, status="done", metrics=run_metrics(test=test, verified=None, examples=None)
        )
    at = app("app_pages/charts.py")
    assert not at.exception, at.exception
    sweep = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if json.loads(c.proto.spec)["layout"].get("xaxis", {}).get("type") == "log"
        and "ticktext" in json.loads(c.proto.spec)["layout"]["xaxis"]
    )
    assert sweep["layout"]["xaxis"]["ticktext"] == ["1e-5", "1e-4", "1e-3"]
    assert any("Best rate" in c.value and "1e-4" in c.value for c in at.caption)

    at.multiselect(key="lr_rates").set_value([1e-5, 1e-4, 1e-3]).run()
    at.number_input(key="lr_seeds").set_value(2).run()
    assert any(
        "6 runs" in m.value and "3 rates × 2 seeds" in m.value and "roughly" in m.value
        for m in at.markdown
    )
    at.button(key="run_learning_rate").click().run()
    assert not at.exception, at.exception
    kind, params = launched[-1]
    assert kind == "experiment" and params["experiment"] == "learning_rate"
    assert params["options"] == {"learning_rates": [1e-5, 1e-4, 1e-3], "seeds": [0, 1]}


def test_the_data_size_chart_ticks_at_the_sizes_trained_on(ws, launched):
    """A data-size curve over 28..225 rows is drawn on a log axis: its ticks are the sizes
    themselves ("28", "56", ...), not plotly's "4 5 6 7 8 9 100 2"; and the numbers table of a
    label-quality experiment (x: "original", "curated", 0.1...) is drawn without an Arrow error."""
    job = ws.create_job("experiment", {})
    ws.update_job(job, status="done")
    for rows, seed in product((28, 56, 112, 225), (0, 1)):
        run = ws.create_run(
            name=f"{rows} rows",
            config={"seed": seed, "technique": "full"},
            data={"experiment": "data_size", "series": "data size", "x": rows / 225, "seed": seed}
            | {"train_rows": rows},
            job_id=job,
        )
        test = {"accuracy": 0.5 + rows / 1000, "n": 6, "labels": ["negative", "positive"]}
        ws.update_run(
            run, status="done", metrics=run_metrics(test=test, verified=None, examples=None)
        )
    job = ws.create_job("experiment", {})
    ws.update_job(job, status="done")
    for series, x in (("labels", "original"), ("labels", "curated"), ("noise", 0.1)):
        run = ws.create_run(
            name=f"{series} {x}",
            config={"seed": 0, "technique": "full"},
            data={"experiment": "label_quality", "series": series, "x": x, "seed": 0},
            job_id=job,
        )
        test = {"accuracy": 0.7, "n": 6, "labels": ["negative", "positive"]}
        ws.update_run(
            run, status="done", metrics=run_metrics(test=test, verified=None, examples=None)
        )
    at = app("app_pages/charts.py")
    assert not at.exception, at.exception
    [size] = [
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if "training rows" in json.dumps(json.loads(c.proto.spec)["layout"].get("xaxis", {}))
    ]
    axis = size["layout"]["xaxis"]
    assert axis["type"] == "log" and axis["tickvals"] == [28, 56, 112, 225]
    assert axis["ticktext"] == ["28", "56", "112", "225"]
    numbers = [d.value for d in at.dataframe if "x" in d.value.columns]
    quality = next(t for t in numbers if "original" in set(t["x"]))
    assert set(quality["x"]) == {"original", "curated", "0.1"}  # all text: one Arrow type
