"""``gazepref.datasets.recording``: opening a gazepref Parquet export."""
from __future__ import annotations

import pytest

from gazepref.cli import main
from gazepref.datasets.recording import task_order_key


@pytest.mark.parametrize("text", ["{", "[1, 2]", ""])
def test_a_broken_export_manifest_is_a_one_line_error(tmp_path, text, capsys):
    """A truncated or foreign manifest.json names the file (it was a JSONDecodeError or
    AttributeError traceback)."""
    (tmp_path / "manifest.json").write_text(text)
    assert main(["data", "summary", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0]


@pytest.mark.parametrize("task_ids, ordered", [
    (["w/10", "w/9", "a/3"], ["a/3", "w/9", "w/10"]),
    (["p_zz/1", "p_aa/2"], ["p_aa/2", "p_zz/1"]),
    (["w/b", "w/2", "w/a"], ["w/2", "w/a", "w/b"]),
])
def test_task_order_key(task_ids, ordered):
    assert sorted(task_ids, key=task_order_key) == ordered
