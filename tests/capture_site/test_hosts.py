"""Several hosts: one study served by two gunicorn instances on one PostgreSQL database, a
participant's requests alternating between them (a round-robin proxy): nothing is lost or stored
twice, and the per-participant rate limit is the configured one for both servers together."""
from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from gazepref import store
from sitetest import STUDY_TOML, HttpClient, Walker, free_port, serve_gunicorn, ws_connect


def _batch(task: int, seq: int) -> dict:
    t0 = seq * 1000.0
    return {"task": task, "seq": seq, "origin": 1.7e12,
            "streams": {"mouse": {"t": [t0 + k * 16.7 for k in range(60)], "x": [float(k) for k in range(60)],
                                  "y": [2.0 * k for k in range(60)]}}}


def test_two_servers_one_database_alternating_requests(fresh_postgres, tmp_path):
    pytest.importorskip("gunicorn")
    ports = [free_port(), free_port()]
    env = {"GAZEPREF_INGEST_RATE_PER_S": "0.001", "GAZEPREF_INGEST_BURST": "30"}  # no refill in the test
    procs = [serve_gunicorn(tmp_path / f"host{i}", STUDY_TOML, port, fresh_postgres, **env)
             for i, port in enumerate(ports)]
    try:
        client = HttpClient([f"http://127.0.0.1:{p}" for p in ports])
        w = Walker(client, "TWO-HOSTS")
        assert w.arrive().status_code == 200
        assert w.consent().status_code == 200
        data = w.to_task()
        turns = [w.chat_turn(data, i, f"question {i} about two servers?") for i in range(3)]
        # a retried turn (the page's resend, now to the other server) is the stored one
        again = client.post(data["urls"]["turns"], json={"index": 2, "prompt": "question 2 about two servers?"},
                            headers={"X-Participant-Token": data["token"]})
        assert again.status_code == 200 and again.json["turn"]["responses"] == turns[2]["responses"]

        headers = {"X-Participant-Token": data["token"]}
        statuses, duplicates = [], []
        for seq in range(12):  # each batch sent twice: the resend reaches the other server
            for _ in range(2):
                r = client.post("/api/ingest", json=_batch(data["task"], seq), headers=headers)
                statuses.append(r.status_code)
                duplicates.append(r.json.get("duplicate"))
        for seq in range(12, 20):
            statuses.append(client.post("/api/ingest", json=_batch(data["task"], seq), headers=headers).status_code)
        # one bucket of 30 for both servers (in-process buckets would have let all 32 through)
        assert statuses == [200] * 30 + [429] * 2
        assert duplicates == [False, True] * 12
        assert {b.rsplit(":", 1)[1] for b in client.served_by} == {str(p) for p in ports}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)

    engine = store.make_engine(fresh_postgres)
    try:
        with store.init_db(engine)() as s:
            people = s.scalars(select(store.Participant)).all()
            assert len(people) == 1 and people[0].consent
            got = s.execute(select(store.Turn.index, func.count()).group_by(store.Turn.index)
                            .order_by(store.Turn.index)).all()
            assert [tuple(r) for r in got] == [(0, 1), (1, 1), (2, 1)]
            assert s.scalar(select(func.count()).select_from(store.Response)) == sum(
                len(t["responses"]) for t in turns)
            seqs = s.scalars(select(store.StreamChunk.seq).where(store.StreamChunk.task_id == data["task"],
                                                                 store.StreamChunk.stream == "mouse")).all()
            assert sorted(seqs) == list(range(18))  # 12 sent twice + 6 within the bucket, each once
            assert s.scalar(select(func.sum(store.StreamChunk.n)).where(
                store.StreamChunk.task_id == data["task"])) == 18 * 60
    finally:
        engine.dispose()


def _host(folder: Path, url: str):
    """One host's app as the documented command makes it, but without $GAZEPREF_SECRET_KEY."""
    from gazepref.capture_site.app import create_app

    return create_app(str(folder), {"TESTING": True, "STUDY_CONFIG": str(STUDY_TOML), "DATABASE_URL": url,
                                    "SECRET_KEY": None})


