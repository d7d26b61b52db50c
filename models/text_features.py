"""Text features of a response (query + response text only): length / structure measures and
MiniLM sentence embeddings.

* :func:`structure_features` — per response: log length in characters and words, lines, markdown
  structure (headers, bullets, numbered items, bold, code), sentence length, whether it ends
  mid-sentence (a truncated answer), lexical overlap with the prompt.
* :func:`pair_structure` — left minus right of those (the Bradley–Terry input).
* :func:`embed` — L2-normalised all-MiniLM-L6-v2 embeddings, :func:`gazepref.embeddings.embed`
  (the project's one encoder: loaded once per process, never downloaded; repeated texts encoded
  once, and cached on disk under ``$GAZEPREF_CACHE/reward/minilm/`` unless ``GAZEPREF_EMBED_CACHE=0``).
"""
from __future__ import annotations

import functools
import re
from typing import Sequence

import numpy as np
import pandas as pd

from ..embeddings import EMBED_DIM, embed, load_encoder  # noqa: F401  (re-exported)

STRUCTURE_FEATURES = (
    "log_chars", "log_words", "log_lines", "headers", "bullets", "numbered", "bold", "code",
    "mean_sentence_words", "truncated", "prompt_overlap", "question_marks", "paragraphs",
)
_WORD = re.compile(r"\w+", re.UNICODE)
_SENT = re.compile(r"[.!?]+(?:\s|$)")


def _one(prompt: str, text: str) -> list[float]:
    text = text or ""
    words = _WORD.findall(text.lower())
    lines = [ln for ln in text.split("\n") if ln.strip()]
    n_sent = max(1, len(_SENT.findall(text)))
    pw = set(_WORD.findall((prompt or "").lower()))
    overlap = len(pw & set(words)) / len(pw) if pw else 0.0
    end = text.rstrip()[-1:] if text.strip() else "."
    return [
        np.log1p(len(text)), np.log1p(len(words)), np.log1p(len(lines)),
        np.log1p(sum(ln.lstrip().startswith("#") for ln in lines)),
        np.log1p(sum(bool(re.match(r"\s*[-*•]\s", ln)) for ln in lines)),
        np.log1p(sum(bool(re.match(r"\s*\d+[.)]\s", ln)) for ln in lines)),
        np.log1p(text.count("**") // 2),
        float("```" in text),
        len(words) / n_sent / 20.0,
        float(end not in ".!?)*:`\"'”’|"),
        overlap,
        np.log1p(text.count("?")),
        np.log1p(len(re.findall(r"\n\s*\n", text)) + 1),
    ]


@functools.lru_cache(maxsize=100_000)
def _one_cached(prompt: str, text: str) -> tuple[float, ...]:
    return tuple(_one(prompt, text))


def structure_features(prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """(n, len(STRUCTURE_FEATURES)) per response."""
    if len(texts) == 0:
        return np.zeros((0, len(STRUCTURE_FEATURES)))
    return np.array([_one_cached(str(p or ""), str(t or "")) for p, t in zip(prompts, texts)], dtype=np.float64)


def pair_structure(df: pd.DataFrame) -> np.ndarray:
    """Left minus right structure features of a comparison frame."""
    return structure_features(df["prompt"].tolist(), df["text_0"].tolist()) - \
        structure_features(df["prompt"].tolist(), df["text_1"].tolist())


# --- sentence embeddings: the project's one loader (gazepref.embeddings) --------------------------

def pair_embedding_features(df: pd.DataFrame, progress: bool = False) -> np.ndarray:
    """Left minus right: response embedding, and cosine similarity of each response to the prompt.
    (n, 385)."""
    n = len(df)
    allv = embed(df["prompt"].tolist() + df["text_0"].tolist() + df["text_1"].tolist(), progress=progress)
    q, a, b = allv[:n], allv[n:2 * n], allv[2 * n:]
    cos = ((a * q).sum(1) - (b * q).sum(1))[:, None]
    return np.hstack([a - b, cos]).astype(np.float64)


def response_embedding_features(prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """Per response: embedding and cosine to the prompt (n, 385)."""
    n = len(texts)
    allv = embed(list(prompts) + list(texts))
    q, a = allv[:n], allv[n:]
    return np.hstack([a, (a * q).sum(1)[:, None]]).astype(np.float64)
