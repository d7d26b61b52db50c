"""Fixtures of the reward-model tests."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from .synthetic import make_frame

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _no_embedding_files():
    """No embedding files written to ~/.cache by the reward-model tests: ``GAZEPREF_EMBED_CACHE=0``
    from the first of them on (read at each call, :func:`gazepref.embeddings.disk_cache_dir`).
    Set here rather than when this file is imported: pytest imports every conftest while it
    collects, so the whole session, and every command a test runs as a subprocess, embedded
    without the disk cache; the tiny ``benchmarks/feedback_mining.py`` run then encoded again the
    texts ``feedback_eval.py`` had just stored (25 s in the whole suite against ~4 s alone)."""
    with pytest.MonkeyPatch.context() as mp:  # (a caller's own choice stands)
        mp.setenv("GAZEPREF_EMBED_CACHE", os.environ.get("GAZEPREF_EMBED_CACHE", "0"))
        yield


@pytest.fixture
def frame_longer() -> pd.DataFrame:
    return make_frame(rule="longer")
