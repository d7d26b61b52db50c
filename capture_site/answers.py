"""The assistants' answers as a participant sees them: rendered (Markdown or plain text, per
study), in the post-task transcript, and the "copy a sentence from the answers" check."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from .. import store
from .config import StudyConfig
from .markdown import plain_text, render_answer

#: a copied passage needs at least this many words to count as a sentence
MIN_COPY_WORDS = 2
_SPACE = re.compile(r"\s+")
# typographic variants a browser or an editor may swap in when text is copied and pasted
_FOLD = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                       "\u00a0": " "})


def response_html(cfg: StudyConfig, text: str) -> str | None:
    """The answer's HTML for the page (word spans with raw-text offsets); None when the study
    shows plain text (the page renders it itself, ``static/layout.js``)."""
    return render_answer(text) if cfg.answer_format == "markdown" else None


def transcript(cfg: StudyConfig, task: store.Task) -> list[dict]:
    """Every turn of the task with all its answers, for the post-task page."""
    pairwise = task.kind == "pairwise"
    return [{"index": t.index, "prompt": t.prompt,
             "answers": [{"label": ("Answer A", "Answer B")[r.position] if pairwise else "Answer",
                          "text": r.text, "html": response_html(cfg, r.text)} for r in t.responses]}
            for t in task.turns]


def _squash(text: str) -> str:
    """Text compared without white space, case and typographic quote/dash differences."""
    return _SPACE.sub("", unicodedata.normalize("NFKC", text).translate(_FOLD).casefold())


def copied_from(copied: str, sources: Iterable[str]) -> bool:
    """Whether ``copied`` occurs in one of the answer texts (raw or as rendered from Markdown)."""
    needle = _squash(copied)
    if len(copied.split()) < MIN_COPY_WORDS or not needle:
        return False
    for text in sources:
        if needle in _squash(text) or needle in _squash(plain_text(text)):
            return True
    return False


def answer_texts(task: store.Task) -> list[str]:
    return [r.text for t in task.turns for r in t.responses]
