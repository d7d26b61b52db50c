"""Unpack a data archive (e.g. the IFLLM dev archive) once into a cache folder, never the repo."""
from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import threading
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
    # Unpack beside the target and move it in whole: another process reading the target (or
    # unpacking the same archive at once) never sees a half-written file.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # (left by a killed process of the same id)
    tmp.mkdir()  # (the permissions a folder of the cache gets)
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(tmp, filter="data")
        (tmp / ".unpacked").write_text(key)
        if stamp.exists() and stamp.read_text() == key:  # another process was quicker
            return target
        if target.exists():  # an older or interrupted unpack
            old = target.with_name(f"{tmp.name}.old")
            with contextlib.suppress(FileNotFoundError):  # (or a twin's rename took it away)
                target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not (stamp.exists() and stamp.read_text() == key):  # not a quicker twin: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
