"""Webcam gaze in the study site: the frames endpoint, calibration rounds and a whole session in
headless Chromium with a fake webcam playing a real face (``skimage.data.astronaut()``) that
moves and scales."""
from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from gazepref import store
from gazepref.schema import GazeFlag
from gazepref.signals.synthetic_face import jpeg
from gazepref.signals.synthetic_face import moving_face as moving
from browsertest import launch, new_context, require_chromium, shared_playwright, wait_for_function
from gazetest import (CALIBRATION_TARGETS, answer_step, browser_page, calibrate, gaze_rows, post_frames,
                      post_round, to_calibration, to_calibration_page, to_task, write_y4m)
from gazetest import webcam_toml as write_webcam_toml
from sitetest import legacy_token, page_data, reused_row, row_pseudonym

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
skdata = pytest.importorskip("skimage.data")



# --------------------------------------------------------------------------- frames



# --------------------------------------------------------------------------- site helpers


@pytest.fixture
def webcam_toml(tmp_path):
    return write_webcam_toml(tmp_path / "webcam_study.toml")


@pytest.fixture
def wapp(make_app, webcam_toml):
    return make_app(STUDY_CONFIG=str(webcam_toml))


@pytest.fixture
def wclient(wapp):
    return wapp.test_client()


# --------------------------------------------------------------------------- endpoint tests


def test_setup_frames_report_face_status_and_flags(wclient):
    gaze = to_calibration(wclient)
    token = gaze["token"]
    r = post_frames(wclient, token, {"phase": "setup", "t": [0.0, 100.0, 200.0]}, [jpeg(moving(i)) for i in range(3)])
    assert r.status_code == 200, r.json
    assert r.json["face"]["found"] and r.json["face"]["ok"], r.json
    grey = np.full((240, 320, 3), 128, np.uint8)  # no face
    r = post_frames(wclient, token, {"phase": "setup", "t": [300.0]}, [jpeg(grey)])
    assert r.status_code == 200 and not r.json["face"]["found"]
    black = np.zeros((240, 320, 3), np.uint8)
    r = post_frames(wclient, token, {"phase": "setup", "t": [400.0]}, [jpeg(black)])
    assert r.status_code == 200 and not r.json["face"]["found"]


def test_calibration_round_then_task_frames_stored_idempotently(wclient, wapp):
    gaze = to_calibration(wclient)
    token = gaze["token"]
    assert answer_step(wclient).status_code == 400  # not calibrated yet: the step asks again
    r = post_round(wclient, token, "calibration", [(128, 80), (640, 400), (1152, 80), (128, 720), (1152, 720)])
    assert r.status_code == 200, r.json
    vt = r.json["validation_targets"]
    assert len(vt) == 4
    r = post_round(wclient, token, "validation", vt)
    assert r.status_code == 200, r.json
    assert r.json["quality"] in ("good", "fair", "poor") and "accuracy_px" not in r.json and "result" not in r.json
    with wapp.extensions["gazepref"].sessions() as dbs:
        kinds = [c.kind for c in dbs.scalars(select(store.Calibration).order_by(store.Calibration.id))]
        assert kinds == ["calibration", "validation", "outcome"]
        cal = dbs.scalars(select(store.Calibration)).first()
        assert cal.model and cal.result["n_samples"] >= 20 and cal.result["face_found"] == cal.result["frames"]
    assert answer_step(wclient).status_code == 302
    answer_step(wclient, {"understand_before": "3"})  # pre-task questions
    data = page_data(wclient.get("/step").text)
    g = data["gaze"]
    assert g and g["task"] == data["task"] and g["next_seq"] == 0
    task_id = data["task"]

    meta = {"phase": "task", "task": task_id, "seq": 0, "origin": 1.7e12, "t": [5000.0 + 100 * i for i in range(5)]}
    frames = [jpeg(moving(i)) for i in range(5)]
    r = post_frames(wclient, token, meta, frames)
    assert r.status_code == 200 and r.json["stored"] == 5 and not r.json["duplicate"], r.json
    assert r.json["calibrated"]
    r = post_frames(wclient, token, meta, frames)  # replay
    assert r.status_code == 200 and r.json["duplicate"] and r.json["stored"] == 0

    # bad input: 400 naming the problem, nothing stored, the session goes on
    bad = [
        ([b"\xff\xd8garbage" + b"\x00" * 100], "image/jpeg", "corrupt"),
        ([jpeg(moving(0, size=(1280, 960)))], "image/jpeg", "larger than the limit"),
        ([jpeg(moving(0))], "image/png", "wrong content type"),
        ([b""], "image/jpeg", "empty"),
    ]
    for k, (payload, ctype, words) in enumerate(bad, start=1):
        r = post_frames(wclient, token, dict(meta, seq=k, t=[9000.0]), payload, ctype)
        assert r.status_code == 400, (words, r.json)
        assert words in r.json["error"], r.json
    r = wclient.post("/api/gaze/frames", json=meta, headers={"X-Participant-Token": token})
    assert r.status_code == 400 and "multipart/form-data" in r.json["error"]
    # a batch with one bad frame among good ones stores none of them
    r = post_frames(wclient, token, dict(meta, seq=9, t=[9100.0, 9200.0]), [jpeg(moving(1)), b"not a jpeg"])
    assert r.status_code == 400 and "frame 1" in r.json["error"]

    # the page's telemetry numbers its batches apart from the gaze frames: its seq 0 is not a replay
    r = wclient.post("/api/ingest", json={"task": task_id, "seq": 0, "origin": 1.7e12,
                                          "streams": {"mouse": {"t": [5050.0], "x": [1.0], "y": [2.0]}}},
                     headers={"X-Participant-Token": token})
    assert r.status_code == 200 and r.json["stored"] == 1, r.json

    grey, black = np.full((240, 320, 3), 128, np.uint8), np.zeros((240, 320, 3), np.uint8)
    r = post_frames(wclient, token, dict(meta, seq=10, t=[9300.0, 9400.0, 9500.0]),
                    [jpeg(grey), jpeg(black), jpeg(moving(2))])
    assert r.status_code == 200 and r.json["stored"] == 3 and r.json["face"]["found"]
    with wapp.extensions["gazepref"].sessions() as dbs:
        assert gaze_rows(dbs, task_id) == 8
        task = dbs.get(store.Task, task_id)
        table = store.read_stream(dbs, task, "gaze").to_pandas()
        assert table["t"].tolist() == [5000.0, 5100.0, 5200.0, 5300.0, 5400.0, 9300.0, 9400.0, 9500.0]
        flags = table["flags"].astype(int).tolist()
        assert all(f & GazeFlag.NO_FACE == 0 for f in flags[:5])
        assert flags[5] & GazeFlag.NO_FACE and flags[6] & GazeFlag.NO_FACE and flags[6] & GazeFlag.TOO_DARK
        assert np.isfinite(table["x"][:5]).all() and np.isfinite(table["y"][:5]).all()  # calibrated
        assert "eye_l_iris_u" in table.columns
        # continuous calibration from clicks (the default): no click yet, so no correction
        assert (table["drift_x"] == 0).all() and (table["drift_clicks"] == 0).all()
        assert task.clock_anchor_epoch_ms == 1.7e12
        assert dbs.scalar(select(func.count()).select_from(store.GazeFrame)) == 0, "frames are not kept by default"


