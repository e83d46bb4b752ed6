"""Data and people's words are shown as plain text on every page, never as markdown or HTML.

Streamlit renders markdown in bodies, captions, alerts, toasts, headings, metric labels and
values, button and widget labels, help tooltips and radio options. A workspace whose label
names, ids, metadata, reviewer names, workspace name, source file, run name, job error and
encoder name are hostile strings (links, remote images, HTML, emphasis, backticks, autolinks,
Streamlit's colour, icon and emoji syntax, LaTeX) is opened on every page, and every string
Streamlit would render is parsed the way Streamlit's renderer parses it: no link, image, HTML,
emphasis, directive or formula may come out of the data.

The model of the renderer: CommonMark (markdown-it) for the syntax, then the rewrites that
Streamlit's pipeline (react-markdown, remark-gfm, Streamlit's own plugins) applies to *plain
text* after the backslash escapes are gone: GFM autolinks of http://, www. and e-mail
addresses, ``:material_x:`` icons, emoji shortcodes, the ``:streamlit:`` logo and " -> "
arrows. What micromark parses and markdown-it does not (``:red[...]`` directives, ``$...$``
formulas) is looked for in the source with its escaped characters taken out.
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from app_pages.plain import plain, plain_chart
from data.store import Workspace
from tests.conftest import NEGATIVE, POSITIVE, make_prepared

TIMEOUT = 60
ROOT = Path(__file__).resolve().parent.parent

SCRIPT = "<script>alert(1)</script>"
IMG_TAG = "<img src=x onerror=alert(1)>"
LINK = "[link](http://evil.example/)"
IMAGE = "![img](http://evil.example/p.png)"
BOLD = "**bold**"
BACKTICK = "a`b"
URL = "http://evil.example"
WWW = "www.evil.example"
EMAIL = "x@evil.example"
COLOUR = ":red[x]"
FORMULA = "$x^2$"
ICON = ":material/home:"
EMOJI = ":smile:"
A_TAG = '<a href="http://evil.example/">a</a>'  # Plotly draws this one as a link
HOSTILE = (SCRIPT, IMG_TAG, LINK, IMAGE, BOLD, BACKTICK, URL, WWW, EMAIL, COLOUR, FORMULA, ICON)
HOSTILE += (EMOJI, A_TAG)

# --------------------------------------------------------------------------- the renderer model

MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["strikethrough", "table"])
# Rewrites of plain text (mdast-util-gfm-autolink-literal's and Streamlit's own patterns).
TEXT_REWRITES = {
    "autolink": re.compile(r"(?i)(https?://|www\.)[-.\w]+"),
    "e-mail autolink": re.compile(r"[-.\w+]+@[-\w]+(\.[-\w]+)+"),
    "icon": re.compile(r":material_\w+:"),
    "logo": re.compile(r":streamlit:"),
    "emoji": re.compile(re.escape(EMOJI)),  # only the hostile one: times read like :30:
    "arrow": re.compile(r"(^|\s)(<->|->|<-|--|>=|<=|~=)(\s|$)"),
}
ESCAPED = re.compile(r"\\[!-/:-@\[-`{-~]")


def tokens(markdown: str) -> Iterator:
    """Every markdown-it token of ``markdown``, inline children included."""
    # Streamlit turns :material/ into :material_ before parsing (its icon syntax).
    for token in MARKDOWN.parse(markdown.replace(":material/", ":material_")):
        yield token
        yield from token.children or []


def problems(markdown: str) -> list[str]:
    """What rendering ``markdown`` in Streamlit would make of the hostile strings."""
    found = []
    emphasis = None
    for token in tokens(markdown):
        if token.type in ("html_inline", "html_block"):
            found.append(f"HTML {token.content.strip()!r}")
        elif token.type == "link_open":
            found.append(f"a link to {token.attrGet('href')!r}")
        elif token.type == "image":
            found.append(f"an image from {token.attrGet('src')!r}")
        elif token.type in ("strong_open", "em_open", "s_open"):
            emphasis = token.type
        elif token.type == "text":
            if emphasis and token.content == "bold":
                found.append(f"{emphasis} {token.content!r}")
            for name, pattern in TEXT_REWRITES.items():
                if match := pattern.search(token.content):
                    found.append(f"{name} {match.group(0)!r}")
        if token.type.endswith("_close"):
            emphasis = None
    unescaped = ESCAPED.sub("", markdown)
    found += [f"syntax {s!r}" for s in (COLOUR, FORMULA) if s in unescaped]
    return found


def shown(markdown: str) -> str:
    """The text a reader sees (tags removed, entities decoded), whitespace collapsed."""
    text = html.unescape(re.sub(r"<[^>]*>", "", MARKDOWN.render(markdown)))
    return " ".join(text.replace("\u2060", "").split())


# --------------------------------------------------------------------------- the helper


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_string_shows_as_typed(value):
    assert problems(value) or value == BACKTICK  # the model sees the attack (a lone ` is inert)
    assert problems(plain(value)) == []
    assert shown(plain(value)) == value


def test_the_model_catches_what_streamlit_renders():
    assert problems(LINK) == ["a link to 'http://evil.example/'"]
    assert problems(IMAGE) == ["an image from 'http://evil.example/p.png'"]
    assert problems(SCRIPT) == [f"HTML {SCRIPT!r}"]
    assert problems(BOLD) == ["strong_open 'bold'"]
    # Escapes alone are not enough: GFM autolinks the text once the escapes are gone.
    assert problems(r"http\://evil\.example") == ["autolink 'http://evil.example'"]
    assert problems(r"x\@evil\.example") == ["e-mail autolink 'x@evil.example'"]
    assert problems(r"\:smile\:") == ["emoji ':smile:'"]
    assert problems(r"\:material\/home\:") == []  # Streamlit's :material/ rewrite needs it raw
    assert problems(COLOUR) == [f"syntax {COLOUR!r}"] and problems(r"\:red\[x\]") == []


def test_plain_words_are_left_alone():
    assert plain("positive") == "positive"
    assert plain("4,934 rows; 50% (or so)?") == r"4,934 rows; 50% \(or so\)?"
    assert plain("learning_rate _not_ this_") == r"learning_rate \_not\_ this\_"
    assert plain(12) == "12"


def test_a_line_break_does_not_start_a_new_block():
    assert plain("one\n\n# two\r\n- three") == r"one \# two \- three"
    assert shown(plain("one\n\n# two")) == "one # two"


def test_a_backtick_in_data_opens_no_code_span():
    assert "<code>" in MARKDOWN.render(f"{BACKTICK} and c`d")
    assert "<code>" not in MARKDOWN.render(f"{plain(BACKTICK)} and c`d")


def test_chart_text_escapes_plotly_tags():
    assert plain_chart('<a href="http://evil.example/">x</a> & y') == (
        '&lt;a href="http://evil.example/"&gt;x&lt;/a&gt; &amp; y'
    )


# Any printable text, and text made of the pieces that the patterns above are built from.
PIECES = ["http", "://", ":", "www", ".", "@", "a", "-", ">", "<", "=", "~", " ", "\n", "\t"]
PIECES += ["material", "/", "_", "smile", "streamlit", "red", "[", "]", "$", "*", "`", "&amp;"]
PIECES += ["_a_", "a_b", "__", "é", "1", "\\"]
PIECES += ["http://a.b", "www.a.b", "a@b.c", ":smile:", ":material/x:", " -> ", "<b>", "**"]
TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(string.printable.replace("\x0b\x0c", "") + "é→")),
    st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
)


@given(TEXT)
def test_any_text_shows_as_typed_and_renders_nothing(value):
    assert problems(plain(value)) == []
    assert shown(plain(value)) == " ".join(value.split())


# --------------------------------------------------------------------------- every page

LABELS = [LINK, f"{IMG_TAG} {A_TAG}", f"{BOLD} {BACKTICK} {COLOUR}", f"{FORMULA} {EMOJI} {ICON}"]
REVIEWERS = [f"ana {LINK}", f"{SCRIPT} bo"]
WORKSPACE_NAME = f"{FORMULA} {IMAGE}"
SOURCE = f"{LINK} {SCRIPT}.csv"
ENCODER = f"model {IMAGE} {WWW}"
ERROR = f"could not read {URL}/{EMAIL}: {SCRIPT}"
RUN_NAME = f"run {LINK} {BOLD}"
META_KEY, META_VALUE = f"{SCRIPT} {WWW}", f"{IMAGE} {EMAIL}"
ANNOTATORS = [f"{LINK} ann", f"{BOLD} ann"]


def ext_id(i: int) -> str:
    return f"{HOSTILE[i % len(HOSTILE)]} #{i}"


def hostile_workspace(home: Path) -> Workspace:
    """A workspace whose every name and value that the pages show is a hostile string."""
    texts = POSITIVE + NEGATIVE
    labels = [LABELS[i % len(LABELS)] for i in range(len(texts))]
    metas = [
        {META_KEY: META_VALUE, ANNOTATORS[0]: lab, ANNOTATORS[1]: LABELS[0]}
        for i, lab in enumerate(labels)
    ]
    splits = ["test" if i % 4 == 0 else "train" for i in range(len(texts))]
    prepared = make_prepared(texts, labels, splits=splits, label_names=LABELS, metas=metas)
    prepared.frame["ext_id"] = [ext_id(i) for i in range(len(texts))]
    prepared.text_column, prepared.label_column = f"text {COLOUR}", f"label {URL}"
    prepared.warnings = [f"Column {SCRIPT} has 3 empty values like {LINK}."]
    prepared.annotator_columns = ANNOTATORS
    ws = Workspace.create(home / "hostile", prepared, name=WORKSPACE_NAME, source=SOURCE)
    add_analysis(ws)
    add_reviews(ws)
    add_jobs_and_runs(ws)
    return ws


def add_analysis(ws: Workspace) -> None:
    """A fake analysis: every issue type, health summary and neighbours, in hostile labels."""
    rows = ws.samples()
    n, k = len(rows), len(LABELS)
    quality = np.linspace(0.01, 0.99, n)
    given = [LABELS.index(lab) for lab in rows["label"]]
    ws.save_analysis(
        pd.DataFrame(
            {
                "sample_id": rows["id"],
                "label_used": rows["label"],
                "predicted_label": [LABELS[(g + 1) % k] for g in given],
                "predicted_prob": 0.9,
                "given_prob": quality,
                "label_quality": quality,
                "is_label_issue": quality < 0.5,
                "is_outlier": np.arange(n) % 5 == 0,
                "outlier_score": quality,
                "dup_group": [i // 2 if i < 8 else None for i in range(n)],
                "dup_conflict": [i < 8 for i in range(n)],
                "consensus_label": [LABELS[0]] * n,
                "consensus_quality": quality,
            }
        ),
        method="test",
        settings={"model_key": "fake"},
        label_version=ws.label_version(),
        summary={
            "n_issues": int((quality < 0.5).sum()),
            "timings": {},
            "method": f"method {BOLD}",
            "encoder": ENCODER,
            "health": {
                "num_label_issues": 5,
                "per_class": [{"label": lab, "given": 6, "label_issues": 1} for lab in LABELS],
                "noise_matrix": {"index": LABELS, "columns": LABELS, "data": np.eye(k).tolist()},
            },
            "annotators": [{"annotator": a, "quality": 0.5} for a in ANNOTATORS],
            "consensus_differs": 3,
        },
    )
    near = (np.arange(n)[:, None] + np.arange(6)[None, :]) % n  # itself, then the next five
    ws.put_knn("fake", near.astype(np.int64), np.full(near.shape, 0.1, dtype=np.float32))


def add_reviews(ws: Workspace) -> None:
    """Two hostile reviewers: they disagree on the worst sample and agree on a few others."""
    worst = int(ws.review_queue(flagged=True, limit=1)[0].iloc[0]["sample_id"])
    for sid in [worst, *range(1, 6)]:
        label = ws.sample(sid)["original_label"]
        ws.relabel(sid, LABELS[0] if sid == worst else label, reviewer=REVIEWERS[0])
        ws.relabel(sid, LABELS[1] if sid == worst else label, reviewer=REVIEWERS[1])


def add_jobs_and_runs(ws: Workspace) -> None:
    """A failed analysis, a training job still running, and a finished run: all hostile."""
    failed = ws.create_job("analyze", {})
    ws.update_job(failed, status="failed", error=ERROR)
    done = ws.create_job("train", {})
    ws.update_job(done, status="done")
    k = len(LABELS)
    test = {
        "accuracy": 0.5,
        "f1": 0.5,
        "n": 6,
        "labels": LABELS,
        "confusion_matrix": np.eye(k, dtype=int).tolist(),
    }
    example = {
        "text": POSITIVE[0],
        "label": LABELS[0],
        "before": {"label": LABELS[1], "prob": 0.5, "probs": {LABELS[1]: 0.5}},
        "after": {"label": LABELS[0], "prob": 0.9, "probs": {LABELS[0]: 0.9}},
    }
    run = ws.create_run(name=RUN_NAME, config={"technique": "full"}, data={}, job_id=done)
    metrics = {**test, "test": test, "examples": {"note": "", "rows": [example]}}
    model_dir = str(ws.folder / "runs" / f"{LINK} {BACKTICK}")
    ws.update_run(run, status="done", metrics=metrics, model_dir=model_dir)
    running = ws.create_job("train", {})
    ws.update_job(
        running,
        status="running",
        progress={"stage": f"loading {ENCODER}", "run": 1, "runs": 2, "name": RUN_NAME},
    )


PAGES = [
    "app_pages/data.py",
    "app_pages/issues.py",
    "app_pages/health.py",
    "app_pages/review.py",
    "app_pages/reviewers.py",
    "app_pages/audit.py",
    "app_pages/train.py",
    "app_pages/charts.py",
    "app_pages/runs.py",
    "app_pages/export.py",
]


def strings(message) -> Iterator[tuple[str, str]]:
    """``(Message.field, text)`` for every string field set in a protobuf message, nested too."""
    for field, value in message.ListFields():
        where = f"{message.DESCRIPTOR.name}.{field.name}"
        single = isinstance(value, str | bytes | int | float) or hasattr(value, "ListFields")
        for item in [value] if single else value:
            if isinstance(item, str):
                yield where, item
            elif hasattr(item, "ListFields"):
                yield from strings(item)


def page_strings(at: AppTest) -> Iterator[tuple[str, str]]:
    """Every string in the page's elements and blocks (sidebar, toasts and tabs included)."""
    stack = [at._tree]
    while stack:
        node = stack.pop()
        if getattr(node, "proto", None) is not None:
            yield from strings(node.proto)
        stack.extend(getattr(node, "children", {}).values())


