"""A task's gaze chunks hold each frame once (``gaze_store.store_gaze``): a frame is the page
load's (origin) picture at ``t``; what is stored already is left out whichever way it comes again
(a WebSocket's resend after a reconnect, the HTTP batches after a socket lost for good), checked
and inserted under the task's lock, so hosts storing the same frames at once store them once; an
HTTP batch that arrives late (a retry) is stored, and a replayed one adds nothing."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select

from gazepref import store
from gazepref.capture_site import gaze_store
from gazepref.capture_site.chunks import task_transaction
from gazepref.capture_site.gaze_store import frame_rows, store_gaze
from gazepref.capture_site.gaze_trackers import dropped_row
from sitetest import Walker, withdraw_now

ORIGIN, RELOADED = 1.7e12, 1.7e12 + 60_000.0
T = [100.0 * i for i in range(20)]  # frame i of the page load ORIGIN was taken at T[i] (its seq: i)


def _task(app) -> tuple[int, int]:
    """A participant on their first task: (participant id, task id)."""
    w = Walker(app.test_client(), f"GAZE-{uuid.uuid4().hex[:8]}")  # (PostgreSQL: one database for the tests)
    w.arrive()
    w.consent()
    task = w.to_task()["task"]
    with app.extensions["gazepref"].sessions() as s:
        return s.get(store.Task, task).participant_id, task


def _store(app, pid: int, task: int, seq: int, frames: range, *, socket: bool, origin: float = ORIGIN) -> int:
    """Frames ``frames`` (indices into T) as one chunk, with kept pictures: a WebSocket's buffer
    (``socket``: each frame's own seq given) or an HTTP batch ``seq``."""
    times = [T[i] for i in frames]
    with app.app_context():
        return store_gaze(task, seq, origin, [dropped_row(t) for t in times],
                          frames=frame_rows([b"jpeg %d" % i for i in frames], times, pid, task_id=task, seq=seq),
                          seqs=list(frames) if socket else None)


def _stored(app, task: int) -> dict:
    """{(origin, seq): [t, ...]} of the task's gaze chunks, and the kept pictures' [(seq, t, data)]."""
    with app.extensions["gazepref"].sessions() as s:
        chunks = {(c.clock_origin_epoch_ms, c.seq): store.decode_chunk("gaze", c.columns, c.raw_size, c.data)
                  .column("t").to_pylist()
                  for c in s.scalars(select(store.StreamChunk).where(store.StreamChunk.task_id == task))}
        kept = [tuple(r) for r in s.execute(select(store.GazeFrame.seq, store.GazeFrame.t, store.GazeFrame.data)
                                              .where(store.GazeFrame.task_id == task).order_by(store.GazeFrame.id))]
    return {"chunks": chunks, "kept": kept}


def test_frames_stored_already_are_left_out_and_late_batches_kept(make_app, database):
    app = make_app(**({"DATABASE_URL": database} if database else {}))
    pid, task = _task(app)
    assert _store(app, pid, task, 4, range(0, 5), socket=True) == 5  # socket A's buffer, A lost unconfirmed
    # the reconnected socket B took A's frames as new (it looked before A stored them) and goes on
    assert _store(app, pid, task, 6, range(0, 7), socket=True) == 2
    # B lost for good: the page posts what B had not confirmed (5, 6) with the next frames, batch 7
    assert _store(app, pid, task, 7, range(5, 9), socket=False) == 2
    # batch 9 is stored before batch 8, a retry that comes late: both are kept
    assert _store(app, pid, task, 9, range(11, 13), socket=False) == 2
    assert _store(app, pid, task, 8, range(9, 11), socket=False) == 2
    assert _store(app, pid, task, 8, range(9, 11), socket=False) == 0  # a replay adds nothing
    # after a reload the page's clock starts again: the same t of the new page load are new frames
    assert _store(app, pid, task, 13, range(0, 3), socket=False, origin=RELOADED) == 3
    got = _stored(app, task)
    assert got["chunks"] == {(ORIGIN, 4): T[0:5], (ORIGIN, 6): T[5:7], (ORIGIN, 7): T[7:9], (ORIGIN, 8): T[9:11],
                             (ORIGIN, 9): T[11:13], (RELOADED, 13): T[0:3]}
    # the kept pictures are those of the stored rows, in the chunk of their row
    assert got["kept"] == ([(4, T[i], b"jpeg %d" % i) for i in range(5)] + [(6, T[i], b"jpeg %d" % i) for i in (5, 6)]
                           + [(7, T[i], b"jpeg %d" % i) for i in (7, 8)] + [(9, T[i], b"jpeg %d" % i) for i in (11, 12)]
                           + [(8, T[i], b"jpeg %d" % i) for i in (9, 10)] + [(13, T[i], b"jpeg %d" % i) for i in range(3)])
    with app.extensions["gazepref"].sessions() as s:
        t = store.read_stream(s, s.get(store.Task, task), "gaze").column("t").to_pylist()
    assert len(t) == len(set(t)) == 16


def test_hosts_storing_the_same_frames_at_once_store_each_once(make_app, database, monkeypatch):
    """Two hosts' sockets (A's buffer 0-4, the reconnected B's 0-6) and an HTTP batch (5-8: what B
    had not confirmed, and new frames) store at the same moment, each having looked before the
    others stored: every one reaches the insert only after the one before it committed."""
    overrides = {"DATABASE_URL": database} if database else {}
    hosts = [make_app(**overrides), make_app(**overrides)]  # (SQLite: one instance folder, one file)
    pid, task = _task(hosts[0])
    # hold each store between its look at what is stored and its insert until all three are
    # there (or 2 s): without the task's lock all three look first and each stores its frames
    meeting = threading.Barrier(3, timeout=2.0)
    build = gaze_store.rows_to_chunk_batch

    def held(rows):
        try:
            meeting.wait()
        except threading.BrokenBarrierError:
            pass
        return build(rows)

    monkeypatch.setattr(gaze_store, "rows_to_chunk_batch", held)
    stored, errors = {}, []

    def run(name, app, seq, frames, socket):
        try:
            stored[name] = _store(app, pid, task, seq, frames, socket=socket)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=("A", hosts[0], 4, range(0, 5), True)),
               threading.Thread(target=run, args=("B", hosts[1], 6, range(0, 7), True)),
               threading.Thread(target=run, args=("http", hosts[1], 7, range(5, 9), False))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors
    assert sum(stored.values()) == 9, stored
    chunks = _stored(hosts[0], task)["chunks"]
    t = sorted(v for ts in chunks.values() for v in ts)
    assert t == T[0:9], f"each frame once: {chunks}"
    kept = _stored(hosts[0], task)["kept"]
    assert sorted(k[1] for k in kept) == T[0:9] and all(k[1] in chunks[(ORIGIN, k[0])] for k in kept)


