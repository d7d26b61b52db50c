"""The one chunk insert: stream chunks written by the telemetry batches (``POST /api/ingest``,
:mod:`.ingest`), the webcam frame batches (``POST /api/gaze/frames``, :mod:`.gaze`) and the gaze
WebSocket (:mod:`.gaze_ws`).

:func:`insert_chunks` stores a request's chunks in one transaction on one connection (SQLAlchemy
Core: these are the hot paths) and sets the task's clock anchor on its first chunk; a chunk whose
(task, stream, page load, seq) is stored already makes the whole transaction a replay (False), so a batch
that arrives twice at once adds nothing.

:func:`task_transaction` is the write transaction that holds a task's chunk lock (PostgreSQL: an
advisory transaction lock per task, for every host on the database; SQLite: the file's write lock
and ``BEGIN IMMEDIATE``): what is read in it (which frames are stored already, the webcam gaze
paths) stays true until its inserts (:func:`write_chunks`) commit.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: threads of one process only
    fcntl = None
from sqlalchemy.exc import IntegrityError

from .. import store
from .api import ApiError, ParticipantGone, raise_if_task_gone

C, T = store.StreamChunk.__table__, store.Task.__table__

#: a batch's seq up to this is stored as it comes (a page counts its batches from the seq its page
#: was given, one a batch: ~12 days of one-second batches; the WebSocket one a frame: ~10-19 hours
#: of a task's frames); a larger one only within
#: :data:`SEQ_STEP` of the task's last stored chunk (:func:`seq_refusal`). The page is given the
#: task's last seq + 1 (``chat.next_seq``, ``gaze_store.next_gaze_seq``), so one batch with a seq
#: at the top of the range (``batches.MAX_SEQ``: a forged or corrupted counter) would leave every
#: later page of the task a seq the site refuses, and its outbox drops refused batches
SEQ_FREE = 2**20
#: how far above the task's last stored seq a batch beyond :data:`SEQ_FREE` may be (batches still
#: in a page's outbox, refused ones whose seqs were used)
SEQ_STEP = 2**12
_LAST_TASK_SEQ = select(func.max(C.c.seq)).where(C.c.task_id == bindparam("task"))


def seq_refusal(conn: Connection, task_id: int, seq: int) -> str | None:
    """Why ``seq`` may not be stored for the task (the 400's message), or None: it may
    (:data:`SEQ_FREE`; a look at the task's last seq only above it)."""
    if seq <= SEQ_FREE:
        return None
    last = conn.execute(_LAST_TASK_SEQ, {"task": task_id}).scalar()
    if last is not None and seq <= last + SEQ_STEP:
        return None
    return (f"seq {seq} jumps ahead of the task's batches (last stored: {'none' if last is None else last}; "
            f"a page numbers its batches on from the next_seq of its page)")


def check_seq_room(task_id: int, seq: int) -> None:
    """ApiError 400 where :func:`seq_refusal` refuses ``seq`` (read on a connection of its own:
    the webcam paths, whose lookup has ended)."""
    if seq <= SEQ_FREE:
        return
    from .runtime import site

    with site().statements.connect() as conn:
        why = seq_refusal(conn, task_id, seq)
    if why is not None:
        raise ApiError(400, why)


CHUNK_COLUMNS = tuple(c.name for c in C.columns if c.name not in ("id", "received_at"))
SET_ANCHOR = (update(T).where(T.c.id == bindparam("task"), T.c.clock_anchor_epoch_ms.is_(None))
              .values(clock_anchor_epoch_ms=bindparam("origin")))

class SqliteWriteLock:
    """One writer at a time on a SQLite file, queued here instead of in SQLite's busy handler
    (which sleeps in steps of up to 100 ms and makes the latency tail long): a thread lock for
    this process's threads and, where there is ``fcntl``, an exclusive ``flock`` on
    ``<file>-writelock`` for the other processes on the file (gunicorn's workers), which the
    kernel hands on the moment it is released. The lock file is opened per process (an ``flock``
    shared across a fork would not exclude the other process)."""

    def __init__(self, path: str | None):
        self._thread = threading.Lock()
        self._path = f"{path}-writelock" if path and path != ":memory:" and fcntl is not None else None
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> SqliteWriteLock:
        self._thread.acquire()
        if self._path is None:
            return self
        try:
            if self._pid != os.getpid():
                self._fd, self._pid = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:
            self._thread.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._path is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()


_SQLITE_WRITE_LOCKS: dict[str, SqliteWriteLock] = {}
_LOCKS_LOCK = threading.Lock()


def write_lock(conn: Connection | Engine):
    """SQLite: the file's :class:`SqliteWriteLock` (one writer at a time across this host's
    threads and processes); PostgreSQL: nothing (its row locks do)."""
    if conn.dialect.name != "sqlite":
        return contextlib.nullcontext()
    path = conn.engine.url.database or ""
    with _LOCKS_LOCK:
        lock = _SQLITE_WRITE_LOCKS.get(path)
        if lock is None:
            lock = _SQLITE_WRITE_LOCKS[path] = SqliteWriteLock(path)
    return lock


@contextlib.contextmanager
def participant_lock(p: store.Participant):
    """Participant ``p``'s row under its lock in the request's session until the block ends (it
    commits or rolls back there): PostgreSQL ``SELECT ... FOR UPDATE`` (every host), SQLite the
    file's :func:`write_lock` (the one host). A request of the same participant that decides
    something meanwhile (a second copy of a calibration round, a withdrawal, a researcher's
    deletion) waits, and then reads what this one committed. A row gone meanwhile (the
    researcher re-admitted a deleted participant: its marker row went) raises
    :class:`.api.ParticipantGone`, nothing written."""
    from .runtime import db, site

    with write_lock(site().engine):
        found = db().scalar(select(store.Participant).where(store.Participant.id == p.id)
                            .with_for_update().execution_options(populate_existing=True))
        if found is None:
            db().rollback()
            raise ParticipantGone()
        yield found


def chunk_row(chunk: store.StreamChunk) -> dict[str, Any]:
    """The values of ``chunk``'s row, received now."""
    return {c: getattr(chunk, c) for c in CHUNK_COLUMNS} | {"received_at": store.utcnow()}


def insert_chunks(conn: Connection, task_id: int, origin: float | None, chunks: Sequence[store.StreamChunk], *,
                  set_anchor: bool = True) -> bool:
    """Store ``chunks`` of task ``task_id`` in one transaction on ``conn``; False for a replay.

    Parameters
    ----------
    conn
        A connection with no transaction open (end a read first: a SQLite read transaction cannot
        always become a write one).
    task_id, origin
        The task and the page's clock origin (epoch ms); with ``set_anchor`` the task's clock
        anchor becomes ``origin`` when it has none yet (its first batch).
    chunks
        Chunk rows (:func:`gazepref.store.make_chunk` / :func:`~gazepref.store.chunk_from_batch`).

    Returns
    -------
    bool
        False when one of the chunks is stored already (the same batch arrived twice at once):
        nothing of the call is stored then.

    Raises
    ------
    .api.TaskGone
        The task was deleted after the caller's consent check (its participant withdrew
        meanwhile: the chunks fail the task's foreign key): 401, nothing stored.
    """
    rows = [chunk_row(c) for c in chunks]
    if 0 < len(rows) <= ONE_STATEMENT_ROWS and conn.dialect.name != "sqlite":
        stored = _insert_alone(conn, rows, {"task": task_id, "origin": origin} if set_anchor else None)
    else:
        try:
            with write_lock(conn), conn.begin():
                _write_rows(conn, task_id, origin, rows, set_anchor, ())
            stored = True
        except IntegrityError:
            stored = False
    if not stored:  # a replay, or the task is gone (the second look costs the failure path only)
        raise_if_task_gone(conn, task_id)
        conn.rollback()  # (the look's transaction marker)
    return stored


def write_chunks(conn: Connection, task_id: int, origin: float | None, chunks: Sequence[store.StreamChunk], *,
                 set_anchor: bool = True, also: Sequence[tuple[Table, list[dict[str, Any]]]] = ()) -> None:
    """Insert ``chunks`` (the clock anchor as :func:`insert_chunks`) and ``also``, ``(table, rows)``
    (the webcam frames a study keeps), in the transaction open on ``conn``
    (:func:`task_transaction`); a chunk stored already raises ``IntegrityError``."""
    _write_rows(conn, task_id, origin, [chunk_row(c) for c in chunks], set_anchor, also)


def _write_rows(conn: Connection, task_id: int, origin: float | None, rows: list[dict[str, Any]], set_anchor: bool,
                also: Sequence[tuple[Table, list[dict[str, Any]]]]) -> None:
    if rows:
        conn.execute(insert(C), rows)
    if set_anchor:
        conn.execute(SET_ANCHOR, {"task": task_id, "origin": origin})
    for table, values in also:
        if values:
            conn.execute(insert(table), values)


#: PostgreSQL advisory lock class of a task's chunk lock (:func:`task_transaction`; the task id is
#: the second key); two-key locks never meet the one-key ones (:data:`gazepref.store.SCHEMA_LOCK_KEY`)
TASK_LOCK_CLASS = 0x677A6368  # "gzch"

#: PostgreSQL: how long a store waits for its task's chunk lock before it gives up (the request
#: is answered 503 + Retry-After as in a database outage, ``runtime.database_outage``, and the page
#: sends its frames again). A holder holds it for a few milliseconds; one that never lets go is a
#: host lost between its lock and its commit, whose connection the server ends only when TCP
#: keepalive notices (hours): without a limit every later store of the task would wait that
#: long, each holding a request thread and a pooled connection.
TASK_LOCK_TIMEOUT_MS = 10_000


@contextlib.contextmanager
def task_transaction(conn: Connection, task_id: int):
    """A write transaction on ``conn`` (no transaction open) that holds task ``task_id``'s chunk
    lock from its start to its end: the check-then-insert of the webcam gaze paths (which frames
    are stored already, :func:`.gaze_store.store_gaze`) is atomic against every other socket and
    request of the task, on this host or another.

    PostgreSQL: ``pg_advisory_xact_lock`` on (:data:`TASK_LOCK_CLASS`, task) as the first
    statement; at read committed (:func:`gazepref.store.make_engine`) each later statement sees
    what the lock's previous holder committed. Taken on the task, not its row (``FOR UPDATE``
    would also hold back the other inserts of the task, whose foreign key check shares the row).
    It waits for the lock at most :data:`TASK_LOCK_TIMEOUT_MS` (then ``OperationalError``).
    SQLite: the file's :func:`write_lock` (one writer at a time on the host, the one host of a
    SQLite file) and ``BEGIN IMMEDIATE``, the write lock taken up front: no other connection
    writes between the reads and the inserts. Leaving the block commits; an exception rolls
    back."""
    with write_lock(conn), conn.begin():
        if conn.dialect.name == "sqlite":
            # pysqlite opens its deferred transaction only before the first INSERT: the reads would
            # run outside it; this makes them part of one transaction that holds the write lock
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            # one round trip: the wait's limit for this transaction, then the lock (no parameters:
            # psycopg sends both statements as one simple query; the values are integers)
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(TASK_LOCK_TIMEOUT_MS)}; "
                                 f"SELECT pg_advisory_xact_lock({int(TASK_LOCK_CLASS)}, {int(task_id)})",
                                 execution_options={"no_parameters": True})
        yield conn


