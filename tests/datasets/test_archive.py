"""Tests of gazepref.datasets.archive: a data archive unpacked once into the cache, whole."""
from __future__ import annotations

import os
import tarfile
import threading
from pathlib import Path

import pytest

from gazepref import UserError
from gazepref.datasets.archive import unpack


def _archive(path: Path, files: dict[str, str], mtime: int) -> Path:
    src = path.parent / (path.name + ".src")
    for name, text in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    with tarfile.open(path, "w:gz") as tf:
        for name in files:
            tf.add(src / name, arcname=name)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_unpacks_once_and_again_when_the_archive_changes(tmp_path, cache):
    arc = _archive(tmp_path / "data.tar.gz", {"dataset/a.csv": "1", "dataset/old.csv": "x"}, 1_000_000)
    out = unpack(arc, "data")
    assert out == cache / "data" and (out / "dataset" / "a.csv").read_text() == "1"
    (out / "dataset" / "a.csv").write_text("edited")  # the same archive is not unpacked again
    assert (unpack(arc, "data") / "dataset" / "a.csv").read_text() == "edited"
    arc = _archive(tmp_path / "data.tar.gz", {"dataset/a.csv": "22"}, 2_000_000)
    out = unpack(arc, "data")
    assert (out / "dataset" / "a.csv").read_text() == "22"
    assert not (out / "dataset" / "old.csv").exists()  # nothing of the older archive is left
    assert sorted(p.name for p in cache.iterdir()) == ["data"]  # no temporary folder left


def test_processes_unpacking_at_once_all_get_the_whole_folder(tmp_path, cache):
    files = {f"dataset/{i}.csv": str(i) * 2000 for i in range(200)}
    arc = _archive(tmp_path / "data.tar.gz", files, 1_000_000)
    got, errors, start = [], [], threading.Barrier(4)

    def run():
        start.wait()
        try:
            out = unpack(arc, "data")
            got.append({str(p.relative_to(out)): p.read_text() for p in (out / "dataset").iterdir()})
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert got == [files] * 4
    assert sorted(p.name for p in cache.iterdir()) == ["data"]


def test_a_missing_archive_is_a_user_error(tmp_path, cache):
    with pytest.raises(UserError, match="no such archive"):
        unpack(tmp_path / "nope.tar.gz")