def test_keep_frames_stores_exports_and_deletes_them_with_the_participant(make_app, tmp_path):
    from gazepref.capture_site.exporting import export_study

    path = write_webcam_toml(tmp_path / "keep.toml", "keep_frames = true", "camera_images = true")
    app = make_app(STUDY_CONFIG=str(path))
    client = app.test_client()
    gaze = to_calibration(client)
    assert gaze["settings"]["keep_frames"]
    assert "pictures sent during calibration and the tasks are stored" in client.get("/step").text
    token = gaze["token"]
    r = post_frames(client, token, {"phase": "setup", "t": [0.0]}, [jpeg(moving(0))])
    assert r.status_code == 200
    r = post_round(client, token, "calibration", CALIBRATION_TARGETS)
    assert r.status_code == 200, r.json
    r = post_round(client, token, "validation", r.json["validation_targets"])
    assert r.status_code == 200, r.json
    assert answer_step(client).status_code == 302
    answer_step(client, {"understand_before": "3"})
    task_id = page_data(client.get("/step").text)["task"]
    meta = {"phase": "task", "task": task_id, "seq": 0, "origin": 1.7e12, "t": [5000.0, 5100.0, 5200.0]}
    frames = [jpeg(moving(i)) for i in range(3)]
    assert post_frames(client, token, meta, frames).json["stored"] == 3
    assert post_frames(client, token, meta, frames).json["duplicate"]  # a replay keeps nothing more
    bad = post_frames(client, token, dict(meta, seq=1, t=[1.0, 2.0]), [jpeg(moving(1)), b"not a jpeg"])
    assert bad.status_code == 400

    with app.extensions["gazepref"].sessions() as dbs:
        kept = dbs.scalars(select(store.GazeFrame).order_by(store.GazeFrame.id)).all()
        by_kind = {}
        for f in kept:
            kind = "task" if f.task_id else dbs.get(store.Calibration, f.calibration_id).kind
            by_kind[kind] = by_kind.get(kind, 0) + 1
        assert by_kind == {"calibration": 30, "validation": 24, "task": 3}, "setup frames are not kept"
        task_frames = [f for f in kept if f.task_id == task_id]
        assert [(f.seq, f.index, f.t) for f in task_frames] == [(0, 0, 5000.0), (0, 1, 5100.0), (0, 2, 5200.0)]
        assert [f.data for f in task_frames] == frames, "the JPEG bytes as sent"

        study = dbs.scalars(select(store.Study)).one()
        manifest = export_study(dbs, study, tmp_path / "export")
        assert manifest["frames"] == 57
        index = (tmp_path / "export" / "frames" / "frames.csv").read_text().splitlines()
        # named as the exported tables name them (participant_id: the pseudonym; task_id: <pseudonym>/<task id>)
        assert index[0] == ("participant_id,task_id,calibration_id,kind,seq,index,t,clock_origin_epoch_ms,epoch_ms,"
                            "t_task,file") and len(index) == 58
        task_rows = [line.split(",") for line in index[1:] if ",task," in line]  # their page load, as posted
        assert [(r[6], r[7], r[8]) for r in task_rows] == [(f"{t}", "1700000000000.0", f"{1.7e12 + t}")
                                                           for t in (5000.0, 5100.0, 5200.0)]
        files = sorted((tmp_path / "export" / "frames").rglob("*.jpg"))
        assert len(files) == 57 and all(f.read_bytes()[:2] == b"\xff\xd8" for f in files)
        p = dbs.get(store.Participant, task_frames[0].participant_id)
        assert all(p.pseudonym in str(f) for f in files), "pseudonyms only"
        from gazepref.cli import main  # the command line exports them as the dashboard does

        assert main(["data", "export", study.slug, "--instance", str(tmp_path / "instance"), "--to", "ifllm",
                     "--out", str(tmp_path / "cli")]) == 0
        assert (tmp_path / "cli" / "frames" / "frames.csv").read_text().splitlines() == index
        assert [f.read_bytes() for f in sorted((tmp_path / "cli" / "frames").rglob("*.jpg"))] == \
            [f.read_bytes() for f in files]
        stale = tmp_path / "cli" / "frames" / "p_deleted_since" / "task1" / "000000-00.jpg"
        stale.parent.mkdir(parents=True)
        stale.write_bytes(files[0].read_bytes())  # a participant deleted since the last export
        assert main(["data", "export", study.slug, "--instance", str(tmp_path / "instance"), "--to", "ifllm",
                     "--out", str(tmp_path / "cli"), "--overwrite"]) == 0
        assert not stale.exists() and len(list((tmp_path / "cli" / "frames").rglob("*.jpg"))) == 57
        dbs.delete(p)  # what the dashboard's delete does
        dbs.commit()
        assert dbs.scalar(select(func.count()).select_from(store.GazeFrame)) == 0


def test_frames_need_a_token_and_an_owned_task(wclient):
    gaze = to_calibration(wclient)
    r = post_frames(wclient, "bad-token", {"phase": "setup", "t": [0.0]}, [jpeg(moving(0))])
    assert r.status_code == 401
    r = post_frames(wclient, gaze["token"], {"phase": "task", "task": 999, "seq": 0, "origin": 1.0, "t": [0.0]},
                    [jpeg(moving(0))])
    assert r.status_code == 403


def test_a_participant_out_of_frame_tokens_is_refused_before_a_large_batch_is_read(make_app, database, tmp_path):
    """As the sample batches and ingest: a frame batch larger than LARGE_JSON_BYTES (its
    Content-Length) is read from the connection only when the participant's frame bucket holds a
    token (batches.out_of_tokens_for); a small one is read, then the take refuses it."""
    from io import BytesIO

    from werkzeug.test import EnvironBuilder

    from gazepref.capture_site import batches

    app = make_app(STUDY_CONFIG=str(write_webcam_toml(tmp_path / "cam.toml")), GAZE_RATE_PER_S=0.001, GAZE_BURST=1,
                   **({"DATABASE_URL": database} if database else {}))
    client = app.test_client()
    token = to_calibration(client, "CAM-TOKENS")["token"]

    def post(n):
        form = EnvironBuilder(method="POST", content_type="multipart/form-data", data={
            "meta": json.dumps({"phase": "setup", "t": [100.0 * i for i in range(n)]}),
            "frame": [(BytesIO(jpeg(moving(i))), f"f{i}.jpg", "image/jpeg") for i in range(n)]}).get_environ()
        body = form["wsgi.input"].read()
        stream = BytesIO(body)  # (how much of it the server read: its position)
        r = client.post("/api/gaze/frames", input_stream=stream, content_length=len(body),
                        content_type=form["CONTENT_TYPE"], headers={"X-Participant-Token": token})
        return r, len(body), stream.tell()

    r, size, read = post(8)
    assert size > batches.LARGE_JSON_BYTES and r.status_code == 200 and read == size, r.json  # the one token
    r, size, read = post(8)
    assert r.status_code == 429 and "slow down" in r.json["error"] and r.headers["Retry-After"] == "1"
    assert read == 0, "the body was read"
    r, size, read = post(1)  # small: read, then the take refuses it
    assert size < batches.LARGE_JSON_BYTES and r.status_code == 429 and read == size


def test_a_deleted_participants_token_sends_nothing_for_the_one_who_got_their_row_id(reusing_ids, make_app,
                                                                                   webcam_toml):
    """On a database that gave a deleted participant's row id to the next one, the deleted one's
    open page (its token) is refused on every webcam endpoint; the next one's own token works,
    and so does one of the earlier form carrying their pseudonym itself; one of the id alone
    cannot tell them apart and is refused here."""
    app = make_app(STUDY_CONFIG=str(webcam_toml))
    old, client, new, pid = reused_row(app, to_calibration)
    setup = {"phase": "setup", "t": [0.0]}
    refused = [
        post_frames(client, old["token"], setup, [jpeg(moving(0))]),
        client.post("/api/gaze/camera-error", json={"reason": "denied"}, headers={"X-Participant-Token": old["token"]}),
        post_round(client, old["token"], "calibration", CALIBRATION_TARGETS, per_target=1),
        post_frames(client, legacy_token(pid), setup, [jpeg(moving(0))]),
    ]
    assert [r.status_code for r in refused] == [401] * 4, [r.json for r in refused]
    with app.extensions["gazepref"].sessions() as s:
        assert "setup" not in s.get(store.Participant, pid).state
        assert s.scalars(select(store.Calibration)).all() == []
    for token in (new["token"], legacy_token(pid, row_pseudonym(app, pid))):
        r = post_frames(client, token, setup, [jpeg(moving(0))])
        assert r.status_code == 200 and r.json["face"]["found"], r.json
    r = client.post("/api/gaze/camera-error", json={"reason": "denied"}, headers={"X-Participant-Token": new["token"]})
    assert r.status_code == 200
    with app.extensions["gazepref"].sessions() as s:
        assert s.get(store.Participant, pid).state["setup"]["camera_error"] == "denied"


def test_the_one_who_got_a_deleted_participants_row_id_gets_a_tracker_of_their_own(reusing_ids, make_app,
                                                                                    webcam_toml):
    """The server's trackers are keyed by (row id, pseudonym): the next participant with a
    deleted one's id does not take over the deleted one's tracker (face state, drift, the
    calibration in force)."""
    app = make_app(STUDY_CONFIG=str(webcam_toml))
    setup = {"phase": "setup", "t": [0.0]}

    def start(client, who):
        gaze = to_calibration(client, who)
        assert post_frames(client, gaze["token"], setup, [jpeg(moving(0))]).status_code == 200
        return gaze

    reused_row(app, start)
    trackers = app.extensions["gazepref_trackers"]
    assert len(trackers) == 2  # the deleted one's (until it idles out) and the next one's


