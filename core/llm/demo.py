"""The offline demo LLM: deterministic answers from a small corpus written for gazepref.

Two variants make pairwise turns clearly different: ``concise`` (short, bullet points) and
``detailed`` (longer prose). The answer is the corpus entry whose keywords best match the last
user message, skipping entries already given in the conversation. ``rank = k`` (a study option of
the model's table) answers with the k-th best entry instead: two models of the same variant with
ranks 0 and 1 give two different answers of the same style and similar length (the synthetic
study of :mod:`gazepref.capture_site.simulate` uses this, so that length says nothing).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from . import BackendError, Message

CORPUS_PATH = Path(__file__).with_name("demo_corpus.json")
VARIANTS = ("concise", "detailed")
_WORD = re.compile(r"[a-z]+")


@lru_cache(maxsize=1)
def load_corpus() -> dict:
    return json.loads(CORPUS_PATH.read_text(encoding="utf-8"))


class DemoBackend:
    def __init__(self, variant: str = "concise", fail: bool = False, rank: int = 0):
        if variant not in VARIANTS:
            raise BackendError(f"demo backend: variant must be one of {VARIANTS} (got {variant!r})")
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
            raise BackendError(f"demo backend: rank must be an integer >= 0 (got {rank!r})")
        self.variant = variant
        self.rank = rank
        self.fail = fail  # for demonstrating the participant's retry path

    def generate(self, messages: list[Message]) -> str:
        if self.fail:
            raise BackendError("demo backend configured to fail")
        corpus = load_corpus()
        users = [m["content"] for m in messages if m.get("role") == "user"]
        if not users:
            raise BackendError("demo backend: no user message")
        said = " ".join(m["content"] for m in messages if m.get("role") == "assistant")
        ordered = _WORD.findall(users[-1].lower())
        words = set(ordered)
        # entries not given yet, best keyword match first (corpus order among equals)
        ranked = sorted(((-len(words & set(e["keywords"])), i, e[self.variant])
                         for i, e in enumerate(corpus["entries"]) if e[self.variant] not in said))
        if ranked and ranked[0][0] < 0:  # something matched: the rank-th entry (the last one at most)
            return ranked[min(self.rank, len(ranked) - 1)][2]
        longest = sorted(set(ordered), key=lambda w: (-len(w), ordered.index(w)))[:2]
        topic = " ".join(sorted(longest, key=ordered.index)) or "this topic"
        return corpus["fallback"][self.variant].format(topic=topic.capitalize())