@pytest.mark.parametrize("socket", [True, False])
def test_a_chunk_seq_taken_by_other_frames_is_a_replay(make_app, socket):
    """A chunk seq the task holds with other frames (a page that reused a seq) stores nothing and
    takes nothing stored away."""
    app = make_app()
    pid, task = _task(app)
    assert _store(app, pid, task, 4, range(0, 5), socket=True) == 5
    frames = range(6, 8) if socket else range(6, 10)
    seq = 4 if not socket else 7
    if socket:  # (the socket's chunk is its last frame's seq: frame 7's, stored as a batch before)
        assert _store(app, pid, task, 7, range(10, 12), socket=False) == 2
    assert _store(app, pid, task, seq, frames, socket=socket) == 0
    chunks = _stored(app, task)["chunks"]
    assert chunks[(ORIGIN, 4)] == T[0:5]


def test_a_participant_deleted_while_their_frames_are_stored(make_app, database):
    """The dashboard deletes a participant while one store of their task holds the task's lock and
    another waits for it: the delete does not queue behind the lock (PostgreSQL; on SQLite it waits
    for the one writer), and each store ends cleanly, the one after the delete storing nothing and
    refused as a request after the delete is (401 ``TaskGone``: no 500, no retry), and nothing of
    the participant is left."""
    from gazepref.capture_site.api import TaskGone

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    pid, task = _task(app)
    assert _store(app, pid, task, 1, range(0, 2), socket=False) == 2
    holding, release, out = threading.Event(), threading.Event(), {}

    def hold():  # a store between its look and its insert
        with app.extensions["gazepref"].engine.connect() as conn, task_transaction(conn, task):
            holding.set()
            release.wait(10)

    def store_next():
        try:
            out["stored"] = _store(app, pid, task, 5, range(3, 6), socket=True)
        except TaskGone as e:
            out["refused"] = e.status
        except Exception as e:  # noqa: BLE001 - reported below
            out["store error"] = e

    def delete():
        try:
            with app.extensions["gazepref"].sessions() as s:
                s.delete(s.get(store.Participant, pid))
                s.commit()
            out["deleted while held"] = not release.is_set()
        except Exception as e:  # noqa: BLE001 - reported below
            out["delete error"] = e

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    storer, deleter = threading.Thread(target=store_next), threading.Thread(target=delete)
    storer.start()
    deleter.start()
    deleter.join(timeout=5 if database else 0)  # (PostgreSQL: the delete needs nothing the lock holds)
    release.set()
    for th in (holder, storer, deleter):
        th.join(timeout=30)
    assert not {k for k in out if k.endswith("error")}, out
    if database:  # the delete went first; the waiting store then found the task gone
        assert out == {"deleted while held": True, "refused": 401}, out
    else:  # one writer at a time: the store waiting on the lock file, then the delete (or the other way)
        assert out.get("stored") == 3 or out.get("refused") == 401, out
    got = _stored(app, task)
    assert got == {"chunks": {}, "kept": []}