@pytest.mark.parametrize("how", ["withdraw", "delete"])
def test_a_withdrawal_or_deletion_drops_the_participants_tracker_at_once(make_app, webcam_toml, how, monkeypatch,
                                                                          capsys):
    """The participant's webcam tracker (camera state, calibration, drift) is dropped and closed
    when they withdraw or the researcher deletes their data, by the host that handled it, not at
    the idle sweep minutes later; someone else's stays. Frames sent later are refused (401) and
    make none."""
    import io

    from gazepref.cli import main as cli
    from sitetest import csrf_of

    app = make_app(STUDY_CONFIG=str(webcam_toml))
    people = {}
    for who in ("LEAVES", "STAYS"):
        client = app.test_client()
        gaze = to_calibration(client, who)
        assert post_frames(client, gaze["token"], {"phase": "setup", "t": [0.0]}, [jpeg(moving(0))]).status_code == 200
        people[who] = (client, gaze)
    reg = app.extensions["gazepref_trackers"]
    entries = dict(reg._entries)
    with app.extensions["gazepref"].sessions() as s:
        pid = s.scalar(select(store.Participant.id).order_by(store.Participant.id))  # LEAVES came first
    [(key, leaving)] = [(k, e) for k, e in entries.items() if k[0] == pid]
    client, gaze = people["LEAVES"]
    if how == "withdraw":
        page = client.get("/withdraw")
        assert client.post("/withdraw", data={"csrf_token": csrf_of(page.text)}).status_code in (302, 303)
    else:
        monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
        assert cli(["user", "add", "ada", "--all-studies", "--password-stdin", "--instance", app.instance_path]) == 0
        capsys.readouterr()
        admin = app.test_client()
        page = admin.get("/admin/login")
        admin.post("/admin/login", data={"csrf_token": csrf_of(page.text), "username": "ada",
                                         "password": "correct horse battery"})
        page = admin.get("/admin/")
        assert admin.post(f"/admin/participants/{pid}/delete", data={"csrf_token": csrf_of(page.text)}).status_code == 302
    assert set(reg._entries) == set(entries) - {key}
    assert leaving.tracker._mesh_runner._mesh._graph is None  # closed (mediapipe's graph released)
    assert post_frames(client, gaze["token"], {"phase": "setup", "t": [100.0]}, [jpeg(moving(1))]).status_code == 401
    assert set(reg._entries) == set(entries) - {key}
    other_client, other = people["STAYS"]
    r = post_frames(other_client, other["token"], {"phase": "setup", "t": [100.0]}, [jpeg(moving(1))])
    assert r.status_code == 200 and len(reg) == 1


def test_a_deleted_participants_unwritten_set_up_counts_stay_out_of_the_next_ones_row(reusing_ids, make_app,
                                                                                      webcam_toml):
    """The set-up log's counts not yet written (a few seconds' worth) belong to (row id,
    pseudonym): flushed after the participant was deleted, they do not land in the row of the
    next participant who got the same id."""
    from gazepref.capture_site import setup_log

    app = make_app(STUDY_CONFIG=str(webcam_toml))
    setup = {"phase": "setup", "t": [0.0]}

    def start(client, who):
        gaze = to_calibration(client, who)
        if who == "GONE":  # the first frame is written at once, the second waits (same status)
            for _ in range(2):
                assert post_frames(client, gaze["token"], setup, [jpeg(moving(0))]).status_code == 200
        return gaze

    _, _, _, pid = reused_row(app, start)
    with app.app_context():
        assert setup_log.flush_pending() == 1
    with app.extensions["gazepref"].sessions() as s:
        assert "setup" not in (s.get(store.Participant, pid).state or {})


