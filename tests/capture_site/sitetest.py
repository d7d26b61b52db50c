"""Helpers of the study-site tests: read forms, walk a participant through the flow."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path

from sqlalchemy import select

from gazepref import store

STUDY_TOML = Path(__file__).with_name("study.toml")


def study_variant(path: Path, extra: str = "", **study: str) -> Path:
    """The test study with keys changed where they are set, else added to ``[study]`` (TOML values as
    text), and ``extra`` tables
    appended, written to ``path``; e.g. ``study_variant(p, '[platform]\\nname = "prolific"', webcam='"off"')``."""
    text = STUDY_TOML.read_text()
    for key, value in study.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        if not n:
            text = text.replace("[study]\n", f"[study]\n{key} = {value}\n", 1)
    path.write_text(text + "\n" + extra + "\n")
    return path


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "page has no CSRF token"
    return m.group(1)


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert m, "page has no page-data"
    return json.loads(m.group(1))


class Walker:
    """Drives one participant through the flow with the test client."""

    def __init__(self, client, pid: str = "WORKER1"):
        self.client, self.pid = client, pid

    def arrive(self, **params):
        params = params or {"PROLIFIC_PID": self.pid, "STUDY_ID": "S1", "SESSION_ID": "X1"}
        return self.client.get("/", query_string=params, follow_redirects=True)

    def consent(self, decision: str = "agree"):
        page = self.client.get("/consent")
        return self.client.post("/consent", data={"csrf_token": csrf_of(page.text), "decision": decision},
                                follow_redirects=True)

    def step(self):
        return self.client.get("/step")

    def current_step(self) -> str:
        m = re.search(r'name="step" value="([^"]+)"', self.step().text)
        return m.group(1) if m else "done"

    def answer(self, fields: dict | None = None, follow: bool = True):
        page = self.step().text
        step = re.search(r'name="step" value="([^"]+)"', page).group(1)
        data = {"csrf_token": csrf_of(page), "step": step, **(fields or {})}
        return self.client.post("/step", data=data, follow_redirects=follow)

    def to_task(self):
        """Answer every step up to the next chat task; returns the task page's data."""
        answers = {"understand_before": "3", "age": "30"}
        while True:
            step = self.current_step()
            if step.startswith("task:"):
                return page_data(self.step().text)
            assert step != "done"
            r = self.answer(answers)
            assert self.current_step() != step, f"step {step} refused its answers: {r.text[:2000]}"

    def chat_turn(self, data: dict, index: int, prompt: str, **rating):
        r = self.client.post(data["urls"]["turns"], json={"index": index, "prompt": prompt},
                             headers={"X-Participant-Token": data["token"]})
        assert r.status_code == 200, r.json
        turn = r.json["turn"]
        body = {"likert": [4] * len(turn["responses"]), "origin": 1.7e12, "t_shown": 100.0 + index,
                "t_decided": 200.0 + index, **rating}
        if data["kind"] == "pairwise":
            body.setdefault("choice", 1)
        elif index > 0:
            body.setdefault("better", True)
        r = self.client.post(f"{data['urls']['turns']}/{index}/rating", json=body,
                             headers={"X-Participant-Token": data["token"]})
        assert r.status_code == 200, r.json
        return r.json["turn"]


def legacy_token(pid: int, pseudonym: str | None = None, secret: str = "test-secret") -> str:
    """A participant token of an earlier form, signed with the ``make_app`` fixture's secret: with
    ``pseudonym``, ``{p, s}`` (the pseudonym itself, as pages carried it before tokens carried its
    keyed digest); without, ``{p}`` (the row id only, before tokens named the participant)."""
    return signed_token({"p": pid} if pseudonym is None else {"p": pid, "s": pseudonym}, secret)


def signed_token(data: dict, secret: str = "test-secret") -> str:
    """``data`` signed as the site signs participant tokens (the ``make_app`` fixture's secret)."""
    from itsdangerous import URLSafeSerializer

    return URLSafeSerializer(secret, salt="gazepref-participant").dumps(data)


def row_pseudonym(app, pid: int) -> str:
    """The pseudonym of ``app``'s participant row ``pid``."""
    from gazepref import store

    with app.extensions["gazepref"].sessions() as s:
        return s.get(store.Participant, pid).pseudonym


