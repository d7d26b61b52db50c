"""Answers rendered as Markdown for the participant's page, safely and with every word's offsets.

:func:`render_answer` parses the answer with markdown-it (CommonMark with tables and
strikethrough; raw HTML off, so a model's ``<script>`` is shown as text) and writes the HTML
itself from the token stream: every word is a ``<span class="w" data-i data-s data-e>`` whose
``data-s``/``data-e`` are the word's character offsets (code points, as Python indexes a
``str``) in the **raw** answer text and ``data-i`` the index of the raw text's word
(:func:`gazepref.datasets.text_mapping.text_units`) that holds it. The page's layout code
(``static/layout.js``) measures these spans, so the layout stream's ``char_start``/``char_end``
index the stored answer text whether it is shown as Markdown or as plain text, and features,
hits and plots work unchanged. Markup characters (``**``, ``#``, ``|``) have no span. The
result passes through the ``nh3`` sanitiser (an allow-list of tags and attributes) before it
leaves the server. Links are shown as text (a participant must not leave the study by a click);
images as their alt text.
"""
from __future__ import annotations

import re
from functools import lru_cache
from html import escape, unescape

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

from ..datasets.text_mapping import text_units

ALLOWED_TAGS = {"p", "h3", "h4", "h5", "h6", "ul", "ol", "li", "strong", "em", "s", "code", "pre", "blockquote",
                "hr", "br", "table", "thead", "tbody", "tr", "th", "td", "span"}
# top-level blocks carry data-paragraph (the hover events' "response:0/p3"), as the plain renderer's <p>
ALLOWED_ATTRIBUTES = {
    **{tag: {"data-paragraph"} for tag in ("p", "h3", "h4", "h5", "h6", "ul", "pre", "blockquote", "table", "hr")},
    "ol": {"data-paragraph", "start"}, "span": {"class", "data-i", "data-s", "data-e"},
    "th": {"class"}, "td": {"class"},
}

_WORD = re.compile(r"\S+")
_TAG = re.compile(r"<[^>]*>")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ALIGN = re.compile(r"text-align:(left|center|right)")
# inline tokens that open/close an element, and the element
_INLINE_TAGS = {"strong": "strong", "em": "em", "s": "s"}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # text_join off: escapes and entities stay apart (text_special), so plain text tokens are
    # slices of the source and can be found in it
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).disable("text_join")