def test_a_round_may_be_larger_than_other_requests(wclient):
    """A round carries all its targets' frames in one request: more than the site-wide body limit
    (~2 MiB) is accepted there, up to MAX_ROUND_BYTES."""
    from io import BytesIO

    from gazepref.capture_site.gaze_settings import MAX_ROUND_BYTES

    gaze = to_calibration(wclient)

    def send(frames, targets):
        meta = {"kind": "calibration", "viewport": [1280, 800], "targets": targets}
        data = {"meta": json.dumps(meta), "frame": [(BytesIO(f), f"f{i}.jpg", "image/jpeg") for i, f in enumerate(frames)]}
        return wclient.post("/api/gaze/round", data=data, content_type="multipart/form-data",
                            headers={"X-Participant-Token": gaze["token"]})

    # 30 frames of ~100 KB (JPEG, then padding the decoder ignores): ~3 MB in all
    frames = [jpeg(moving(i)) + bytes(90_000) for i in range(30)]
    targets = [{"x": x, "y": y, "t": [1000.0 + 100 * (6 * k + j) for j in range(6)]}
               for k, (x, y) in enumerate(CALIBRATION_TARGETS)]
    assert sum(map(len, frames)) > 2.5 * 2**20
    r = send(frames, targets)
    assert r.status_code == 200, r.json
    big = [bytes(190_000)] * (MAX_ROUND_BYTES // 190_000 + 1)
    r = send(big, [{"x": 1, "y": 1, "t": [float(i) for i in range(len(big))]}])
    assert r.status_code == 413


def test_optional_webcam_without_camera_goes_on_mouse_only(wclient):
    to_calibration(wclient)
    assert answer_step(wclient, {"outcome": "no-camera"}).status_code == 302
    answer_step(wclient, {"understand_before": "3"})
    data = page_data(wclient.get("/step").text)
    assert data["task"] and data["gaze"] is None


def test_required_webcam_without_camera_stops(make_app, tmp_path, webcam_toml):
    path = tmp_path / "required.toml"
    path.write_text(webcam_toml.read_text().replace('webcam = "optional"', 'webcam = "required"'))
    client = make_app(STUDY_CONFIG=str(path)).test_client()
    token = to_calibration(client)["token"]
    r = answer_step(client, {"outcome": "no-camera"})  # screened out (the platform's screen-out code, if any)
    assert r.status_code == 302 and "needs a working webcam" in client.get("/step").text
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 409  # no calibrating after it


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def face_y4m(tmp_path_factory) -> Path:
    return write_y4m(tmp_path_factory.mktemp("cam") / "face.y4m", [moving(i) for i in range(40)])


#: mute (true) or unmute (false) the page's camera as the browser does: the real track reports
#: muted and fires the event
MUTE_JS = """(muted) => {
  for (const t of window.gazepref.gaze.stream.getVideoTracks()) {
    Object.defineProperty(t, "muted", { get: () => muted, configurable: true });
    t.dispatchEvent(new Event(muted ? "mute" : "unmute"));
  }
}"""


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["ws", "http", "refused", "busy"])
def test_session_with_fake_webcam(make_app, webcam_toml, face_y4m, transport, monkeypatch):
    """The page streams its frames over the WebSocket; with GAZE_WEBSOCKET = False, or when the
    socket refuses it ("refused": the server takes no token), it posts batches; when the server
    tells every new socket to try again later ("busy": too many sockets wait for their token) the
    page tries three more times, backing off, then posts batches. The "http" session
    is calibrated with the keyboard only: each dot has the focus, Enter "clicks" it, and the focus
    goes on to Continue. The "refused" and "busy" pages end up on the "http" session's way of
    sending (HTTP batches, their answers), so the test client sends their calibration rounds (the
    page sends its round by fetch, whatever the transport: the "ws" and "http" sessions click the
    dots): the "refused" set-up page's pictures go that way until the face is found, then its task
    page records over HTTP; the "busy" participant is walked to the task by the test client, and
    its task page (the same capture as the set-up page's) tries the socket four times, then records
    over HTTP."""
    keyboard = transport == "http"
    fallback = transport in ("refused", "busy")
    wapp = make_app(STUDY_CONFIG=str(webcam_toml), GAZE_WEBSOCKET=transport != "http")
    from gazepref.capture_site import gaze_ws

    if transport == "refused":
        monkeypatch.setattr(gaze_ws, "read_participant_token", lambda token: None)
    if transport == "busy":
        monkeypatch.setattr(gaze_ws.PendingSockets, "enter", lambda self: False)
    require_chromium()
    from gazepref.capture_site.serving import BackgroundServer

    args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={face_y4m}"]
    # (the shared driver outlives the test: a failed test's Chromium is closed too, not left running)
    with BackgroundServer(wapp) as url, closing(launch(shared_playwright(), args)) as browser:
        ctx = new_context(browser, viewport={"width": 1280, "height": 800}, base_url=url)
        page = ctx.new_page()
        console, sockets = [], []
        page.on("console", lambda m: console.append(m.text))
        page.on("websocket", lambda ws: sockets.append(ws))
        if fallback:  # walked to the calibration page by the test client, whose cookie the page carries
            client = wapp.test_client()
            token = to_calibration(client, "CAM-E2E")["token"]
            ctx.add_cookies([{"name": "session", "value": client.get_cookie("session").value, "url": url}])
        if transport == "busy":  # calibrated by the test client, on to the task page
            calibrate(client, token)
            assert answer_step(client).status_code == 302  # the calibration step
            answer_step(client, {"understand_before": "3"})
            page.goto("/step")
            # told to try again later: three more tries (1, 2, 4 s), then batches
            wait_for_function(page, "window.gazepref && window.gazepref.gaze"
                                    " && window.gazepref.gaze.transport === 'http'", timeout=30_000)
            assert len(sockets) == 4, len(sockets)
        elif transport == "refused":
            page.goto("/step")
            page.wait_for_selector("#face-status.ok")  # green once the server sees a well placed face
            assert page.evaluate("window.gazepref.calibration.capture.transport") == "http"
            calibrate(client, token)
            assert answer_step(client).status_code == 302  # the calibration step
            page.goto("/step")
        else:
            to_calibration_page(page, "CAM-E2E")
            page.wait_for_selector("#face-status.ok")  # green once the server sees a well placed face
            # the indicator is a live region: a steady face is announced once, not with every frame
            page.evaluate("""() => { window.announced = 0;
                new MutationObserver((m) => { window.announced += m.length; }).observe(
                    document.getElementById('face-status'),
                    { childList: true, characterData: true, subtree: true }); }""")
            if transport == "ws":  # every frame is answered: 6 answers
                seen = page.evaluate("window.gazepref.calibration.capture.sent")
                wait_for_function(page, f"window.gazepref.calibration.capture.sent >= {seen + 6}")
            else:
                page.wait_for_timeout(3000)  # ~6 answers of the server (a batch every 500 ms)
            assert page.evaluate("window.announced") <= 1 and page.text_content("#face-status") == "Face well placed."
            if keyboard:
                assert "press Enter" in page.text_content("#setup-help")
                page.focus("#start-calibration")
                page.keyboard.press("Enter")
            else:
                page.click("#start-calibration")
            for key in [f"calibration:{i}" for i in range(5)] + [f"validation:{i}" for i in range(4)]:
                page.wait_for_selector(f"#target[data-key='{key}']:not([hidden])")
                page.wait_for_timeout(750)  # look at the dot; the eyes settle
                if keyboard:
                    assert page.evaluate("document.activeElement.id") == "target"
                    page.keyboard.press("Enter")
                else:
                    page.click("#target")
            try:
                page.wait_for_selector("#continue:not([hidden])")
            except Exception:
                raise AssertionError(f"calibration did not finish: {page.text_content('#calibration-result')!r} "
                                     f"{page.evaluate('JSON.stringify(window.gazepref.calibration.rounds)')} {console}")
            if keyboard:
                assert page.evaluate("document.activeElement.id") == "continue"
                with page.expect_navigation():
                    page.keyboard.press("Enter")
            else:
                page.click("#continue")
        if transport != "busy":
            page.check("[name='understand_before'][value='3']")
            page.click("#continue")
        wait_for_function(page, "window.gazepref && window.gazepref.gaze && window.gazepref.gaze.sent >= 25")
        for i in range(30):  # mouse moves while gaze streams
            page.mouse.move(200 + 20 * i, 300 + 5 * i)
            page.wait_for_timeout(30)
        page.wait_for_timeout(100)
        assert page.evaluate("window.gazepref.gaze.transport") == ("ws" if transport == "ws" else "http")
        page.evaluate("window.gazepref.gaze.flush()")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            page.evaluate("window.gazepref.recorder.flush()")
            if page.evaluate("window.gazepref.recorder.outbox.pending") == 0:
                break
            page.wait_for_timeout(200)
        task_id = page_data_in(page)["task"]
        if transport == "ws":
            # the camera is muted mid-task (another program took it, its privacy switch): the page
            # says what to do, sends no stale pictures, and goes on by itself when it is unmuted
            page.evaluate(MUTE_JS, True)
            page.wait_for_selector("#gaze-warning[data-code='camera-muted']:not([hidden])")
            text = page.text_content("#gaze-warning")
            assert "no picture" in text and "other programs" in text and "switch" in text, text
            assert "by itself" in text and "reload" not in text
            # the warning stays (face answers do not hide it) and nothing is sent while the page's
            # frame timer ticks 8 times (counted, not timed: a loaded machine's page ticks late)
            sent = page.evaluate("""() => { const c = window.gazepref.gaze, grab = c.grab.bind(c);
                window.mutedTicks = 0; c.grab = () => { window.mutedTicks += 1; grab(); };
                return c.sent; }""")
            wait_for_function(page, "window.mutedTicks >= 8")
            assert page.is_visible("#gaze-warning[data-code='camera-muted']")
            assert page.evaluate("window.gazepref.gaze.sent") <= sent + 2  # (answers of frames already sent)
            page.evaluate(MUTE_JS, False)
            page.wait_for_selector("#gaze-warning", state="hidden")
            wait_for_function(page, f"window.gazepref.gaze.sent > {sent + 5}")  # gaze goes on
            # the camera stops mid-task (unplugged, taken by another program)
            page.evaluate("window.gazepref.gaze.stream.getVideoTracks().forEach((t) => t.stop())")
            page.wait_for_selector("#gaze-warning[data-code='camera-stopped']:not([hidden])")
            text = page.text_content("#gaze-warning")
            assert "camera stopped" in text and "reload the page" in text and "face the camera" not in text
            # and the task's events say so: a gap in the gaze reads as what it was
            page.evaluate("window.gazepref.recorder.flush()")
            wait_for_function(page, "window.gazepref.recorder.outbox.pending === 0")
            with wapp.extensions["gazepref"].sessions() as dbs:
                events = store.read_stream(dbs, dbs.get(store.Task, task_id), "events").to_pandas()
            camera = [e for e in events["type"] if e.startswith("camera-")]
            assert camera == ["camera-muted", "camera-back", "camera-stopped"], camera
        ctx.close()

    with wapp.extensions["gazepref"].sessions() as dbs:
        cals = dbs.scalars(select(store.Calibration).order_by(store.Calibration.id)).all()
        assert [c.kind for c in cals] == ["calibration", "validation", "outcome"]
        assert cals[0].model and cals[0].result["frames"] >= 5 * 3
        task = dbs.get(store.Task, task_id)
        gz = store.read_stream(dbs, task, "gaze").to_pandas()
        mouse = store.read_stream(dbs, task, "mouse").to_pandas()
        assert len(gz) >= 25 and len(mouse) >= 10
        found = (gz["flags"].astype(int) & GazeFlag.NO_FACE) == 0
        cal_found = cals[0].result["face_found"] / cals[0].result["frames"]
        assert found.mean() >= 0.95 and cal_found >= 0.95, (found.mean(), cal_found)
        assert np.isfinite(gz["x"][found]).all()  # the task used the calibrated tracker
        # one clock: the mouse moves happened while gaze streamed, so the ranges overlap
        g0, g1, m0, m1 = gz["t"].min(), gz["t"].max(), mouse["t"].min(), mouse["t"].max()
        assert g0 < m1 and m0 < g1, (g0, g1, m0, m1)
        assert g0 <= m0 <= g1 and 0 < g1 - g0 < 60_000


@pytest.mark.browser
@pytest.mark.parametrize("fallback, state, says, compute", [
    ("mouse-only", "failed", "goes on without it", "server"),
    ("record-uncalibrated", "uncalibrated", "camera will be on again", "browser")])
