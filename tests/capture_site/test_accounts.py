"""Researcher accounts (capture_site/accounts.py): back-off per account and per address in the
database, the same work for unknown names, sessions that end at logout and with a password
change, secure cookie flags, attempts logged without passwords."""
from __future__ import annotations

import io
import logging
import time

import pytest
from sqlalchemy import delete, select

from gazepref import store
from gazepref.capture_site import accounts
from gazepref.cli import main as cli
from sitetest import csrf_of

PASSWORD = "correct horse battery"


@pytest.fixture
def site(make_app, database):
    """An app on SQLite or PostgreSQL and a researcher account (a fresh name: PostgreSQL is
    shared by the tests of a session)."""
    app = make_app(**({"DATABASE_URL": database} if database else {}))
    name = f"ada{time.monotonic_ns()}"
    with app.extensions["gazepref"].sessions() as s, s.begin():
        s.execute(delete(store.LoginThrottle))  # failures of earlier tests on the shared PostgreSQL
        user = store.User(username=name, password_hash="")
        s.add(user)
        accounts.set_password(s, user, PASSWORD)
    return app, name


def login(client, user, password, addr="127.0.0.1"):
    page = client.get("/admin/login", environ_base={"REMOTE_ADDR": addr})
    return client.post("/admin/login", data={"csrf_token": csrf_of(page.text), "username": user, "password": password},
                       environ_base={"REMOTE_ADDR": addr})


class Clock:
    def __init__(self, monkeypatch):
        self.now = time.time()
        monkeypatch.setattr(accounts, "_now", lambda: self.now)


def test_account_back_off_blocks_even_the_right_password(site, monkeypatch):
    app, name = site
    clock = Clock(monkeypatch)
    client = app.test_client()
    for i in range(5):  # the free attempts, from several addresses
        assert login(client, name, f"wrong {i}", addr=f"10.0.0.{i}").status_code == 401
    r = login(client, name, "wrong again", addr="10.0.1.1")
    assert r.status_code == 401  # the 6th failure: the account is now blocked for 1 s
    r = login(client, name, PASSWORD, addr="10.0.1.2")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1" and "Too many" in r.text
    clock.now += 1.5
    assert login(client, name, "wrong", addr="10.0.1.3").status_code == 401
    r = login(client, name, PASSWORD)  # blocked twice as long now
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    clock.now += 2.5
    assert login(client, name, PASSWORD).status_code == 302
    client.post("/admin/logout", data={"csrf_token": csrf_of(client.get("/admin/login").text)})
    # a success cleared the account's count: five free attempts again
    for i in range(5):
        assert login(client, name, "wrong", addr=f"10.0.2.{i}").status_code == 401


def test_address_back_off_across_user_names(site, monkeypatch):
    app, name = site
    Clock(monkeypatch)
    app.config.update(LOGIN_FREE_ATTEMPTS_PER_ADDRESS=4)  # (default 20: fewer password hashes here)
    client = app.test_client()
    for i in range(5):  # the free failures of an address, spread over user names, and one more
        assert login(client, f"guess{i}", "pw", addr="10.9.9.9").status_code == 401
    assert login(client, name, PASSWORD, addr="10.9.9.9").status_code == 429
    assert login(client, name, PASSWORD, addr="10.9.9.8").status_code == 302


def test_unknown_names_cost_a_password_check(site, monkeypatch):
    app, name = site
    app.config.update(LOGIN_FREE_ATTEMPTS=100, LOGIN_FREE_ATTEMPTS_PER_ADDRESS=100)
    client = app.test_client()
    login(client, "nobody", "x")  # the dummy hash is made once

    def median_s(user):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            assert login(client, user, "wrong password").status_code == 401
            times.append(time.perf_counter() - t0)
        return sorted(times)[2]

    known, unknown = median_s(name), median_s("nobody-" + name)
    assert unknown > 0.5 * known, (known, unknown)


