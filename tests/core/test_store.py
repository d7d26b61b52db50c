"""Storage: chunk encoding, idempotent chunks, WAL, and streams validated by the schema."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from gazepref import UserError, schema, store


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path: Path):
    if request.param == "sqlite":
        engine = store.make_engine(store.sqlite_url(tmp_path / "t.sqlite"))
    else:
        engine = store.make_engine(request.getfixturevalue("postgres_url"))
        store.Base.metadata.drop_all(engine)  # a fresh schema per test
    Session = store.init_db(engine)
    with Session() as s:
        study = store.Study(slug="s", name="S", salt="x")
        p = store.Participant(study=study, pseudonym="p", consent=True)
        task = store.Task(participant=p, kind="pointwise", clock_anchor_epoch_ms=1000.0)
        s.add_all([study, p, task])
        s.commit()
        yield s, task


def test_sqlite_runs_in_wal_mode(db):
    s, _ = db
    if s.bind.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1


@pytest.mark.parametrize("query", ["?mode=rwc&uri=true", "?mode=rw&uri=true", "?mode=ro&uri=true"])
def test_a_sqlite_url_with_open_options_keeps_the_sites_pragmas(tmp_path: Path, query: str):
    """A SQLite URL that tells SQLite how to open the file (``mode``, ``uri``) gets foreign keys
    and the busy timeout as any other (none before: a deleted task's rows were stored as orphans),
    WAL where it may write; read-only, the file is read as it is."""
    path = tmp_path / "t.sqlite"
    store.init_db(store.make_engine(store.sqlite_url(path))).kw["bind"].dispose()  # made, WAL
    engine = store.make_engine(f"sqlite:///file:{path}{query}")  # (SQLite's URI form, docs/STUDY_SITE.md)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == store.SQLITE_BUSY_TIMEOUT_MS
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        if "mode=ro" not in query:
            with pytest.raises(IntegrityError):  # a task of no participant
                conn.execute(text("INSERT INTO tasks (participant_id, kind) VALUES (999, 'pointwise')"))
    engine.dispose()
    fresh = tmp_path / "ro.sqlite"
    import sqlite3

    sqlite3.connect(fresh).close()  # a read-only database not in WAL: opened, journal kept
    with store.make_engine(f"sqlite:///file:{fresh}?mode=ro&uri=true").connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "delete"


def test_chunk_round_trip_keeps_types_and_extra_eye_columns(db):
    s, task = db
    gaze = pa.table({"t": [1.0, 2.0], "x": [10.5, 11.5], "y": [3.0, 4.0], "eye_left_x": [0.1, 0.2]})
    s.add(store.make_chunk(task.id, "gaze", 0, gaze, clock_origin_epoch_ms=1000.0))
    s.commit()
    out = store.read_stream(s, task, "gaze")
    assert out.schema.field("x").type == pa.float32()
    assert out.column("eye_left_x").to_pylist() == pytest.approx([0.1, 0.2])
    assert out.column("confidence").null_count == 2  # optional column added as nulls


def test_replayed_chunk_is_rejected_by_the_key(db):
    """The key is (task, stream, page load, seq): the same page load's seq again is a replay;
    another page load's chunk of that seq (a reload that lost the page's counter) is its own."""
    s, task = db
    m = pa.table({"t": [1.0], "x": [1.0], "y": [1.0]})
    s.add(store.make_chunk(task.id, "mouse", 7, m, clock_origin_epoch_ms=1.7e12))
    s.commit()
    s.add(store.make_chunk(task.id, "mouse", 7, m, clock_origin_epoch_ms=1.7e12))
    with pytest.raises(IntegrityError):
        s.commit()
    s.rollback()
    assert store.read_stream(s, task, "mouse").num_rows == 1
    s.add(store.make_chunk(task.id, "mouse", 7, m, clock_origin_epoch_ms=1.7e12 + 60_000))
    s.commit()
    assert store.read_stream(s, task, "mouse").num_rows == 2


@pytest.mark.parametrize("table, problem", [
    (pa.table({"x": [1.0], "y": [1.0]}), "missing required column 't'"),
    (pa.table({"t": [1.0], "x": [1.0], "y": [1.0], "secret": [1.0]}), "unknown column 'secret'"),
])
def test_schema_rejects_bad_columns(table, problem):
    with pytest.raises(ValueError, match=problem):
        schema.conform("mouse", table)


def test_deleting_a_participant_cascades(db):
    s, task = db
    s.add(store.make_chunk(task.id, "mouse", 0, pa.table({"t": [1.0], "x": [1.0], "y": [1.0]})))
    s.commit()
    s.delete(s.get(store.Participant, task.participant_id))
    s.commit()
    assert s.execute(text("select count(*) from stream_chunks")).scalar() == 0  # ON DELETE CASCADE
    assert s.execute(text("select count(*) from tasks")).scalar() == 0


def test_required_columns_survive_when_all_null(db):
    """Gaze before calibration has eye features but no x/y yet: it must read back."""
    s, task = db
    gaze = pa.table({"t": [1.0, 2.0], "x": pa.array([None, None], pa.float32()),
                     "y": pa.array([None, None], pa.float32()), "eye_left_u": [0.4, 0.5]})
    s.add(store.make_chunk(task.id, "gaze", 0, gaze))
    s.commit()
    out = store.read_stream(s, task, "gaze")
    assert out.num_rows == 2 and out.column("x").null_count == 2
    assert out.column("eye_left_u").to_pylist() == pytest.approx([0.4, 0.5])


def test_insert_once_makes_one_task_per_participant_and_index(db):
    s, task = db
    p = task.participant
    for _ in range(2):
        store.insert_once(s, store.Task, ("participant_id", "index"), participant_id=p.id, index=3,
                          kind="pairwise", answers={"topic_id": "t"})
    s.commit()
    s.expire_all()
    made = [t for t in p.tasks if t.index == 3]
    assert len(made) == 1 and made[0].answers == {"topic_id": "t"} and made[0].started_at is not None
    s.add(store.Task(participant_id=p.id, index=3, kind="pairwise"))  # the ORM path meets the index too
    with pytest.raises(IntegrityError):
        s.commit()
    s.rollback()


def test_init_db_adds_the_task_index_to_an_older_database(tmp_path: Path):
    """A database made before the unique (participant, index) index gets it at the next start."""
    engine = store.make_engine(store.sqlite_url(tmp_path / "old.sqlite"))
    store.Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX uq_tasks_participant_index"))
    store.init_db(engine)
    with engine.connect() as conn:
        names = {r[1] for r in conn.execute(text("PRAGMA index_list(tasks)"))}
    assert "uq_tasks_participant_index" in names


def _init_db_at_once(url: str, servers: int = 4) -> list[str]:
    """``servers`` threads, each with its own engine on ``url``, start ``store.init_db`` at the
    same moment (as the workers of gunicorn on several hosts do); the errors they raised."""
    import threading

    barrier, errors = threading.Barrier(servers), []

    def start():
        engine = store.make_engine(url)
        barrier.wait()
        try:
            store.init_db(engine)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(repr(e)[:200])
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_init_db_gives_accounts_made_before_study_access_every_study_once(kind: str, tmp_path: Path, request):
    """Per-study access (``study_access``) on a database made before it: its accounts opened every
    study, so the start that creates the table grants each of them :data:`store.ALL_STUDIES`, in the
    same transaction (under the schema lock: SQLite's write lock, PostgreSQL's advisory lock), so
    that of several servers starting at once exactly one does; an account made later gets nothing,
    and no later start grants anything."""
    from sqlalchemy import select

    if kind == "sqlite":
        url = store.sqlite_url(tmp_path / "old.sqlite")
    else:
        admin = store.make_engine(request.getfixturevalue("postgres_url"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS access_upgrade WITH (FORCE)"))
            conn.execute(text("CREATE DATABASE access_upgrade"))
        admin.dispose()
        url = request.getfixturevalue("postgres_url").rsplit("/", 1)[0] + "/access_upgrade"
    engine = store.make_engine(url)
    store.Base.metadata.create_all(engine, tables=[t for t in store.Base.metadata.sorted_tables
                                                   if t.name != store.StudyAccess.__tablename__])
    with engine.begin() as conn:
        conn.execute(store.User.__table__.insert(), [{"username": n, "password_hash": "x"} for n in ("a", "b")])
    engine.dispose()
    assert _init_db_at_once(url) == []
    engine = store.make_engine(url)
    Session = store.init_db(engine)
    with Session() as s, s.begin():
        s.add(store.User(username="c", password_hash="x"))
    store.init_db(engine)
    with Session() as s:
        rows = s.execute(select(store.User.username, store.StudyAccess.study_slug).join(
            store.StudyAccess, store.StudyAccess.user_id == store.User.id).order_by(store.User.username)).all()
    engine.dispose()
    assert rows == [("a", store.ALL_STUDIES), ("b", store.ALL_STUDIES)]


@pytest.mark.parametrize("server_default", ["read committed", "repeatable read"])
def test_init_db_from_several_processes_at_once_on_postgresql(postgres_url: str, server_default: str):
    """gunicorn's workers start together on an empty database: each must find or make the schema
    (concurrent CREATE TABLE on PostgreSQL fails with a unique violation in its catalogue). Also
    where the server's default isolation is ``repeatable read``: the site's engines run at read
    committed, which its race-safety arguments (a DELETE re-testing a row another transaction
    updated, insert-once) assume; at the server's repeatable read 5 of 6 starting hosts failed."""
    admin = store.make_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS init_race"))
        conn.execute(text("CREATE DATABASE init_race"))
        conn.execute(text(f"ALTER DATABASE init_race SET default_transaction_isolation = '{server_default}'"))
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/init_race"
    assert _init_db_at_once(url) == []
    engine = store.make_engine(url)
    with engine.connect() as conn:
        tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
        assert conn.scalar(text("SHOW transaction_isolation")) == "read committed"
    engine.dispose()
    assert set(store.Base.metadata.tables) <= tables