def test_page_times_are_compared_exactly(make_app):
    """The page sends ``t`` to 0.01 ms (``Math.round(t * 100) / 100``), values a float32 cannot hold:
    stored as float64 (chunk and kept picture), a resent frame's ``t`` is found again."""
    app = make_app()
    pid, task = _task(app)
    times = [round(16.6667 * i + 1234.5678, 2) for i in range(1, 6)]  # 1251.23, 1267.9, ...
    with app.app_context():
        rows = [dropped_row(t) for t in times]
        assert store_gaze(task, 1, ORIGIN + 0.123, rows[:3]) == 3
        assert store_gaze(task, 2, ORIGIN + 0.123, rows) == 2  # the first three stored already
    got = _stored(app, task)["chunks"]
    assert got == {(ORIGIN + 0.123, 1): times[:3], (ORIGIN + 0.123, 2): times[3:]}


def test_a_store_waits_for_its_tasks_lock_at_most_the_limit(make_app, postgres_url, monkeypatch):
    """PostgreSQL: a store whose task's lock is never let go (a host lost between its lock and its
    commit: the server ends that connection only when TCP keepalive notices) gives up after
    ``TASK_LOCK_TIMEOUT_MS`` with an error the site answers 503 + Retry-After (the page sends the
    frames again), instead of holding a request thread and a connection for hours; the task's
    stores go on once the lock is free."""
    from gazepref.capture_site import chunks
    from gazepref.capture_site.runtime import database_outage

    monkeypatch.setattr(chunks, "TASK_LOCK_TIMEOUT_MS", 300)
    app = make_app(DATABASE_URL=postgres_url)
    pid, task = _task(app)
    holding, release = threading.Event(), threading.Event()

    def hold():
        with app.extensions["gazepref"].engine.connect() as conn, task_transaction(conn, task):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        with pytest.raises(Exception) as e:
            _store(app, pid, task, 1, range(0, 2), socket=False)
        assert "lock timeout" in str(e.value) and database_outage(e.value)
    finally:
        release.set()
        holder.join(10)
    assert _store(app, pid, task, 1, range(0, 2), socket=False) == 2


def test_a_participant_who_withdraws_before_the_insert_gets_401_and_nothing_is_stored(make_app, database,
                                                                                     monkeypatch):
    """The participant withdraws (their task is deleted) after a gaze store's consent check and
    before its transaction: :class:`.api.TaskGone` (401, what the webcam paths answer after the
    withdrawal), never the replay's 0 or a 500; nothing stored. A replay is still 0."""
    from gazepref.capture_site.api import ApiError, TaskGone

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    pid, task = _task(app)
    assert _store(app, pid, task, 4, range(0, 5), socket=False) == 5
    assert _store(app, pid, task, 4, range(5, 7), socket=False) == 0  # a replay of seq 4 (other frames)
    locked = gaze_store.task_transaction

    def withdraw_first(conn, task_id):
        withdraw_now(app, task_id)
        return locked(conn, task_id)

    monkeypatch.setattr(gaze_store, "task_transaction", withdraw_first)
    with pytest.raises(TaskGone) as got:
        _store(app, pid, task, 5, range(5, 9), socket=True)
    assert isinstance(got.value, ApiError) and (got.value.status, got.value.message) == (401, "unknown participant")
    assert _stored(app, task) == {"chunks": {}, "kept": []}


def test_a_fresh_batch_is_encoded_before_the_hosts_write_lock(make_app, monkeypatch):
    """SQLite has one write lock for the host (every worker's threads queue for it): the chunk
    of a batch nothing of which is stored yet is encoded before it is taken; only a resend
    with some frames stored already is encoded again inside, of the rows left."""
    from gazepref.capture_site.chunks import write_lock

    app = make_app()
    pid, task = _task(app)
    with app.app_context():
        lock = write_lock(app.extensions["gazepref"].engine)
    encoded = []
    real = gaze_store._gaze_chunk
    monkeypatch.setattr(gaze_store, "_gaze_chunk", lambda *a: encoded.append((lock._thread.locked(), a[1], len(a[3])))
                        or real(*a))
    assert _store(app, pid, task, 4, range(0, 5), socket=True) == 5
    assert encoded == [(False, 4, 5)]
    encoded.clear()
    assert _store(app, pid, task, 7, range(3, 8), socket=True) == 3  # frames 3, 4 stored already
    assert encoded == [(False, 7, 5), (True, 7, 3)]
    assert _stored(app, task)["chunks"] == {(ORIGIN, 4): T[0:5], (ORIGIN, 7): T[5:8]}


def test_a_time_twice_in_one_batch_is_stored_once(make_app):
    """A frame is a page load's picture at ``t``: a batch (or a socket's buffer) holding one time
    twice stores its first row, as a resend of a stored time stores nothing (once every copy was
    stored)."""
    app = make_app()
    pid, task = _task(app)
    rows = [dropped_row(t) for t in (T[1], T[2], T[2], T[3], T[1])]
    for k, r in enumerate(rows):
        r["face_brightness"] = float(k)
    with app.app_context():
        assert store_gaze(task, 0, ORIGIN, rows) == 3
    assert _stored(app, task)["chunks"] == {(ORIGIN, 0): [T[1], T[2], T[3]]}
    with app.extensions["gazepref"].sessions() as s:
        got = store.read_stream(s, s.get(store.Task, task), "gaze").column("face_brightness").to_pylist()
    assert got == [0.0, 1.0, 3.0]
