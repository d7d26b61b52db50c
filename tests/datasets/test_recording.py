"""``gazepref.datasets.recording``: opening a gazepref Parquet export."""
from __future__ import annotations

import pytest

from gazepref.cli import main


@pytest.mark.parametrize("text", ["{", "[1, 2]", ""])
def test_a_broken_export_manifest_is_a_one_line_error(tmp_path, text, capsys):
    """A truncated or foreign manifest.json names the file (it was a JSONDecodeError or
    AttributeError traceback)."""
    (tmp_path / "manifest.json").write_text(text)
    assert main(["data", "summary", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0]
