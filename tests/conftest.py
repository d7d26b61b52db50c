"""Shared fixtures: paths to the real IFLLM data in ../shared, and temporary instances."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GAZEPREF_SHARED", REPO.parent / "shared"))
IFLLM_SAMPLE = SHARED / "ifllm" / "sample"
IFLLM_DEV_ARCHIVE = SHARED / "ifllm" / "ifllm-dev.tar.gz"


@pytest.fixture(scope="session")
def ifllm_sample() -> Path:
    """The 6-worker IFLLM sample, in the release's own layout (read-only)."""
    if not (IFLLM_SAMPLE / "query_logs_table.csv").exists():
        pytest.skip(f"IFLLM sample not found at {IFLLM_SAMPLE} (set GAZEPREF_SHARED)")
    return IFLLM_SAMPLE
