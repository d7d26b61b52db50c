"""Shared fixtures: paths to the real IFLLM data in ../shared, and temporary instances."""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GAZEPREF_SHARED", REPO.parent / "shared"))
IFLLM_SAMPLE = SHARED / "ifllm" / "sample"
IFLLM_DEV_ARCHIVE = SHARED / "ifllm" / "ifllm-dev.tar.gz"


@pytest.fixture(scope="session")
def ifllm_sample() -> Path:
    """The 6-worker IFLLM sample, in the release's own layout (read-only)."""
    if not (IFLLM_SAMPLE / "query_logs_table.csv").exists():
        pytest.skip(f"IFLLM sample not found at {IFLLM_SAMPLE} (set GAZEPREF_SHARED)")
    return IFLLM_SAMPLE


class LocalJSONServer:
    """A local JSON endpoint on 127.0.0.1 for tests: each POST's body (JSON; gzip when the request
    says ``Content-Encoding: gzip``) goes to ``respond(body)``, which returns ``(status, payload)``
    (payload: JSON-able or raw bytes). ``requests`` keeps ``(path, Authorization header, body)``
    of each call; ``port`` is its port. ``keep_alive``: answer as HTTP/1.1 and keep connections
    open (clients that reuse one connection); else HTTP/1.0, a connection a request."""

    def __init__(self, respond, keep_alive: bool = False):
        import gzip
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = self
        self.requests: list = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                    raw = gzip.decompress(raw)
                body = json.loads(raw)
                fake.requests.append((self.path, self.headers.get("Authorization"), body))
                status, payload = respond(body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.port = self._server.server_address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeOpenAI(LocalJSONServer):
    """A local OpenAI-compatible ``/chat/completions`` endpoint on 127.0.0.1 for tests.

    ``respond(body)`` returns the assistant's content (a string, answered with status 200) or a
    ``(status, payload)`` pair (payload: JSON-able or raw bytes). ``requests`` keeps
    ``(path, Authorization header, body)`` of each call; ``url`` is the base URL (``.../v1``).
    """

    def __init__(self, respond):
        def reply(body):
            answer = respond(body)
            if isinstance(answer, str):
                return 200, {"choices": [{"message": {"role": "assistant", "content": answer}}]}
            return answer

        super().__init__(reply)
        self.url = f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
def local_json_server():
    """Start local JSON endpoints: ``srv = local_json_server(respond, keep_alive=...)``
    (:class:`LocalJSONServer`); closed after the test."""
    servers: list[LocalJSONServer] = []

    def start(respond, keep_alive: bool = False) -> LocalJSONServer:
        servers.append(LocalJSONServer(respond, keep_alive))
        return servers[-1]

    yield start
    for srv in servers:
        srv.close()


@pytest.fixture
def fake_openai():
    """Start fake OpenAI-compatible servers: ``srv = fake_openai(respond)``; closed after the test."""
    servers: list[FakeOpenAI] = []

    def start(respond) -> FakeOpenAI:
        servers.append(FakeOpenAI(respond))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian's binaries, run as the postgres user).

    Skips with the reason when no server binaries are installed (outside CI); under CI a server
    that is installed but does not start fails the test.
    """
    import glob
    import shutil
    import socket
    import subprocess
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    runuser = shutil.which("runuser")
    try:
        import pwd

        pwd.getpwnam("postgres")
        has_user = True
    except (KeyError, ImportError):
        has_user = False
    if not bins or not runuser or not has_user or os.geteuid() != 0:
        pytest.skip("no PostgreSQL server binaries (Debian postgresql) to run as root via runuser")
    bindir = Path(bins[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="gazepref-pg-"))  # pytest's tmp folders are root-only
    shutil.chown(base, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_pg = [runuser, "-u", "postgres", "--"]
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "gp"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(base / "data"), "-w", "-l", str(base / "log"),
                    "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://gp@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def own_postgres_database(postgres_url):
    """``with own_postgres_database(prefix) as url:`` a database of its own (``prefix`` + a random
    suffix) on the session's PostgreSQL server, dropped afterwards (other tests share the server's
    ``postgres`` database)."""
    return functools.partial(_own_database, postgres_url)


@contextlib.contextmanager
def _own_database(server_url: str, prefix: str):
    import uuid

    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


#: A small OpenAI-style chat log with clear naturally occurring feedback (4 users, 6 chats): an
#: answer corrected then accepted with thanks, one rejected by a rephrase then accepted by a new
#: question, one praised, one never revised. The mining, pair and align tests share it.
FEEDBACK_LOG = [
    {"id": "berlin", "user": "u1", "model": "m-a", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "When did the Berlin Wall fall?"},
        {"role": "assistant", "content": "The Berlin Wall fell in 1991, after the Soviet Union ended."},
        {"role": "user", "content": "That's wrong, it fell in 1989."},
        {"role": "assistant", "content": "You are right: the Berlin Wall fell on 9 November 1989."},
        {"role": "user", "content": "Thanks, that's perfect!"},
        {"role": "assistant", "content": "Glad to help."}]},
    {"id": "paris", "user": "u2", "model": "m-b", "messages": [
        {"role": "user", "content": "What is the population of Paris?"},
        {"role": "assistant", "content": "Paris is the capital of France and is known for the Eiffel Tower."},
        {"role": "user", "content": "I asked what the population of Paris is."},
        {"role": "assistant", "content": "About 2.1 million people live in the city of Paris."},
        {"role": "user", "content": "How tall is the Eiffel Tower?"},
        {"role": "assistant", "content": "The Eiffel Tower is 330 metres tall."}]},
    {"id": "python", "user": "u3", "model": "m-a", "messages": [
        {"role": "user", "content": "How do I reverse a list in Python?"},
        {"role": "assistant", "content": "Use my_list.reverse() or my_list[::-1]."},
        {"role": "user", "content": "Great answer, thank you so much!"},
        {"role": "assistant", "content": "You're welcome."}]},
    {"id": "moon", "user": "u4", "model": "m-b", "messages": [
        {"role": "user", "content": "Who was the first person on the Moon?"},
        {"role": "assistant", "content": "Buzz Aldrin was the first person to walk on the Moon in 1969."},
        {"role": "user", "content": "No, that's not right, it was Neil Armstrong."}]},
    {"id": "tea", "user": "u1", "model": "m-b", "messages": [
        {"role": "user", "content": "How long should I steep green tea?"},
        {"role": "assistant", "content": "Steep green tea for two to three minutes at about 80 degrees."},
        {"role": "user", "content": "Thank you, that was very helpful."}]},
    {"id": "rome", "user": "u2", "model": "m-a", "messages": [
        {"role": "user", "content": "When was Rome founded?"},
        {"role": "assistant", "content": "Rome is a city in Italy."},
        {"role": "user", "content": "That doesn't answer my question at all."},
        {"role": "assistant", "content": "According to legend, Rome was founded in 753 BC."},
        {"role": "user", "content": "Thanks!"}]},
]


@pytest.fixture
def feedback_log(tmp_path) -> Path:
    """:data:`FEEDBACK_LOG` written as OpenAI-style JSON lines."""
    import json

    p = tmp_path / "chats.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in FEEDBACK_LOG))
    return p


@pytest.fixture(params=[("{tmp}/missing.jsonl", False), ("bad*slug", False), ("no_such_study", False),
                        ("no_such_study", True)], ids=["missing-file", "bad-slug", "no-study", "no-study-db"])
def missing_source(request, tmp_path, monkeypatch) -> tuple[str, list[str], str]:
    """A SOURCE that is not there (a file, a name that is no study slug, a study slug no database
    has, also with ``--db``): ``(SOURCE, --db arguments, the message of``
    :func:`gazepref.datasets.sources.open_source` ``)``, which every command taking a SOURCE
    should give. No database is named by the environment; ``tmp_path`` is the working directory."""
    from gazepref import UserError
    from gazepref.datasets.sources import open_source

    monkeypatch.delenv("GAZEPREF_DATABASE_URL", raising=False)
    monkeypatch.delenv("GAZEPREF_INSTANCE", raising=False)
    monkeypatch.chdir(tmp_path)
    spec, db = request.param
    spec, dbargs = spec.format(tmp=tmp_path), ["--db", str(tmp_path / "site.sqlite")] if db else []
    with pytest.raises(UserError) as want:
        open_source(spec, db=dbargs[1] if db else None)
    return spec, dbargs, str(want.value)
