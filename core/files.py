"""Files written whole: a reader (another process, another thread) finds the old file or the new
one, never one half written. Caches shared by several processes (two commands at once, the test
workers) write through :func:`whole_file`."""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def whole_file(path: str | os.PathLike) -> Iterator[Path]:
    """``with whole_file(path) as tmp:`` write ``tmp``, a name of this process and thread beside
    ``path`` (its folder is made). When the block ends, ``tmp`` replaces ``path`` in one rename;
    when it raises, ``tmp`` is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