def test_head_and_shoulders_setup_passes_and_a_frame_starved_calibration_is_repeated(make_app, tmp_path, fallback,
                                                                                      state, says, compute):
    """A normal laptop framing (the whole astronaut photo: eye span ~9 % of the width) turns the
    indicator green. Then the camera gives 1 frame a second: no dot gets its 5 usable frames
    within the time limit, so each round ends early, the server refuses it, the page asks to try
    again, and after the last attempt the study's fallback applies: nothing is accepted as a
    calibration, and the page says whether the camera comes back for the tasks. Both ways of
    computing the landmarks: the page's (its samples) and the server's (pictures)."""
    from gazepref.signals.synthetic_face import head_and_shoulders

    video = write_y4m(tmp_path / "hs.y4m", [head_and_shoulders((320, 240))] * 10, fps=10)
    path = write_webcam_toml(tmp_path / "starved.toml", "\n".join(
        ["fps = 1", "min_frames = 5", "target_timeout_ms = 1000", "setup_timeout_s = 0",
         f'calibration_fallback = "{fallback}"', f'compute = "{compute}"']))
    path.write_text(path.read_text().replace("attempts = 1", "attempts = 2"))
    app = make_app(STUDY_CONFIG=str(path))
    with browser_page(app, video) as page:
        to_calibration_page(page, "CAM-HS")
        page.wait_for_selector("#face-status.ok[data-code='ok']")  # green for a head-and-shoulders framing
        for attempt in range(2):
            page.click("#start-calibration")
            page.wait_for_selector("#target[data-key='calibration:0']:not([hidden])")
            assert "dot 1 of 5" in page.text_content("#stage-progress")
            page.wait_for_timeout(750)
            page.click("#target")
            page.wait_for_selector("#calibration-result:not([hidden])")
            if attempt == 0:
                assert "too few clear pictures" in page.text_content("#calibration-result")
                assert page.is_hidden("#continue") and page.text_content("#start-calibration") == "Try again"
        page.wait_for_selector("#continue:not([hidden])")
        assert "could not be calibrated" in page.text_content("#calibration-result")
        assert says in page.text_content("#calibration-result")
        assert "px" not in page.text_content("#calibration-result")
        assert page.get_attribute("#face-status", "data-code") == "off", "no green indicator over a stopped camera"
        rounds = page.evaluate("window.gazepref.calibration.rounds")
        assert [(r["kind"], r["status"], r["starved"]) for r in rounds] == [("calibration", 422, True)] * 2
        page.click("#continue")
        page.wait_for_selector("[name='understand_before']")  # the fallback: the study goes on
    with app.extensions["gazepref"].sessions() as dbs:
        cals = dbs.scalars(select(store.Calibration).order_by(store.Calibration.id)).all()
        assert [(c.kind, c.model is None) for c in cals] == [("calibration", True)] * 2 + [("outcome", True)]
        assert all(c.result["starved"] == [0] and c.result["usable_per_target"][0] < 5 for c in cals[:2])
        p = dbs.scalars(select(store.Participant)).one()
        assert p.state["gaze"] == state


@pytest.mark.browser
def test_a_covered_camera_is_called_dark_and_the_set_up_offers_a_way_on(make_app, tmp_path):
    """A black picture is called dark, and the way on comes after the time limit, counted from
    the set-up's first start: a participant who reloads the red set-up does not wait it out again."""
    video = write_y4m(tmp_path / "black.y4m", [np.zeros((240, 320, 3), np.uint8)] * 5)
    path = write_webcam_toml(tmp_path / "dark.toml", "setup_timeout_s = 2")
    app = make_app(STUDY_CONFIG=str(path))
    with browser_page(app, video) as page:
        to_calibration_page(page, "CAM-DARK")
        page.wait_for_selector("#face-status[data-code='dark']")
        assert "covered" in page.text_content("#face-status") and page.is_disabled("#start-calibration")
        page.wait_for_selector("#setup-way-on:not([hidden])")  # after setup_timeout_s
        assert page.is_enabled("#start-calibration") and "anyway" in page.text_content("#start-calibration")
        assert not page.is_visible("#face-status.ok")
        page.reload()
        wait_for_function(page, "window.gazepref && window.gazepref.calibration")
        # the set-up started before this page load: its time limit is not restarted
        assert page.evaluate("performance.now() - window.gazepref.calibration.started") > 2000
        page.wait_for_selector("#setup-way-on:not([hidden])")
        page.click("#skip-camera")  # optional study: on without eye tracking
        page.wait_for_selector("[name='understand_before']")
    from gazepref.capture_site.quality import stop_reason

    with app.extensions["gazepref"].sessions() as dbs:
        p = dbs.scalars(select(store.Participant)).one()
        assert p.state["gaze"] == "skipped"  # the camera worked: not "no-camera"
        _, why = stop_reason(p, dt.datetime.now(dt.timezone.utc), None, "pre:0")
        assert why.startswith("skipped the camera set-up (no face in the camera picture (dark") and "continued mouse-only" in why, why


@contextmanager
def green_set_up(make_app, tmp_path, video, pid: str, gaze: str):
    """(app, page): the webcam test study with ``gaze`` lines, the participant ``pid`` on its
    camera set-up in Chromium (``video`` as the webcam), the face well placed."""
    app = make_app(STUDY_CONFIG=str(write_webcam_toml(tmp_path / f"{pid}.toml", gaze)))
    with browser_page(app, video) as page:
        to_calibration_page(page, pid)
        page.wait_for_selector("#face-status.ok[data-code='ok']")
        yield app, page


@pytest.mark.browser
def test_a_camera_that_stops_after_the_set_up_went_green_offers_a_way_on(make_app, tmp_path, face_y4m):
    """Green, then the camera stops (unplugged, taken by another program): Start calibration is
    off (a round could only burn an attempt), Try the camera again is offered, and in an optional
    study going on without eye tracking. Before, Start stayed on (the set-up had been green once)
    and two attempts were spent on a dead camera. A face out of the picture for a while also
    turns Start off: the button follows the indicator (next test)."""
    with green_set_up(make_app, tmp_path, face_y4m, "CAM-STOPS", "setup_timeout_s = 0") as (app, page):
        page.wait_for_selector("#start-calibration:not([disabled])")
        assert page.is_hidden("#retry-camera") and page.is_hidden("#skip-camera")
        page.evaluate("window.gazepref.calibration.capture.stream.getVideoTracks().forEach((t) => t.stop())")
        page.wait_for_selector("#face-status[data-code='stopped']")
        page.wait_for_selector("#retry-camera:not([hidden])")
        assert page.is_disabled("#start-calibration")
        assert "Try the camera again" in page.text_content("#face-status")
        page.click("#skip-camera")  # optional study: on without eye tracking
        page.wait_for_selector("[name='understand_before']")
    with app.extensions["gazepref"].sessions() as dbs:
        p = dbs.scalars(select(store.Participant)).one()
        assert p.state["gaze"] == "skipped" and not dbs.scalars(select(store.Calibration)).all(), "no attempt spent"


#: the page as the browser makes it when another tab comes in front (``"hidden"``) and back
HIDE_JS = """(state) => {
    Object.defineProperty(document, "visibilityState", { get: () => state, configurable: true });
    document.dispatchEvent(new Event("visibilitychange"));
}"""


@pytest.mark.browser
@pytest.mark.parametrize("how", ["camera stops", "page out of sight"])
def test_a_dot_the_camera_or_the_participant_left_spends_no_attempt(make_app, tmp_path, face_y4m, how):
    """A calibration dot clicked, then the camera stops (unplugged, taken) or the page goes out of
    sight (another tab in front) while the dot waits for its pictures: the round is not sent and
    spends no attempt (with ``attempts = 1`` it was the whole calibration: failed, or screened
    out), and the page says why instead of blaming the pictures; a page out of sight takes no
    picture (it took them, and a dot counted pictures of eyes looking elsewhere). An answer on its
    way when the camera stopped does not turn the indicator green again."""
    with green_set_up(make_app, tmp_path, face_y4m, "CAM-LEFT", "setup_timeout_s = 0\ntarget_timeout_ms = 1500") as (app, page):
        page.click("#start-calibration")
        page.wait_for_selector("#target:not([hidden])")
        if how == "page out of sight":  # at once: no picture of the dot is taken
            page.evaluate(HIDE_JS, "hidden")
        page.wait_for_timeout(500)
        page.evaluate("""() => {  // the indicator's codes from now on
            window.codes = [];
            const el = document.getElementById("face-status");
            new MutationObserver(() => window.codes.push(el.dataset.code)).observe(el, { attributes: true });
        }""")
        if how == "page out of sight":
            taken = page.evaluate("window.gazepref.calibration.capture.sent")
        page.click("#target")
        if how == "camera stops":
            page.evaluate("window.gazepref.calibration.capture.stream.getVideoTracks().forEach((t) => t.stop())")
        else:
            page.wait_for_timeout(3000)  # the dot's wait (1.5 s) runs out while out of sight
            assert page.evaluate("window.gazepref.calibration.capture.sent") - taken <= 2, "pictures out of sight"
            page.evaluate(HIDE_JS, "visible")
        page.wait_for_selector("#calibration-result:not([hidden])")
        result = page.text_content("#calibration-result")
        assert "not counted" in result and "too few clear pictures" not in result, result
        page.wait_for_timeout(1500)
        if how == "camera stops":
            assert "camera stopped" in result and page.is_visible("#retry-camera") and page.is_disabled("#start-calibration")
            codes = page.evaluate("window.codes")
            assert "stopped" in codes and "ok" not in codes[codes.index("stopped"):], codes
        else:
            assert "out of sight" in result
            page.wait_for_selector("#start-calibration:not([disabled])")
            assert page.text_content("#start-calibration") == "Try again"
        assert page.is_hidden("#continue")
    with app.extensions["gazepref"].sessions() as dbs:
        assert not dbs.scalars(select(store.Calibration)).all(), "no round sent, no attempt spent"


