"""Fixtures of the reward-model tests."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from .synthetic import make_frame

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GAZEPREF_EMBED_CACHE", "0")  # no embedding files written to ~/.cache by the tests


@pytest.fixture
def frame_longer() -> pd.DataFrame:
    return make_frame(rule="longer")
