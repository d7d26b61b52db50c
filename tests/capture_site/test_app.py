"""The app's answers to database errors (capture_site/app.py ``_DatabaseUnavailable``): an outage
is 503 + Retry-After; a query the database's schema cannot answer is a fault (500, logged with
its traceback), also on SQLite, which reports both as ``OperationalError``."""
from __future__ import annotations

import logging
import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from sitetest import Walker


def _sqlite_error(tmp_path, kind: str) -> OperationalError:
    """A real error of SQLite's, as SQLAlchemy raises it: ``locked`` (another connection holds the
    write lock) or ``schema`` (a column the table does not have)."""
    path = tmp_path / "errors.db"
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (a INTEGER)")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        if kind == "locked":
            holder.execute("BEGIN EXCLUSIVE")
            statement = "INSERT INTO t VALUES (1)"
        else:
            statement = "SELECT b FROM t"
        try:
            other.execute(statement)
        except sqlite3.OperationalError as e:
            return OperationalError(statement, {}, e)
        raise AssertionError(f"{statement} did not fail")
    finally:
        other.close()
        holder.close()


@pytest.mark.parametrize("kind, status", [("locked", 503), ("schema", 500)])
def test_sqlite_errors_outage_or_fault(make_app, tmp_path, kind, status, caplog):
    error = _sqlite_error(tmp_path, kind)
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    def fail():
        raise error

    app.add_url_rule("/api/test-db-error", "api_test_db_error", fail)
    app.add_url_rule("/test-db-error", "test_db_error", fail)
    client = app.test_client()
    with caplog.at_level(logging.WARNING):
        api, page = client.get("/api/test-db-error"), client.get("/test-db-error")
    assert api.status_code == status and page.status_code == status, (api.status_code, page.status_code)
    logged_traceback = any(r.exc_info for r in caplog.records)
    if status == 503:
        assert api.json["retry"] is True and api.headers["Retry-After"] == "1" and not logged_traceback
    else:
        assert "retry" not in api.json and "Retry-After" not in api.headers and "Retry-After" not in page.headers
        assert logged_traceback  # a fault to find in the log, not a warning line every 10 s


def test_a_database_without_a_column_the_site_reads_is_a_fault_not_an_outage(make_app, caplog):
    """A SQLite database missing a column the site reads (made by a version before the column:
    ``create_all`` adds tables, never columns) fails every request alike: each is a 500 with its
    traceback in the log, not "the database cannot be reached, try again" that the pages would
    resend for ever."""
    app = make_app(PROPAGATE_EXCEPTIONS=False)
    w = Walker(app.test_client())
    w.arrive()
    w.consent()
    w.to_task()
    with app.extensions["gazepref"].engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE participants RENAME COLUMN consent TO consent_before")
    with caplog.at_level(logging.WARNING):
        r = w.client.get("/step")
    assert r.status_code == 500 and "Retry-After" not in r.headers
    assert "cannot be reached" not in r.text
    assert any(rec.exc_info and "no such column" in str(rec.exc_info[1]) for rec in caplog.records)


def test_a_connection_lost_after_the_views_last_query_does_not_fail_the_answer(make_app, postgres_url, caplog):
    """The database restarts (its backends cut) between a request's last query and its end: the
    answer made stays the answer (the session's rollback at the end failed on the dead
    connection, outside every error handler: gunicorn's bare 500 page and a traceback), and the
    next request gets a fresh connection."""
    from sqlalchemy import create_engine, text

    from gazepref.capture_site.runtime import db

    app = make_app(DATABASE_URL=postgres_url, PROPAGATE_EXCEPTIONS=True)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")

    def read_then_lose_the_connection():
        backend = db().execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.connect() as conn:  # what a restart does to the request's connection
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend}).scalar()
        return "drawn"

    app.add_url_rule("/test-lost-connection", "test_lost_connection", read_then_lose_the_connection)
    client = app.test_client()
    try:
        with caplog.at_level(logging.INFO):
            r = client.get("/test-lost-connection")
        assert (r.status_code, r.text) == (200, "drawn")
        assert any("connection was gone at its end" in rec.getMessage() for rec in caplog.records)
        w = Walker(client, "AFTER-RESTART")
        assert w.arrive().status_code == 200 and w.consent().status_code == 200
    finally:
        admin.dispose()


def test_a_new_instance_and_its_database_are_readable_by_their_owner_only(tmp_path):
    """The instance folder and the SQLite files the site makes are its owner's only (under the
    usual umask 022 the database, with participants' data, researchers' password hashes and the
    studies' pseudonym salts, was readable by every user of a shared machine)."""
    import os
    import stat

    from sitetest import STUDY_TOML

    from gazepref.capture_site.app import create_app

    instance = tmp_path / "new-instance"
    old = os.umask(0o022)
    try:
        app = create_app(str(instance), {"TESTING": True, "SECRET_KEY": "test-secret", "STUDY_CONFIG": str(STUDY_TOML)})
        w = Walker(app.test_client(), "PRIVATE")
        w.arrive()
        w.consent()  # (written: the write-ahead log exists)
        files = [p for p in instance.iterdir() if p.name.startswith("gazepref.sqlite")]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
        app.extensions["gazepref"].dispose()
    finally:
        os.umask(old)
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert len(modes) >= 2 and all(m & 0o077 == 0 for m in modes.values()), {k: oct(m) for k, m in modes.items()}