def test_hosts_without_a_secret_key_share_the_one_in_the_database(fresh_postgres, tmp_path, caplog):
    """Two hosts started without $GAZEPREF_SECRET_KEY (each with its own instance folder) sign with
    one key: the first to start keeps its instance file's key in the database, the next uses it,
    so a participant's session and token made on one host work on the other. Each host warns that
    the key is in the database (whoever reads it can sign a researcher's login)."""
    (tmp_path / "host0").mkdir()
    (tmp_path / "host0" / "secret_key").write_text("the-key-host0-had\n")
    with caplog.at_level("WARNING", logger="gazepref.capture_site.app"):
        hosts = [_host(tmp_path / "host0", fresh_postgres), _host(tmp_path / "host1", fresh_postgres)]
    warned = [r.getMessage() for r in caplog.records if "site_secrets" in r.getMessage()]
    try:
        assert len(warned) == 2 and all("GAZEPREF_SECRET_KEY" in m and "the-key" not in m for m in warned)
        assert [h.secret_key for h in hosts] == ["the-key-host0-had"] * 2
        first, second = hosts[0].test_client(), hosts[1].test_client()
        w = Walker(first, "ONE-KEY")
        w.arrive()
        assert w.consent().status_code == 200
        second.set_cookie("session", first.get_cookie("session").value)
        data = Walker(second).to_task()  # the session made on host 0 continues on host 1
        assert Walker(first).chat_turn(data, 0, "a question about one key?")["index"] == 0
    finally:
        for h in hosts:
            h.extensions["gazepref"].dispose()


def _terminate(url: str, admin_url: str) -> None:
    """End every connection to ``url``'s database (what a database restart does to them)."""
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                      {"db": url.rsplit("/", 1)[1]})
    admin.dispose()


