"""Opening any data source by what the user typed: the one entry point of every command.

A *source* is an IFLLM-layout folder, a gazepref Parquet export, or the slug of a study in the
site's database (located by :func:`gazepref.store.database_url`: ``--db``, else
``$GAZEPREF_DATABASE_URL``, else the instance folder's SQLite). :func:`open_source` opens one as a
:class:`~gazepref.datasets.recording.Recording`; :func:`add_source_arguments` and
:func:`source_from_args` give every command the same ``SOURCE --db --instance`` arguments.

Two helpers let code that caches or forks work on any source without a folder path:
:func:`fingerprint` (a content key for caches: file sizes and times for a folder; for a study the
database, slug, consenting participants, turns and labels, and the count and largest id of its
stream chunks) and :func:`source_key` / :func:`open_key` (a small picklable handle to open the
same source again in a worker process).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from .. import UserError

#: what a study slug looks like (the site's rule: letters, digits, '-' or '_', up to 64)
SLUG_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

SOURCE_HELP = ("an IFLLM-layout folder, a gazepref Parquet export, or the slug of a study in the site's "
               "database")
DB_HELP = ("the site's database (studies given by slug, accounts): a SQLAlchemy URL or a SQLite file "
           "(default: $GAZEPREF_DATABASE_URL, else the instance folder's gazepref.sqlite)")
INSTANCE_HELP = "the site's instance folder, for its SQLite database (default: $GAZEPREF_INSTANCE, else ./instance)"


def is_slug(spec: str) -> bool:
    return bool(SLUG_RE.match(spec))


def open_source(spec: Any, db: str | None = None, instance: str | None = None):
    """The recording ``spec`` names: a recording object (returned as it is), an existing IFLLM
    folder or Parquet export, or else a study slug in the located database.

    Raises :class:`gazepref.UserError` naming what was tried (and the studies the database holds)
    when ``spec`` is none of these.
    """
    if hasattr(spec, "turns") and hasattr(spec, "streams"):
        return spec
    from .recording import open_recording

    spec = str(spec)
    p = Path(spec).expanduser()
    if p.exists():
        return open_recording(p)
    if not is_slug(spec):
        raise UserError(f"no such file or folder: {p} (and {spec!r} is not a study slug)")
    from .store_recording import StoreRecording

    try:
        return StoreRecording.open(spec, db_url=db, instance=instance)
    except UserError as e:
        raise UserError(f"{spec!r} is not a file or folder here, nor a study: {e}") from None


# --------------------------------------------------------------------------- command-line arguments


def add_source_arguments(parser: argparse.ArgumentParser, dest: str = "data", metavar: str = "SOURCE",
                         nargs: str | None = None, help: str | None = None, db: bool = True) -> None:
    """The positional SOURCE (stored as ``args.<dest>``) and, with ``db``, the ``--db`` and
    ``--instance`` options that locate a study's database. One definition for every command."""
    kw: dict[str, Any] = {"metavar": metavar, "help": help or SOURCE_HELP}
    if nargs is not None:
        kw["nargs"] = nargs
    parser.add_argument(dest, **kw)
    if db:
        add_database_arguments(parser)


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    """``--db`` and ``--instance`` (``args.db``, ``args.instance``)."""
    parser.add_argument("--db", metavar="URL_OR_FILE", help=DB_HELP)
    parser.add_argument("--instance", metavar="FOLDER", help=INSTANCE_HELP)


def source_from_args(args: argparse.Namespace, dest: str = "data", spec: Any = None):
    """Open ``args.<dest>`` (or ``spec``) with the command's ``--db``/``--instance``."""
    return open_source(getattr(args, dest) if spec is None else spec, db=getattr(args, "db", None),
                       instance=getattr(args, "instance", None))


# --------------------------------------------------------------------------- keys for caches and workers


def source_key(rec: Any) -> tuple[str, str, str | None]:
    """A picklable handle of where ``rec`` comes from: ``("study", slug, url)`` or
    ``("folder", path, None)``; :func:`open_key` opens it again (in a worker process)."""
    study = getattr(rec, "study", None)
    if study is not None and getattr(rec, "url", None):
        return ("study", study.slug, rec.url)
    root = getattr(rec, "root", None)
    if root is None:
        raise TypeError(f"{type(rec).__name__} has no location to open again (no folder, no study)")
    return ("folder", str(Path(root).resolve()), None)


def open_key(key: tuple[str, str, str | None]):
    kind, where, url = key
    if kind == "study":
        from .store_recording import StoreRecording

        return StoreRecording.open(where, db_url=url)
    from .recording import open_recording

    return open_recording(where)


def describe(rec: Any) -> str:
    """A short name of the source for titles and reports (no password, no full path)."""
    study = getattr(rec, "study", None)
    if study is not None:
        return f"study {study.slug}"
    root = getattr(rec, "root", None)
    return Path(root).name if root is not None else type(rec).__name__


def folder_fingerprint(path: str | os.PathLike, h: Any = None) -> str:
    """Size and modification time of every file under ``path`` (or of the file itself)."""
    h = h or hashlib.sha256()
    p = Path(path).expanduser().resolve()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if f != p else f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def fingerprint(rec: Any) -> str | None:
    """A key that changes when the recording's content does (None: the source cannot say).

    Folder: the size and time of every file. Study: the database (without password), the slug, the
    consenting participants, every turn with its labels and times, and for the stream chunks their
    count and largest id (chunks are only ever added; a higher id may commit later under
    PostgreSQL, which the count catches)."""
    study = getattr(rec, "study", None)
    if study is not None and hasattr(rec, "db"):
        from sqlalchemy import func, select

        from .. import store

        h = hashlib.sha256(f"study|{store.safe_url(getattr(rec, 'url', ''))}|{study.slug}|{study.id}\n".encode())
        for t in rec.turns():  # the consenting participants' turns, labels included
            h.update(json.dumps(t.to_dict(), sort_keys=True, default=str).encode())
        n, top = rec.db.execute(
            select(func.count(store.StreamChunk.id), func.max(store.StreamChunk.id))
            .join(store.Task, store.Task.id == store.StreamChunk.task_id)
            .join(store.Participant, store.Participant.id == store.Task.participant_id)
            .where(store.consenting(study.id))
        ).one()
        h.update(f"chunks|{n}|{top}".encode())
        return h.hexdigest()[:20]
    root = getattr(rec, "root", None)
    if root is None:
        return None
    return folder_fingerprint(root)