class _Writer:
    """HTML out of markdown-it tokens, with each word's offsets in the raw text."""

    def __init__(self, text: str):
        self.text = text
        starts = [0] + [m.end() for m in _LINE_BREAK.finditer(text)]
        self.line_starts = starts + [len(text)]
        self.units = text_units(text)
        self.out: list[str] = []
        self.cursor = 0  # search position in the raw text (tokens come in source order)
        self.limit = len(text)
        self.blocks = 0  # top-level blocks so far (data-paragraph, as the plain renderer)

    # -- offsets

    def _block_range(self, token: Token) -> None:
        if token.map:
            lo, hi = token.map
            start = self.line_starts[min(lo, len(self.line_starts) - 1)]
            self.cursor = max(self.cursor, start)
            self.limit = self.line_starts[min(hi, len(self.line_starts) - 1)]
            if hi >= len(self.line_starts) - 1:
                self.limit = len(self.text)

    def _find(self, piece: str) -> int:
        """Where ``piece`` (a slice of the source) starts at or after the cursor; -1 if not found."""
        if not piece:
            return self.cursor
        at = self.text.find(piece, self.cursor, max(self.limit, self.cursor))
        if at < 0:
            at = self.text.find(piece, self.cursor)
        if at >= 0:
            self.cursor = at + len(piece)
        return at

    def words(self, piece: str, at: int | None = None) -> None:
        """Write ``piece`` as word spans (white space as text); ``at``: its offset in the raw text
        (None: find it after the cursor; -1: unknown)."""
        if at is None:
            at = self._find(piece)
        last = 0
        for m in _WORD.finditer(piece):
            if m.start() > last:
                self.out.append(escape(piece[last:m.start()]))
            s, e = (at + m.start(), at + m.end()) if at >= 0 else (-1, -1)
            i = int(self.units.word_at([s])[0]) if s >= 0 else -1
            self.out.append(f'<span class="w" data-i="{i}" data-s="{s}" data-e="{e}">{escape(m.group())}</span>')
            last = m.end()
        if last < len(piece):
            self.out.append(escape(piece[last:]))

    def _special(self, tok: Token) -> None:
        """An escape (``\\*``) or entity (``&amp;``): the shown character, located at its source."""
        at = self._find(tok.markup)
        if at >= 0 and tok.info == "escape":
            at += len(tok.markup) - len(tok.content)  # the character after the backslash
        self.words(tok.content, at)

    def _skip_link_destination(self) -> None:
        """After a link's text: step over ``](destination "title")`` so the URL is not matched."""
        if self.text.startswith("](", self.cursor):
            depth, i = 0, self.cursor + 1
            while i < len(self.text):
                if self.text[i] == "(":
                    depth += 1
                elif self.text[i] == ")":
                    depth -= 1
                    if depth == 0:
                        self.cursor = i + 1
                        return
                elif self.text[i] == "\n" and self.text.startswith("\n\n", i):
                    return
                i += 1

    # -- rendering

    def inline(self, children: list[Token]) -> None:
        for tok in children:
            kind = tok.type
            if kind == "text":
                self.words(tok.content)
            elif kind == "text_special":
                self._special(tok)
            elif kind == "code_inline":
                self.out.append("<code>")
                self.words(tok.content)
                self.out.append("</code>")
            elif kind == "softbreak":
                self.out.append("\n")
            elif kind == "hardbreak":
                self.out.append("<br>\n")
            elif kind.endswith("_open") and kind[:-5] in _INLINE_TAGS:
                self.out.append(f"<{_INLINE_TAGS[kind[:-5]]}>")
            elif kind.endswith("_close") and kind[:-6] in _INLINE_TAGS:
                self.out.append(f"</{_INLINE_TAGS[kind[:-6]]}>")
            elif kind == "link_open":
                self.out.append('<span class="md-link">')
            elif kind == "link_close":
                self.out.append("</span>")
                self._skip_link_destination()
            elif kind == "image":  # the alt text only: no picture is loaded from a model's answer
                self.inline(tok.children or [])
                self._skip_link_destination()
            # html_inline cannot occur (html off); anything else is dropped

    def _open_block(self, tag: str, tok: Token, attrs: str = "") -> None:
        if tok.level == 0:
            attrs += f' data-paragraph="{self.blocks}"'
            self.blocks += 1
        self.out.append(f"<{tag}{attrs}>")

    def block(self, tokens: list[Token]) -> None:
        for tok in tokens:
            kind = tok.type
            if tok.map:
                self._block_range(tok)
            if kind == "inline":
                self.inline(tok.children or [])
            elif kind == "heading_open":
                self._open_block(f"h{min(int(tok.tag[1]) + 2, 6)}", tok)
            elif kind == "heading_close":
                self.out.append(f"</h{min(int(tok.tag[1]) + 2, 6)}>")
            elif kind in ("fence", "code_block"):
                self._open_block("pre", tok)
                self.out.append("<code>")
                for line in tok.content.splitlines(keepends=True):
                    self.words(line.rstrip("\n"))
                    if line.endswith("\n"):
                        self.out.append("\n")
                self.out.append("</code></pre>")
            elif kind == "hr":
                self._open_block("hr", tok)
            elif kind in ("th_open", "td_open"):
                m = _ALIGN.search(str(tok.attrs.get("style", "")))
                self.out.append(f'<{tok.tag} class="align-{m.group(1)}">' if m else f"<{tok.tag}>")
            elif kind == "ordered_list_open":
                start = tok.attrs.get("start")
                self._open_block("ol", tok, f' start="{int(start)}"' if start is not None else "")
            elif kind.endswith("_open"):
                if kind == "paragraph_open" and tok.hidden:  # tight list items: no <p>
                    continue
                self._open_block(tok.tag, tok)
            elif kind.endswith("_close"):
                if kind == "paragraph_close" and tok.hidden:
                    continue
                self.out.append(f"</{tok.tag}>")
            # html_block cannot occur (html off)


@lru_cache(maxsize=1024)  # pure; pages and the post-task transcript render the same answers again
def render_answer(text: str) -> str:
    """Sanitised HTML of a Markdown answer; every word is a span with its offsets in ``text``."""
    writer = _Writer(text)
    writer.block(_parser().parse(text))
    return nh3.clean("".join(writer.out), tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     url_schemes=set(), link_rel=None, strip_comments=True)


def plain_text(text: str) -> str:
    """What a participant reads of a Markdown answer: its words without the markup (white space
    is not reliable across blocks; checks that compare copied text should ignore it)."""
    return unescape(_TAG.sub(" ", render_answer(text)))