# Fields that are no text a reader sees, or that Streamlit shows exactly as given.
PLAIN_MESSAGES = {"Text", "Code", "Json", "Dataframe", "Arrow", "PandasStyler", "PlotlyChart"}
PLAIN_FIELDS = {"id", "form_id", "type", "tag", "format", "icon", "url", "page", "language"}
PLAIN_FIELDS |= {"page_script_hash", "deferred_file_id", "default", "value", "placeholder"}
PLAIN_FIELDS |= {"min", "max", "theme", "config"}
PLAIN_OPTIONS = {"Selectbox.options", "MultiSelect.options"}  # radio options render markdown


def is_markdown(where: str) -> bool:
    message, field = where.split(".")
    return not (message in PLAIN_MESSAGES or field in PLAIN_FIELDS or where in PLAIN_OPTIONS)


def unsafe(at: AppTest) -> list[str]:
    """Every hostile string the page would render as something other than its text."""
    found = []
    for where, text in page_strings(at):
        if where == "PlotlyChart.spec":  # Plotly draws <a href>, <b>, <br>... in its texts
            found += [f"{where}: {h!r} as typed" for h in HOSTILE if "<" in h and h in text]
        elif is_markdown(where):
            found += [f"{where}: {p} in {text!r}" for p in problems(text)]
            found += [f"{where}: {h!r} as typed in {text!r}" for h in HOSTILE if h in text]
    return found