def reused_row(app, start) -> tuple[dict, object, dict, int]:
    """On ``app``, whose database reuses the id of a deleted newest participant (fixture
    ``reusing_ids``): participant GONE gets as far as ``start(client, "GONE")`` takes them (it
    returns their page's data), is deleted (as the dashboard does), then NEXT gets as far the
    same way and takes GONE's row id. Returns (GONE's page data, NEXT's client, NEXT's page data,
    the row id)."""
    sessions = app.extensions["gazepref"].sessions
    gone = start(app.test_client(), "GONE")
    with sessions() as s:
        [p] = participants(s)
        pid = p.id
        s.delete(p)
        s.commit()
    client = app.test_client()
    nxt = start(client, "NEXT")
    with sessions() as s:
        assert [p.id for p in participants(s)] == [pid], "the database did not reuse the id"
    return gone, client, nxt, pid


def first_sentence(turn: dict) -> str:
    """A sentence of the turn's first answer, as a participant would copy it from the page."""
    text = turn["responses"][0]["text"]
    return re.split(r"(?<=[.!?:])\s", text.strip())[0]


def participants(s) -> list[store.Participant]:
    return s.scalars(select(store.Participant)).all()


def ws_connect(url: str):
    """A WebSocket client of ``url`` (``http://`` or ``ws://``; the path as given) that keeps the
    frames a server sends right after its handshake answer.

    simple-websocket's client takes only the handshake's event from the first packet it reads;
    messages and the close frame that came in the same packet (a refusal sent at once, e.g. the
    pending-token cap's "try again later") stay unread in its protocol buffer, and the socket then
    looks closed without a status (1005). A browser reads them; so does this client, and, as a
    browser's, its ``close()`` of a socket the server closed already does nothing."""
    import simple_websocket

    class _Client(simple_websocket.Client):
        def _thread(self):
            if self._handle_events():  # first the frames that came with the handshake (if any)
                super()._thread()
            else:  # a close frame among them: the connection is over
                self.sock.close()

        def close(self, reason=None, message=None):
            """As a browser's: closing a socket the server has closed already does nothing."""
            try:
                super().close(reason, message)
            except simple_websocket.ConnectionClosed:
                self.sock.close()

    return _Client.connect(url.replace("http://", "ws://", 1))