def test_database_restart_and_outage_answer_503_and_lose_nothing(fresh_postgres, postgres_url, tmp_path, caplog):
    """A request the database cannot serve (its connections cut by a restart, or the database
    gone) is answered 503 with Retry-After and "retry" (the pages send it again; a page gets the
    site's error page), never a bare 500; after a restart the next requests succeed and the
    resent batch is stored once. The log line names the view, not the path (a dashboard path
    holds a pseudonym)."""
    caplog.set_level("WARNING", logger="gazepref.capture_site.app")
    app = _host(tmp_path / "host", fresh_postgres)
    try:
        client = app.test_client()
        w = Walker(client, "RESTART")
        w.arrive()
        w.consent()
        data = w.to_task()
        headers = {"X-Participant-Token": data["token"]}
        _terminate(fresh_postgres, postgres_url)
        answers = []
        for _ in range(4):  # the batch, resent as the page's outbox does until it is stored
            r = client.post("/api/ingest", json=_batch(data["task"], 0), headers=headers)
            answers.append(r.status_code)
            if r.status_code == 200:
                break
            assert r.status_code == 503 and r.headers["Retry-After"] == "1" and r.json["retry"], r.text
        assert answers[-1] == 200 and len(answers) <= 3, answers  # (each pool finds its cut connections once)
        [line] = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
        assert "POST ingest.ingest:" in line and "/api/" not in line, line
        page = client.get("/step")
        assert page.status_code in (200, 503)
        assert client.get("/step").status_code == 200
        with app.extensions["gazepref"].sessions() as s:
            assert s.scalar(select(func.count()).select_from(store.StreamChunk)) == 1

        from sqlalchemy import create_engine, text

        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:  # the database gone for good
            conn.execute(text(f'DROP DATABASE "{fresh_postgres.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()
        r = client.post("/api/ingest", json=_batch(data["task"], 1), headers=headers)
        assert r.status_code == 503 and r.json["retry"] and "database" in r.json["error"]
        r = client.get("/step")
        assert r.status_code == 503 and "database cannot be reached" in r.text and "Traceback" not in r.text
    finally:
        app.extensions["gazepref"].dispose()


def test_a_websocket_reconnected_to_the_other_host_stores_each_frame_once(make_app, fresh_postgres, tmp_path):
    """The page's socket to host A is lost while A still holds frames 0-4 in its buffer (A has not
    noticed yet: its commit comes later); the page reconnects, the load balancer sends it to
    host B, and the page resends the frames A never confirmed (0-4) and goes on (5, 6). B
    looked the task up before A stored its buffer, so it took 0-4 as new. Each frame is stored
    once all the same: a socket's commit leaves out the frames another one stored meanwhile."""
    pytest.importorskip("mediapipe")
    simple_websocket = pytest.importorskip("simple_websocket")
    import json
    import time

    from gazepref.capture_site.gaze_ws import pack_frame
    from gazepref.capture_site.serving import BackgroundServer
    from gazepref.signals.synthetic_face import jpeg
    from gazepref.signals.synthetic_face import moving_face as moving
    from gazetest import answer_step, calibrate, gaze_rows, to_calibration, webcam_toml
    from sitetest import page_data

    toml = str(webcam_toml(tmp_path / "webcam.toml"))
    host_a = make_app(STUDY_CONFIG=toml, DATABASE_URL=fresh_postgres, GAZE_WS_COMMIT_MS=60_000)
    host_b = make_app(STUDY_CONFIG=toml, DATABASE_URL=fresh_postgres)
    client = host_a.test_client()
    token = to_calibration(client)["token"]
    calibrate(client, token)
    assert answer_step(client).status_code == 302
    answer_step(client, {"understand_before": "3"})
    task_id = page_data(client.get("/step").text)["task"]
    meta = {"phase": "task", "task": task_id, "origin": 1.7e12}

    def connect(url):
        ws = ws_connect(url + "/api/gaze/ws")
        ws.send(json.dumps({"token": token}))
        assert json.loads(ws.receive(timeout=10))["ok"]
        return ws

    def send(ws, seqs):
        answers = []
        for i in seqs:
            ws.send(pack_frame(meta | {"seq": i, "t": 100.0 * i}, jpeg(moving(i))))
            while "stored" in (msg := json.loads(ws.receive(timeout=20))):
                pass
            answers.append(msg)
        return answers

    def rows(n=None):
        deadline = time.monotonic() + 10
        while True:
            with host_a.extensions["gazepref"].sessions() as s:
                got = gaze_rows(s, task_id)
            if n is None or got >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    with BackgroundServer(host_a) as url_a, BackgroundServer(host_b) as url_b:
        ws_a = connect(url_a)
        assert all(a["face"]["found"] for a in send(ws_a, range(5)))  # buffered on A, not confirmed
        ws_b = connect(url_b)
        answers = send(ws_b, range(7))  # the reconnect: A's unconfirmed frames again, then new ones
        assert not any(a.get("duplicate") for a in answers), "B looked before A stored: all new to it"
        ws_a.close()  # A notices the lost socket and stores its buffer
        assert rows(5) == 5
        ws_b.close()
        time.sleep(0.5)
        assert rows(7) == 7
    with host_a.extensions["gazepref"].sessions() as s:
        t = store.read_stream(s, s.get(store.Task, task_id), "gaze").column("t").to_pylist()
    assert t == [100.0 * i for i in range(7)], "each frame once"


def _webcam_walk(apps, samples: list[dict], host_of) -> "pandas.DataFrame":
    """A browser-mode webcam participant: the calibration round on ``host_of("calibration")``, the
    validation round on ``host_of("validation")``, then ten task sample batches and a click after
    most of them, each on ``host_of((kind, seq))`` (the pages' API calls carry only the token, so
    any host takes them); the stored gaze rows."""
    from gazetest import CALIBRATION_TARGETS, answer_step, to_calibration
    from sitetest import page_data

    clients = [a.test_client() for a in apps]
    token = to_calibration(clients[0], "CAM-HOSTS")["token"]
    headers = {"X-Participant-Token": token}

    def round_(kind, targets):
        meta, batch, t = [], [], 1000.0
        for k, (x, y) in enumerate(targets):
            ts = [t + 100.0 * j for j in range(6)]
            batch += [dict(samples[k * 6 + j], t=tj) for j, tj in enumerate(ts)]
            meta.append({"x": x, "y": y, "t": ts})
            t = ts[-1] + 100.0
        body = {"kind": kind, "viewport": [1280, 800], "targets": meta, "samples": batch}
        r = clients[host_of(kind)].post("/api/gaze/round", json=body, headers=headers)
        assert r.status_code == 200, r.json
        return r.json

    fitted = round_("calibration", CALIBRATION_TARGETS)
    assert round_("validation", fitted["validation_targets"])["outcome"]["passed"]
    assert answer_step(clients[0]).status_code == 302
    answer_step(clients[0], {"understand_before": "3"})
    task = page_data(clients[0].get("/step").text)["task"]
    clicks = 0
    for seq in range(10):
        t0 = 5000.0 + 600.0 * seq
        batch = {"phase": "task", "task": task, "seq": seq, "origin": 1.7e12,
                 "samples": [dict(samples[(seq * 5 + i) % len(samples)], t=t0 + 100.0 * i) for i in range(5)]}
        r = clients[host_of(("samples", seq))].post("/api/gaze/samples", json=batch, headers=headers)
        assert r.status_code == 200 and r.json["stored"] == 5 and r.json["calibrated"], r.json
        if seq % 2 == 0 or seq > 5:
            events = {"t": [t0 + 450.0], "type": ["click"], "target": ["window"], "x": [300.0 + 40 * seq],
                      "y": [200.0 + 10 * seq]}
            r = clients[host_of(("click", seq))].post("/api/ingest", json={
                "task": task, "seq": clicks, "origin": 1.7e12, "streams": {"events": events}}, headers=headers)
            assert r.status_code == 200 and r.json["stored"] == 1, r.json
            clicks += 1
    with apps[0].extensions["gazepref"].sessions() as s:
        return store.read_stream(s, s.get(store.Task, task), "gaze").to_pandas()


def test_a_webcam_study_across_two_hosts_stores_what_one_host_stores(make_app, fresh_postgres, tmp_path):
    """Browser mode (the default) with continuous calibration from clicks, two hosts on one
    PostgreSQL and no stickiness: the calibration fitted on host A, validated on host B, the
    task's sample batches alternating, each click on the host that did not take the batch
    before it. The stored rows are one host's: every row once, the same model (the outcome
    both hosts load from the database), the same click corrections (each host reads the clicks
    and gaze from the database) and flags; x/y differ by a few px at most, from the per-host
    parts of the tracker (head-pose warm start, blink baseline: measured up to 3.2 px)."""
    pytest.importorskip("mediapipe")
    from gazetest import moving_face_samples, webcam_toml

    samples = moving_face_samples(40)
    toml = str(webcam_toml(tmp_path / "s.toml", 'compute = "browser"\ninteraction_calibration = true'))
    one = _webcam_walk([make_app(STUDY_CONFIG=toml)], samples, lambda what: 0)
    hosts = [make_app(STUDY_CONFIG=toml, DATABASE_URL=fresh_postgres) for _ in range(2)]
    order = {"calibration": 0, "validation": 1}
    two = _webcam_walk(hosts, samples, lambda what: order[what] if what in order else
                       (what[1] + (what[0] == "click")) % 2)
    assert two["t"].tolist() == one["t"].tolist(), "every row once"
    assert two["drift_clicks"].tolist() == one["drift_clicks"].tolist() and one["drift_clicks"].iloc[-1] >= 3
    assert (two["flags"] == one["flags"]).all() and (two["confidence"] == one["confidence"]).all()
    assert np.allclose(two[["drift_x", "drift_y"]], one[["drift_x", "drift_y"]], atol=0.1)
    assert (one[["drift_x", "drift_y"]].abs().to_numpy().max()) > 10, "the clicks corrected the gaze"
    assert np.allclose(two[["x", "y"]], one[["x", "y"]], atol=5.0)
    with hosts[0].extensions["gazepref"].sessions() as s:
        outcome = s.scalar(select(store.Calibration.id).where(store.Calibration.kind == "outcome"))
    trackers = [h.extensions["gazepref_trackers"] for h in hosts]
    assert [[e.calibration_id for e in t._entries.values()] for t in trackers] == [[outcome]] * 2


def test_the_click_correction_of_a_task_is_the_same_on_every_host(make_app, fresh_postgres, tmp_path):
    """Drift correction from clicks: host A took the first task's batches and clicks (a
    correction of about (+60, -40) px); the second task's batches alternate between A and B,
    which never saw the first task. Each host's correction rests on what the database holds of
    the task at hand, as ``gazepref gaze recalibrate --interactions`` replays it per task, so A
    does not carry the first task's correction into rows B leaves uncorrected: the second task's
    rows all start uncorrected. (A late batch of the first task then counts its click once, not
    once more each time the host comes back to the task.)"""
    pytest.importorskip("mediapipe")
    from gazetest import CALIBRATION_TARGETS, answer_step, moving_face_samples, to_calibration, webcam_toml
    from sitetest import first_sentence, page_data

    samples = moving_face_samples(30)
    toml = str(webcam_toml(tmp_path / "s.toml", 'compute = "browser"\ndrift_correction = true'))
    hosts = [make_app(STUDY_CONFIG=toml, DATABASE_URL=fresh_postgres) for _ in range(2)]
    clients = [h.test_client() for h in hosts]
    token = to_calibration(clients[0], "CAM-TASKS")["token"]
    headers = {"X-Participant-Token": token}
    meta = [{"x": x, "y": y, "t": [1000.0 + 600 * k + 100.0 * j for j in range(6)]}
            for k, (x, y) in enumerate(CALIBRATION_TARGETS)]
    for kind in ("calibration", "validation"):
        body = {"kind": kind, "viewport": [1280, 800], "targets": meta,
                "samples": [dict(s, t=t) for s, t in zip(samples, [t for m in meta for t in m["t"]])]}
        r = clients[0].post("/api/gaze/round", json=body, headers=headers)
        assert r.status_code == 200, r.json
        if kind == "calibration":  # the check's own dots
            meta = [dict(m, x=x, y=y) for m, (x, y) in zip(meta, r.json["validation_targets"])]
    assert answer_step(clients[0]).status_code == 302
    walker = Walker(clients[0])

    def batch(host, task, seq, t0):
        body = {"phase": "task", "task": task, "seq": seq, "origin": 1.7e12,
                "samples": [dict(samples[(5 * seq + i) % 30], t=t0 + 100.0 * i) for i in range(5)]}
        r = clients[host].post("/api/gaze/samples", json=body, headers=headers)
        assert r.status_code == 200 and r.json["stored"] == 5, r.json

    def gaze(task):
        with hosts[0].extensions["gazepref"].sessions() as s:
            return store.read_stream(s, s.get(store.Task, task), "gaze").to_pandas()

    data = walker.to_task()
    first = data["task"]
    batch(0, first, 0, 5000.0)
    rows = gaze(first)
    r = clients[0].post("/api/ingest", headers=headers, json={"task": first, "seq": 0, "origin": 1.7e12, "streams": {
        "events": {"t": [5450.0], "type": ["click"], "target": ["window"], "x": [float(rows["x"].median()) + 60.0],
                   "y": [float(rows["y"].median()) - 40.0]}}})
    assert r.status_code == 200
    batch(0, first, 1, 5600.0)
    assert gaze(first)["drift_clicks"].tolist()[5:] == [1.0] * 5, "A corrects the first task's later rows"
    for i in range(2):
        turn = walker.chat_turn(data, i, f"question {i}")
    assert walker.answer().status_code == 200
    walker.answer({"summary": "learned things", "understand_after": "4", "copy_sentence": first_sentence(turn),
                   "attention": "2"})
    second = walker.to_task()["task"]
    assert second != first
    for seq in range(4):  # the load balancer alternates
        batch(seq % 2, second, seq, 9000.0 + 600.0 * seq)
    rows = gaze(second)
    assert rows["drift_clicks"].tolist() == [0.0] * 20
    assert rows["drift_x"].tolist() == [0.0] * 20 and rows["drift_y"].tolist() == [0.0] * 20
    # a late batch of the first task (a later page's outbox sends what an earlier page left): its
    # one click, counted once, as before
    batch(0, first, 2, 6200.0)
    late = gaze(first).iloc[10:]
    assert late["drift_clicks"].tolist() == [1.0] * 5
    assert np.allclose(late["drift_x"], gaze(first)["drift_x"].iloc[5:10].to_numpy())
