"""Data and people's words shown as plain text inside Streamlit's markdown.

Streamlit renders markdown in far more places than ``st.markdown``: captions, alerts, toasts,
titles, metric labels *and values*, button and widget labels, help tooltips, radio and
segmented-control options, tab and expander labels, progress texts. A label name, id, file
name or reviewer name put there as it is can show a live link, a remote image (a tracking
pixel), HTML, bold text, a colour, an icon or a formula instead of itself. :func:`plain` turns
such a value into markdown that shows exactly its characters.

Selectbox and multiselect options, ``st.text``, ``st.code`` and ``st.dataframe`` show text as
it is: values shown there must *not* go through :func:`plain` (its backslashes would show).
Plotly draws its own HTML-like tags in tick labels and hover text: :func:`plain_chart` is for
those.
"""

from __future__ import annotations

import html
import re
from typing import Any

# The ASCII punctuation that means something to CommonMark/GFM (emphasis, code, links and
# images, HTML and entities, headings, lists, tables, strikethrough), remark-math ($),
# remark-directive (:red[...]) or Streamlit: a backslash makes each one a literal character.
# The rest (, ; ? ' % / @ ^) means nothing there and stays as it is, and so does an underscore
# between two letters or digits (CommonMark never reads one there as emphasis), so numbers like
# "4,934" and names like "learning_rate" read the same in the raw text.
_ALNUM = r"[^\W_]"  # a letter or digit
_PUNCTUATION = re.compile(rf'(?<!{_ALNUM})_|_(?!{_ALNUM})|[\\`*{{}}\[\]()#+\-.!|<>~$:=&"]')
# Streamlit's markdown pipeline also rewrites *text* after the escapes are gone (the escaped
# characters are merged back into plain text nodes): GFM's autolink pass turns http://…,
# www.… and name@host.tld into links, and Streamlit's own passes turn :material_x:,
# :streamlit:, emoji shortcodes and " -> " into icons, a logo, emoji and arrows. An invisible
# WORD JOINER (U+2060) at the right spots breaks all of those patterns without changing what a
# reader sees (it is still in copied text, though).
_WORD_JOINER = "\u2060"
_TEXT_PATTERNS = (
    (re.compile(r":"), ":" + _WORD_JOINER),  # scheme://, :shortcode:, :material_x:
    (re.compile(r"@"), _WORD_JOINER + "@"),  # e-mail autolinks
    (re.compile(r"(?i)(?<=www)\."), _WORD_JOINER + "."),  # www. autolinks
    (re.compile(r"(?<=[<>=~-])(?=[<>=~-])"), _WORD_JOINER),  # -> <- <-> -- >= <= ~=
)
# A line break must not end the paragraph (a blank line starts a new block), and leading tabs
# or spaces must not make an indented code block (which would show the escapes). A browser
# shows a run of whitespace as one space anyway.
_WHITESPACE = re.compile(r"[ \t\r\n\f\v]+")


def plain(value: Any) -> str:
    """``value`` as markdown that Streamlit shows literally, on one line.

    Parameters
    ----------
    value
        Anything; it is shown as ``str(value)``.

    Returns
    -------
    str
        The text with its markdown punctuation backslash-escaped, each run of whitespace (line
        breaks included) as one space, and word joiners that stop Streamlit's text rewrites
        (autolinks, icons, emoji, arrows). Put it in markdown as it is, never inside a code
        span (a code span shows the backslashes).
    """
    text = _WHITESPACE.sub(" ", str(value))
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return _PUNCTUATION.sub(r"\\\g<0>", text)


def plain_chart(value: Any) -> str:
    """``value`` as text that a Plotly figure shows literally (axis ticks, legends, hovers).

    Plotly reads ``<a href=…>``, ``<b>``, ``<br>`` and other tags in its texts; escaped as
    HTML entities they show as typed.

    Parameters
    ----------
    value
        Anything; it is shown as ``str(value)``.

    Returns
    -------
    str
        ``str(value)`` with ``&``, ``<`` and ``>`` as HTML entities.
    """
    return html.escape(str(value), quote=False)