@pytest.mark.parametrize(("url", "reason"), [
    ("postgres://gp:hunter2@db/study", "Can't load plugin: sqlalchemy.dialects:postgres"),
    ("postgresql+nosuchdriver://gp:hunter2@db/study", "Can't load plugin"),
    ("gp:hunter2@db/study", "Could not parse SQLAlchemy URL"),
    # passwords as generators make them (/ + : @) in a URL SQLAlchemy cannot read: none of it shown
    ("postgresql+psycopg//gp:hun/ter2@db/study", "Could not parse SQLAlchemy URL"),
    ("postgresql+psycopg//gp:hun:ter2@db/study", "Could not parse SQLAlchemy URL"),
    ("postgresql+psycopg//gp:hun@ter2@db/study", "Could not parse SQLAlchemy URL"),
    # a port that is not a number: SQLAlchemy's ValueError (was a traceback, not one line)
    ("postgresql+psycopg://gp:hunter2@db:5432x/study", "invalid literal for int()"),
    ("postgresql+psycopg://gp:hun/ter2@db:pg/study", "invalid literal for int()"),
])
def test_make_engine_names_a_url_it_cannot_use_in_one_line(url, reason):
    with pytest.raises(UserError) as e:
        store.make_engine(url)
    msg = str(e.value)
    assert msg.startswith("not a usable database URL ") and reason in msg and "\n" not in msg
    assert "postgresql+psycopg://USER:PASSWORD@HOST/DATABASE" in msg
    for part in ("hunter2", "hun", "ter2"):
        assert part not in msg, msg


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_init_db_keys_the_chunks_of_an_older_database_by_page_load(kind: str, tmp_path: Path, request):
    """A database made when chunks were keyed (task, stream, seq) is moved onto the key with the
    page load (:data:`store.CHUNK_KEY`) at the next start, its chunks kept: another page load's
    chunk of a stored seq is then taken, a replay (same page load) still refused."""
    from sqlalchemy import MetaData, UniqueConstraint, inspect, select
    from sqlalchemy.orm import Session

    if kind == "sqlite":
        url = store.sqlite_url(tmp_path / "old.sqlite")
    else:
        admin = store.make_engine(request.getfixturevalue("postgres_url"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS chunk_key_upgrade WITH (FORCE)"))
            conn.execute(text("CREATE DATABASE chunk_key_upgrade"))
        admin.dispose()
        url = request.getfixturevalue("postgres_url").rsplit("/", 1)[0] + "/chunk_key_upgrade"
    old = MetaData()
    for table in store.Base.metadata.sorted_tables:  # the schema as it was: (task, stream, seq)
        copy = table.to_metadata(old)
        if table.name == "stream_chunks":
            copy.constraints = {c for c in copy.constraints if not isinstance(c, UniqueConstraint)}
            copy.append_constraint(UniqueConstraint("task_id", "stream", "seq"))
    engine = store.make_engine(url)
    old.create_all(engine)
    with Session(engine) as s, s.begin():
        p = store.Participant(study=store.Study(slug="s", name="s", salt="x"), pseudonym="p", consent=True)
        s.add(store.Task(participant=p, index=0, kind="pairwise"))
    with Session(engine) as s:
        task = s.scalars(select(store.Task.id)).one()

    def chunk(origin: float) -> None:
        with engine.begin() as conn:
            conn.execute(store.StreamChunk.__table__.insert().values(
                task_id=task, stream="mouse", seq=0, clock_origin_epoch_ms=origin, t_start=0.0, t_end=1.0, n=1,
                columns="t", raw_size=1, data=b"x", received_at=store.utcnow()))

    chunk(1.0)
    with pytest.raises(IntegrityError):  # the former key: another page load's seq 0 is refused
        chunk(2.0)
    store.init_db(engine)
    store.init_db(engine)  # (a later start finds the current key)
    chunk(2.0)
    with pytest.raises(IntegrityError):  # a replay
        chunk(2.0)
    with engine.connect() as conn:
        origins = conn.execute(select(store.StreamChunk.clock_origin_epoch_ms).order_by(
            store.StreamChunk.clock_origin_epoch_ms)).scalars().all()
        indexes = {i["name"] for i in inspect(conn).get_indexes("stream_chunks")}
    engine.dispose()
    assert origins == [1.0, 2.0]
    assert {"ix_stream_chunks_task_id", "ix_stream_chunks_gaze_time"} <= indexes
    # the process's next new database gets the key too (the upgrade left the table's definition as it was)
    from sqlalchemy.schema import CreateTable

    assert store.CHUNK_KEY in str(CreateTable(store.StreamChunk.__table__).compile(dialect=engine.dialect))


def _old_chunk_key_db(path: Path, tasks: int = 2):
    """A SQLite database made when chunks were keyed (task, stream, seq) (d121772's schema), with
    ``tasks`` tasks of one participant; its engine."""
    from sqlalchemy import MetaData, UniqueConstraint
    from sqlalchemy.orm import Session

    old = MetaData()
    for table in store.Base.metadata.sorted_tables:
        copy = table.to_metadata(old)
        if table.name == "stream_chunks":
            copy.constraints = {c for c in copy.constraints if not isinstance(c, UniqueConstraint)}
            copy.append_constraint(UniqueConstraint("task_id", "stream", "seq"))
    engine = store.make_engine(store.sqlite_url(path))
    old.create_all(engine)
    with Session(engine) as s, s.begin():
        p = store.Participant(study=store.Study(slug="s", name="s", salt="x"), pseudonym="p", consent=True)
        s.add_all([store.Task(participant=p, index=i, kind="pairwise") for i in range(tasks)])
    return engine


def _old_chunk(conn, task: int, seq: int, origin: float = 1.7e12) -> None:
    conn.execute(store.StreamChunk.__table__.insert().values(
        task_id=task, stream="mouse", seq=seq, clock_origin_epoch_ms=origin, t_start=0.0, t_end=1.0, n=1,
        columns="t", raw_size=1, data=b"x", received_at=store.utcnow()))


def test_init_db_rekeys_a_sqlite_database_with_chunks_of_deleted_tasks(tmp_path: Path):
    """Chunks whose task is gone (deleted where foreign keys were off: the sqlite3 shell's
    default) do not stop the re-key (the copy into the table with the foreign key would fail and
    the site could not start): they are left out, the others kept with their ids."""
    import sqlite3

    from sqlalchemy import select

    path = tmp_path / "old.sqlite"
    engine = _old_chunk_key_db(path)
    with engine.begin() as conn:
        for seq in range(3):
            _old_chunk(conn, 1, seq)
            _old_chunk(conn, 2, seq)
    engine.dispose()
    raw = sqlite3.connect(path)  # foreign keys off: task 2 goes, its chunks stay behind
    raw.execute("DELETE FROM tasks WHERE id = 2")
    raw.commit()
    raw.close()
    store.init_db(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(store.StreamChunk.id, store.StreamChunk.task_id)
                            .order_by(store.StreamChunk.id)).all()
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    engine.dispose()
    assert rows == [(1, 1), (3, 1), (5, 1)]


@pytest.mark.slow
def test_init_db_waits_for_another_process_rekeying_longer_than_the_busy_timeout(tmp_path: Path, monkeypatch):
    """Several server processes start at once on a database with the former chunk key: one
    re-keys (a large table's copy takes longer than SQLite's 10 s busy timeout), the others wait
    for it instead of failing with 'database is locked' (under gunicorn a worker that fails to
    load the app stops the server). The busy timeout is 1 s here, so that outlasting it is quick."""
    import sqlite3
    import threading
    import time

    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_MS", 1000)
    path = tmp_path / "old.sqlite"
    engine = _old_chunk_key_db(path)
    with engine.begin() as conn:
        _old_chunk(conn, 1, 0)
    engine.dispose()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of its (long) upgrade
    release = threading.Timer(store.SQLITE_BUSY_TIMEOUT_MS / 1000 + 1.5, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        t0 = time.monotonic()
        store.init_db(engine)
        waited_s = time.monotonic() - t0
    finally:
        release.join()
        holder.close()
    assert waited_s > store.SQLITE_BUSY_TIMEOUT_MS / 1000
    with engine.connect() as conn:
        assert store._former_chunk_key(conn) is None
    engine.dispose()
