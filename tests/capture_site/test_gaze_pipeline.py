"""Task gaze is scored with the calibration it was taken under: a batch that reaches the server
after the participant calibrated again (an HTTP batch retried after an outage, the outbox of
browser mode, frames resent after a WebSocket reconnect) names its page's calibration
(``gaze.calibration`` of the task page) and gets that calibration's model and drift correction;
the latest calibration and its drift state are left as they are."""
from __future__ import annotations

import json
import time
from contextlib import nullcontext

import numpy as np
import pytest
from sqlalchemy import select

from gazepref import store
from gazepref.signals.calibration import GazeCalibration
from gazepref.signals.gaze_recalibrate import reestimate
from gazepref.signals.synthetic_face import jpeg
from gazepref.signals.synthetic_face import moving_face as moving
from gazetest import (CALIBRATION_TARGETS, answer_step, calibrate, current_step, finish_task, gaze_rows, page_sample,
                      post_frames, post_round, post_sample_round, to_calibration, webcam_toml)
from sitetest import Walker, ws_connect

pytest.importorskip("mediapipe")
pytest.importorskip("skimage.data")

ORIGIN = 1.7e12
#: the second calibration's dots, mirrored left-right and 120 px to the right: a model that maps
#: the same face elsewhere, also where a round's features say little about x (its target folds then
#: choose to predict the targets' mean x, which differs by 120 px)
MOVED = [(1280 - x + 120, y) for x, y in CALIBRATION_TARGETS]


@pytest.fixture(scope="module")
def runner():
    from gazepref.signals.face_mesh import FaceMeshRunner

    r = FaceMeshRunner()
    yield r
    r.close()


class Sender:
    """Task frames of the moving face as one transport sends them: ``frames`` (HTTP multipart
    batches), ``samples`` (browser mode's landmark batches) or ``websocket`` (one message per frame)."""

    def __init__(self, app, transport: str, runner):
        self.app, self.client, self.transport, self.runner = app, app.test_client(), transport, runner
        self.url = None

    def calibrate(self, token, targets) -> None:
        if self.transport != "samples":
            calibrate(self.client, token, targets)
            return
        r = post_sample_round(self.client, token, self.runner, "calibration", targets)
        assert r.status_code == 200, r.json
        r = post_sample_round(self.client, token, self.runner, "validation", r.json["validation_targets"])
        assert r.status_code == 200, r.json

    def send(self, token, task_id, k, t0, calibration, n=5) -> None:
        """Frames 5k .. 5k + n - 1 of the moving face at t0 + 100 ms x i (batch seq 5k; on the
        socket frame seqs 5k, 5k + 1, ...), taken under ``calibration`` (None: not said)."""
        times = [t0 + 100.0 * i for i in range(n)]
        meta = {"phase": "task", "task": task_id, "origin": ORIGIN}
        if calibration is not None:
            meta["calibration"] = calibration
        idx = [5 * k + i for i in range(n)]
        if self.transport == "frames":
            r = post_frames(self.client, token, meta | {"seq": 5 * k, "t": times}, [jpeg(moving(i)) for i in idx])
            assert r.status_code == 200 and r.json["stored"] == n, r.json
        elif self.transport == "samples":
            samples = [page_sample(self.runner, moving(i), t) for i, t in zip(idx, times)]
            r = self.client.post("/api/gaze/samples", json=meta | {"seq": 5 * k, "samples": samples},
                                 headers={"X-Participant-Token": token})
            assert r.status_code == 200 and r.json["stored"] == n, r.json
        else:
            self._socket(token, task_id, meta, idx, times)

    def _socket(self, token, task_id, meta, idx, times) -> None:
        from gazepref.capture_site.gaze_ws import pack_frame

        with self.app.extensions["gazepref"].sessions() as dbs:
            before = gaze_rows(dbs, task_id)
        ws = ws_connect(self.url + "/api/gaze/ws")
        ws.send(json.dumps({"token": token}))
        assert json.loads(ws.receive(timeout=10))["ok"]
        for i, t in zip(idx, times):
            ws.send(pack_frame(meta | {"seq": i, "t": t}, jpeg(moving(i))))
            while "stored" in (msg := json.loads(ws.receive(timeout=20))):
                pass
            assert msg["seq"] == i and msg["calibrated"] and not msg.get("error"), msg
        ws.close()  # the server stores the buffer when the socket closes
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.app.extensions["gazepref"].sessions() as dbs:
                if gaze_rows(dbs, task_id) >= before + len(idx):
                    return
            time.sleep(0.05)
        raise AssertionError("the socket's frames were not stored")