def test_logout_and_password_change_end_sessions(site, monkeypatch):
    app, name = site
    client = app.test_client()
    assert login(client, name, PASSWORD).status_code == 302
    assert client.get("/admin/").status_code == 200
    stolen = client.get_cookie("session").value
    client.post("/admin/logout", data={"csrf_token": csrf_of(client.get("/admin/login").text)})
    other = app.test_client()
    other.set_cookie("session", stolen)
    r = other.get("/admin/")
    assert r.status_code == 302 and "/admin/login" in r.location

    a, b = app.test_client(), app.test_client()
    for c in (a, b):
        assert login(c, name, PASSWORD).status_code == 302
    with app.extensions["gazepref"].sessions() as s, s.begin():
        accounts.set_password(s, s.scalar(select(store.User).where(store.User.username == name)), "another password")
    for c in (a, b):
        assert c.get("/admin/").status_code == 302
    assert login(a, name, "another password").status_code == 302 and a.get("/admin/").status_code == 200


def test_password_change_from_the_command_line_ends_sessions(app, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli(["user", "add", "ada", "--password-stdin", "--instance", app.instance_path]) == 0
    client = app.test_client()
    assert login(client, "ada", PASSWORD).status_code == 302
    monkeypatch.setattr("sys.stdin", io.StringIO("a new password\n"))
    assert cli(["user", "add", "ada", "--password-stdin", "--instance", app.instance_path]) == 0
    assert "updated password of user ada" in capsys.readouterr().out
    assert client.get("/admin/").status_code == 302


def test_attempts_are_logged_without_passwords(site, caplog):
    app, name = site
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="gazepref.capture_site.accounts"):
        login(client, name, "secret-wrong-pw")
        login(client, name, PASSWORD)
    text = caplog.text
    assert f"login failed for '{name}'" in text and f"login ok for '{name}'" in text
    assert "secret-wrong-pw" not in text and PASSWORD not in text