#: at most this many chunks go in as one autocommit statement (a batch has one per stream);
#: far below where SQLAlchemy's insertmanyvalues would split them into several statements
#: (1000 rows, 32,700 parameters), which would no longer be atomic
ONE_STATEMENT_ROWS = 100

#: executed with a list of rows: SQLAlchemy's "insertmanyvalues" sends them as one multi-row
#: INSERT (one statement, compiled once), where a plain executemany would be one per row
_INSERT_MANY = insert(C).returning(C.c.id)


#: the same with the task's clock anchor set in the statement (a data-modifying CTE; its
#: parameters ``task`` and ``origin`` ride with every row, the same in each)
_INSERT_MANY_ANCHORED = insert(C).add_cte(SET_ANCHOR.cte("anchor")).returning(C.c.id)


def _insert_alone(conn: Connection, rows: list[dict[str, Any]], anchor: dict[str, Any] | None) -> bool:
    """PostgreSQL: ``rows`` as one INSERT in autocommit; with ``anchor`` (``task``, ``origin``)
    the task's clock anchor is set in the same statement (a data-modifying CTE). One statement is
    atomic by itself (a replayed chunk fails it whole), so the BEGIN and COMMIT round trips are
    saved (``benchmarks/ingest.py``)."""
    switch = not store.is_autocommit(conn.engine)
    if switch:
        conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        if anchor is None:
            conn.execute(_INSERT_MANY, rows)
        else:  # a task's first batch: the rows and the anchor's update in one statement
            conn.execute(_INSERT_MANY_ANCHORED, [row | anchor for row in rows])
    except IntegrityError:
        return False
    finally:
        conn.rollback()  # SQLAlchemy's transaction marker only (autocommit)
        if switch:
            conn.execution_options(isolation_level=conn.default_isolation_level)
    return True
