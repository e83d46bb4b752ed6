"""Text repair proposals: fixed texts to review, never a text changed silently.

Pure functions over texts and DataFrames. :func:`propose_repairs` lists, for every text that a
repair would change, the original, the proposed text, the kinds of repair that changed it and
the changed character spans (for highlighting). Accepting a proposal is the store's business
(:meth:`data.store.Workspace.repair_texts`: one ``repair_text`` event per row, undoable).

Kinds (:data:`KINDS`), applied in this order:

- ``html_entities``: HTML character references that end in ``;`` (``&amp;`` -> ``&``,
  ``&quot;``, ``&#39;``, ``&#x2019;``), decoded until none is left (``&amp;amp;`` -> ``&``).
  References without the ``;`` are left alone: ``html.unescape`` would read "R&D &not here"
  as ``&not`` -> "¬".
- ``mojibake``: text decoded with the wrong codec (``cafÃ©`` -> ``café``, ``â€™`` -> ``’``,
  stray C1 controls from Windows-1252 bytes) by ``ftfy.fix_text`` with :data:`MOJIBAKE_CONFIG`:
  only its encoding fixes; quotes, character widths, ligatures, line breaks, control and
  terminal characters and the Unicode normal form are left as they are. A fix that would bring
  in unassigned or private-use code points is no decoding of real text and is not proposed.
  ftfy undoes one wrong decoding; text garbled through several (as in the demo, where ``Œæ``
  becomes ``ξ``) gets a proposal that is still wrong: review them (``bench/repair.py``).
- ``urls`` (off by default): ``http(s)://…`` and ``www.…`` -> ``<url>``.
- ``mentions`` (off by default): ``@user`` -> ``<user>``.

>>> repair("cafÃ© &amp; bar", DEFAULT_KINDS)
('café & bar', ['html_entities', 'mojibake'])
>>> changed_spans("cafÃ©", "café")
[(3, 5, 3, 4)]
"""

from __future__ import annotations

import difflib
import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import pandas as pd

KINDS = ("html_entities", "mojibake", "urls", "mentions")
DEFAULT_KINDS = ("mojibake", "html_entities")
KIND_HELP = {
    "mojibake": "text decoded with the wrong encoding (cafÃ© → café), fixed by ftfy",
    "html_entities": 'HTML entities (&amp; → &, &quot; → ")',
    "urls": "web addresses → <url> (off by default)",
    "mentions": "@user mentions → <user> (off by default)",
}
URL_TOKEN = "<url>"
USER_TOKEN = "<user>"
# The columns of propose_repairs' frame.
COLUMNS = ("sample_id", "kinds", "original", "proposed", "spans")

# Only the references a decoder would have produced: named, decimal, hexadecimal; with the ";".
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# An address ends before trailing punctuation ("see www.x.org, then" keeps its comma).
_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"]*[^\s<>\".,;:!?')\]}’”]")
# @ then a handle, not inside a word or an e-mail address (a@b.com) or a path (x/@y).
_MENTION = re.compile(r"(?<![\w@/.])@\w+")
_MAX_UNESCAPE_ROUNDS = 5


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"Unknown repair kind(s) {unknown}; valid: {list(KINDS)}.")
    return tuple(k for k in KINDS if k in kinds)  # the fixed order, whatever was asked


@lru_cache(maxsize=1)
def mojibake_config() -> Any:
    """ftfy's configuration that fixes bad decoding and nothing else."""
    from ftfy import TextFixerConfig

    return TextFixerConfig(
        unescape_html=False,  # the html_entities kind does this, on its own
        remove_terminal_escapes=False,
        fix_encoding=True,
        restore_byte_a0=True,
        replace_lossy_sequences=True,
        decode_inconsistent_utf8=True,
        fix_c1_controls=True,  # Windows-1252 bytes read as C1 controls: a decoding error
        fix_latin_ligatures=False,
        fix_character_width=False,
        uncurl_quotes=False,
        fix_line_breaks=False,
        fix_surrogates=True,  # UTF-16 surrogate pairs left in a str: a decoding error
        remove_control_chars=False,
        normalization=None,
        explain=False,
    )


