"""The site's purge of rows that no longer limit anything (capture_site/purge.py): run at the end
of requests, at most once per PURGE_INTERVAL_S per process, on SQLite and PostgreSQL; a failed
purge is logged without identities and tried again later, never failing the request."""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

import pytest
from sqlalchemy import select, text

from gazepref import store


class Monotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def site(make_app, database):
    """An app whose purge runs by a clock the test moves (interval 60 s)."""
    app = make_app(**({"DATABASE_URL": database} if database else {}), PURGE_INTERVAL_S=60)
    clock = Monotonic()
    app.extensions["gazepref_purge"].clock = clock
    return app, clock


def stale_bucket(app) -> str:
    """A key whose ingest bucket was last drawn from long ago (full again: the same as no row)."""
    key = f"p-{uuid.uuid4().hex}"
    assert app.extensions["gazepref"].limiter.allow(key, now=time.time() - 3600)
    return key


def forgotten_throttle(app, blocked_until: float) -> str:
    """A login back-off row whose last failure is two days old."""
    key = f"u:{uuid.uuid4().hex}"
    with app.extensions["gazepref"].sessions() as s, s.begin():
        s.add(store.LoginThrottle(key=key, failures=9, blocked_until=blocked_until,
                                  updated_at=store.utcnow() - dt.timedelta(days=2)))
    return key


def present(app, model, keys) -> set[str]:
    with app.extensions["gazepref"].sessions() as s:
        return set(s.scalars(select(model.key).where(model.key.in_(keys))))


def test_purge_runs_at_the_end_of_a_request_at_most_once_per_interval(site):
    app, clock = site
    client = app.test_client()
    first = [stale_bucket(app)]
    fresh = f"p-{uuid.uuid4().hex}"
    assert app.extensions["gazepref"].limiter.allow(fresh)
    gone, blocked = forgotten_throttle(app, 0.0), forgotten_throttle(app, time.time() + 600)
    client.get("/")  # a process's first request purges
    assert present(app, store.RateBucket, first + [fresh]) == {fresh}
    assert present(app, store.LoginThrottle, [gone, blocked]) == {blocked}  # a block in force stays
    later = stale_bucket(app)
    for _ in range(3):
        clock.now += 19
        client.get("/")
    assert present(app, store.RateBucket, [later]) == {later}  # 57 s: not yet
    clock.now += 4
    client.get("/")
    assert present(app, store.RateBucket, [later]) == set()
    assert app.extensions["gazepref_purge"].runs == 2


def test_purge_interval_0_never_purges(make_app):
    app = make_app(PURGE_INTERVAL_S=0)
    key = stale_bucket(app)
    app.test_client().get("/")
    assert present(app, store.RateBucket, [key]) == {key}


def test_a_failed_purge_is_logged_and_tried_again(make_app, caplog):
    """SQLite (the test drops a table): the request is answered, the log names the table and the
    error but no key, the other table is purged, and the next interval tries again."""
    app = make_app(PURGE_INTERVAL_S=60)
    clock = Monotonic()
    purge = app.extensions["gazepref_purge"]
    purge.clock = clock
    gone = forgotten_throttle(app, 0.0)
    key = stale_bucket(app)
    engine = app.extensions["gazepref"].engine
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE rate_buckets RENAME TO rate_buckets_away"))
    with caplog.at_level(logging.WARNING, logger="gazepref.capture_site.purge"):
        assert app.test_client().get("/").status_code in (200, 302)
    failed = [r for r in caplog.records if r.name == "gazepref.capture_site.purge"]
    assert len(failed) == 1 and "purge of rate_buckets failed (OperationalError)" in failed[0].getMessage()
    assert key not in caplog.text and gone not in caplog.text
    assert present(app, store.LoginThrottle, [gone]) == set()
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE rate_buckets_away RENAME TO rate_buckets"))
    app.test_client().get("/")
    assert present(app, store.RateBucket, [key]) == {key}  # not before the next interval
    clock.now += 60
    app.test_client().get("/")
    assert present(app, store.RateBucket, [key]) == set() and purge.deleted["rate_buckets"] >= 1