def click(client, token, task_id, seq, t, x, y):
    r = client.post("/api/ingest", json={"task": task_id, "seq": seq, "origin": ORIGIN, "streams": {"events": {
        "t": [t], "type": ["click"], "target": ["window"], "x": [x], "y": [y]}}},
        headers={"X-Participant-Token": token})
    assert r.status_code == 200 and r.json["stored"] == 1, r.json


def stored(app, task_id, t0, n=5):
    """The task's stored gaze rows with t0 <= t < t0 + 100 ms x n."""
    with app.extensions["gazepref"].sessions() as s:
        table = store.read_stream(s, s.get(store.Task, task_id), "gaze")
    t = table.column("t").to_numpy()
    return table.filter((t >= t0) & (t < t0 + 100.0 * n))


def outcomes(app) -> list[tuple[int, GazeCalibration]]:
    with app.extensions["gazepref"].sessions() as s:
        rows = s.execute(select(store.Calibration.id, store.Calibration.model)
                         .where(store.Calibration.kind == "outcome").order_by(store.Calibration.id)).all()
    return [(i, GazeCalibration.from_bytes(m)) for i, m in rows]


@pytest.mark.parametrize("transport", ["frames", "samples", "websocket"])
def test_a_late_batch_is_scored_with_the_calibration_it_was_taken_under(make_app, tmp_path, runner, transport):
    from gazepref.capture_site.serving import BackgroundServer

    if transport == "websocket":
        pytest.importorskip("simple_websocket")
    compute = 'compute = "browser"' if transport == "samples" else ""
    lines = f"recalibrate_every = 1\ndrift_correction = true\n{compute}"
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", lines)))
    send = Sender(app, transport, runner)
    client = send.client
    token = to_calibration(client)["token"]
    send.calibrate(token, CALIBRATION_TARGETS)
    walker = Walker(client)
    first = walker.to_task()
    task0 = first["task"]
    with BackgroundServer(app) if transport == "websocket" else nullcontext() as send.url:
        send.send(token, task0, 0, 5000.0, first["gaze"]["calibration"])
        # a click under the first calibration: 60 px right of and 40 px above where it put the gaze
        x, y = (stored(app, task0, 5000.0, 4).column(c).to_numpy() for c in ("x", "y"))
        click(client, token, task0, 0, 5350.0, float(np.median(x)) + 60.0, float(np.median(y)) - 40.0)
        finish_task(client, walker)
        assert current_step(client) == "calibration:1"
        send.calibrate(token, MOVED)
        assert answer_step(client).status_code == 302
        second = walker.to_task()
        task1 = second["task"]
        (cal_a, model_a), (cal_b, model_b) = outcomes(app)
        assert (first["gaze"]["calibration"], second["gaze"]["calibration"]) == (cal_a, cal_b), \
            "each task page is told the calibration in force"
        send.send(token, task1, 0, 5000.0, cal_b)
        x, y = (stored(app, task1, 5000.0, 4).column(c).to_numpy() for c in ("x", "y"))
        click(client, token, task1, 0, 5350.0, float(np.median(x)) - 30.0, float(np.median(y)) + 20.0)
        send.send(token, task1, 1, 5500.0, cal_b)

        # the rest of the first task's frames reach the server only now, taken under the first calibration
        send.send(token, task0, 1, 5500.0, cal_a)
        late = stored(app, task0, 5500.0)
        assert late.num_rows == 5
        by_a, by_b = reestimate(late, model_a), reestimate(late, model_b)
        assert np.abs(by_a.column("x").to_numpy() - by_b.column("x").to_numpy()).max() > 100, \
            "the two calibrations place this gaze far apart (else this test checks nothing)"
        for c in ("x", "y"):  # the first calibration's estimate, and its click's correction
            np.testing.assert_allclose(late.column(c).to_numpy() - late.column(f"drift_{c}").to_numpy(),
                                       by_a.column(c).to_numpy(), atol=0.5)
        np.testing.assert_allclose(late.column("drift_x").to_numpy(), 60.0, atol=0.5)
        np.testing.assert_allclose(late.column("drift_y").to_numpy(), -40.0, atol=0.5)

        # the latest calibration and its drift state are as they were
        (entry,) = app.extensions["gazepref_trackers"]._entries.values()
        assert entry.calibration_id == cal_b and entry.drift.task == task1 and entry.drift.clicks_used == 1
        send.send(token, task1, 2, 6000.0, cal_b)
        now = stored(app, task1, 6000.0)
        for c in ("x", "y"):
            np.testing.assert_allclose(now.column(c).to_numpy() - now.column(f"drift_{c}").to_numpy(),
                                       reestimate(now, model_b).column(c).to_numpy(), atol=0.5)
        np.testing.assert_allclose(now.column("drift_x").to_numpy(), -30.0, atol=0.5)
        np.testing.assert_allclose(now.column("drift_y").to_numpy(), 20.0, atol=0.5)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_batch_naming_a_calibration_not_in_force_for_its_participant_is_refused(make_app, tmp_path, request,
                                                                                   database):
    """Another participant's calibration, a validation round, an unknown id: 403 and nothing
    stored; a batch naming none (a page from before the pages said it) gets the latest. (On
    PostgreSQL the lookup also takes the rate limit's token in the same statement.)"""
    url = {"DATABASE_URL": request.getfixturevalue("fresh_postgres")} if database == "postgresql" else {}
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml")), **url)
    client, other = app.test_client(), app.test_client()
    token = to_calibration(client)["token"]
    calibrate(client, token)
    data = Walker(client).to_task()
    task_id, own = data["task"], data["gaze"]["calibration"]
    r = post_round(other, to_calibration(other, "CAM2")["token"], "calibration", MOVED)
    assert r.status_code == 200, r.json
    theirs = r.json["calibration"]  # an attempt in force for the other participant
    with app.extensions["gazepref"].sessions() as s:
        validation = s.scalar(select(store.Calibration.id).where(store.Calibration.kind == "validation"))
    meta = {"phase": "task", "task": task_id, "seq": 0, "origin": ORIGIN, "t": [5000.0]}
    for bad in (theirs, validation, 10_000):
        r = post_frames(client, token, meta | {"calibration": bad}, [jpeg(moving(0))])
        assert r.status_code == 403 and r.json["error"] == f"calibration {bad} is not one of yours", r.json
    for bad in (0, "1", True):
        r = post_frames(client, token, meta | {"calibration": bad}, [jpeg(moving(0))])
        assert r.status_code == 400 and "calibration must be an integer" in r.json["error"], r.json
    with app.extensions["gazepref"].sessions() as s:
        assert gaze_rows(s, task_id) == 0
    r = post_frames(client, token, meta | {"calibration": None}, [jpeg(moving(0))])
    assert r.status_code == 200 and r.json["stored"] == 1 and r.json["calibrated"], r.json
    (cal, model), = outcomes(app)
    assert cal == own
    row = stored(app, task_id, 5000.0, 1)
    np.testing.assert_allclose(row.column("x").to_numpy(), reestimate(row, model).column("x").to_numpy(), atol=0.5)