def seen(at: AppTest) -> str:
    """All the markdown text of the page as a reader sees it."""
    return "\n".join(shown(text) for where, text in page_strings(at) if is_markdown(where))


@pytest.fixture
def hostile(home, launched):
    ws = hostile_workspace(home)
    yield ws
    ws.close()


def visit(page: str) -> AppTest:
    """``page`` opened through the app's navigation, with a hostile reviewer name."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page)
    at.sidebar.text_input(key="reviewer").input(REVIEWERS[0])
    at.run()
    assert not at.exception, at.exception
    return at


def checked(at: AppTest, *expected: str) -> None:
    """Nothing hostile renders, and the reader sees each expected value exactly as typed."""
    assert not at.exception, at.exception
    assert unsafe(at) == []
    text = seen(at)
    for value in expected:
        assert value in text, f"{value!r} is not shown as typed"


def test_data_page(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv("SECOND_LOOK_DATA_DIR", str(tmp_path))  # the path box reads only there
    at = visit("app_pages/data.py")
    checked(at, WORKSPACE_NAME, SOURCE, f"Column {SCRIPT} has 3 empty values like {LINK}.")
    missing = f"{LINK.replace('/', '')} {SCRIPT.replace('/', '')}.csv"  # a file name has no /
    at.text_input(key="import_path").input(missing).run()
    assert at.error
    checked(at, missing)
    name = f"{IMG_TAG} {BOLD} {COLOUR}.csv"
    frame = pd.DataFrame({f"text {LINK}": ["a", "b"] * 5, IMAGE: [BOLD, EMAIL] * 5})
    frame.to_csv(tmp_path / name, index=False)
    at.text_input(key="import_path").input(name).run()
    checked(at, name)


@pytest.mark.parametrize(
    "page, expected",
    [
        ("app_pages/issues.py", [ERROR, ENCODER, "method **bold**"]),
        ("app_pages/health.py", [ENCODER, ext_id(0), LABELS[0], LABELS[1]]),
        ("app_pages/audit.py", []),
        ("app_pages/train.py", [RUN_NAME, f"loading {ENCODER}"]),
        ("app_pages/charts.py", [RUN_NAME]),
        ("app_pages/runs.py", []),
        ("app_pages/export.py", []),
    ],
)
def test_page(hostile, page, expected):
    checked(visit(page), *expected)


def test_review_page(hostile):
    at = visit("app_pages/review.py")
    item = hostile.review_queue(flagged=True, limit=1)[0].iloc[0]
    checked(at, item["ext_id"], item["label"], item["predicted_label"], REVIEWERS[1])
    relabel = next(b for b in at.button if b.key.startswith("rv_label_"))
    target = LABELS[int(relabel.key.removeprefix("rv_label_"))]
    relabel.click().run()
    checked(at, f"Saved: relabel → {target}")


def test_reviewers_page(hostile):
    at = visit("app_pages/reviewers.py")
    checked(at, f"{REVIEWERS[0]} → {LABELS[0]}", f"Chosen by {REVIEWERS[1]}", ext_id(0))
    next(b for b in at.button if b.key.startswith("resolve_")).click().run()
    checked(at, f"Resolved as {LABELS[0]}.")