def test_a_purge_in_a_database_outage_is_one_line_and_waits_for_the_next_interval(make_app, caplog, monkeypatch):
    """The database away (PostgreSQL stopped: every worker's purge failed on each of the three
    tables, each warning with a ~90-line traceback: ~650 lines in a host's log for a 10 s outage).
    It is one line without a traceback for the run, the other tables are not tried, the request is
    answered, and the next interval purges."""
    from sqlalchemy.exc import OperationalError

    from gazepref.capture_site import purge as purge_module

    app = make_app(PURGE_INTERVAL_S=60)
    clock = Monotonic()
    purge = app.extensions["gazepref_purge"]
    purge.clock = clock
    gone, key = forgotten_throttle(app, 0.0), stale_bucket(app)
    tried = []

    def away(batch):
        tried.append(batch)
        raise OperationalError("DELETE FROM rate_buckets", {}, ConnectionError("server closed the connection"))

    real = list(purge_module.TABLES)
    monkeypatch.setattr(purge_module, "TABLES", [("rate_buckets", away), *real[1:]])
    with caplog.at_level(logging.WARNING, logger="gazepref.capture_site.purge"):
        assert app.test_client().get("/").status_code in (200, 302)
    lines = [r for r in caplog.records if r.name == "gazepref.capture_site.purge"]
    assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in lines]
    assert lines[0].getMessage().startswith(
        "purge of rate_buckets, login_throttle, researcher_sessions, turn_leases skipped: database unavailable "
        "(OperationalError)")
    assert len(tried) == 1 and present(app, store.LoginThrottle, [gone]) == {gone}
    monkeypatch.setattr(purge_module, "TABLES", real)
    clock.now += 60
    app.test_client().get("/")
    assert present(app, store.LoginThrottle, [gone]) == set() and present(app, store.RateBucket, [key]) == set()


def test_a_purge_after_a_request_that_left_a_write_open_neither_waits_nor_fails(make_app, database, caplog):
    """A request that wrote through its session and failed before committing: the purge at its end
    must not wait for that open transaction (SQLite: the database's write lock, 10 s busy timeout
    per table while holding the host's write lock; PostgreSQL: the row lock of a forgotten back-off,
    for ever, as the transaction is the same thread's) but purge as usual."""
    import threading

    from flask import abort
    from sqlalchemy import update

    from gazepref.capture_site.runtime import db

    app = make_app(**({"DATABASE_URL": database} if database else {}), PURGE_INTERVAL_S=60)
    purge = app.extensions["gazepref_purge"]
    purge.clock = Monotonic()
    locked, gone = forgotten_throttle(app, 0.0), forgotten_throttle(app, 0.0)
    key = stale_bucket(app)

    @app.get("/_test/write-then-fail")
    def _write_then_fail():
        L = store.LoginThrottle
        db().execute(update(L).where(L.key == locked).values(failures=L.failures))  # holds the row
        abort(500)

    answers = []
    with caplog.at_level(logging.WARNING, logger="gazepref.capture_site.purge"):
        t = threading.Thread(target=lambda: answers.append(app.test_client().get("/_test/write-then-fail")),
                             daemon=True)
        start = time.monotonic()
        t.start()
        t.join(timeout=30)
    assert not t.is_alive(), "the purge waits for the request's own transaction"
    assert answers[0].status_code == 500 and time.monotonic() - start < 5
    assert not [r for r in caplog.records if r.name == "gazepref.capture_site.purge"]
    assert purge.runs == 1 and purge.deleted["rate_buckets"] >= 1
    assert present(app, store.RateBucket, [key]) == set()
    assert present(app, store.LoginThrottle, [locked, gone]) == set()  # the write was rolled back first


# --------------------------------------------------------------------------- a participant's data


