"""The site under a real gunicorn, started as docs/STUDY_SITE.md says
(``-c python:gazepref.capture_site.gunicorn_conf``): each worker learns gunicorn's ``--threads``
(the WebSocket pending-token cap follows it; ``$GAZEPREF_WORKER_THREADS`` overrides it), and a
setting the site cannot start with is one line on gunicorn's output, not a traceback."""
from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time

import pytest

from sitetest import STUDY_TOML, free_port, gunicorn_command, serve_gunicorn, silent_peer, site_env, ws_connect

pytest.importorskip("gunicorn")
simple_websocket = pytest.importorskip("simple_websocket")

from gazepref.capture_site.gaze_ws import AUTH_TIMEOUT_S  # noqa: E402


def _held_sockets(port: int, n: int) -> int:
    """Open ``n`` sockets that send nothing, at once: how many the server holds waiting for their
    token (the others it answers at once "try again later", the pending-token cap)."""
    t0 = time.monotonic()
    sockets = [ws_connect(f"ws://127.0.0.1:{port}/api/gaze/ws") for _ in range(n)]
    try:
        time.sleep(0.5)  # a refusal comes at once; the first message is awaited 3 s
        answers = [_answer(ws) for ws in sockets]
    finally:
        for ws in sockets:
            with contextlib.suppress(simple_websocket.ConnectionClosed):
                ws.close()
    assert time.monotonic() - t0 < 2.5, "too slow to tell held sockets from timed-out ones"
    assert set(answers) <= {"held", "refused"}, answers
    return answers.count("held")


def _answer(ws) -> str:
    try:
        msg = ws.receive(timeout=0.05)
    except simple_websocket.ConnectionClosed:
        return "refused" if ws.close_reason == 1013 else f"closed {ws.close_reason}"
    if msg is None:
        return "held"
    return "refused" if json.loads(msg) == {"reconnect": True, "retry_after_ms": 1000} else msg


@pytest.mark.parametrize(("threads", "env", "held"), [
    (12, {}, 3),  # gunicorn's 12 threads: a quarter may wait for their token (not 8, of the default 32)
    (8, {"GAZEPREF_WORKER_THREADS": "16"}, 4),  # the variable, where set, wins
], ids=["gunicorn-threads", "env-overrides"])
def test_each_worker_learns_gunicorns_threads(tmp_path, threads, env, held):
    port = free_port()
    proc = serve_gunicorn(tmp_path / "instance", STUDY_TOML, port, threads=threads, **env)
    try:
        assert _held_sockets(port, held + 2) == held
        if env:  # an override that differs from --threads is said once per worker; and a worker
            # exits in seconds after SIGTERM though a peer gone silent has a socket the server
            # closed (no token in time): its reader waited for the next ping (25 s) and held the exit
            peer = silent_peer(f"ws://127.0.0.1:{port}/api/gaze/ws")
            try:
                time.sleep(AUTH_TIMEOUT_S + 0.5)
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
                assert time.monotonic() - t0 < 10
            finally:
                peer.close()
            assert "$GAZEPREF_WORKER_THREADS=16 overrides gunicorn's --threads 8" in proc.stderr.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _start_fails(tmp_path, **env: str) -> tuple[int, str]:
    env = site_env(tmp_path / "instance", STUDY_TOML, **env)
    proc = subprocess.run(gunicorn_command(free_port()), env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(("env", "line"), [
    ({"GAZEPREF_DATABASE_URL": "postgresql+psycopg://gp:topsecret@127.0.0.1:{port}/study"},
     "cannot use the database postgresql+psycopg://gp:***@127.0.0.1:{port}/study: "
     "connection failed"),
    ({"GAZEPREF_DATABASE_URL": "postgres://gp:topsecret@db/study"},
     "not a usable database URL 'postgres://gp:***@db/study'"),
], ids=["database-down", "bad-url"])
def test_a_setting_the_site_cannot_start_with_is_one_line_without_a_traceback(tmp_path, env, line):
    port = free_port()  # nothing listens there
    env = {k: v.format(port=port) for k, v in env.items()}
    code, err = _start_fails(tmp_path, **env)
    assert code == 4 and "App failed to load" in err, err[-3000:]  # gunicorn stops: no worker after worker
    assert "Traceback" not in err and "topsecret" not in err, err[-3000:]
    [said] = [ln for ln in err.splitlines() if ln.startswith(line.format(port=port))]  # one line says it



def test_the_start_error_is_gunicorns_app_load_error_and_a_user_error(tmp_path, monkeypatch):
    """What gunicorn prints as one line and stops on (its AppImportError), and what ``gazepref
    serve`` prints as one line (a UserError): a missing study file, a bad number."""
    from gunicorn.errors import AppImportError

    from gazepref import UserError
    from gazepref.capture_site.app import create_app

    with pytest.raises(AppImportError, match=r"^study config not found: .*missing\.toml$") as e:
        create_app(str(tmp_path / "i"), {"TESTING": True, "STUDY_CONFIG": str(tmp_path / "missing.toml")})
    assert isinstance(e.value, UserError)
    with pytest.raises(AppImportError, match=r"^\$GAZEPREF_WORKER_THREADS must be a number \(got 'many'\)$"):
        monkeypatch.setenv("GAZEPREF_WORKER_THREADS", "many")
        create_app(str(tmp_path / "i"), {"TESTING": True})


def _benchmark_module(name: str):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmarks_server_learns_its_threads_too(tmp_path, monkeypatch):
    """benchmarks/ingest.py's gunicorn (also benchmarks/gaze.py's and faults.py's) is started as
    the docs say, so the site's per-process limits follow the benchmark's --threads (8: 2 sockets
    may wait for their token, not the default 32's 8); with --profile its own config file takes
    the site's post_fork hook (docs/STUDY_SITE.md: own gunicorn config files import it)."""
    import os

    from gazepref.capture_site import gunicorn_conf

    ingest = _benchmark_module("ingest")
    monkeypatch.setenv("GAZEPREF_STUDY_CONFIG", str(STUDY_TOML))
    monkeypatch.delenv("GAZEPREF_WORKER_THREADS", raising=False)
    port = free_port()
    proc = ingest.start_gunicorn(tmp_path / "instance", port, workers=1, threads=8)
    try:
        assert _held_sockets(port, 4) == 2
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert getattr(_benchmark_module("profile_hooks"), "post_fork", None) is gunicorn_conf.post_fork