def first_task_done(app, runner):
    """A participant calibrated (A), with one batch and a click of their first task stored under
    it, now at the recalibration step: (sender, token, task id, A's id)."""
    send = Sender(app, "frames", runner)
    token = to_calibration(send.client)["token"]
    send.calibrate(token, CALIBRATION_TARGETS)
    walker = Walker(send.client)
    first = walker.to_task()
    task0, cal_a = first["task"], first["gaze"]["calibration"]
    send.send(token, task0, 0, 5000.0, cal_a)
    x, y = (stored(app, task0, 5000.0, 4).column(c).to_numpy() for c in ("x", "y"))
    click(send.client, token, task0, 0, 5350.0, float(np.median(x)) + 60.0, float(np.median(y)) - 40.0)
    finish_task(send.client, walker)
    assert current_step(send.client) == "calibration:1"
    return send, token, task0, cal_a


def test_a_calibration_between_a_late_batchs_lookup_and_its_scoring_does_not_score_it(make_app, tmp_path, runner,
                                                                                       monkeypatch):
    """The first round of the next calibration step lands (another request) after a late batch's
    lookup found its calibration still the latest: the batch is still scored with its own, and
    its click goes into that one's drift state, not the new latest's."""
    import threading

    from gazepref.capture_site import gaze_pipeline

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", "recalibrate_every = 1\ndrift_correction = true")))
    send, token, task0, cal_a = first_task_done(app, runner)
    real, rounds = gaze_pipeline.sync_calibration, []

    def sync_then_a_round_lands(entry, latest, conn=None):
        real(entry, latest, conn)
        if not rounds:  # the participant's next calibration round, by another request, right now
            t = threading.Thread(target=lambda: rounds.append(post_round(app.test_client(), token, "calibration",
                                                                         MOVED)))
            t.start()
            t.join()

    monkeypatch.setattr(gaze_pipeline, "sync_calibration", sync_then_a_round_lands)
    send.send(token, task0, 1, 5500.0, cal_a)  # the rest of the first task, taken under A
    assert rounds and rounds[0].status_code == 200, rounds[0].json
    cal_b = rounds[0].json["calibration"]
    with app.extensions["gazepref"].sessions() as s:
        model_a = GazeCalibration.from_bytes(s.get(store.Calibration, cal_a).model)
        model_b = GazeCalibration.from_bytes(s.get(store.Calibration, cal_b).model)
    late = stored(app, task0, 5500.0)
    by_a, by_b = reestimate(late, model_a), reestimate(late, model_b)
    assert np.abs(by_a.column("x").to_numpy() - by_b.column("x").to_numpy()).max() > 50, "(else this checks nothing)"
    for c in ("x", "y"):
        np.testing.assert_allclose(late.column(c).to_numpy() - late.column(f"drift_{c}").to_numpy(),
                                   by_a.column(c).to_numpy(), atol=0.5)
    np.testing.assert_allclose(late.column("drift_x").to_numpy(), 60.0, atol=0.5)
    (entry,) = app.extensions["gazepref_trackers"]._entries.values()
    assert entry.calibration_id == cal_b and entry.drift.clicks_used == 0, "the new latest's drift state is untouched"
    # a lookup made before B (stale) never takes the tracker back to A: B's drift state would restart
    drift = entry.drift
    with app.app_context(), app.extensions["gazepref"].statements.connect() as conn:
        real(entry, cal_a, conn)
    assert entry.calibration_id == cal_b and entry.drift is drift


