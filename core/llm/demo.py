"""The offline demo LLM: deterministic answers from a small corpus written for gazepref.

Two variants make pairwise turns clearly different: ``concise`` (short, bullet points) and
``detailed`` (longer prose). The answer is the corpus entry whose keywords best match the last
user message, skipping entries already given in the conversation.
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
    def __init__(self, variant: str = "concise", fail: bool = False):
        if variant not in VARIANTS:
            raise BackendError(f"demo backend: variant must be one of {VARIANTS} (got {variant!r})")
        self.variant = variant
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
        best, best_score = None, 0
        for entry in corpus["entries"]:
            text = entry[self.variant]
            if text in said:
                continue
            score = len(words & set(entry["keywords"]))
            if score > best_score:
                best, best_score = text, score
        if best is not None:
            return best
        longest = sorted(set(ordered), key=lambda w: (-len(w), ordered.index(w)))[:2]
        topic = " ".join(sorted(longest, key=ordered.index)) or "this topic"
        return corpus["fallback"][self.variant].format(topic=topic.capitalize())
