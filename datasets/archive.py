"""Unpack a data archive (e.g. the IFLLM dev archive) once into a cache folder, never the repo."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

from .. import UserError


def cache_dir() -> Path:
    """``$GAZEPREF_CACHE`` or ``~/.cache/gazepref`` (:attr:`gazepref.settings.Settings.cache_dir`)."""
    from ..settings import current

    return current().cache_dir


def unpack(archive: str | os.PathLike, name: str | None = None) -> Path:
    """Unpack ``archive`` into ``cache_dir()/name`` (default: the archive's stem) unless a
    previous unpack of the same archive (size and mtime) completed; return that folder."""
    archive = Path(archive)
    if not archive.exists():
        raise UserError(f"no such archive: {archive}")
    target = cache_dir() / (name or archive.name.split(".")[0])
    stamp = target / ".unpacked"
    key = f"{archive.resolve()} {archive.stat().st_size} {int(archive.stat().st_mtime)}"
    if stamp.exists() and stamp.read_text() == key:
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tf:
        tf.extractall(target, filter="data")
    stamp.write_text(key)
    return target
