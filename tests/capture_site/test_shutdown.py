"""Graceful shutdown (capture_site/shutdown.py): while draining every new request gets 503 with
Retry-After, open WebSockets are told to reconnect; under gunicorn SIGTERM ends the worker within
seconds with a WebSocket open, and a participant whose page retries loses no batch across the
restart."""
from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gazepref import store
from gazepref.capture_site.shutdown import begin_drain
from gazetest import to_calibration, webcam_toml
from sitetest import Walker, free_port, serve_gunicorn, ws_connect


def test_draining_answers_503_with_retry_after(app, walker):
    walker.arrive()
    walker.consent()
    data = walker.to_task()
    begin_drain(app)
    r = walker.client.post("/api/ingest", json={"task": data["task"], "seq": 0, "origin": 1.7e12, "streams": {}},
                           headers={"X-Participant-Token": data["token"]})
    assert r.status_code == 503 and r.headers["Retry-After"] == "5" and r.json["retry"] is True
    r = walker.client.get("/step")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5" and "restarting" in r.text


def test_open_websocket_is_told_to_reconnect(make_app, tmp_path):
    simple_websocket = pytest.importorskip("simple_websocket")
    from gazepref.capture_site.serving import BackgroundServer

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "cam.toml")))
    client = app.test_client()
    token = to_calibration(client)["token"]
    with BackgroundServer(app) as url:
        ws = ws_connect(url + "/api/gaze/ws")
        ws.send(json.dumps({"token": token}))
        assert json.loads(ws.receive(timeout=10))["ok"] is True
        t0 = time.monotonic()
        begin_drain(app)
        msg = json.loads(ws.receive(timeout=5))
        assert msg == {"reconnect": True, "retry_after_ms": 5000}
        assert time.monotonic() - t0 < 2
        deadline = time.monotonic() + 5
        while ws.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not ws.connected and ws.close_reason == 1012


def _post(url: str, body: dict, token: str) -> tuple[int, dict, float]:
    """(status, payload, Retry-After s) of one ingest post; status 0 when no server answered."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "X-Participant-Token": token})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read()), 0.0
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), float(e.headers.get("Retry-After") or 0)
    except OSError:
        return 0, {}, 0.0


def test_sigterm_under_gunicorn_exits_in_seconds_and_loses_nothing(make_app, tmp_path):
    simple_websocket = pytest.importorskip("simple_websocket")
    pytest.importorskip("gunicorn")
    study = webcam_toml(tmp_path / "cam.toml")
    app = make_app(STUDY_CONFIG=str(study))  # the same instance folder and secret as the server
    w = Walker(app.test_client(), "KILLED-MID-SESSION")
    to_calibration(w.client, "KILLED-MID-SESSION")
    with app.extensions["gazepref"].sessions() as s, s.begin():  # straight to the first task
        p = s.scalar(select(store.Participant))
        p.state = {**p.state, "pos": p.state["steps"].index("task:0")}
    data = w.to_task()
    token = data["token"]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve_gunicorn(Path(app.instance_path), study, port)
    acked, statuses = set(), []
    seq, n_batches, killed_at, exited_s = 0, 40, 10, None
    try:
        ws = ws_connect(f"ws://127.0.0.1:{port}/api/gaze/ws")
        ws.send(json.dumps({"token": token}))
        assert json.loads(ws.receive(timeout=10))["ok"] is True
        while seq < n_batches:
            if seq == killed_at and exited_s is None:
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                reconnect = json.loads(ws.receive(timeout=5))
                assert reconnect["reconnect"] is True
                # the page keeps sending while the server drains: 503 + Retry-After, or no server
                status, payload, retry_after = _post(base + "/api/ingest", {
                    "task": data["task"], "seq": seq, "origin": 1.7e12,
                    "streams": {"mouse": {"t": [seq * 100.0], "x": [1.0], "y": [2.0]}}}, token)
                statuses.append(status)
                assert status in (0, 503), (status, payload)
                if status == 503:
                    assert retry_after == 5 and payload["retry"] is True
                proc.wait(timeout=10)
                exited_s = time.monotonic() - t0
                proc = serve_gunicorn(Path(app.instance_path), study, port)  # the restart
            body = {"task": data["task"], "seq": seq, "origin": 1.7e12,
                    "streams": {"mouse": {"t": [seq * 100.0, seq * 100.0 + 50], "x": [1.0, 2.0], "y": [3.0, 4.0]}}}
            status, payload, retry_after = _post(base + "/api/ingest", body, token)
            if status == 200:
                acked.add(seq)
                seq += 1
            else:  # the page's outbox: wait (at least Retry-After) and send the same batch again
                assert status in (0, 503, 429), (status, payload)
                time.sleep(max(retry_after, 0.2) if status else 0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert exited_s is not None and exited_s < 5, exited_s  # not gunicorn's 30 s graceful timeout
    assert acked == set(range(n_batches))
    with app.extensions["gazepref"].sessions() as s:
        chunks = s.scalars(select(store.StreamChunk.seq).where(
            store.StreamChunk.task_id == data["task"], store.StreamChunk.stream == "mouse")).all()
        rows = s.scalar(select(func.sum(store.StreamChunk.n)).where(store.StreamChunk.task_id == data["task"]))
    assert sorted(chunks) == list(range(n_batches)) and rows == 2 * n_batches  # each once
