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


def test_a_folder_written_whole_or_not_at_all(tmp_path):
    """``whole_folder``: a run that stops half way (here: raises after one file) leaves the folder
    as it was, an earlier run's files included; one that ends replaces it, leaving nothing of the
    earlier run and no temporary folder; a non-empty folder needs ``overwrite``; a file is refused."""
    from gazepref import UserError
    from gazepref.files import check_out_folder, whole_folder

    out = tmp_path / "out"
    with whole_folder(out) as tmp:  # new
        (tmp / "a.txt").write_text("first run")
    assert [p.name for p in out.iterdir()] == ["a.txt"]
    with pytest.raises(UserError, match="not empty"):
        with whole_folder(out):
            pass
    with pytest.raises(RuntimeError):
        with whole_folder(out, overwrite=True) as tmp:
            (tmp / "b.txt").write_text("half of a second run")
            raise RuntimeError("killed")
    assert [p.name for p in out.iterdir()] == ["a.txt"] and (out / "a.txt").read_text() == "first run"
    with whole_folder(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("second run")
    assert [p.name for p in out.iterdir()] == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no temporary folder left"
    (tmp_path / "f").write_text("a file")
    with pytest.raises(UserError, match="not a folder"):
        check_out_folder(tmp_path / "f", overwrite=True)


def test_a_folder_that_cannot_be_swapped_in_leaves_the_old_one(tmp_path, monkeypatch):
    """The new folder cannot be renamed into place (a mount point, a folder held open): the earlier
    one is put back and the error says so in one line; if even that fails, it names where the
    earlier contents are."""
    from pathlib import Path

    from gazepref import UserError
    from gazepref.files import whole_folder

    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("first run")
    real = Path.rename
    fail = {".tmp"}  # renames from these names fail

    def rename(self, target):
        if any(self.name.endswith(s) for s in fail):
            raise OSError(16, "Device or resource busy")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(UserError, match="cannot replace .*Device or resource busy"):
        with whole_folder(out, overwrite=True) as tmp:
            (tmp / "b.txt").write_text("second run")
    assert [p.name for p in out.iterdir()] == ["a.txt"]
    fail.add(".old")
    with pytest.raises(UserError, match=r"earlier contents are in .*\.old"):
        with whole_folder(out, overwrite=True) as tmp:
            (tmp / "b.txt").write_text("second run")
    (old,) = [p for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert (old / "a.txt").read_text() == "first run" and not out.exists()