@pytest.mark.browser
def test_a_window_resized_during_the_dots_ends_the_round_and_the_page_under_them_takes_no_focus(
        make_app, tmp_path, face_y4m):
    """The window made smaller (or zoomed) while the dots are shown: the round ends at once, not
    sent, no attempt spent, and the page says why; the next round's dots are in the new window.
    Before, the rest of the dots were drawn where the old window was (off screen: a participant
    with a mouse was stuck, and Enter on the unseen dot sent targets the eyes never saw, which the
    server fitted). While the dots are shown, Tab does not reach the links under them (Enter then
    opened the withdrawal page in the middle of a round)."""
    with green_set_up(make_app, tmp_path, face_y4m, "CAM-RESIZE", "setup_timeout_s = 0") as (app, page):
        page.click("#start-calibration")
        _click_dot(page, "calibration:0")
        page.wait_for_selector("#target[data-key='calibration:1']:not([hidden])", timeout=30_000)
        assert page.evaluate("document.getElementById('withdraw-link').closest('[inert]') !== null")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") != "withdraw-link"
        page.keyboard.press("Enter")
        assert page.url.endswith("/step")
        size = page.viewport_size  # (smaller, above the study's min_viewport: its own page would show)
        page.set_viewport_size({"width": size["width"] - 180, "height": size["height"] - 100})
        page.wait_for_selector("#calibration-result:not([hidden])")
        result = page.text_content("#calibration-result")
        assert "not counted" in result and "changed size" in result, result
        assert page.evaluate("document.getElementById('withdraw-link').closest('[inert]') === null")
        page.wait_for_selector("#start-calibration:not([disabled])")
        page.click("#start-calibration")
        for key in ("calibration:0", "calibration:1"):  # the dots of the new round: in the window as it is
            page.wait_for_selector(f"#target[data-key='{key}']:not([hidden])", timeout=30_000)
            box = page.evaluate("(() => { const r = document.getElementById('target').getBoundingClientRect();"
                                " return [r.left, r.top, r.right, r.bottom, innerWidth, innerHeight]; })()")
            assert 0 <= box[0] and 0 <= box[1] and box[2] <= box[4] and box[3] <= box[5], box
            _click_dot(page, key)
    with app.extensions["gazepref"].sessions() as dbs:
        assert not dbs.scalars(select(store.Calibration)).all(), "no round sent, no attempt spent"


def _click_dot(page, key: str) -> None:
    page.wait_for_selector(f"#target[data-key='{key}']:not([hidden])", timeout=30_000)
    page.wait_for_timeout(350)  # (a click within 300 ms is too quick)
    page.click("#target")


@pytest.mark.browser
def test_a_check_cut_short_is_repeated_alone_and_a_camera_pause_spends_nothing(make_app, tmp_path, face_y4m):
    """The check's first dot while the page is out of sight: the check is not sent and, on Try
    again, repeated alone (its calibration round is stored: another calibration round would count
    towards the step's bounded rounds, and two such checks ended a one-attempt step). A camera
    that pauses for a moment while a dot waits (a privacy shutter slid and back) costs nothing
    either: it was sent as a starved round when the picture was back by the dot's end."""
    mute = """(muted) => {
        for (const t of window.gazepref.calibration.capture.stream.getVideoTracks()) {
            Object.defineProperty(t, "muted", { get: () => muted, configurable: true });
            t.dispatchEvent(new Event(muted ? "mute" : "unmute"));
        }
    }"""
    gaze = "setup_timeout_s = 0\ntarget_timeout_ms = 1500\nvalidation_points = 1"
    with green_set_up(make_app, tmp_path, face_y4m, "CAM-CHECK", gaze) as (app, page):
        page.click("#start-calibration")
        page.wait_for_selector("#target[data-key='calibration:0']:not([hidden])")
        page.wait_for_timeout(350)
        page.evaluate(mute, True)  # paused as the dot is clicked, back as its wait ends (1.5 s)
        page.click("#target")
        page.wait_for_timeout(1700)
        page.evaluate(mute, False)
        page.wait_for_selector("#calibration-result:not([hidden])")
        result = page.text_content("#calibration-result")
        assert "not counted" in result and "paused" in result, result
        page.wait_for_selector("#start-calibration:not([disabled])")
        page.click("#start-calibration")
        for i in range(5):
            _click_dot(page, f"calibration:{i}")
        page.wait_for_selector("#target[data-key='validation:0']:not([hidden])", timeout=30_000)
        page.evaluate(HIDE_JS, "hidden")  # at once: no picture of the dot is taken
        page.wait_for_timeout(350)
        page.click("#target")
        page.wait_for_timeout(3000)  # the dot's wait runs out while out of sight
        page.evaluate(HIDE_JS, "visible")
        page.wait_for_selector("#calibration-result:not([hidden])")
        assert "out of sight" in page.text_content("#calibration-result")
        page.wait_for_selector("#start-calibration:not([disabled])")
        page.click("#start-calibration")
        _click_dot(page, "validation:0")  # the check alone: no calibration dot first
        page.wait_for_selector("#continue:not([hidden])", timeout=30_000)
        assert page.evaluate("window.gazepref.calibration.rounds.map((r) => r.kind)") == [
            "interrupted", "calibration", "interrupted", "validation"]
    with app.extensions["gazepref"].sessions() as dbs:
        kinds = [c.kind for c in dbs.scalars(select(store.Calibration).order_by(store.Calibration.id))]
    assert kinds == ["calibration", "validation", "outcome"], kinds


@pytest.mark.browser
def test_a_round_lost_to_a_dropped_connection_is_said_and_repeated_without_ending_the_step(make_app, tmp_path,
                                                                                          face_y4m):
    """The connection drops while a round is sent (fetch fails: Wi-Fi gone): the page says so and
    counts nothing; Try again repeats that round (a check alone: its calibration round is stored).
    Before, the round vanished without a word (an uncaught "Failed to fetch"), a lost check was
    followed by a whole new calibration, and two such drops used up a one-attempt step's rounds:
    "could not be calibrated", the study went on without eye tracking."""
    import re

    sent: list[str] = []

    def drop_the_first_of_each_kind(route):  # (JSON in browser mode, multipart in server mode)
        kind = re.search(rb'"kind": ?"(\w+)"', route.request.post_data_buffer).group(1).decode()
        sent.append(kind)
        route.abort("internetdisconnected") if sent.count(kind) == 1 else route.continue_()

    def lost(page) -> None:
        page.wait_for_selector("#calibration-result:not([hidden])")
        result = page.text_content("#calibration-result")
        assert "connection to the study dropped" in result and "may not have arrived" in result, result
        page.wait_for_selector("#start-calibration:not([disabled])")

    errors: list[str] = []
    gaze = "setup_timeout_s = 0\nvalidation_points = 1"  # (one attempt: the test study's)
    with green_set_up(make_app, tmp_path, face_y4m, "CAM-NET", gaze) as (app, page):
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/api/gaze/round", drop_the_first_of_each_kind)
        page.wait_for_selector("#start-calibration:not([disabled])")
        page.click("#start-calibration")
        for i in range(5):
            _click_dot(page, f"calibration:{i}")
        lost(page)  # the calibration round
        page.click("#start-calibration")
        for i in range(5):
            _click_dot(page, f"calibration:{i}")
        _click_dot(page, "validation:0")
        lost(page)  # its check
        page.click("#start-calibration")
        _click_dot(page, "validation:0")  # the check alone: no calibration dot first
        page.wait_for_selector("#continue:not([hidden])", timeout=30_000)
        assert "Calibration done" in page.text_content("#calibration-result")
    assert sent == ["calibration", "calibration", "validation", "validation"] and not errors, (sent, errors)
    with app.extensions["gazepref"].sessions() as dbs:
        rows = dbs.scalars(select(store.Calibration).order_by(store.Calibration.id)).all()
        assert [c.kind for c in rows] == ["calibration", "validation", "outcome"]
        assert rows[-1].result["passed"] is True