def _participant_with_everything(app, name: str) -> int:
    """A participant in a task with a turn, a mouse chunk, demographics, a calibration and kept
    webcam frames (of the task and of the calibration); returns the row id."""
    from sitetest import Walker

    w = Walker(app.test_client(), name)
    w.arrive()
    w.consent()
    data = w.to_task()
    w.chat_turn(data, 0, "How does sleep help memory?")
    batch = {"task": data["task"], "seq": 0, "origin": 1.7e12,
             "streams": {"mouse": {"t": [1.0], "x": [1.0], "y": [1.0]}}}
    assert w.client.post("/api/ingest", json=batch, headers={"X-Participant-Token": data["token"]}).status_code == 200
    with app.extensions["gazepref"].sessions() as s:
        p = s.scalar(select(store.Participant).where(store.Participant.consent.is_(True))
                     .order_by(store.Participant.id.desc()))
        cal = store.Calibration(participant_id=p.id, kind="calibration", result={})
        s.add(cal)
        s.flush()
        s.add_all([store.GazeFrame(participant_id=p.id, task_id=data["task"], seq=0, index=0, t=1.0, data=b"jpeg"),
                   store.GazeFrame(participant_id=p.id, calibration_id=cal.id, seq=0, index=0, t=1.0, data=b"jpeg")])
        s.commit()
        assert p.demographics is not None
        return p.id


def _rows_of(s, pid: int) -> dict[str, int]:
    T, Tu = store.Task, store.Turn
    tasks = select(T.id).where(T.participant_id == pid)
    count = lambda q: len(s.execute(q).all())  # noqa: E731
    return {"tasks": count(tasks), "turns": count(select(Tu.id).where(Tu.task_id.in_(tasks))),
            "responses": count(select(store.Response.id).join(Tu).where(Tu.task_id.in_(tasks))),
            "chunks": count(select(store.StreamChunk.id).where(store.StreamChunk.task_id.in_(tasks))),
            "calibrations": count(select(store.Calibration.id).where(store.Calibration.participant_id == pid)),
            "frames": count(select(store.GazeFrame.id).where(store.GazeFrame.participant_id == pid)),
            "demographics": count(select(store.Demographics.id).where(store.Demographics.participant_id == pid))}


@pytest.mark.parametrize("how", ["withdrawn", "deleted", "readmit"])
def test_purge_participant_deletes_their_data_only(make_app, database, how):
    """The one deletion of a participant's data (the participant's withdrawal, the dashboard's
    "Delete data", its "Allow to start again"): every row recorded of them goes, nobody else's; a
    withdrawal and a deletion keep the row as their marker (pseudonym, no consent, the marker,
    nothing else), so the same platform id is not enrolled again; readmitting removes the row."""
    from gazepref.capture_site.purge import deletion_of, purge_participant, withdrawal_of

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    run = uuid.uuid4().hex[:8]  # PostgreSQL: one database for the session's tests
    gone, stays = _participant_with_everything(app, f"GONE-{run}"), _participant_with_everything(app, f"STAYS-{run}")
    with app.extensions["gazepref"].sessions() as s:
        full = _rows_of(s, stays)
        assert _rows_of(s, gone) == full and all(full.values())
        purge_participant(s, s.get(store.Participant, gone), withdrawn=how == "withdrawn", readmit=how == "readmit")
        s.commit()
    with app.extensions["gazepref"].sessions() as s:
        assert set(_rows_of(s, gone).values()) == {0} and _rows_of(s, stays) == full
        p = s.get(store.Participant, gone)
        if how == "readmit":
            assert p is None
        else:
            assert p.consent is False and p.completion_code is None and set(p.state) == {how}
            assert len(p.pseudonym) == 32 and p.state[how]["step"] == "task:0"
            assert (withdrawal_of(p) is not None, deletion_of(p) is not None) == (how == "withdrawn", how == "deleted")
            # the researcher's "Delete data" of one who withdrew: their marker stays as it was
            marker = dict(p.state)
            purge_participant(s, p)
            s.commit()
            s.expire_all()
            assert s.get(store.Participant, gone).state == marker
            if how == "withdrawn":
                with pytest.raises(ValueError, match="withdrew"):
                    purge_participant(s, s.get(store.Participant, gone), readmit=True)
