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


def test_an_export_missing_a_stream_its_manifest_lists_is_a_one_line_error(tmp_path, capsys):
    """A partial copy of a Parquet export (``streams/gaze.parquet`` left behind) was read as a
    study without gaze: ``data summary`` counted 0 samples and the features went text-only
    without a word. Now one line naming the file and the rows the manifest lists."""
    from .synthetic_ifllm import build
    from gazepref.datasets.export import export_parquet
    from gazepref.datasets.ifllm import open_release

    build(tmp_path / "rel")
    manifest = export_parquet(open_release(tmp_path / "rel"), tmp_path / "pq")
    assert manifest["samples"]["gaze"] > 0
    assert main(["data", "summary", str(tmp_path / "pq")]) == 0
    capsys.readouterr()
    (tmp_path / "pq" / "streams" / "gaze.parquet").unlink()
    for argv in (["data", "summary", str(tmp_path / "pq")],
                 ["features", str(tmp_path / "pq"), "--out", str(tmp_path / "feat")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "gaze.parquet is missing" in err[0] and f"{manifest['samples']['gaze']} gaze rows" in err[0], err