def silent_peer(url: str) -> socket.socket:
    """A WebSocket peer of ``url`` (``http://`` or ``ws://``; the path as given) that has gone
    silent once the handshake is done, as a shut laptop: it reads nothing more, sends nothing and
    never closes (close the returned socket when done)."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    parts = urllib.parse.urlsplit(url)
    peer = socket.create_connection((parts.hostname, parts.port), timeout=10)
    client = WSConnection(ConnectionType.CLIENT)
    peer.sendall(client.send(Request(host=parts.hostname, target=parts.path)))
    events: list = []
    while not any(isinstance(e, AcceptConnection) for e in events):
        data = peer.recv(4096)
        assert data, "the server hung up during the handshake"
        client.receive_data(data)
        events = list(client.events())
    return peer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn_command(port: int, threads: int = 8) -> list[str]:
    """The documented gunicorn command (docs/STUDY_SITE.md: the site's gunicorn config module),
    one worker of ``threads`` threads on 127.0.0.1:``port``. Run as ``python -m gunicorn``: the
    venv's script may name another interpreter."""
    return [sys.executable, "-m", "gunicorn", "-c", "python:gazepref.capture_site.gunicorn_conf",
            "-w", "1", "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--graceful-timeout", "30",
            "gazepref.capture_site.app:create_app()"]


def site_env(instance: Path, study: Path, database_url: str | None = None, secret: str | None = "test-secret",
             **env_vars: str) -> dict[str, str]:
    """The environment of a served site: ``instance``, ``study``, ``database_url`` (default the
    instance's SQLite), the secret key (None: none given), ``env_vars`` on top."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GAZEPREF_DATABASE_URL", "GAZEPREF_SECRET_KEY", "GAZEPREF_WORKER_THREADS")}
    env.update(GAZEPREF_INSTANCE=str(instance), GAZEPREF_STUDY_CONFIG=str(study))
    if secret is not None:
        env["GAZEPREF_SECRET_KEY"] = secret
    if database_url:
        env["GAZEPREF_DATABASE_URL"] = database_url
    env.update(env_vars)
    return env


def serve_gunicorn(instance: Path, study: Path, port: int, database_url: str | None = None,
                   threads: int = 8, secret: str | None = "test-secret", **env_vars: str) -> subprocess.Popen:
    """gunicorn (1 gthread worker, the documented command) serving the site of ``instance``
    (secret "test-secret", as the ``make_app`` fixture) on 127.0.0.1:``port``; returns once it
    answers. ``database_url``: the database (default the instance's SQLite); ``env_vars``: more
    environment variables."""
    env = site_env(instance, study, database_url, secret, **env_vars)
    proc = subprocess.Popen(gunicorn_command(port, threads), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login", timeout=2)
            return proc
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("gunicorn did not start")


class HttpResponse:
    """A live server's answer, read like the Flask test client's (``status_code``, ``text``, ``json``)."""

    def __init__(self, status: int, body: bytes, headers):
        self.status_code, self.data, self.headers = status, body, headers

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    @property
    def json(self):
        return json.loads(self.data) if self.data else None


class HttpClient:
    """A browser's cookies against live servers: each request goes to the next of ``bases`` in
    turn (servers behind a round-robin proxy), the client interface :class:`Walker` uses."""

    def __init__(self, bases: list[str]):
        self.bases, self.n = list(bases), 0
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self.served_by: list[str] = []

    def _open(self, method: str, path: str, query_string=None, data=None, json_body=None, headers=None,
              follow_redirects: bool = True) -> HttpResponse:
        base = self.bases[self.n % len(self.bases)]
        self.n += 1
        self.served_by.append(base)
        url = path if "://" in path else base + path
        if query_string:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query_string)
        body, hdrs = None, dict(headers or {})
        if json_body is not None:
            body, hdrs["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        elif isinstance(data, dict):
            body = urllib.parse.urlencode(data).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        elif data is not None:
            body = data
        req = urllib.request.Request(url, data=body, headers=hdrs, method=method)
        try:
            with self.opener.open(req, timeout=30) as resp:
                return HttpResponse(resp.status, resp.read(), resp.headers)
        except urllib.error.HTTPError as e:
            return HttpResponse(e.code, e.read(), e.headers)

    def get(self, path: str, **kw) -> HttpResponse:
        return self._open("GET", path, **kw)

    def post(self, path: str, json=None, **kw) -> HttpResponse:
        return self._open("POST", path, json_body=json, **kw)


class _CspBreaches(HTMLParser):
    """What in a page the site's Content-Security-Policy refuses (``script-src 'self'``,
    ``style-src 'self'``): inline scripts (a ``type="application/json"`` data block is no script),
    event-handler and ``style`` attributes, ``<style>`` elements and ``javascript:`` URLs."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and not a.get("src") and a.get("type") != "application/json":
            self.found.append(f"inline <script> at line {self.getpos()[0]}")
        if tag == "style":
            self.found.append(f"<style> at line {self.getpos()[0]}")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"<{tag} {name}=...> at line {self.getpos()[0]}")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...> at line {self.getpos()[0]}")


def csp_breaches(html: str) -> list[str]:
    """What in ``html`` the site's Content-Security-Policy would refuse ([] when nothing)."""
    parser = _CspBreaches()
    parser.feed(html)
    parser.close()
    return parser.found


def withdraw_now(app, task_id: int) -> None:
    """The owner of task ``task_id`` withdraws (``purge.purge_participant(withdrawn=True)``,
    committed), as the withdrawal's POST does: for a race with a request of theirs that passed
    its consent check already."""
    from gazepref.capture_site.purge import purge_participant

    with app.extensions["gazepref"].sessions() as s:
        purge_participant(s, s.get(store.Participant, s.get(store.Task, task_id).participant_id), withdrawn=True)
        s.commit()


def readmit_now(app, participant_id: int) -> None:
    """The researcher's "Delete data", then "Allow to start again" for participant
    ``participant_id`` (the marker row goes too), committed: for a race with a request of theirs
    that read their row already."""
    from gazepref.capture_site.purge import purge_participant

    with app.extensions["gazepref"].sessions() as s:
        purge_participant(s, s.get(store.Participant, participant_id))
        s.commit()
        purge_participant(s, s.get(store.Participant, participant_id), readmit=True)
        s.commit()


class HeldBackend:
    """Answers once ``release`` is set, counting its calls."""

    def __init__(self):
        import threading

        self.calls, self.release, self.called = 0, threading.Event(), threading.Event()

    def generate(self, messages):
        self.calls += 1
        self.called.set()
        assert self.release.wait(30)
        return f"answer to: {messages[-1]['content']}"