def test_secure_cookie_flags(make_app):
    app = make_app(SESSION_COOKIE_SECURE=True)
    r = app.test_client().get("/admin/login", base_url="https://localhost")
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("__Host-session=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie


def throttle_rows(app) -> int:
    with app.extensions["gazepref"].sessions() as s:
        return len(s.scalars(select(store.LoginThrottle.key)).all())


def test_a_forgotten_back_off_is_purged_and_an_active_one_kept(site, monkeypatch):
    """A block in force, or over but with its count still counting, keeps its rows; a count
    forgotten (LOGIN_FORGET_S after the last failure, the block over) goes, and the account then
    gets its free attempts like a new one, as it would without the purge."""
    app, name = site
    clock = Clock(monkeypatch)
    app.config.update(LOGIN_FORGET_S=3600)
    engine = app.extensions["gazepref"].statements
    client = app.test_client()
    statuses = [login(client, name, "wrong", addr=f"10.0.3.{i}").status_code for i in range(7)]
    assert statuses == [401] * 6 + [429]  # blocked for 1 s after the 6th failure
    rows = throttle_rows(app)  # the account's and the 6 addresses' (the 7th was refused unchecked)
    assert rows == 7
    assert accounts.purge_forgotten(engine, 3600, now=clock.now) == 0  # the block is in force
    clock.now += 10  # over, but a failure now blocks again at once: the count still counts
    assert accounts.purge_forgotten(engine, 3600, now=clock.now) == 0
    clock.now += 3600
    assert accounts.purge_forgotten(engine, 3600, now=clock.now, limit=5) == 5  # a batch at a time
    assert accounts.purge_forgotten(engine, 3600, now=clock.now) == 2 and throttle_rows(app) == 0
    statuses = [login(client, name, "wrong", addr=f"10.0.4.{i}").status_code for i in range(7)]
    assert statuses == [401] * 6 + [429]  # five free failures again, as a new account


@pytest.mark.parametrize("purged", [False, True])
def test_failures_are_forgotten_after_login_forget_s(site, monkeypatch, purged):
    """The rule the purge relies on, with or without the rows: LOGIN_FORGET_S after its last
    failure (the block over) an account's count starts again; before, it goes on."""
    app, name = site
    clock = Clock(monkeypatch)
    app.config.update(LOGIN_FORGET_S=3600)
    engine = app.extensions["gazepref"].statements
    client = app.test_client()
    assert [login(client, name, "wrong", addr=f"10.0.5.{i}").status_code for i in range(6)] == [401] * 6
    clock.now += 3000  # the 1 s block is over; the count goes on: blocked after one more failure
    assert login(client, name, "wrong", addr="10.0.6.1").status_code == 401
    assert login(client, name, PASSWORD, addr="10.0.6.2").status_code == 429
    clock.now += 3601
    if purged:
        assert accounts.purge_forgotten(engine, 3600, now=clock.now) == 8 and throttle_rows(app) == 0
    assert throttle_rows(app) == (0 if purged else 8)
    statuses = [login(client, name, "wrong", addr=f"10.0.7.{i}").status_code for i in range(7)]
    assert statuses == [401] * 6 + [429]


def test_a_session_ends_researcher_session_s_after_the_login_and_its_row_is_purged(site, monkeypatch):
    """A login opens the dashboard for RESEARCHER_SESSION_S (here 1 h), however often the page
    polls; after that the same cookie is sent to the login page, and the purge deletes the row
    (a younger session's row stays)."""
    app, name = site
    clock = Clock(monkeypatch)
    app.config.update(RESEARCHER_SESSION_S=3600)
    engine = app.extensions["gazepref"].statements
    with app.extensions["gazepref"].sessions() as s, s.begin():
        s.execute(delete(store.ResearcherSession))  # earlier tests' logins on the shared PostgreSQL
    old, fresh = app.test_client(), app.test_client()
    assert login(old, name, PASSWORD).status_code == 302
    assert old.get("/admin/").status_code == 200
    clock.now += 3000
    assert login(fresh, name, PASSWORD).status_code == 302
    assert old.get("/admin/").status_code == 200  # 50 minutes in: still open
    clock.now += 700
    r = old.get("/admin/")
    assert r.status_code == 302 and "/admin/login" in r.headers["Location"]
    assert fresh.get("/admin/").status_code == 200
    with app.extensions["gazepref"].sessions() as s:
        assert len(s.scalars(select(store.ResearcherSession.id)).all()) == 2
    assert accounts.purge_expired_sessions(engine, 3600, now=clock.now) == 1
    with app.extensions["gazepref"].sessions() as s:
        assert len(s.scalars(select(store.ResearcherSession.id)).all()) == 1
    assert fresh.get("/admin/").status_code == 200


def test_a_researcher_trying_the_study_link_stays_logged_in(site):
    """Opening the participants' link in the researcher's own browser (to try the study) starts a
    participant's session beside the login: the dashboard stays open and its open forms (their
    CSRF token) keep working; the participant's pages work as for anyone."""
    app, name = site
    client = app.test_client()
    assert login(client, name, PASSWORD).status_code == 302
    token = csrf_of(client.get("/admin/").text)
    r = client.get("/", query_string={"PROLIFIC_PID": "TRY1", "STUDY_ID": "S", "SESSION_ID": "X"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/consent")
    page = client.get("/consent")
    assert page.status_code == 200 and csrf_of(page.text) == token
    assert client.get("/admin/").status_code == 200
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    assert cookie is not None and cookie.expires is None  # the login still ends with the browser
    r = client.post("/admin/logout", data={"csrf_token": token})
    assert r.status_code == 302 and client.get("/admin/").status_code == 302


def test_a_csrf_token_known_before_the_login_is_worthless_after_it(site):
    """Session fixation of the CSRF token: whoever planted their own session cookie (and so knows
    its CSRF token) in a researcher's browser must not be able to post forms for them once they
    log in on it."""
    app, name = site
    attacker = app.test_client()
    known = csrf_of(attacker.get("/admin/login").text)
    victim = app.test_client()
    victim.set_cookie("session", attacker.get_cookie("session").value)
    assert login(victim, name, PASSWORD).status_code == 302 and victim.get("/admin/").status_code == 200
    r = victim.post("/admin/logout", data={"csrf_token": known})  # a forged form from another site
    assert r.status_code == 400 and victim.get("/admin/").status_code == 200
    fresh = csrf_of(victim.get("/admin/").text)
    assert fresh != known
    assert victim.post("/admin/logout", data={"csrf_token": fresh}).status_code == 302
    assert victim.get("/admin/").status_code == 302