@pytest.mark.browser
def test_a_dot_starved_because_its_samples_could_not_reach_the_server_spends_nothing(make_app, tmp_path, face_y4m):
    """The connection drops while a dot is shown (browser mode: a picture is usable once the
    server's answer to its sample says so): the dot starves, and the round is not sent; the page
    says the connection dropped. Before, it was sent as frame-starved once the connection was back,
    spending the step's one attempt: "could not be calibrated", on without eye tracking."""
    gaze = 'compute = "browser"\nfps = 5\ntarget_timeout_ms = 1500\nsetup_timeout_s = 0\nvalidation_points = 1'
    rounds: list[str] = []
    with green_set_up(make_app, tmp_path, face_y4m, "CAM-OFFLINE", gaze) as (app, page):
        page.on("request", lambda r: rounds.append(r.url) if r.url.endswith("/api/gaze/round") else None)
        page.wait_for_selector("#start-calibration:not([disabled])")
        page.click("#start-calibration")
        page.wait_for_selector("#target[data-key='calibration:0']:not([hidden])")
        page.route("**/api/gaze/samples", lambda route: route.abort("internetdisconnected"))  # offline ...
        page.wait_for_timeout(350)
        page.click("#target")
        page.wait_for_selector("#calibration-result:not([hidden])", timeout=30_000)
        result = page.text_content("#calibration-result")
        assert "not counted" in result and "connection to the study dropped while a dot was shown" in result, result
        page.unroute("**/api/gaze/samples")  # ... and back
        page.wait_for_selector("#start-calibration:not([disabled])", timeout=30_000)
    assert rounds == []
    with app.extensions["gazepref"].sessions() as dbs:
        assert dbs.scalars(select(store.Calibration)).all() == []


@pytest.mark.browser
def test_the_dot_screens_texts_stay_apart_at_a_very_large_browser_text_size(make_app, tmp_path, face_y4m):
    """The browser's text size set to "very large" (32 px; body text follows it since 08 Dec 2026):
    on the dot screen (1280 x 720 here) the instructions and progress do not run under the face
    status (they did: y 426-692 against 659-712)."""
    overlap = """() => {
        const a = document.getElementById("stage-help").getBoundingClientRect();
        const b = document.getElementById("stage-status").getBoundingClientRect();
        return [a.top, a.bottom, b.top, b.bottom, a.bottom > b.top && b.bottom > a.top && a.right > b.left && b.right > a.left];
    }"""
    with green_set_up(make_app, tmp_path, face_y4m, "CAM-BIG-TEXT", "setup_timeout_s = 0") as (app, page):
        page.set_viewport_size({"width": 1280, "height": 720})
        page.context.new_cdp_session(page).send("Page.setFontSizes", {"fontSizes": {"standard": 32, "fixed": 26}})
        assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") == 32  # (it took)
        page.wait_for_selector("#start-calibration:not([disabled])")
        page.click("#start-calibration")
        page.wait_for_selector("#target[data-key='calibration:0']:not([hidden])")
        page.wait_for_selector("#stage-status:not(:empty)")
        *where, overlaps = page.evaluate(overlap)
        assert not overlaps, where


@pytest.mark.browser
def test_a_check_that_reached_the_server_but_whose_answer_was_lost_shows_the_decided_step(make_app, tmp_path,
                                                                                         face_y4m):
    """The check reaches the server (stored; it passed and decided the step) and the connection
    drops before its answer arrives: Try again sends the check again, the server answers 409 (the
    step is decided), and the page is loaded again, showing the outcome. Before, each Try again
    said "The check failed (... not yet decided)" or "Calibration failed", Continue never came,
    and the participant, who had passed, was stuck until they reloaded by hand."""
    sent: list[str] = []

    def lose_the_first_checks_answer(route):
        kind = "validation" if b'"validation"' in route.request.post_data_buffer else "calibration"
        sent.append(kind)
        if kind == "validation" and sent.count("validation") == 1:
            route.fetch()  # reaches the server: stored, the step decided ...
            route.abort("internetdisconnected")  # ... and the answer never reaches the page
        else:
            route.continue_()

    gaze = "setup_timeout_s = 0\nvalidation_points = 1"  # (one attempt: the test study's)
    with green_set_up(make_app, tmp_path, face_y4m, "CAM-LOST", gaze) as (app, page):
        page.route("**/api/gaze/round", lose_the_first_checks_answer)
        page.wait_for_selector("#start-calibration:not([disabled])")
        page.click("#start-calibration")
        for i in range(5):
            _click_dot(page, f"calibration:{i}")
        _click_dot(page, "validation:0")
        page.wait_for_selector("#calibration-result:not([hidden])")
        assert "may not have arrived" in page.text_content("#calibration-result")
        page.wait_for_selector("#start-calibration:not([disabled])")
        with page.expect_navigation(timeout=30_000):
            page.click("#start-calibration")
            _click_dot(page, "validation:0")  # the check again: the server has it
        page.wait_for_selector("#continue:not([hidden])", timeout=30_000)
        assert "Calibration done" in page.text_content("#calibration-result")
    assert sent == ["calibration", "validation", "validation"], sent
    with app.extensions["gazepref"].sessions() as dbs:
        rows = dbs.scalars(select(store.Calibration).order_by(store.Calibration.id)).all()
        assert [c.kind for c in rows] == ["calibration", "validation", "outcome"] and rows[-1].result["passed"]


@pytest.mark.browser
def test_start_goes_off_when_the_picture_turns_dark(make_app, tmp_path):
    """The face well placed, then the camera picture goes black (covered) for a moment: Start
    calibration is off as the indicator turns red, not ~3 s later (the grace for a late answer),
    and on again with the face. Before, a participant pressing it under the red indicator spent an
    attempt on a round the server could only refuse. The way on does not come with it: its time
    limit (4 s) counts from the last moment the face was well placed, and the dark moment is
    shorter (a first version of this fix counted from the set-up's start then, and offered it)."""
    face_then_dark = [moving(i % 40) for i in range(60)] + [np.zeros((240, 320, 3), np.uint8)] * 15
    video = write_y4m(tmp_path / "face-dark.y4m", face_then_dark, fps=10)
    app = make_app(STUDY_CONFIG=str(write_webcam_toml(tmp_path / "fd.toml", "setup_timeout_s = 4")))
    with browser_page(app, video) as page:
        to_calibration_page(page, "CAM-FD")
        page.wait_for_selector("#face-status.ok[data-code='ok']")
        page.wait_for_selector("#start-calibration:not([disabled])")
        for _ in range(2):  # the video loops: 6 s of face, 1.5 s dark
            page.wait_for_selector("#face-status[data-code='dark']")
            assert page.is_disabled("#start-calibration"), "Start on under a dark picture"
            page.wait_for_selector("#face-status.ok[data-code='ok']")
            page.wait_for_selector("#start-calibration:not([disabled])")
            assert page.is_hidden("#setup-way-on"), "the way on offered after a dark moment"
    with app.extensions["gazepref"].sessions() as dbs:
        assert not dbs.scalars(select(store.Calibration)).all()


@pytest.mark.browser
def test_a_denied_camera_says_how_to_allow_it_again(wapp, face_y4m):
    with browser_page(wapp, face_y4m, allow=False) as page:
        to_calibration_page(page, "CAM-DENIED")
        page.wait_for_selector("#camera-error:not([hidden])")
        text = page.text_content("#camera-error")
        assert "denied" in text and all(b in text for b in ("Chrome", "Firefox", "Safari")), text
        assert page.is_visible("#retry-camera") and page.is_visible("#continue")
        # no empty black preview above the message: on a 1280 x 720 laptop the way on (Try the
        # camera again, Continue) is in view without scrolling (it was below the fold)
        assert page.is_hidden("#camera-preview")
        page.set_viewport_size({"width": 1280, "height": 720})
        for button in ("#retry-camera", "#continue"):
            assert page.locator(button).bounding_box()["y"] + page.locator(button).bounding_box()["height"] <= 720, button
        for size in ({"width": 1024, "height": 600}, {"width": 1280, "height": 800}, {"width": 1920, "height": 1080}):
            page.set_viewport_size(size)
            assert page.evaluate(DOTS_CLEAR_JS) == [], size


@pytest.mark.browser
def test_leaving_a_webcam_study_without_a_camera_is_asked_once_more(make_app, tmp_path, webcam_toml, face_y4m):
    """A required webcam, the camera denied: "Leave the study" (final: the screen-out page) sits
    beside "Try the camera again"; it asks before leaving, and a "no" keeps the participant here."""
    path = tmp_path / "required.toml"
    path.write_text(webcam_toml.read_text().replace('webcam = "optional"', 'webcam = "required"'))
    app = make_app(STUDY_CONFIG=str(path))
    asked = []
    with browser_page(app, face_y4m, allow=False) as page:
        to_calibration_page(page, "CAM-LEAVE")
        page.wait_for_selector("#camera-error:not([hidden])")
        assert page.text_content("#continue") == "Leave the study"
        page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        page.click("#continue")
        page.wait_for_timeout(300)
        assert page.is_visible("#retry-camera") and len(asked) == 1 and "cannot come back" in asked[0]
        with app.extensions["gazepref"].sessions() as dbs:
            assert "screened_out" not in dbs.scalars(select(store.Participant)).one().state
        page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
        page.click("#continue")
        page.wait_for_selector("#screened-out")
        assert "needs a working webcam" in page.text_content("body") and len(asked) == 2
    with app.extensions["gazepref"].sessions() as dbs:
        assert dbs.scalars(select(store.Participant)).one().state["screened_out"]["reason"] == "no-camera"