def fix_mojibake(text: str) -> str:
    """``text`` with its encoding errors fixed (ASCII text is returned as it is)."""
    if text.isascii():
        return text
    from ftfy import fix_text

    fixed = fix_text(text, mojibake_config())
    if fixed != text and any(
        unicodedata.category(ch) in ("Cn", "Co") for ch in set(fixed) - set(text)
    ):
        return text  # no real text decodes to unassigned code points: a wrong guess
    return fixed


def unescape_entities(text: str) -> str:
    """``text`` with its ``;``-terminated HTML character references decoded, repeatedly."""
    for _ in range(_MAX_UNESCAPE_ROUNDS):
        if "&" not in text:
            break
        fixed = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
        if fixed == text:
            break
        text = fixed
    return text


def mask_urls(text: str) -> str:
    return _URL.sub(URL_TOKEN, text) if ("://" in text or "www." in text.lower()) else text


def mask_mentions(text: str) -> str:
    return _MENTION.sub(USER_TOKEN, text) if "@" in text else text


_FIXERS = {
    "html_entities": unescape_entities,
    "mojibake": fix_mojibake,
    "urls": mask_urls,
    "mentions": mask_mentions,
}


def repair(text: str, kinds: Sequence[str] = DEFAULT_KINDS) -> tuple[str, list[str]]:
    """``text`` with the repairs of ``kinds`` applied, and the kinds that changed it."""
    changed = []
    for kind in _check_kinds(kinds):
        fixed = _FIXERS[kind](text)
        if fixed != text:
            changed.append(kind)
            text = fixed
    return text, changed


def changed_spans(original: str, proposed: str) -> list[tuple[int, int, int, int]]:
    """The differing character spans: ``(start, end)`` in ``original`` then in ``proposed``,
    for each replaced, deleted or inserted run (end exclusive; an empty span is an insertion
    or deletion point)."""
    matcher = difflib.SequenceMatcher(None, original, proposed, autojunk=False)
    return [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def propose_repairs(
    texts: Sequence[str] | pd.Series,
    ids: Sequence[Any] | None = None,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
) -> pd.DataFrame:
    """One row per text that a repair of ``kinds`` would change.

    Parameters
    ----------
    texts
        The texts (a Series' index is used as the ids when ``ids`` is not given).
    ids
        The sample ids, one per text; default: the positions (or the Series' index).
    kinds
        Which repairs to propose (:data:`KINDS`; default :data:`DEFAULT_KINDS`).

    Returns
    -------
    pd.DataFrame
        Columns :data:`COLUMNS`: ``sample_id``, ``kinds`` (list of the kinds that changed the
        text, in the order applied), ``original``, ``proposed``, ``spans``
        (:func:`changed_spans`), in the order of ``texts``. Texts no repair changes are left out.
    """
    kinds = _check_kinds(kinds)
    if ids is None:
        ids = list(texts.index) if isinstance(texts, pd.Series) else list(range(len(texts)))
    texts = list(texts)
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids for {len(texts)} texts.")
    rows = []
    for sample_id, text in zip(ids, texts, strict=True):
        if not isinstance(text, str):
            continue
        fixed, changed = repair(text, kinds)
        if changed:
            rows.append((sample_id, changed, text, fixed, changed_spans(text, fixed)))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def kind_counts(proposals: pd.DataFrame) -> dict[str, int]:
    """How many proposals each kind took part in, for every kind."""
    counts = dict.fromkeys(KINDS, 0)
    for kinds in proposals["kinds"]:
        for kind in kinds:
            counts[kind] += 1
    return counts


def pieces(text: str, spans: Iterable[tuple[int, int]]) -> list[tuple[str, bool]]:
    """``text`` cut into ``(piece, changed)`` runs by the ``(start, end)`` spans (a UI
    highlights the changed ones; an empty span yields nothing)."""
    out: list[tuple[str, bool]] = []
    at = 0
    for start, end in sorted(spans):
        if start > at:
            out.append((text[at:start], False))
        if end > start:
            out.append((text[start:end], True))
        at = max(at, end)
    if at < len(text):
        out.append((text[at:], False))
    return out
