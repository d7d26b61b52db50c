"""Researcher accounts (capture_site/accounts.py): back-off per account and per address in the
database, the same work for unknown names, sessions that end at logout and with a password
change, secure cookie flags, attempts logged without passwords."""
from __future__ import annotations

import io
import json
import logging
import re
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
        s.flush()
        accounts.grant(s, user, [store.ALL_STUDIES])
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


def test_attempts_sent_at_once_are_checked_no_more_than_one_after_another(site, monkeypatch):
    """Wrong passwords sent at the same moment: at most the free attempts and the one that sets
    the block are checked, the others answered 429 unchecked, and the right password after them
    too. The failures were counted after the (slow) password check, so every attempt of a burst
    found no block: 30-60 were checked where 5 are free, the right one among them logged in."""
    import threading

    app, name = site
    Clock(monkeypatch)  # (the block does not run out however long the burst takes here)
    forms = []
    for i in range(16):
        client = app.test_client()
        page = client.get("/admin/login", environ_base={"REMOTE_ADDR": f"10.3.0.{i}"})
        forms.append((client, {"csrf_token": csrf_of(page.text), "username": name, "password": f"wrong {i}"},
                      f"10.3.0.{i}"))
    go, codes = threading.Barrier(len(forms)), []

    def attempt(client, form, addr):
        go.wait()
        codes.append(client.post("/admin/login", data=form, environ_base={"REMOTE_ADDR": addr}).status_code)

    threads = [threading.Thread(target=attempt, args=f) for f in forms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(codes) == 16 and set(codes) <= {401, 429} and codes.count(401) <= 6, sorted(codes)
    assert login(app.test_client(), name, PASSWORD, addr="10.3.1.1").status_code == 429


def test_address_back_off_across_user_names(site, monkeypatch):
    app, name = site
    Clock(monkeypatch)
    app.config.update(LOGIN_FREE_ATTEMPTS_PER_ADDRESS=4)  # (default 20: fewer password hashes here)
    client = app.test_client()
    for i in range(5):  # the free failures of an address, spread over user names, and one more
        assert login(client, f"guess{i}", "pw", addr="10.9.9.9").status_code == 401
    assert login(client, name, PASSWORD, addr="10.9.9.9").status_code == 429
    assert login(client, name, PASSWORD, addr="10.9.9.8").status_code == 302


def test_a_success_leaves_no_block_on_its_address(site, monkeypatch):
    """An address past its free failures (a university's NAT, every researcher behind a proxy
    without PROXY_HOPS) waits out its block; then one of them logs in: the attempt, counted before
    its check, set a new block there, and the success takes it back with its count, so the next
    researcher behind that address gets in (a 429 before: the success kept its own block)."""
    app, name = site
    clock = Clock(monkeypatch)
    app.config.update(LOGIN_FREE_ATTEMPTS_PER_ADDRESS=4)
    other = f"bob{time.monotonic_ns()}"
    with app.extensions["gazepref"].sessions() as s, s.begin():
        user = store.User(username=other, password_hash="")
        s.add(user)
        accounts.set_password(s, user, PASSWORD)
        s.flush()
        accounts.grant(s, user, [store.ALL_STUDIES])
    for i in range(5):
        assert login(app.test_client(), f"guess{i}", "pw", addr="10.9.9.9").status_code == 401
    clock.now += 60  # the address's block is over
    assert login(app.test_client(), name, PASSWORD, addr="10.9.9.9").status_code == 302
    assert login(app.test_client(), other, PASSWORD, addr="10.9.9.9").status_code == 302
    # the address's count stays: its next failure is blocked at once
    assert login(app.test_client(), "guess9", "pw", addr="10.9.9.9").status_code == 401
    assert login(app.test_client(), other, PASSWORD, addr="10.9.9.9").status_code == 429


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
    assert cli(["user", "add", "ada", "--all-studies", "--password-stdin", "--instance", app.instance_path]) == 0
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
    assert client.post("/consent", data={"csrf_token": token, "decision": "agree"}).status_code == 302
    trial = client.get("/step").text
    r = client.post("/admin/logout", data={"csrf_token": token})
    assert r.status_code == 302 and client.get("/admin/").status_code == 302
    # the trial goes on after the logout: its open page's form is taken, not "expired" and back
    # to consent as a new participant (the logout cleared the whole session)
    step = re.search(r'name="step" value="([^"]+)"', trial).group(1)
    r = client.post("/step", data={"csrf_token": csrf_of(trial), "step": step, "age": "30"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/step")
    assert re.search(r'name="step" value="([^"]+)"', client.get("/step").text).group(1) != step


def test_an_ended_login_keeps_no_token_across_participants(site):
    """A lab computer's browser whose researcher login has ended (12 h, a password change
    elsewhere) still carries the login's keys: they no longer count as a login kept, so the next
    participant gets a new form token (the one before's open withdraw page withdrew them) and a
    cookie that outlasts the browser."""
    app, name = site
    client = app.test_client()
    assert login(client, name, PASSWORD).status_code == 302
    with app.extensions["gazepref"].sessions() as s, s.begin():
        s.execute(delete(store.ResearcherSession))  # the login ends elsewhere; the cookie keeps its keys

    def arrive_and_consent(pid):
        client.get("/", query_string={"PROLIFIC_PID": pid, "STUDY_ID": "S", "SESSION_ID": "X"})
        page = client.get("/consent").text
        assert client.post("/consent", data={"csrf_token": csrf_of(page), "decision": "agree"}).status_code == 302

    arrive_and_consent(f"LAB-A{time.monotonic_ns()}")
    a_withdraw = client.get("/withdraw").text
    arrive_and_consent(f"LAB-B{time.monotonic_ns()}")
    assert client.post("/withdraw", data={"csrf_token": csrf_of(a_withdraw)}).status_code == 400
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    assert cookie is not None and cookie.expires is not None  # a participant's, not a login's


def test_a_csrf_token_known_before_the_login_is_worthless_after_it(site):
    """Session fixation of the CSRF token: whoever planted their own session cookie (and so knows
    its CSRF token) in a researcher's browser must not be able to post forms for them once they
    log in on it."""
    app, name = site
    attacker = app.test_client()
    known = csrf_of(attacker.get("/admin/login").text)
    victim = app.test_client()
    victim.set_cookie("session", attacker.get_cookie("session").value)
    assert login(victim, name, PASSWORD).status_code == 302
    page = victim.get("/admin/")
    # the new token is made by the login itself: no page writes the session for it (two tabs
    # loading at once after the login each made their own, and the later answer's cookie expired
    # the other's forms)
    assert page.status_code == 200 and "Set-Cookie" not in page.headers
    r = victim.post("/admin/logout", data={"csrf_token": known})  # a forged form from another site
    assert r.status_code == 400 and victim.get("/admin/").status_code == 200
    fresh = csrf_of(page.text)
    assert fresh != known and fresh == csrf_of(victim.get("/admin/").text)
    assert victim.post("/admin/logout", data={"csrf_token": fresh}).status_code == 302
    assert victim.get("/admin/").status_code == 302


# --------------------------------------------------------------------------- per-study access
#
# An account opens the studies its grants name (table study_access): every route of a study or of
# one of its participants answers a study outside them exactly as a study that does not exist.

OTHER = "other-study"


def user_cli(app, *args, password: str = PASSWORD) -> tuple[int, str, str]:
    """``gazepref user ARGS --instance <the app's>`` with ``password`` on stdin: (status, out, err)."""
    import contextlib
    import sys

    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(password + "\n")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli(["user", *args, "--instance", app.instance_path])
    finally:
        sys.stdin = old
    return rc, out.getvalue(), err.getvalue()


def serve_other_study(make_app, tmp_path, **overrides):
    """A server of the second study on the same database: the site makes a study's row when it
    first serves its file."""
    from sitetest import study_variant

    return make_app(STUDY_CONFIG=str(study_variant(tmp_path / "other.toml", slug=f'"{OTHER}"', name='"Other study"')),
                    **overrides)


@pytest.fixture
def two_studies(make_app, tmp_path):
    """The test study and a second one in one database, each with one consenting participant on a
    task with a turn; accounts ``ana`` (the test study), ``ben`` (the other) and ``cy`` (all
    studies), made with the command line. Returns (app, {slug: (participant id, pseudonym)})."""
    from sitetest import Walker

    app = make_app()
    other = serve_other_study(make_app, tmp_path)
    for a, who in ((app, "P-TEST"), (other, "P-OTHER")):
        w = Walker(a.test_client(), who)
        w.arrive()
        w.consent()
        w.chat_turn(w.to_task(), 0, "How does sleep help memory?")
    for args in (["ana", "--study", "test-study"], ["ben", "--study", OTHER], ["cy", "--all-studies"]):
        assert user_cli(app, "add", *args, "--password-stdin")[0] == 0
    with app.extensions["gazepref"].sessions() as s:
        rows = s.execute(select(store.Study.slug, store.Participant.id, store.Participant.pseudonym)
                         .join(store.Participant)).all()
    return app, {slug: (pid, pseudonym) for slug, pid, pseudonym in rows}


def _researcher_rules() -> list[tuple[str, str]]:
    """(endpoint, method) of every researcher route (under /admin/) that names a study or a
    participant, read from a fresh app's url_map: a route added later is checked too."""
    import tempfile

    from gazepref.capture_site.app import create_app
    from sitetest import STUDY_TOML

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(tmp, {"TESTING": True, "SECRET_KEY": "test-secret", "STUDY_CONFIG": str(STUDY_TOML)})
        try:
            rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/admin/")]
        finally:
            app.extensions["gazepref"].dispose()
    # the routes that name nothing: the login, the logout and the list (filtered: test below)
    assert {r.endpoint for r in rules if not r.arguments} == {"dashboard.login", "dashboard.logout", "dashboard.studies"}
    for r in rules:  # a route that names something else must say here how it is scoped
        assert not r.arguments or r.arguments & {"slug", "pid"}, f"{r.rule}: which study does it open?"
    return [(r.endpoint, m) for r in rules if r.arguments for m in sorted(r.methods - {"HEAD", "OPTIONS"})]


def _url(app, endpoint: str, slug: str, pid: int, pseudonym: str) -> str:
    from flask import url_for

    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    known = {"slug": slug, "pid": pid, "pseudonym": pseudonym, "kind": "timeline"}
    assert rule.arguments <= set(known), f"{rule.rule}: fill in {rule.arguments - set(known)}"
    with app.test_request_context():
        return url_for(endpoint, **{k: known[k] for k in rule.arguments})


def _participants(app) -> int:
    with app.extensions["gazepref"].sessions() as s:
        return len(s.scalars(select(store.Participant.id)).all())


@pytest.mark.parametrize("endpoint, method", _researcher_rules())
def test_every_study_route_answers_a_study_outside_the_account_as_no_study(two_studies, endpoint, method):
    """Each account, on each study route (GET and POST alike, with a valid CSRF token): the other
    group's study and its participants get the very 404 of a study (participant) that does not
    exist, and nothing changes; its own study is served. Without the token a POST stays a 400."""
    app, people = two_studies
    clients = {}
    for name, own, other in (("ana", "test-study", OTHER), ("ben", OTHER, "test-study")):
        c = clients[name] = app.test_client()
        assert login(c, name, PASSWORD).status_code == 302
        csrf = csrf_of(c.get("/admin/").text)
        send = (lambda url, c=c, csrf=csrf, **kw: c.open(url, method=method, data={"csrf_token": csrf}, **kw))
        pid, pseudonym = people[other]
        hidden = send(_url(app, endpoint, other, pid, pseudonym))
        none = send(_url(app, endpoint, "no-such-study", store.MAX_ID, pseudonym))
        assert none.status_code == 404
        assert (hidden.status_code, hidden.data) == (none.status_code, none.data), (name, other)
        if method == "POST":
            r = c.open(_url(app, endpoint, other, pid, pseudonym), method=method, data={})
            assert r.status_code == 400 and "CSRF" in r.text
    assert _participants(app) == 2  # nothing was deleted
    for name, own in (("ana", "test-study"), ("ben", OTHER)):
        c = clients[name]
        csrf = csrf_of(c.get("/admin/").text)
        pid, pseudonym = people[own]
        none = c.open(_url(app, endpoint, "no-such-study", store.MAX_ID, pseudonym), method=method,
                      data={"csrf_token": csrf})
        mine = c.open(_url(app, endpoint, own, pid, pseudonym), method=method, data={"csrf_token": csrf})
        assert (mine.status_code, mine.data) != (none.status_code, none.data), (name, own, mine.status_code)
        assert mine.status_code < 400 or mine.mimetype == "image/png", (name, own, mine.status_code)  # (a plot
        # that cannot be drawn is a picture saying why)


def test_the_study_list_shows_the_accounts_studies(two_studies):
    app, _ = two_studies
    assert user_cli(app, "add", "dee", "--study", "test-study", "--password-stdin")[0] == 0
    assert user_cli(app, "revoke", "dee", "test-study")[0] == 0  # the last grant gone: no study, never all
    seen = {}
    for name in ("ana", "ben", "cy", "dee"):
        c = app.test_client()
        assert login(c, name, PASSWORD).status_code == 302
        html = c.get("/admin/").text
        seen[name] = {slug for slug in ("test-study", OTHER) if f"/admin/studies/{slug}\"" in html}
        if name == "dee":  # the row saying so spans the table's columns
            head = html[html.index("<thead>"):html.index("</thead>")]
            assert f'<td colspan="{head.count("<th>")}">No study:' in html
    assert seen == {"ana": {"test-study"}, "ben": {OTHER}, "cy": {"test-study", OTHER}, "dee": set()}


def test_a_grant_change_reaches_a_logged_in_browser_at_its_next_request(two_studies):
    app, _ = two_studies
    c = app.test_client()
    assert login(c, "ana", PASSWORD).status_code == 302
    assert c.get(f"/admin/studies/{OTHER}").status_code == 404
    assert user_cli(app, "grant", "ana", OTHER)[0] == 0
    assert c.get(f"/admin/studies/{OTHER}").status_code == 200
    assert user_cli(app, "revoke", "ana", "test-study", OTHER)[0] == 0
    assert [c.get(f"/admin/studies/{slug}").status_code for slug in ("test-study", OTHER)] == [404, 404]
    assert c.get("/admin/").status_code == 200  # still logged in, with no study
    assert user_cli(app, "grant", "ana", "--all-studies")[0] == 0
    assert c.get(f"/admin/studies/{OTHER}/progress.json").status_code == 200
    # --all-studies gone, the study grants the account had kept: none here
    assert user_cli(app, "grant", "ana", "test-study")[0] == 0
    assert user_cli(app, "revoke", "ana", "--all-studies")[0] == 0
    assert [c.get(f"/admin/studies/{slug}").status_code for slug in ("test-study", OTHER)] == [200, 404]


def test_a_grant_may_precede_the_study(make_app, tmp_path):
    """A slug no study has yet is refused (a typo), unless --allow-missing: the grant then opens
    the study once the site first serves its file."""
    app = make_app()
    rc, _, err = user_cli(app, "add", "ana", "--study", OTHER, "--password-stdin")
    assert rc == 2 and err.count("\n") == 1 and f"no study '{OTHER}'" in err and "--allow-missing" in err
    assert user_cli(app, "add", "ana", "--study", OTHER, "--allow-missing", "--password-stdin")[0] == 0
    rc, out, _ = user_cli(app, "list")
    assert rc == 0 and out.split() == ["ana", OTHER, "(not", "served", "yet:", f"{OTHER})"]
    c = app.test_client()
    assert login(c, "ana", PASSWORD).status_code == 302
    assert c.get(f"/admin/studies/{OTHER}").status_code == 404
    serve_other_study(make_app, tmp_path)
    assert c.get(f"/admin/studies/{OTHER}").status_code == 200 and c.get("/admin/studies/test-study").status_code == 404


@pytest.mark.parametrize("args, message", [
    (["add", "eve", "--password-stdin"], "a new account needs its studies: --all-studies, or --study SLUG"),
    (["add", "eve", "--study", "no-such", "--password-stdin"], "no study 'no-such' in the database"),
    (["add", "eve", "--study", "a*", "--allow-missing", "--password-stdin"], "not a study slug: 'a*'"),
    # "*" is how every study is stored, never a slug: only --all-studies grants every study
    (["add", "eve", "--study", "*", "--password-stdin"], "not a study slug: '*' (every study: --all-studies)"),
    (["grant", "ana", "*"], "not a study slug: '*' (every study: --all-studies)"),
    (["grant", "nobody", "test-study"], "no user 'nobody'"),
    (["grant", "ana", "no-such"], "no study 'no-such' in the database"),
    (["grant", "ana"], "name the studies: SLUG ... or --all-studies"),
    (["grant", "ana", "test-study", "--all-studies"], "name the studies: SLUG ... or --all-studies"),
    (["revoke", "nobody", "test-study"], "no user 'nobody'"),
    (["revoke", "ana", "other-study"], "user ana has no grant of 'other-study' (it has: test-study)"),
    (["revoke", "ana", "--all-studies"], "user ana has no grant of all studies (it has: test-study)"),
    (["delete", "nobody"], "no user 'nobody'"),
])
def test_user_command_mistakes_are_one_line(app, args, message):
    assert user_cli(app, "add", "ana", "--study", "test-study", "--password-stdin")[0] == 0
    rc, out, err = user_cli(app, *args)
    assert rc == 2 and out == "" and err.count("\n") == 1 and message in err, err
    rc, out, _ = user_cli(app, "list", "--json")
    assert rc == 0 and [(r["username"], r["all_studies"], r["studies"]) for r in json.loads(out)] == \
        [("ana", False, ["test-study"])]  # nothing changed


@pytest.mark.parametrize("stdin_flag, message", [
    ([], "standard input is not a terminal and gave no line"),  # a script, input from /dev/null
    (["--password-stdin"], "no password given on standard input"),
])
def test_no_password_at_all_is_said_so_not_that_it_is_short(app, stdin_flag, message):
    """``user add`` without a terminal and nothing on standard input: the account is not made, and
    the error says no password came (not "at least 8 characters", for a password never typed)."""
    rc, out, err = user_cli(app, "add", "bob", "--study", "test-study", *stdin_flag, password="")
    assert rc == 2 and err.count("\n") == 1 and message in err and "8 characters" not in err, err
    assert json.loads(user_cli(app, "list", "--json")[1]) == []


def test_a_password_change_keeps_the_scope_unless_told(app):
    assert user_cli(app, "add", "ana", "--study", "test-study", "--password-stdin")[0] == 0
    rc, out, _ = user_cli(app, "add", "ana", "--password-stdin", password="another password")
    assert rc == 0 and "updated password of user ana (studies: test-study)" in out
    rc, out, _ = user_cli(app, "add", "ana", "--all-studies", "--password-stdin", password="another password")
    assert rc == 0 and "(studies: all studies)" in out


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_accounts_made_before_per_study_access_still_open_every_study(make_app, tmp_path, request, kind):
    """The upgrade: a database whose accounts were made before ``study_access`` existed (they
    opened every study) keeps them opening every study; an account made after it opens none
    until granted."""
    from sqlalchemy import text
    from werkzeug.security import generate_password_hash

    url = request.getfixturevalue("fresh_postgres") if kind == "postgresql" else store.sqlite_url(tmp_path / "old.sqlite")
    engine = store.make_engine(url)
    old_tables = [t for t in store.Base.metadata.sorted_tables if t.name != "study_access"]
    store.Base.metadata.create_all(engine, tables=old_tables)
    with engine.begin() as conn:
        conn.execute(store.User.__table__.insert().values(username="old", password_hash=generate_password_hash(PASSWORD)))
    engine.dispose()
    app = make_app(DATABASE_URL=url)
    serve_other_study(make_app, tmp_path, DATABASE_URL=url)
    c = app.test_client()
    assert login(c, "old", PASSWORD).status_code == 302
    assert [c.get(f"/admin/studies/{slug}").status_code for slug in ("test-study", OTHER)] == [200, 200]
    with app.extensions["gazepref"].sessions() as s, s.begin():
        s.add(user := store.User(username="new", password_hash=""))
        accounts.set_password(s, user, PASSWORD)
    make_app(DATABASE_URL=url)  # a later start grants nothing more
    c = app.test_client()
    assert login(c, "new", PASSWORD).status_code == 302
    assert [c.get(f"/admin/studies/{slug}").status_code for slug in ("test-study", OTHER)] == [404, 404]
    engine = store.make_engine(url)
    with engine.connect() as conn:
        grants = conn.execute(text("SELECT u.username, a.study_slug FROM study_access a JOIN users u ON u.id = a.user_id"))
        assert grants.all() == [("old", store.ALL_STUDIES)]
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_user_delete_takes_the_account_its_grants_and_sessions_and_keeps_the_last_all_studies_one(
        make_app, request, kind):
    """``gazepref user delete NAME``: the account, its study grants and its sessions go (a browser
    logged in as it opens nothing from its next request; the password no longer logs in); the
    studies and the participants' data stay. The last account granted all studies is kept unless
    --force (no account would open a study nobody was granted)."""
    url = request.getfixturevalue("fresh_postgres") if kind == "postgresql" else None
    app = make_app(**({"DATABASE_URL": url} if url else {}))
    db = ["--db", url] if url else []
    for args in (["ana", "--study", "test-study"], ["cy", "--all-studies"]):
        assert user_cli(app, "add", *args, "--password-stdin", *db)[0] == 0
    ana = app.test_client()
    assert login(ana, "ana", PASSWORD).status_code == 302 and ana.get("/admin/studies/test-study").status_code == 200
    with app.extensions["gazepref"].sessions() as s:
        ana_id = s.scalar(select(store.User.id).where(store.User.username == "ana"))
        studies = s.scalars(select(store.Study.slug)).all()

    rc, out, _ = user_cli(app, "delete", "ana", "--json", *db)
    assert rc == 0 and json.loads(out) == {"username": "ana", "deleted": True, "all_studies": False,
                                           "studies": ["test-study"], "sessions_ended": 1}
    assert ana.get("/admin/studies/test-study").status_code == 302  # to the login
    assert login(app.test_client(), "ana", PASSWORD).status_code == 401
    with app.extensions["gazepref"].sessions() as s:
        for table in (store.StudyAccess, store.ResearcherSession):
            assert s.scalars(select(table).where(table.user_id == ana_id)).all() == []
        assert s.scalars(select(store.Study.slug)).all() == studies
    rc, out, _ = user_cli(app, "list", "--json", *db)
    assert [r["username"] for r in json.loads(out)] == ["cy"]

    rc, out, err = user_cli(app, "delete", "cy", *db)
    assert rc == 2 and out == "" and err.count("\n") == 1 and "last account granted all studies" in err
    assert "--force" in err and [r["username"] for r in json.loads(user_cli(app, "list", "--json", *db)[1])] == ["cy"]
    assert user_cli(app, "add", "dee", "--all-studies", "--password-stdin", *db)[0] == 0
    rc, out, _ = user_cli(app, "delete", "cy", *db)  # another account opens every study
    assert rc == 0 and out.strip() == "deleted user cy (it could open: all studies; 0 logged-in session(s) ended)"
    assert user_cli(app, "delete", "dee", *db)[0] == 2
    assert user_cli(app, "delete", "dee", "--force", *db)[0] == 0
    rc, out, _ = user_cli(app, "list", "--json", *db)
    assert rc == 0 and json.loads(out) == []