#: Every dot of the 5/9/13-point grids as calibration.js shows it (placeDot), with the stage's
#: instructions and progress and the longest face status: [grid, dot, element] where they overlap
#: or the instructions are hidden.
DOTS_CLEAR_JS = """async () => {
  const m = await import(document.querySelector("script[src$='calibration.js']").src);
  const stage = document.getElementById("calibration-stage");
  stage.hidden = false;
  document.getElementById("stage-status").textContent =
    "The camera stopped sending pictures. Is it covered or used by another program?";
  const bad = [];
  for (const n of [5, 9, 13]) {
    for (const [i, [x, y]] of m.grid(n, innerWidth, innerHeight).entries()) {
      m.showProgress("calibration", i, n);
      m.placeDot(x, y, `calibration:${i}`);
      const d = document.getElementById("target").getBoundingClientRect();
      for (const id of ["stage-help", "stage-status"]) {
        const el = document.getElementById(id);
        const r = el.getBoundingClientRect();
        const hidden = getComputedStyle(el).visibility === "hidden";
        if (hidden && id === "stage-help") bad.push([n, i + 1, id, "hidden"]);
        else if (!hidden && r.left < d.right && d.left < r.right && r.top < d.bottom && d.top < r.bottom) bad.push([n, i + 1, id]);
      }
    }
  }
  stage.hidden = true;
  return bad;
}"""


def page_data_in(page) -> dict:
    return json.loads(page.text_content("#page-data"))


def test_load_shedding_keeps_late_frames_as_dropped_rows(make_app, webcam_toml):
    app = make_app(STUDY_CONFIG=str(webcam_toml), GAZE_SHED_MS=1e-6)  # always behind
    client = app.test_client()
    token, task_id = to_task(client)
    meta = {"phase": "task", "task": task_id, "seq": 0, "origin": 1.7e12, "t": [10.0, 110.0]}
    r = post_frames(client, token, meta, [jpeg(moving(0)), jpeg(moving(1))])
    assert r.status_code == 200 and r.json["dropped"] == 2 and r.json["stored"] == 2, r.json
    with app.extensions["gazepref"].sessions() as dbs:
        table = store.read_stream(dbs, dbs.get(store.Task, task_id), "gaze").to_pandas()
        assert table["t"].tolist() == [10.0, 110.0] and (table["flags"] & GazeFlag.DROPPED == GazeFlag.DROPPED).all()


@pytest.mark.parametrize("how", ["no-camera", "mouse-only", "record-uncalibrated"])
def test_task_frames_of_a_session_without_the_webcam_are_refused(make_app, tmp_path, how):
    """A session that went on without the webcam (no camera at the set-up; a failed calibration
    with the mouse-only fallback) has task pages that send nothing: frames posted for its tasks
    anyway (a script, a stale page) are refused, 409, and nothing is stored, pictures included
    with keep_frames. Before, they were stored and their pictures kept. With record-uncalibrated
    the task frames are recorded without gaze, as the study asks."""
    consent = "camera_images = true"
    fallback = "record-uncalibrated" if how == "record-uncalibrated" else "mouse-only"
    app = make_app(STUDY_CONFIG=str(write_webcam_toml(tmp_path / "s.toml", f'keep_frames = true\ncalibration_fallback = "{fallback}"',
                                                      consent=consent)))
    client = app.test_client()
    token = to_calibration(client)["token"]
    if how == "no-camera":
        assert answer_step(client, {"outcome": "no-camera"}).status_code == 302
    else:  # a frame-starved round with one attempt: the calibration failed
        assert post_round(client, token, "calibration", CALIBRATION_TARGETS, per_target=[6, 1, 6, 6, 6]).status_code == 422
        assert answer_step(client).status_code == 302
    answer_step(client, {"understand_before": "3"})
    task_id = page_data(client.get("/step").text)["task"]
    meta = {"phase": "task", "task": task_id, "seq": 0, "origin": 1.7e12, "t": [10.0, 110.0]}
    r = post_frames(client, token, meta, [jpeg(moving(0)), jpeg(moving(1))])
    with app.extensions["gazepref"].sessions() as dbs:
        kept = dbs.query(store.GazeFrame).filter(store.GazeFrame.task_id.is_not(None)).count()
        rows = gaze_rows(dbs, task_id)
    if how == "record-uncalibrated":
        assert r.status_code == 200 and r.json["stored"] == 2 and not r.json["calibrated"], r.json
        assert rows == 2 and kept == 2
    else:
        assert r.status_code == 409 and "without the webcam" in r.json["error"], r.json
        assert rows == 0 and kept == 0


def test_bad_gaze_settings_fail_at_start_naming_the_key(make_app, tmp_path, webcam_toml):
    from gazepref.capture_site.app import SiteStartError

    path = tmp_path / "bad.toml"
    path.write_text(webcam_toml.read_text().replace("calibration_points = 5", "calibration_points = 7"))
    with pytest.raises(SiteStartError, match="gaze.calibration_points must be 5, 9 or 13"):
        make_app(STUDY_CONFIG=str(path))


@pytest.mark.browser
def test_no_camera_in_browser_goes_on_mouse_only(wapp):
    with browser_page(wapp, None) as page:  # no camera
        page.goto("/?PROLIFIC_PID=NOCAM&STUDY_ID=S&SESSION_ID=X")
        page.click("#agree")
        page.click("#continue")  # demographics (optional)
        page.click("#continue")  # instructions
        page.wait_for_selector("#camera-error:not([hidden])")
        text = page.text_content("#camera-error")
        assert "No camera was found" in text and "connected" in text and "continue without eye tracking" in text
        assert page.is_visible("#retry-camera")
        page.click("#continue")
        page.wait_for_selector("[name='understand_before']")  # the pre-task questions: the study went on
    with wapp.extensions["gazepref"].sessions() as s:  # kept for the dashboard (why people stop)
        [p] = s.scalars(select(store.Participant)).all()
        assert p.state["gaze"] == "no-camera" and p.state["setup"]["camera_error"] in ("not-found", "failed", "denied")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_calibration_round_under_way_when_the_data_is_deleted_stores_nothing(make_app, tmp_path, request, kind):
    """The researchers' "Delete data" (or a withdrawal in another tab) commits while a calibration
    round of that participant is being processed (seconds of face tracking after its consent
    check): the round's Calibration row (the fitted model) and its kept camera pictures must not
    be stored on the marker row, which still satisfies their foreign keys. The page gets the 401
    of a participant no longer in the study. SQLite and PostgreSQL."""
    import uuid

    from sqlalchemy import event

    from gazepref.capture_site.purge import purge_participant

    url = request.getfixturevalue("postgres_url") if kind == "postgresql" else None
    toml = write_webcam_toml(tmp_path / "kept.toml", 'keep_frames = true', "camera_images = true")
    app = make_app(STUDY_CONFIG=str(toml), **({"DATABASE_URL": url} if url else {}))
    client = app.test_client()
    token = to_calibration(client, f"CAM-GONE-{uuid.uuid4().hex[:8]}")["token"]
    with client.session_transaction() as sess:
        pid = sess["pid"]
    armed = [True]

    def researchers_delete(target, _context):
        if armed[0] and target.id == pid:  # just after the round's consent check read the row
            armed[0] = False
            with app.extensions["gazepref"].sessions() as s:
                purge_participant(s, s.get(store.Participant, pid))
                s.commit()

    event.listen(store.Participant, "load", researchers_delete)
    try:
        r = post_round(client, token, "calibration", CALIBRATION_TARGETS)
    finally:
        event.remove(store.Participant, "load", researchers_delete)
    assert not armed[0]
    with app.extensions["gazepref"].sessions() as s:
        assert set(s.get(store.Participant, pid).state) == {"deleted"}
        for table in (store.Calibration, store.GazeFrame):
            assert s.scalars(select(table.id).where(table.participant_id == pid)).all() == [], table
    assert r.status_code == 401, (r.status_code, r.json)
