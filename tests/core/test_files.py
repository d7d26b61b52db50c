"""Tests of gazepref.files: a file written whole or not at all."""
from __future__ import annotations

import pytest

from gazepref.files import whole_file


def test_the_new_file_replaces_the_old_when_written(tmp_path):
    path = tmp_path / "cache" / "table.bin"  # (the folder is made)
    with whole_file(path) as tmp:
        tmp.write_bytes(b"first")
        assert not path.exists() and tmp.parent == path.parent
    assert path.read_bytes() == b"first"
    with whole_file(path) as tmp:
        tmp.write_bytes(b"second, longer")
        assert path.read_bytes() == b"first"  # a reader meanwhile finds the whole old file
    assert path.read_bytes() == b"second, longer"
    assert [p.name for p in path.parent.iterdir()] == ["table.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "table.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), whole_file(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.bin"]
