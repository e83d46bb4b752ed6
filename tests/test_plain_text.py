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

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from app_pages.plain import plain, plain_chart
from tests.hostile import (
    BACKTICK,
    BOLD,
    COLOUR,
    EMAIL,
    EMOJI,
    ENCODER,
    ERROR,
    FORMULA,
    HOSTILE,
    IMAGE,
    IMG_TAG,
    LABELS,
    LINK,
    REVIEWERS,
    RUN_NAME,
    SCRIPT,
    SOURCE,
    WORKSPACE_NAME,
    ext_id,
    hostile_workspace,
)

TIMEOUT = 60
ROOT = Path(__file__).resolve().parent.parent

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

PAGES = [
    "app_pages/data.py",
    "app_pages/issues.py",
    "app_pages/health.py",
    "app_pages/review.py",
    "app_pages/reviewers.py",
    "app_pages/audit.py",
    "app_pages/train.py",
    "app_pages/charts.py",
    "app_pages/history.py",
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
        ("app_pages/history.py", []),
        ("app_pages/export.py", []),
        ("app_pages/repair.py", []),
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
