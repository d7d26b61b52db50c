"""Storage of recordings through SQLAlchemy 2: SQLite (WAL) by default, PostgreSQL by URL.

Record tables (studies, participants, tasks, turns, responses, ...) are ordinary rows. High-rate
sample streams are stored as *columnar chunks*: each ingest batch of one stream becomes one row
holding an Arrow record batch (all-null optional columns left out, the message zstd-compressed
as one frame; the column list is kept beside it, so no schema is repeated per chunk).
Chunks are keyed by (task, stream, page load, seq): a page load (its ``performance.timeOrigin``)
numbers its batches, so a replayed batch adds nothing and another page load's batch of the same
seq (another tab or a reload of the task page, which number from the server's next seq; a gaze
page that lost its saved counter) is not taken for one.
``benchmarks/storage.py`` measures this against one row per sample; see docs/storage.md.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    func,
    event,
    insert,
    inspect,
    not_,
    literal,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import AddConstraint, CreateTable
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from . import UserError, schema


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    salt: Mapped[str] = mapped_column(String(64))  # pseudonymisation secret, never exported
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    participants: Mapped[list[Participant]] = relationship(back_populates="study", cascade="all, delete-orphan")


class Participant(Base):
    __tablename__ = "participants"
    # SQLite: AUTOINCREMENT, so a deleted participant's id is never given to the next one (a
    # deleted participant's cookie and page token name their id: they must open nothing else)
    __table_args__ = (UniqueConstraint("study_id", "pseudonym"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    pseudonym: Mapped[str] = mapped_column(String(64))  # salted hash of the platform id
    platform: Mapped[str | None] = mapped_column(String(32))
    consent: Mapped[bool | None] = mapped_column(Boolean)  # None: not asked yet, False: declined
    consent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # where in the flow (resume)
    completion_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    study: Mapped[Study] = relationship(back_populates="participants")
    tasks: Mapped[list[Task]] = relationship(back_populates="participant", cascade="all, delete-orphan")
    demographics: Mapped[Demographics | None] = relationship(cascade="all, delete-orphan")
    calibrations: Mapped[list[Calibration]] = relationship(cascade="all, delete-orphan")
    frames: Mapped[list[GazeFrame]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


def consenting(study_id: Any) -> ColumnElement[bool]:
    """The one consent filter of a study's participants: the WHERE clause of the participants of
    study ``study_id`` (an id or a column) whose data may be exported and analysed — those who
    consented and are still in the study. It leaves out those who declined, those not asked yet,
    those who withdrew and those whose data a researcher deleted (both keep their row with
    ``consent`` False as a marker: ``gazepref.capture_site.purge``). Every reader of a study's
    recordings uses it: the exports, ``gazepref.datasets.store_recording.StoreRecording`` (so
    ``features``, ``plots``, ``report``, ``reward`` and ``align`` on a study), the fingerprint of
    caches, the site's analyst views and ``gazepref gaze recalibrate``."""
    return and_(Participant.study_id == study_id, Participant.consent.is_(True))


def participants_left_out(db: Session, study_id: int) -> int:
    """How many participants of study ``study_id`` :func:`consenting` leaves out (a count, never
    who): what the commands that read a study report as ``participants_without_consent``."""
    P = Participant
    return int(db.scalar(select(func.count(P.id)).where(P.study_id == study_id, not_(consenting(study_id)))) or 0)


