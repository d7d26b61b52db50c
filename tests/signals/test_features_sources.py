"""`gazepref features` reads a gazepref Parquet export as well as the IFLLM folder it came from."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from gazepref.datasets.export import export_parquet
from gazepref.datasets.ifllm import open_release
from gazepref.signals import features


def test_parquet_export_gives_the_same_features(ifllm_sample: Path, tmp_path: Path):
    export_parquet(open_release(ifllm_sample), tmp_path / "pq")
    a = features.build(ifllm_sample, sentences=False)
    b = features.build(tmp_path / "pq", sentences=False)
    assert b.stats["format"] == "gazepref-parquet"
    assert len(a.comparisons) == len(b.comparisons) > 0
    cols = features.default_feature_columns(a.comparisons)
    pd.testing.assert_frame_equal(a.comparisons[cols], b.comparisons[cols], check_dtype=False)
    pd.testing.assert_frame_equal(a.responses[features.default_feature_columns(a.responses)],
                                  b.responses[features.default_feature_columns(b.responses)], check_dtype=False)
