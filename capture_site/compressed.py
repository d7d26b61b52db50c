"""The site's files from disk (``/vendor/``: the face mesh, its models and the wasm binaries;
``/static/``: the pages' scripts and styles), gzip-compressed where the browser accepts it.

gunicorn and Flask compress nothing, and many studies run the site without a proxy in front: the
face mesh alone is ~7 MB as it is, ~5 MB compressed (``benchmarks/vendor_compression.py``).
Each file is compressed once per version, at its first request, into ``<instance>/compressed/``,
named by the source's :func:`version` (its size, modification time and inode: a file that
``npm ci`` replaced or an editor rewrote gets a new copy, and the old one is deleted); a request
then costs one ``stat`` of the source. A file gzip shrinks by less than :data:`MIN_SAVING` (the
facemesh and iris weights: float numbers) is remembered as such (an empty ``.identity`` file) and
always goes out as it is.

The compressed answer has ``Content-Encoding: gzip``, its own length and ETag (the identity one,
the file's :func:`version`, plus ``-gzip``), ``Vary: Accept-Encoding`` (on both variants) and the
caching headers of the identity answer; it honours ``If-None-Match`` / ``If-Modified-Since``
(304) but not ``Range`` (a Range request for it gets the whole file: 200), which the identity
variant keeps. While one thread of a process makes a copy, the others answer uncompressed.
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, abort, current_app, request, send_file
from werkzeug.security import safe_join
from werkzeug.wrappers import Response

__all__ = ["CACHE_FOLDER", "MIN_SAVING", "accepts_gzip", "install", "send", "version"]

log = logging.getLogger(__name__)

#: a file is sent compressed only if gzip saves at least this share of its bytes
MIN_SAVING = 0.10
#: compressed once per file version: the slowest level (human.esm.js: 0.13 s, 1 % smaller than 6)
LEVEL = 9
#: the copies' folder in the instance folder
CACHE_FOLDER = "compressed"


def version(st: os.stat_result) -> str:
    """A file's version as its ``stat`` tells it (16 hex digits): changes when it is rewritten
    (size, modification time) or replaced (inode), as ``npm ci`` does."""
    return hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Seen:
    version: str
    copy: Path | None  # None: not worth compressing (or it could not be)


class Copies:
    """The compressed copies in ``folder``, and what this process knows of them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._seen: dict[str, _Seen] = {}  # source path -> its version as last seen
        self._busy: dict[str, threading.Lock] = {}
        self._warned = False

    def copy_of(self, source: Path, st: os.stat_result) -> tuple[Path | None, bool]:
        """(The gzip copy of ``source`` as ``st`` describes it, or None; whether the answer varies
        with Accept-Encoding): the copy is made here if missing."""
        key, now = str(source), version(st)
        seen = self._seen.get(key)
        if seen is not None and seen.version == now:
            return seen.copy, seen.copy is not None
        lock = self._busy.setdefault(key, threading.Lock())
        if not lock.acquire(blocking=False):
            return None, True  # another thread compresses it: this one goes as it is
        try:
            try:
                copy = self._make(source, st, now)
            except OSError as e:  # the instance folder unwritable or full: send files as they are
                if not self._warned:
                    log.warning("cannot keep compressed copies in %s (%s): files go out uncompressed",
                                self.folder, e)
                    self._warned = True
                copy = None
            self._seen[key] = _Seen(now, copy)
        finally:
            lock.release()
        return copy, copy is not None

    def forget(self, source: Path) -> None:
        self._seen.pop(str(source), None)

    def _make(self, source: Path, st: os.stat_result, now: str) -> Path | None:
        stem = f"{source.name}.{hashlib.sha256(str(source).encode()).hexdigest()[:12]}"
        copy = self.folder / f"{stem}.{now}.gz"
        plain = self.folder / f"{stem}.{now}.identity"
        if copy.is_file():  # made by another process, or before a restart
            return copy
        if plain.is_file():
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{stem}.{now}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(source, "rb") as src, open(tmp, "wb") as raw, \
                    gzip.GzipFile(filename="", mode="wb", compresslevel=LEVEL, fileobj=raw, mtime=0) as out:
                shutil.copyfileobj(src, out, 1 << 20)
            if version(source.stat()) != now:
                return None  # replaced while read (npm ci running): the next request tries again
            if tmp.stat().st_size > (1 - MIN_SAVING) * st.st_size:
                plain.touch()
                made = plain
            else:
                os.replace(tmp, copy)
                made = copy
        finally:
            tmp.unlink(missing_ok=True)
        for old in self.folder.glob(f"{glob.escape(stem)}.*"):  # earlier versions of the file
            if old != made:
                old.unlink(missing_ok=True)
        return copy if made == copy else None


def accepts_gzip() -> bool:
    """Whether the request's Accept-Encoding takes gzip (named, else ``*``; ``q=0`` refuses)."""
    named = [q for value, q in request.accept_encodings if value.lower() in ("gzip", "x-gzip")]
    if named:
        return max(named) > 0
    return any(value == "*" and q > 0 for value, q in request.accept_encodings)


def send(path: Path, *, max_age: int | None = None, immutable: bool = False) -> Response:
    """The file at ``path`` (which exists), compressed where the browser accepts gzip and it saves
    :data:`MIN_SAVING`. ``max_age``: seconds the browser may keep it (None: ``no-cache``, it
    revalidates by ETag each time); ``immutable``: never revalidated while fresh (versioned URLs)."""
    st = path.stat()
    etag = version(st)
    copies: Copies = current_app.extensions["gazepref_compressed"]
    rv = None
    for _ in range(2):  # a second time where the copy was deleted behind our back
        copy, varies = copies.copy_of(path, st)
        if copy is None or not accepts_gzip():
            break
        try:
            rv = send_file(copy, download_name=path.name, etag=f"{etag}-gzip", last_modified=st.st_mtime,
                           max_age=max_age, conditional=False)
        except FileNotFoundError:
            copies.forget(path)
            continue
        rv.headers["Content-Encoding"] = "gzip"
        rv = rv.make_conditional(request.environ, accept_ranges=False)  # 304; no Range on the gzip bytes
        break
    if rv is None:
        rv = send_file(path, download_name=path.name, etag=etag, max_age=max_age, conditional=True)
    if varies:
        rv.vary.add("Accept-Encoding")
    if immutable:
        rv.cache_control.immutable = True
    return rv


def install(app: Flask) -> None:
    """Keep the app's compressed copies in its instance folder, and send ``/static/`` through
    :func:`send` (Flask's own caching policy: ``SEND_FILE_MAX_AGE_DEFAULT``, revalidated by default)."""
    app.extensions["gazepref_compressed"] = Copies(Path(app.instance_path) / CACHE_FOLDER)

    def static(filename: str):
        path = safe_join(str(app.static_folder), filename)
        if path is None or not os.path.isfile(path):
            abort(404)
        return send(Path(path), max_age=app.get_send_file_max_age(filename))

    app.view_functions["static"] = static
