"""Text repair as a reviewable step: proposals (curation.repair), repair_text events in the log
(accept, undo, interleaved with relabels, rebuilt from the log, restored from a backup), the
export's ``text_original``, the schema-5 upgrade, the CLI and the Text repair page."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest

from app_pages.plain import plain
from curation.repair import (
    DEFAULT_KINDS,
    KINDS,
    changed_spans,
    kind_counts,
    mojibake_config,
    pieces,
    propose_repairs,
    repair,
)
from data.export import FORMATS, export_dataset
from data.store import Workspace, restore_workspace
from data.store.base import SCHEMA_VERSION, upgrade_schema
from runtime.encoder import text_hash
from tests.conftest import ROOT, make_prepared, scramble_derived_state
from tests.hostile import COLOUR, HOSTILE, IMG_TAG, LINK, SCRIPT
from tests.test_round_trip import import_rows, read_back, write_input
from tests.test_schema_upgrade import _assert_same, _snapshot, downgrade_to_4

MOJIBAKE = "cafÃ© crÃ¨me"
FIXED = "café crème"

# ------------------------------------------------------------------------------- proposals


def test_mojibake_is_fixed_and_nothing_else():
    assert repair(MOJIBAKE) == (FIXED, ["mojibake"])
    assert repair("itâ€™s â€œfineâ€\x9d")[0] == "it’s “fine”"
    # Curly quotes, full-width letters, ligatures, line breaks, NFD and control characters
    # are not bad decoding: left exactly as they are.
    for text in (
        "“quoted”",
        "ｗｉｄｅ",
        "ﬁne",
        "a\r\nb\u2028c",
        "e\u0301",
        "\x1b[31mred",
        "ok\x07",
    ):
        assert repair(text) == (text, []), text
    # A "fix" to an unassigned code point (U+0382, as ftfy reads the demo's "ŒÇ") is no text.
    assert repair("waitŒÇwhat") == ("waitŒÇwhat", [])
    config = mojibake_config()
    assert not (config.uncurl_quotes or config.fix_character_width or config.unescape_html)
    assert config.normalization is None


def test_html_entities_are_decoded_only_when_complete():
    assert repair("Fish &amp; chips &quot;now&quot; &#39;ok&#39; &#x2019;") == (
        "Fish & chips \"now\" 'ok' \u2019",
        ["html_entities"],
    )
    assert repair("AT&amp;amp;T")[0] == "AT&T"  # double-escaped, decoded to the end
    # No ";": html.unescape would turn "&not" into "¬" and "&copy" into "©".
    for text in ("R&D &notice &copy 2024", "a & b", "&unknown; stays", "&amp"):
        assert repair(text) == (text, []), text
    assert repair("&lt;b&gt;") == ("<b>", ["html_entities"])  # markup as text: the UI escapes it


def test_urls_and_mentions_only_when_asked():
    text = "@bob see https://t.co/x?a=1 and www.example.org, mail me@host.com"
    assert repair(text) == (text, [])  # off by default
    fixed, kinds = repair(text, KINDS)
    assert fixed == "<user> see <url> and <url>, mail me@host.com"
    assert kinds == ["urls", "mentions"]
    assert repair("@bob hi", ["mentions"]) == ("<user> hi", ["mentions"])
    with pytest.raises(ValueError, match="Unknown repair kind"):
        repair("x", ["spelling"])


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_are_left_unchanged(text):
    assert repair(text) == (text, [])


def test_proposals_list_id_kinds_original_proposed_and_spans():
    texts = pd.Series(
        ["ok", MOJIBAKE, "Fish &amp; chips", "cafÃ© &amp; bar", 7], index=[10, 11, 12, 13, 14]
    )
    found = propose_repairs(texts)
    assert list(found.columns) == ["sample_id", "kinds", "original", "proposed", "spans"]
    assert found["sample_id"].tolist() == [11, 12, 13]
    assert found["kinds"].tolist() == [
        ["mojibake"],
        ["html_entities"],
        ["html_entities", "mojibake"],
    ]
    assert found["proposed"].tolist() == [FIXED, "Fish & chips", "café & bar"]
    assert kind_counts(found) == {"html_entities": 2, "mojibake": 2, "urls": 0, "mentions": 0}
    # The spans mark exactly the changed characters, in the original and in the proposal.
    for row in found.itertuples():
        rebuilt_old = "".join(p for p, changed in pieces(row.original, [s[:2] for s in row.spans]))
        assert rebuilt_old == row.original
        for a, b, c, d in row.spans:
            assert row.original[a:b] != row.proposed[c:d]
    assert changed_spans("Fish &amp; chips", "Fish & chips") == [(6, 10, 6, 6)]
    assert pieces("cafÃ©", [(3, 5)]) == [("caf", False), ("Ã©", True)]
    assert propose_repairs([]).empty and list(propose_repairs([]).columns) == list(found.columns)


# ------------------------------------------------------------------------------- the store

TEXTS = [MOJIBAKE, "Fish &amp; chips", "fine as it is", "cafÃ© &amp; bar", "more", "again"]
LABELS = ["positive", "negative", "positive", "negative", "positive", "negative"]


@pytest.fixture
def ws(tmp_path):
    splits = ["train", "train", "test", "train", "test", "train"]
    workspace = Workspace.create(tmp_path / "ws", make_prepared(TEXTS, LABELS, splits=splits))
    yield workspace
    workspace.close()


def test_accepting_a_repair_is_an_event_and_undo_restores_the_text(ws):
    [event] = ws.repair_texts([(0, FIXED)], reviewer="ana")
    row = ws.sample(0)
    assert (row["text"], row["given_text"], row["label"]) == (FIXED, MOJIBAKE, "positive")
    assert not row["reviewed"]  # a text repair is not a label review
    logged = ws.events(sample_id=0).iloc[0]
    assert logged["id"] == event and logged["action"] == "repair_text"
    assert (logged["old_text"], logged["new_text"], logged["reviewer"]) == (MOJIBAKE, FIXED, "ana")
    assert logged["old_label"] == logged["new_label"] == "positive"
    assert ws.counts()["repaired"] == 1
    assert ws.review_queue(search="crème")[1] == 1  # the search index follows the text
    assert ws.review_queue(search="crÃ¨me")[1] == 0
    ws.undo(reviewer="ana")
    assert ws.sample(0)["text"] == MOJIBAKE and ws.counts()["repaired"] == 0
    assert ws.review_queue(search="crÃ¨me")[1] == 1 and ws.review_queue(search="crème")[1] == 0
    assert list(ws.events(sample_id=0)["action"]) == ["undo", "repair_text"]


def test_a_bulk_acceptance_is_one_batch_and_skips_what_changed_meanwhile(ws):
    found = propose_repairs(TEXTS)  # proposals made before bo's repair below
    ws.repair_texts([(1, "Fish and chips")], reviewer="bo")
    items = list(zip(found["sample_id"], found["proposed"], strict=True))
    expected = dict(zip(found["sample_id"], found["original"], strict=True))
    events = ws.repair_texts(items, reviewer="ana", expected=expected)
    assert len(events) == 2  # rows 0 and 3; row 1 was repaired by bo meanwhile: left alone
    assert ws.samples()["text"].tolist()[:4] == [FIXED, "Fish and chips", TEXTS[2], "café & bar"]
    ws.undo(reviewer="ana")  # the whole bulk acceptance at once, bo's repair stays
    assert ws.samples()["text"].tolist()[:4] == [MOJIBAKE, "Fish and chips", TEXTS[2], TEXTS[3]]
    assert ws.repair_texts([(1, "Fish and chips")], reviewer="ana") == []  # nothing to change
    with pytest.raises(ValueError, match="empty"):
        ws.repair_texts([(2, "  ")], reviewer="ana")
    with pytest.raises(ValueError, match="reviewer"):
        ws.repair_texts([(2, "x")], reviewer="")
    with pytest.raises(ValueError, match="repair_texts"):
        ws.apply_actions([(2, "repair_text", "x")], reviewer="ana")


def test_repairs_and_relabels_interleave_and_each_undo_reverts_only_its_own(ws):
    ws.repair_texts([(0, FIXED)], reviewer="ana")
    ws.relabel(0, "negative", reviewer="bo")
    ws.undo(reviewer="ana")  # ana's repair: the text goes back, bo's label stays
    row = ws.sample(0)
    assert (row["text"], row["label"], row["reviewer"]) == (MOJIBAKE, "negative", "bo")
    ws.repair_texts([(0, FIXED)], reviewer="ana")
    ws.undo(reviewer="bo")  # bo's relabel: the label goes back, ana's text stays
    row = ws.sample(0)
    assert (row["text"], row["label"], row["reviewed"]) == (FIXED, "positive", False)
    # A relabel after a repair, undone by the same reviewer: last action first.
    ws.relabel(0, "negative", reviewer="ana")
    ws.set_excluded(0, reviewer="ana")
    ws.undo(reviewer="ana")
    ws.undo(reviewer="ana")
    assert (ws.sample(0)["label"], ws.sample(0)["excluded"], ws.sample(0)["text"]) == (
        "positive",
        False,
        FIXED,
    )
    ws.undo(reviewer="ana")
    assert ws.sample(0)["text"] == MOJIBAKE


def test_the_rebuild_from_the_log_reproduces_texts_labels_and_search(ws):
    ws.repair_texts([(0, FIXED), (3, "café & bar")], reviewer="ana")
    ws.relabel(0, "negative", reviewer="bo")
    ws.repair_texts([(1, "Fish & chips")], reviewer="bo")
    ws.undo(reviewer="ana")
    ws.repair_texts([(3, "café and bar")], reviewer="cy")
    before = ws.samples()
    assert before["text"].tolist()[:4] == [MOJIBAKE, "Fish & chips", TEXTS[2], "café and bar"]
    scramble_derived_state(ws)
    with sqlite3.connect(ws.db_path) as conn:  # the texts too, behind the store's back
        conn.execute("UPDATE samples SET text = 'scrambled ' || id")
        # ... with the search index agreeing with the wrong texts: the rebuild must redo it.
        conn.execute("INSERT INTO samples_fts (samples_fts) VALUES ('rebuild')")
    assert not ws.samples().equals(before)
    ws.rebuild_state()
    pd.testing.assert_frame_equal(before, ws.samples())
    assert ws.review_queue(search="café and")[1] == 1
    assert ws.review_queue(search="scrambled")[1] == 0


def test_a_repair_drops_the_neighbor_graph_and_analysis_reads_the_current_text(ws):
    n = len(TEXTS)
    ids = [[(i + 1) % n] for i in range(n)]
    ws.put_knn("enc", ids, [[0.1]] * n)
    assert ws.get_knn("enc") is not None
    ws.relabel(2, "negative", reviewer="ana")  # labels never touch the graph
    assert ws.get_knn("enc") is not None
    ws.repair_texts([(0, FIXED)], reviewer="ana")
    assert ws.get_knn("enc") is None  # built from the old texts: the next analysis rebuilds it
    inputs = ws.analysis_inputs()
    assert inputs["text"][0] == FIXED  # what analyze_workspace embeds (cached by text hash)
    assert text_hash(FIXED) != text_hash(MOJIBAKE)
    assert ws.samples()["text"][0] == FIXED  # what training/runs.py reads
    assert ws.label_version() == int(ws.events()["id"].max())  # a new data version


def test_a_restore_keeps_repair_events_newer_than_the_backup(ws):
    ws.repair_texts([(0, FIXED)], reviewer="ana")
    ws.backup()
    ws.repair_texts([(3, "café & bar")], reviewer="bo")
    ws.relabel(3, "positive", reviewer="cy")
    want = ws.samples()
    folder = ws.folder
    ws.close()
    report = restore_workspace(folder, force=True)
    assert report.kept_events == 2
    again = Workspace(folder)
    try:
        pd.testing.assert_frame_equal(again.samples(), want)
        assert again.review_queue(search="café & bar")[1] == 1
    finally:
        again.close()


# ------------------------------------------------------------------------------- export


def test_every_split_exports_text_original_once_any_text_was_repaired(ws, tmp_path):
    ws.repair_texts([(0, FIXED)], reviewer="ana")  # a train row; the test rows are untouched
    back = read_back(export_dataset(ws, tmp_path / "t.csv", fmt="csv", split="test"), "csv")
    assert [(r["text"], r["text_original"]) for r in back] == [(TEXTS[2],) * 2, (TEXTS[4],) * 2]


def test_the_export_carries_the_current_and_the_imported_text_exactly(tmp_path):
    texts = [
        MOJIBAKE,
        "Fish &amp; chips\r\n=SUM(A1)",
        'say "hi", &lt;b&gt;',
        "plain 😀",
        "@x &amp;",
    ]
    rows = [
        {
            "id": f"0{i}",
            "text": t,
            "label": ["positive", "negative"][i % 2],
            '=HYPERLINK("http://x")': "m",
        }
        for i, t in enumerate(texts)
    ]
    ws = import_rows(write_input(rows, "csv", "utf-8"), "csv", tmp_path)
    path = export_dataset(ws, tmp_path / "plain.csv", fmt="csv")
    assert "text_original" not in read_back(path, "csv")[0]  # no repair: the export as before
    found = propose_repairs(ws.samples()["text"], ws.samples()["id"].tolist())
    ws.repair_texts(zip(found["sample_id"], found["proposed"], strict=True), reviewer="ana")
    ws.relabel(1, "positive", reviewer="ana")
    current = [repair(t)[0] for t in texts]
    assert current[1] == "Fish & chips\r\n=SUM(A1)" and current[2] == 'say "hi", <b>'
    for fmt in FORMATS:
        if fmt == "csv-spreadsheet":
            continue  # changes formula-like cells on purpose
        back = read_back(export_dataset(ws, tmp_path / f"out.{fmt}", fmt=fmt), fmt)
        assert list(back[0])[:3] == ["id", "text", "text_original"], fmt
        assert [r["id"] for r in back] == [r["id"] for r in rows], fmt
        assert [r["text"] for r in back] == current, fmt
        assert [r["text_original"] for r in back] == texts, fmt
        assert [r["label"] for r in back] == [
            "positive",
            "positive",
            "positive",
            "negative",
            "positive",
        ], fmt
        assert [r["given_label"] for r in back] == [r["label"] for r in rows], fmt
    train = read_back(export_dataset(ws, tmp_path / "t.csv", fmt="csv", split="test"), "csv")
    assert all("text_original" in r for r in train)  # every split's export has the same columns
    chat = export_dataset(ws, tmp_path / "chat.jsonl", fmt="chat").read_text("utf-8")
    assert json.loads(chat.splitlines()[0])["messages"][1]["content"] == FIXED
    ws.undo(reviewer="ana")
    ws.undo(reviewer="ana")  # every repair undone: the export is as imported again
    path = export_dataset(ws, tmp_path / "again.csv", fmt="csv")
    back = read_back(path, "csv")
    assert "text_original" not in back[0] and [r["text"] for r in back] == texts
    ws.close()


# ------------------------------------------------------------------------------- schema 5


def test_a_version_4_workspace_opens_intact_and_can_repair(ws, tmp_path):
    ws.relabel(0, "negative", reviewer="ana")
    ws.relabel(1, "positive", reviewer="ana")
    ws.undo(reviewer="ana")
    ws.set_excluded(2, reviewer="bo")
    ws.put_knn("enc", [[(i + 1) % 6] for i in range(6)], [[0.5]] * 6)
    job = ws.create_job("analyze", {"method": "embedding"})
    ws.create_run(name="r", config={"seed": 0}, data={"noise_rate": 0}, job_id=job)
    from tests.conftest import add_analysis

    add_analysis(ws)
    want = _snapshot(ws, tmp_path / "before")
    folder = ws.folder
    ws.close()
    downgrade_to_4(folder / "store.sqlite")
    conn = sqlite3.connect(folder / "store.sqlite")
    try:
        assert "given_text" not in {r[1] for r in conn.execute("PRAGMA table_info(samples)")}
    finally:
        conn.close()
    again = Workspace(folder)
    try:
        assert again.info()["schema_version"] == SCHEMA_VERSION == 7
        _assert_same(_snapshot(again, tmp_path / "after"), want)
        assert again.samples()["given_text"].tolist() == TEXTS
        again.repair_texts([(0, FIXED)], reviewer="cy")
        assert again.sample(0)["text"] == FIXED and again.sample(0)["label"] == "negative"
        again.undo(reviewer="cy")
        assert again.sample(0)["text"] == MOJIBAKE
    finally:
        again.close()
    conn = sqlite3.connect(folder / "store.sqlite", isolation_level=None)
    try:
        assert upgrade_schema(conn) is False  # nothing left to do
    finally:
        conn.close()


def test_a_failed_upgrade_leaves_the_version_4_workspace_as_it_was(ws, monkeypatch):
    folder = ws.folder
    ws.close()
    downgrade_to_4(folder / "store.sqlite")
    import data.store.schema as schema

    broken = (*schema.V5_EVENT_COLUMNS, ("new_text", "TEXT"))  # added twice: fails
    monkeypatch.setattr(schema, "V5_EVENT_COLUMNS", broken)
    with pytest.raises(sqlite3.OperationalError):
        Workspace(folder)
    conn = sqlite3.connect(folder / "store.sqlite")
    try:
        assert "given_text" not in {r[1] for r in conn.execute("PRAGMA table_info(samples)")}
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == ("4",)
    finally:
        conn.close()
    monkeypatch.undo()
    Workspace(folder).close()


# ------------------------------------------------------------------------------- CLI


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_cli_counts_lists_and_accepts_repairs(ws):
    folder = str(ws.folder)
    ws.close()
    proc = cli("repair", folder)
    assert proc.returncode == 0, proc.stderr
    assert "3 of 6 texts have proposals (mojibake: 2, html_entities: 2)" in proc.stderr
    proc = cli("repair", folder, "--list")
    listed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert listed[0] == {"id": "0", "kinds": ["mojibake"], "original": MOJIBAKE, "proposed": FIXED}
    assert len(listed) == 3
    proc = cli("repair", folder, "--accept-all")
    assert proc.returncode == 2 and "--reviewer" in proc.stderr
    proc = cli("repair", folder, "--kinds", "mojibake,typos")
    assert proc.returncode == 2 and "typos" in proc.stderr
    proc = cli("repair", folder, "--kinds", "mojibake", "--accept-all", "--reviewer", "ana")
    assert proc.returncode == 0 and "2 texts repaired by ana" in proc.stderr
    again = Workspace(folder)
    try:
        assert again.sample(0)["text"] == FIXED and again.sample(3)["text"] == "café &amp; bar"
        assert set(again.events()["action"]) == {"repair_text"}
    finally:
        again.close()


# ------------------------------------------------------------------------------- the page

PAGE_TEXTS = [
    MOJIBAKE,
    f"{IMG_TAG} &amp; {LINK}",
    "&lt;img src=x onerror=alert(1)&gt; &lt;script&gt;",
    f"{SCRIPT} {COLOUR} ok",
    "Fish &amp; chips",
    "nothing to do",
]


@pytest.fixture
def page_ws(home):
    labels = ["a", "b"] * 3
    workspace = Workspace.create(home / "repairs", make_prepared(PAGE_TEXTS, labels), name="r")
    yield workspace
    workspace.close()


def open_page(reviewer: str = "ana"):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/repair.py")
    at.sidebar.text_input(key="reviewer").input(reviewer)
    at.run()
    assert not at.exception, at.exception
    return at


def safe(at, *, shows_markup: bool = True) -> None:
    """The page renders no data as HTML, link or directive (tests/test_plain_text's model)."""
    from tests.test_plain_text import unsafe

    assert not at.exception, at.exception
    assert unsafe(at) == []
    assert not any(m.proto.allow_html for m in at.markdown)
    bodies = "\n".join(m.value for m in at.markdown)
    assert IMG_TAG not in bodies and SCRIPT not in bodies
    assert ("\\<img" in bodies) == shows_markup  # shown, escaped


def test_the_page_lists_proposals_side_by_side_and_accepts_one(page_ws):
    at = open_page()
    safe(at)
    assert any("4 proposals" in m.value for m in at.markdown)
    bodies = [m.value for m in at.markdown]
    # Original beside fixed, the changed characters in colour.
    assert "caf:red[Ã©] cr:red[Ã¨]me" in bodies
    assert "caf:green[é] cr:green[è]me" in bodies
    at.button(key="rp_accept_0").click().run()
    safe(at)
    assert page_ws.sample(0)["text"] == FIXED
    assert page_ws.events().iloc[0]["action"] == "repair_text"
    assert any("3 proposals" in m.value for m in at.markdown)
    assert "rp_accept_0" not in [b.key for b in at.button]


def test_the_page_filters_by_kind_accepts_all_shown_and_undoes(page_ws):
    at = open_page()
    at.selectbox(key="rp_kind").select("mojibake").run()
    assert [b.key for b in at.button if b.key.startswith("rp_accept_")] == [
        "rp_accept_all",
        "rp_accept_0",
    ]
    at.selectbox(key="rp_kind").select("html_entities").run()
    safe(at)
    assert "Accept all 3 matching" in at.button(key="rp_accept_all").label
    # The changed characters themselves are escaped too: "&lt;" becomes a "<" shown as typed.
    bodies = "\n".join(m.value for m in at.markdown)
    assert f":green[{plain('<')}]img src" in bodies
    at.button(key="rp_accept_all").click().run()
    safe(at, shows_markup=False)  # only the mojibake row is left, and it is filtered out
    texts = page_ws.samples()["text"].tolist()
    assert texts[1] == f"{IMG_TAG} & {LINK}"
    assert texts[2] == f"{IMG_TAG} <script>"  # markup as text, still shown escaped
    assert texts[4] == "Fish & chips" and texts[0] == MOJIBAKE
    assert page_ws.events()["batch_id"].nunique() == 1
    at.button(key="rp_undo").click().run()
    safe(at)
    assert page_ws.samples()["text"].tolist() == PAGE_TEXTS
    assert any("4 proposals" in m.value for m in at.markdown)


def test_the_page_asks_for_a_reviewer_before_accepting(page_ws):
    at = open_page(reviewer="")
    assert at.button(key="rp_accept_all").disabled and at.button(key="rp_accept_0").disabled
    assert any("reviewer name" in c.value for c in at.caption)


def test_urls_and_mentions_can_be_proposed_on_the_page(page_ws):
    at = open_page()
    at.multiselect(key="rp_kinds").select("urls").run()
    safe(at)
    # The URL inside the markdown link is one more kind on a row proposed already.
    from tests.test_plain_text import seen

    assert "4 proposals (mis-decoded characters: 1, HTML entities: 3, URLs → <url>: 1)" in seen(
        at
    ).replace("**", "")
    assert (
        f"{IMG_TAG} & [link](<url>)"
        in page_ws.current_texts()["text"]
        .map(lambda t: repair(t, ["html_entities", "urls"])[0])
        .tolist()
    )


def test_the_default_kinds_are_the_encoding_ones():
    assert DEFAULT_KINDS == ("mojibake", "html_entities")


def test_the_audit_log_lists_repairs_with_the_text_before_and_after(page_ws):
    from tests.conftest import app

    page_ws.repair_texts([(0, FIXED)], reviewer="ana")
    page_ws.relabel(4, "a", reviewer="bo")
    at = app("app_pages/audit.py")
    at.selectbox(key="audit_action").select("repair_text").run()
    assert not at.exception, at.exception
    [row] = at.dataframe[0].value.to_dict("records")
    assert (row["action"], row["old_text"], row["new_text"]) == ("repair_text", MOJIBAKE, FIXED)


def test_a_repair_takes_no_row_out_of_its_reviewers_queue(ws):
    ws.set_overlap(1.0)  # every row is reviewed twice
    ws.relabel(0, "negative", reviewer="bo")  # the first review: waits for a second reviewer
    ws.repair_texts([(0, FIXED)], reviewer="ana")
    assert 0 in ws.review_queue(for_reviewer="ana", limit=10)[0]["sample_id"].tolist()
    ws.relabel(0, "negative", reviewer="ana")  # a label action does
    assert 0 not in ws.review_queue(for_reviewer="ana", limit=10)[0]["sample_id"].tolist()
