"""Markdown answers: rendered safely, every rendered word carrying its offsets in the raw text."""
from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

import pytest

from gazepref.capture_site.markdown import plain_text, render_answer
from gazepref.datasets.text_mapping import text_units

SPAN = re.compile(r'<span class="w" data-i="(-?\d+)" data-s="(-?\d+)" data-e="(-?\d+)">(.*?)</span>')

ANSWER = """## Sleep and memory

Sleep helps **memory** in `three` ways:
- During *deep* sleep the brain replays what you learned.
- The [replay](https://example.org/a) moves memories to the cortex.

| Stage | Hours |
|---|--:|
| Deep sleep | **1.5** |
| REM | 2 |

```
sleep(8)  # hours
```
1. Keep a schedule \\*always\\* &amp; rest.
"""


def spans(html: str) -> list[tuple[int, int, int, str]]:
    return [(int(i), int(s), int(e), unescape(w)) for i, s, e, w in SPAN.findall(html)]


@pytest.mark.parametrize("text", [ANSWER, ANSWER.replace("\n", "\r\n"), "plain text, no markup at all",
                                  "Ünïcode 🙂 **emoji** words\n\n> quoted *line*"])
def test_every_rendered_word_maps_back_to_its_raw_characters(text):
    html = render_answer(text)
    found = spans(html)
    assert found
    units = text_units(text)
    for i, s, e, word in found:
        assert text[s:e] == word  # code-point offsets into the raw answer, as Python indexes it
        assert units.word_start[i] <= s < e <= units.word_end[i]  # inside the raw word it names
    # every word a participant reads has a span, and no markup character does
    shown = [w for *_, w in found]
    assert "**" not in "".join(shown) and "##" not in shown and "|" not in shown
    assert [s for _, s, _, _ in found] == sorted(s for _, s, _, _ in found)


def test_markdown_structure_is_rendered():
    html = render_answer(ANSWER)
    for tag in ("<h4", "<ul", "<li>", "<strong>", "<em>", "<code>", "<table", "<th", "<td", "<pre", "<ol"):
        assert tag in html, tag
    assert 'class="align-right"' in html
    assert "https://example.org" not in html  # links are shown as text: nobody leaves the study by a click
    assert [w for *_, w in spans(html)][:3] == ["Sleep", "and", "memory"]


def test_raw_html_from_a_model_is_text_not_markup():
    evil = ('Hi <script>alert(1)</script> <img src=x onerror="alert(2)"> [x](javascript:alert(3)) '
            "![a](https://t.example/p.png)")
    html = render_answer(evil)

    class Elements(HTMLParser):
        found: list = []

        def handle_starttag(self, tag, attrs):
            self.found.append((tag, {k for k, _ in attrs}))

    parser = Elements()
    parser.feed(html)
    assert {tag for tag, _ in parser.found} <= {"p", "span"}
    attributes = set().union(*(attrs for _, attrs in parser.found))
    assert attributes <= {"data-paragraph", "class", "data-i", "data-s", "data-e"}
    assert "t.example" not in html  # no picture is loaded from an answer
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as the text the model wrote
    assert "alert(1)" in plain_text(evil)


def test_real_assistant_answers_map_back_word_for_word(ifllm_sample):
    """IFLLM's answers (Markdown lists, bold, headings as real assistants write them)."""
    import pandas as pd

    logs = pd.read_csv(ifllm_sample / "query_logs_table.csv")
    texts = [t for t in pd.concat([logs["llm_response_1"], logs["llm_response_2"]]).dropna() if len(t) > 50]
    assert sum("**" in t for t in texts) > 10
    for text in texts:
        html = render_answer(text)
        found = spans(html)
        assert all(s >= 0 and text[s:e] == word for _, s, e, word in found)
        # every raw word with a letter or digit is shown (markup like "-", "**" or the "1." of a
        # numbered list, which the list draws itself, is not)
        shown = {i for i, *_ in found}
        units = text_units(text)
        raw_words = [text[s:e] for s, e in zip(units.word_start, units.word_end)]
        assert all(i in shown for i, w in enumerate(raw_words)
                   if re.search(r"\w", w) and not re.fullmatch(r"\d+[.)]", w))