class Demographics(Base):
    """Questionnaire answers, kept apart from behaviour."""

    __tablename__ = "demographics"
    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), unique=True)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Task(Base):
    __tablename__ = "tasks"
    # one task per (participant, index): two requests reaching a new task at once insert it once
    __table_args__ = (Index("uq_tasks_participant_index", "participant_id", "index", unique=True),)
    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16))  # pairwise | pointwise
    topic: Mapped[str | None] = mapped_column(Text)
    clock_anchor_epoch_ms: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    feedback_text: Mapped[str | None] = mapped_column(Text)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    participant: Mapped[Participant] = relationship(back_populates="tasks")
    turns: Mapped[list[Turn]] = relationship(
        back_populates="task", cascade="all, delete-orphan", order_by="Turn.index"
    )
    chunks: Mapped[list[StreamChunk]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("task_id", "index"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[str] = mapped_column(Text)
    prompt_sent: Mapped[str | None] = mapped_column(Text)
    modifiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    context: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    choice: Mapped[int | None] = mapped_column(Integer)
    choice_strength: Mapped[int | None] = mapped_column(Integer)
    better_than_previous: Mapped[bool | None] = mapped_column(Boolean)
    feedback_text: Mapped[str | None] = mapped_column(Text)
    epoch_ms: Mapped[float | None] = mapped_column(Float)
    t_shown: Mapped[float | None] = mapped_column(Float)
    t_decided: Mapped[float | None] = mapped_column(Float)
    task: Mapped[Task] = relationship(back_populates="turns")
    responses: Mapped[list[Response]] = relationship(
        back_populates="turn", cascade="all, delete-orphan", order_by="Response.position"
    )


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("turn_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    likert: Mapped[int | None] = mapped_column(Integer)
    turn: Mapped[Turn] = relationship(back_populates="responses")


class Calibration(Base):
    """A calibration or validation round: targets, fitted model and metrics."""

    __tablename__ = "calibrations"
    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # calibration | validation
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model: Mapped[bytes | None] = mapped_column(LargeBinary)


#: the unique key of ``stream_chunks``: (task, stream, page load, seq)
CHUNK_KEY = "uq_stream_chunks_page_seq"


class StreamChunk(Base):
    """One batch of one sample stream: an Arrow record batch, zstd-compressed."""

    __tablename__ = "stream_chunks"
    __table_args__ = (
        # a seq numbers one page load's (origin's) batches: another page load's chunk of the same
        # seq (another tab or a reload of the task page, numbering from the server's next seq; a gaze
        # page that lost its saved counter) is neither a replay nor refused
        # (:func:`init_db` moves a database made with the former key (task, stream, seq) onto it)
        UniqueConstraint("task_id", "stream", "clock_origin_epoch_ms", "seq", name=CHUNK_KEY),
        # a page load's gaze chunks by time (the webcam paths' check of which frames are stored
        # already, capture_site.gaze_store.stored_gaze_times): gaze chunks only
        Index("ix_stream_chunks_gaze_time", "task_id", "clock_origin_epoch_ms", "t_end",
              sqlite_where=text("stream = 'gaze'"), postgresql_where=text("stream = 'gaze'")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    stream: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer)
    clock_origin_epoch_ms: Mapped[float | None] = mapped_column(Float)  # performance.timeOrigin of the page
    t_start: Mapped[float] = mapped_column(Float)
    t_end: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    columns: Mapped[str] = mapped_column(Text)  # the stored columns, in order
    raw_size: Mapped[int] = mapped_column(Integer)  # size of the uncompressed record batch
    data: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class GazeFrame(Base):
    """A webcam frame kept as sent (JPEG), only in studies with ``[gaze] keep_frames = true``.

    Task frames belong to the task's ``gaze`` chunk ``seq`` (``index`` within the batch);
    calibration and validation frames to their ``Calibration`` row. ``t``: the page clock (ms).
    Deleted with the participant, task or calibration (database cascade).
    """

    __tablename__ = "gaze_frames"
    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    calibration_id: Mapped[int | None] = mapped_column(ForeignKey("calibrations.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(Integer)
    t: Mapped[float] = mapped_column(Float)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class User(Base):
    """A researcher account for the dashboard."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


#: the ``study_slug`` of a :class:`StudyAccess` row that opens every study (no study's slug: a
#: slug is letters, digits, '-' and '_')
ALL_STUDIES = "*"


class StudyAccess(Base):
    """A researcher account's grant of one study (by slug), or of every study (:data:`ALL_STUDIES`).

    An account opens on the dashboard exactly the studies its rows name: no row, no study (a
    mistake never widens access). The slug need not name a study row yet: a study is created when
    the site first serves its file, and a grant made before that opens it from then on. Accounts
    that existed before this table get an :data:`ALL_STUDIES` row when :func:`init_db` creates it
    (they opened every study then), so an upgrade locks nobody out.
    """

    __tablename__ = "study_access"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    study_slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ResearcherSession(Base):
    """A researcher's logged-in browser: the session cookie names ``id`` (a SHA-256 of the random
    token it holds); logging out or changing the password deletes the row, so an old cookie
    opens nothing (the cookie itself is only signed, not revocable)."""

    __tablename__ = "researcher_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SiteSecret(Base):
    """A secret every server of one database shares: the site's session key (``secret_key``)
    when no ``$GAZEPREF_SECRET_KEY`` is given on a database server (several hosts), generated once
    by the first server to start (:func:`gazepref.capture_site.app.create_app`)."""

    __tablename__ = "site_secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LoginThrottle(Base):
    """Failed researcher logins per key (an account or a client address, hashed): the back-off
    lives in the database, so several server processes and hosts share it."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)  # Unix seconds
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class TurnLease(Base):
    """A chat turn whose models are answering (:mod:`gazepref.capture_site.turn_leases`): while it
    holds, another request for the same turn of the task calls no model. In the database, so every
    server process and host sees it; no foreign key (a task's deletion leaves it to expire)."""

    __tablename__ = "turn_leases"
    __table_args__ = {"info": {"unlogged": True}}  # (PostgreSQL: emptied after a crash, as it may be)
    task_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn: Mapped[int] = mapped_column(Integer)  # the turn's index
    until: Mapped[float] = mapped_column(Float)  # Unix seconds: the lease has ended after it


class RateBucket(Base):
    """A token bucket of the site's per-participant rate limits (:mod:`gazepref.capture_site.ratelimit`):
    in the database, so every server process and host behind a proxy draws from the same bucket."""

    __tablename__ = "rate_buckets"
    #: PostgreSQL: UNLOGGED (no WAL, so no flush per request; emptied after a database crash,
    #: which only refills every bucket)
    __table_args__ = {"info": {"unlogged": True}}
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)  # Unix seconds of the last refill


@compiles(CreateTable, "postgresql")
def _create_unlogged(create: CreateTable, compiler: Any, **kw: Any) -> str:
    """``CREATE UNLOGGED TABLE`` on PostgreSQL for tables marked ``info={"unlogged": True}``."""
    sql = compiler.visit_create_table(create, **kw)
    if create.element.info.get("unlogged"):
        sql = sql.replace("CREATE TABLE", "CREATE UNLOGGED TABLE", 1)
    return sql


# --------------------------------------------------------------------------- engine


#: how long a SQLite statement waits for another connection's write lock (``PRAGMA busy_timeout``)
SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    """Foreign keys (a deleted task's rows are refused, not stored as orphans), the busy timeout,
    WAL (readers do not block the writer) with ``synchronous=NORMAL``; a database opened read-only
    (``?mode=ro``) that is not in WAL already keeps its journal (switching is a write)."""
    import sqlite3

    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:  # "attempt to write a readonly database"
        pass
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


# --------------------------------------------------------------------------- locating the database

#: the environment variable naming the site's database (any SQLAlchemy URL)
DATABASE_URL_ENV = "GAZEPREF_DATABASE_URL"
#: the environment variable naming the site's instance folder (SQLite database, secret key)
INSTANCE_ENV = "GAZEPREF_INSTANCE"
#: the SQLite file in the instance folder
SQLITE_NAME = "gazepref.sqlite"


def instance_folder(instance: str | os.PathLike | None = None) -> Path:
    """The site's instance folder: ``instance``, else ``$GAZEPREF_INSTANCE``, else ``./instance``
    (absolute; not created here)."""
    from .settings import current

    return Path(instance or current().instance or Path.cwd() / "instance").expanduser().resolve()


def database_url(db: str | os.PathLike | None = None, instance: str | os.PathLike | None = None,
                 must_exist: bool = False) -> str:
    """The one place that says which database the site and every command use.

    Order: ``db`` (``--db``: a SQLAlchemy URL, or a plain path to a SQLite file), else
    ``$GAZEPREF_DATABASE_URL``, else ``sqlite:///<instance folder>/gazepref.sqlite`` (the instance
    folder from ``instance``, ``$GAZEPREF_INSTANCE`` or ``./instance``).

    ``must_exist``: a command that reads a study raises :class:`gazepref.UserError` when the SQLite
    file is missing, naming where it looked and how to point elsewhere (the site creates it).
    """
    from . import UserError
    from .settings import current

    settings = current()
    if db:
        db = str(db)
        url, how = (db, "--db") if "://" in db else (sqlite_url(Path(db).expanduser()), "--db")
    elif settings.database_url:
        url, how = settings.database_url, f"${DATABASE_URL_ENV}"
    else:
        folder = instance_folder(instance)
        how = "--instance" if instance else (f"${INSTANCE_ENV}" if settings.instance else "./instance")
        url = sqlite_url(folder / SQLITE_NAME)
    if must_exist:
        path = sqlite_path(url)
        if path is not None and not path.is_file():
            raise UserError(
                f"no database at {path} (from {how}); give --db URL_OR_FILE, set ${DATABASE_URL_ENV}, "
                f"or --instance FOLDER (or ${INSTANCE_ENV}) to name the site's instance folder")
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL: let the engine say so
        return None
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def safe_url(url: str) -> str:
    """``url`` with any password hidden (for messages and cache keys)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: hide what looks like a password
        import re

        # the password runs from the user's ':' to the last '@' (it may hold / : @ itself)
        at = url.rfind("@")
        if at >= 0:
            start = url.find("//", 0, at)
            colon = url.find(":", 0 if start < 0 else start + 2, at)
            if colon >= 0:
                url = url[:colon + 1] + "***" + url[at:]
        return re.sub(r"(?i)(password=)[^&]*", r"\1***", url)


def database_error(url: str | None, exc: Exception, verb: str = "use") -> UserError:
    """The :class:`gazepref.UserError` for a database that cannot be reached or opened (a wrong
    ``--db``, a server that is down): one line, ``cannot VERB the database URL: reason``, the URL's
    password hidden and the driver's reason (``exc.orig``; psycopg's spans lines) on one line."""
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
    where = f" {safe_url(url)}" if url else ""
    return UserError(f"cannot {verb} the database{where}: {reason}")


def make_engine(url: str, **kw: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL runs
    at read committed whatever the server's default (unless ``isolation_level`` is given).

    A URL SQLAlchemy cannot read, or whose database or driver it does not know (``postgres://``,
    a driver not installed), raises :class:`gazepref.UserError`: one line naming the URL (its
    password hidden) and the form expected."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if url.startswith("sqlite"):
        kw.setdefault("connect_args", {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    elif url.startswith("postgresql"):  # whatever the server's default: the site's race-safety
        # arguments (a DELETE re-testing a row another transaction updated, insert-once, the
        # schema lock) assume read committed; at repeatable read they raise serialization errors
        kw.setdefault("isolation_level", "READ COMMITTED")
    try:
        try:
            parsed = make_url(url)
        except ValueError as e:  # a port that is not a number (int() of it)
            raise ArgumentError(str(e)) from None
        engine = create_engine(parsed, **kw)
    except (ArgumentError, ImportError) as e:  # (NoSuchModuleError is an ArgumentError)
        reason = " ".join(str(e).split())
        raise UserError(f"not a usable database URL {safe_url(url)!r}: {reason} (PostgreSQL: "
                        f"postgresql+psycopg://USER:PASSWORD@HOST/DATABASE; SQLite: sqlite:///PATH)") from None
    if engine.dialect.name == "sqlite":
        if not {"mode", "uri"} & set(engine.url.query):  # (else the file is what SQLite is told to open)
            _private_sqlite_file(engine.url.database)
        event.listen(engine, "connect", _sqlite_pragmas)  # every SQLite URL: foreign keys above all
    return engine


def _private_sqlite_file(path: str | None) -> None:
    """Create a SQLite database file that does not exist yet readable by its owner only (0600;
    SQLite gives its -wal and -shm files the database file's mode): made by SQLite itself under
    the usual umask it was readable by every user of the machine (participants' data, researchers'
    password hashes, the studies' pseudonym salts). An existing file keeps its mode."""
    if not path or path == ":memory:" or not os.path.isdir(os.path.dirname(path) or "."):
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:  # there already, or a folder it cannot write: SQLite says so when it opens it
        pass


def is_autocommit(engine: Engine) -> bool:
    """Whether ``engine``'s connections are in autocommit from the start (:func:`autocommit_engine`)."""
    return getattr(engine.dialect, "isolation_level", None) == "AUTOCOMMIT"


def autocommit_engine(engine: Engine) -> Engine:
    """An engine for single statements outside a transaction (each commits by itself, atomic on
    its own): on PostgreSQL a second pool whose connections are in autocommit from the start, so
    the hot paths (ingest, rate limits) switch nothing per use; on SQLite ``engine``
    itself (one file, one writer at a time: a second pool would add nothing; its callers keep
    their transactions)."""
    if is_autocommit(engine) or engine.dialect.name == "sqlite":
        return engine
    return make_engine(engine.url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")


#: the PostgreSQL advisory lock key under which :func:`init_db` creates the schema
SCHEMA_LOCK_KEY = 0x67617A65  # "gaze"


def init_db(engine: Engine) -> sessionmaker[Session]:
    """Create the missing tables and indexes; a session factory on ``engine``.

    Where this creates ``study_access`` on a database with accounts (made before per-study access),
    each account gets an :data:`ALL_STUDIES` grant in the same transaction: it keeps opening every
    study. Later starts find the table and change no grant.

    Several server processes (gunicorn's workers, several hosts) may start at once on an empty
    database: on PostgreSQL each creates the schema in one transaction under an advisory lock, so
    the others wait and then find the tables (concurrent ``CREATE TABLE`` of the same name fails
    with a unique violation in PostgreSQL's catalogue, not an operational error).
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        had_grants = inspect(conn).has_table(StudyAccess.__tablename__)
        old_key = _former_chunk_key(conn)
        if conn.dialect.name == "sqlite" and (not had_grants or old_key):
            # the upgrades (below) in one transaction, the write lock taken first (pysqlite opens
            # none for DDL), so one process makes the table and its grants; looked at again under
            # the lock. A current database takes no write lock here (nothing to create).
            _begin_upgrade(conn)
            had_grants = inspect(conn).has_table(StudyAccess.__tablename__)
            old_key = _former_chunk_key(conn)
        if old_key:
            _rekey_chunks(conn, old_key)
        Base.metadata.create_all(conn)
        for table in Base.metadata.sorted_tables:  # tables made before an index was added get it now
            for index in table.indexes:
                index.create(conn, checkfirst=True)
        if not had_grants:  # accounts made before per-study access opened every study: they still do
            conn.execute(insert(StudyAccess).from_select(
                ["user_id", "study_slug", "created_at"],
                select(User.id, literal(ALL_STUDIES, String(64)), literal(utcnow(), DateTime()))))
    return sessionmaker(engine, expire_on_commit=False)



#: how long :func:`init_db` waits for another process's schema upgrade on SQLite (re-keying a large
#: ``stream_chunks`` copies all its chunks: ~15 ms per MB, longer than :data:`SQLITE_BUSY_TIMEOUT_MS`)
UPGRADE_WAIT_S = 3600.0


def _begin_upgrade(conn: Any) -> None:
    """``BEGIN IMMEDIATE`` on SQLite, waiting up to :data:`UPGRADE_WAIT_S` for the write lock: the
    process holding it may be upgrading a large database (the others starting at once wait for it
    and then find the schema current, instead of failing with 'database is locked')."""
    import time

    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + UPGRADE_WAIT_S
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as e:
            if "locked" not in str(e.orig) or time.monotonic() > deadline:
                raise


def _former_chunk_key(conn: Any) -> dict[str, Any] | None:
    """``stream_chunks``' unique key (task, stream, seq) of a database made before chunks were
    keyed by page load too (:data:`CHUNK_KEY`), as reflected (SQLite: without a name); None when
    the table has the current key or is not there yet."""
    insp = inspect(conn)
    if not insp.has_table(StreamChunk.__tablename__):
        return None
    for key in insp.get_unique_constraints(StreamChunk.__tablename__):
        if list(key["column_names"]) == ["task_id", "stream", "seq"]:
            return key
    return None


def _rekey_chunks(conn: Any, old_key: dict[str, Any]) -> None:
    """Move ``stream_chunks`` from its former key (task, stream, seq) onto :data:`CHUNK_KEY`, in the
    caller's transaction (every chunk kept: the new key is wider). PostgreSQL drops the constraint
    and adds the new one; SQLite cannot drop a constraint, so the table is made again under the
    new definition and the rows copied."""
    table = StreamChunk.__table__
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'ALTER TABLE {table.name} DROP CONSTRAINT "{old_key["name"]}"')
        # (isolate_from_table=False: SQLAlchemy's default marks the constraint as added by ALTER, and
        # every CREATE TABLE of this process would then make stream_chunks without its key)
        conn.execute(AddConstraint(next(c for c in table.constraints if c.name == CHUNK_KEY), isolate_from_table=False))
        return
    former = f"{table.name}_before_page_key"
    conn.exec_driver_sql(f"ALTER TABLE {table.name} RENAME TO {former}")
    for index in table.indexes:  # (the renamed table took them along)
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
    table.create(conn)
    columns = ", ".join(c.name for c in table.columns)
    # (ids kept: the rows are the same chunks.) A chunk whose task is gone (deleted where foreign
    # keys were off, the sqlite3 shell's default) would fail the new table's foreign key and stop
    # every start: it is left out (the data of a deleted task, unreachable by any reader)
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {former} "
                         f"WHERE task_id IN (SELECT id FROM {Task.__tablename__})")
    conn.exec_driver_sql(f"DROP TABLE {former}")


def reuses_ids(engine: Engine, table: str) -> bool:
    """Whether ``table`` may give a deleted newest row's id to the next row: a SQLite table made
    without AUTOINCREMENT (``participants`` before it had it); never on PostgreSQL (sequences)."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect() as conn:
        sql = conn.scalar(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"), {"name": table})
    return "AUTOINCREMENT" not in (sql or "").upper()

#: the largest row id a request may name (PostgreSQL's INTEGER; SQLite overflows past 2**63)
MAX_ID = 2**31 - 1


def insert_once(db: Session, model: type[Base], keys: Iterable[str], **values: Any) -> None:
    """INSERT a ``model`` row unless one with the same ``keys`` (a unique index) exists; concurrent
    callers (two requests) insert it once, the others wait for that row and do nothing."""
    insert = on_conflict_insert(db.get_bind().dialect.name, model)
    db.execute(insert.values(**values).on_conflict_do_nothing(index_elements=list(keys)))


def on_conflict_insert(dialect: str, model: type[Base]) -> Any:
    """An INSERT into ``model``'s table that takes ``on_conflict_do_nothing`` (SQLite, PostgreSQL)."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - the site runs on SQLite or PostgreSQL
        raise NotImplementedError(f"no INSERT ... ON CONFLICT for {dialect}")
    return insert(model)


# --------------------------------------------------------------------------- chunks

_CODEC = pa.Codec("zstd", compression_level=3)


def encode_chunk(stream: str, table: pa.Table) -> tuple[str, int, bytes]:
    """(column names, raw size, zstd bytes) of a conformed table; all-null optional columns are
    left out (required ones are kept even when null, e.g. gaze x/y before calibration)."""
    required = required_columns(stream)
    n = table.num_rows
    names = table.column_names
    keep = [name for name, col in zip(names, table.columns) if name in required or col.null_count < n]
    table = table.select(keep) if len(keep) < len(names) else table
    if any(col.num_chunks != 1 for col in table.columns):
        table = table.combine_chunks()
    batch = table.to_batches(max_chunksize=None)
    if batch:
        rb = batch[0]
    else:
        rb = pa.RecordBatch.from_pylist([], schema=table.schema)
    return _encode_batch(rb)


def _encode_batch(rb: pa.RecordBatch) -> tuple[str, int, bytes]:
    raw = rb.serialize()
    return ",".join(rb.schema.names), raw.size, _CODEC.compress(raw).to_pybytes()


@lru_cache(maxsize=None)
def required_columns(stream: str) -> frozenset[str]:
    """The stream's required columns (stored even when all null)."""
    return frozenset(c.name for c in schema.STREAMS[stream].columns if c.required)


def decode_chunk(stream: str, columns: str, raw_size: int, data: bytes) -> pa.Table:
    """The conformed table of one chunk (left-out optional columns come back as nulls)."""
    spec = schema.STREAMS[stream]
    known = {c.name: c.type for c in spec.columns}
    names = columns.split(",")
    sch = pa.schema([pa.field(n, known.get(n, pa.float32())) for n in names])
    rb = pa.ipc.read_record_batch(_CODEC.decompress(data, decompressed_size=raw_size), sch)
    return schema.conform(stream, pa.Table.from_batches([rb]))


def make_chunk(task_id: int, stream: str, seq: int, table: pa.Table, clock_origin_epoch_ms: float | None = None) -> StreamChunk:
    """Validate ``table`` against the stream's schema and wrap it as a chunk row."""
    table = schema.conform(stream, table)
    t = table.column("t")
    if table.num_rows:
        t_start, t_end = float(pa.compute.min(t).as_py()), float(pa.compute.max(t).as_py())
    else:
        t_start = t_end = 0.0
    columns, raw_size, data = encode_chunk(stream, table)
    return StreamChunk(
        task_id=task_id, stream=stream, seq=seq, clock_origin_epoch_ms=clock_origin_epoch_ms,
        t_start=t_start, t_end=t_end, n=table.num_rows, columns=columns, raw_size=raw_size, data=data,
    )


def chunk_from_batch(task_id: int, stream: str, seq: int, batch: pa.RecordBatch,
                     clock_origin_epoch_ms: float | None = None) -> StreamChunk:
    """A chunk row from the record batch :func:`encode_chunk` would store: a conformed table's
    columns in order, the all-null optional ones left out. The caller guarantees that layout
    (``signals.gaze_batch.rows_to_chunk_batch`` builds it for the webcam frames endpoint: ~0.1 ms
    instead of ~1 ms through :func:`make_chunk` for ~150 gaze columns)."""
    t = batch.column(batch.schema.get_field_index("t"))
    if batch.num_rows:
        t_start, t_end = float(pa.compute.min(t).as_py()), float(pa.compute.max(t).as_py())
    else:
        t_start = t_end = 0.0
    columns, raw_size, data = _encode_batch(batch)
    return StreamChunk(
        task_id=task_id, stream=stream, seq=seq, clock_origin_epoch_ms=clock_origin_epoch_ms,
        t_start=t_start, t_end=t_end, n=batch.num_rows, columns=columns, raw_size=raw_size, data=data,
    )


def task_clock_shift(origin: float | None, anchor: float | None) -> float:
    """What a page load's times (ms from its clock ``origin``, ``performance.timeOrigin``) add to
    be on the task clock of anchor ``anchor`` (the task's ``clock_anchor_epoch_ms``): ``t_task = t
    + (origin - anchor)``, 0 where either is unknown. The one place this is computed (the streams
    (:func:`read_stream`), kept frames, a turn's times, the dashboard's gaps), so every task-clock
    time of one instant is the same float."""
    return 0.0 if origin is None or anchor is None else origin - anchor


def read_stream(db: Session, task: Task, stream: str) -> pa.Table:
    """All samples of one stream of a task, on the task clock, sorted by time.

    Chunks from different page loads (reloads restart ``performance.now()``) are shifted onto
    the task clock: ``t_task = t + (chunk origin - task anchor)`` (:func:`task_clock_shift`).
    """
    rows = db.execute(
        select(StreamChunk.columns, StreamChunk.raw_size, StreamChunk.data, StreamChunk.clock_origin_epoch_ms)
        .where(StreamChunk.task_id == task.id, StreamChunk.stream == stream)
        .order_by(StreamChunk.seq)
    ).all()
    if not rows:
        return schema.empty(stream)
    anchor = task.clock_anchor_epoch_ms
    tables = []
    for columns, raw_size, data, origin in rows:
        tb = decode_chunk(stream, columns, raw_size, data)
        shift = task_clock_shift(origin, anchor)
        if shift:
            i = tb.schema.get_field_index("t")
            tb = tb.set_column(i, "t", pa.compute.add(tb.column("t"), shift))
        tables.append(tb)
    table = pa.concat_tables(tables, promote_options="permissive")
    return table.sort_by("t")


def to_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


def chunk_counts(db: Session, task_ids: Iterable[int]) -> dict[tuple[int, str], int]:
    from sqlalchemy import func

    q = (
        select(StreamChunk.task_id, StreamChunk.stream, func.sum(StreamChunk.n))
        .where(StreamChunk.task_id.in_(list(task_ids)))
        .group_by(StreamChunk.task_id, StreamChunk.stream)
    )
    return {(tid, s): int(n) for tid, s, n in db.execute(q)}