def test_a_validation_round_validates_its_attempt_while_a_late_batch_is_scored(make_app, tmp_path, runner, monkeypatch):
    """A late task batch of the older calibration is being scored (its model in the tracker, in
    another thread) when the validation round of the new attempt reads the model to validate:
    it validates the attempt's."""
    import threading

    from gazepref.capture_site import gaze
    from gazepref.capture_site.gaze_trackers import decode_frames, process_frames
    from gazepref.signals import gaze_session

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", "recalibrate_every = 1")))
    send, token, task0, cal_a = first_task_done(app, runner)
    r = post_round(send.client, token, "calibration", MOVED)
    assert r.status_code == 200, r.json
    cal_b, targets = r.json["calibration"], r.json["validation_targets"]
    (entry,) = app.extensions["gazepref_trackers"]._entries.values()
    older = entry.kept_older(cal_a)
    assert entry.calibration_id == cal_b and older is not None
    inside, done, validated, threads = threading.Event(), threading.Event(), [], []

    def late_batch():  # process_frames of a late batch of task 0 under A, as gaze_pipeline runs it
        def hold():  # called with the tracker held, A's model in it
            inside.set()
            done.wait(2.0)
            return False

        with app.app_context():
            process_frames(entry, decode_frames([jpeg(moving(0))], 640), [5000.0], stale=hold, scoring=older)

    real_sync, real_validate = gaze.sync_calibration, gaze_session.validate_round

    def sync(entry_, latest, conn=None):
        real_sync(entry_, latest, conn)
        threads.append(threading.Thread(target=late_batch))
        threads[0].start()
        assert inside.wait(5.0)

    def validate(model, *args, **kwargs):
        validated.append(model)
        done.set()
        return real_validate(model, *args, **kwargs)

    monkeypatch.setattr(gaze, "sync_calibration", sync)
    monkeypatch.setattr(gaze_session, "validate_round", validate)
    r = post_round(send.client, token, "validation", targets)
    assert r.status_code == 200, r.json
    with app.extensions["gazepref"].sessions() as s:
        attempt = s.get(store.Calibration, cal_b).model
    assert validated and validated[0].to_bytes() == attempt, "the round validated another calibration's model"
    threads[0].join(5.0)
    assert entry.tracker.calibration.to_bytes() == attempt  # put back after the late batch
