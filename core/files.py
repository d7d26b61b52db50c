"""Files written whole: a reader (another process, another thread) finds the old file or the new
one, never one half written. Caches shared by several processes (two commands at once, the test
workers) write through :func:`whole_file`."""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
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


def check_out_folder(path: str | os.PathLike, overwrite: bool,
                     wrote: Callable[[Path], bool] | None = None, what: str = "this command") -> Path:
    """``path`` as an output folder: refused (:class:`gazepref.UserError`) when it exists and holds
    anything, unless ``overwrite`` and (where ``wrote`` is given) ``wrote(path)``: it is a folder
    ``what`` wrote (``--overwrite`` of another command's folder, an export's or a feature table's,
    replaced files of the other's under their shared names); a file there is refused either way.
    Not made here."""
    from . import UserError

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise UserError(f"{path} exists and is not empty (use --overwrite)")
        if wrote is not None and not wrote(path):
            raise UserError(f"{path} is not a folder {what} wrote: --overwrite replaces only those; "
                            "choose a new or empty --out")
    return path


#: what a file browser leaves in a folder (hidden files among them): never a command's output
DESKTOP_FILES = ("Thumbs.db", "desktop.ini")


def holds_only(folder: Path, names: Iterable[str]) -> bool:
    """Whether everything at the top of ``folder`` is named in ``names`` (a ``wrote`` test of
    :func:`check_out_folder`), hidden files (``.DS_Store``) and :data:`DESKTOP_FILES` aside."""
    allowed = set(names) | set(DESKTOP_FILES)
    return all(p.name in allowed or p.name.startswith(".") for p in folder.iterdir())


@contextlib.contextmanager
def whole_folder(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """``with whole_folder(out, overwrite) as tmp:`` write the folder's files into ``tmp``, a new
    folder beside ``out``; when the block ends, ``tmp`` replaces ``out`` (and whatever an earlier
    run left there) in one rename, so an interrupted run leaves ``out`` as it was, never half
    written. ``out`` is checked first (:func:`check_out_folder`); when the block raises, ``tmp``
    is removed."""
    import shutil

    from . import UserError

    path = check_out_folder(Path(path).expanduser().resolve(), overwrite)  # (".", a link: the folder itself)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # (left by a killed process of the same id)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        try:
            if path.exists():
                old = path.with_name(f"{tmp.name}.old")
                path.rename(old)
            try:
                tmp.rename(path)
            except OSError as first:
                if old is not None:  # put the earlier folder back
                    try:
                        old.rename(path)
                    except OSError:
                        raise UserError(f"cannot replace {path} ({first.strerror or first}); its earlier contents "
                                        f"are in {old}") from None
                    old = None
                raise
        except OSError as e:  # a mount point, a folder another program holds open (Windows)
            raise UserError(f"cannot replace {path} ({e.strerror or e}): choose another output folder") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
