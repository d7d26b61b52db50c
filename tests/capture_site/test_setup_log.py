"""The set-up summary (frames seen at the camera set-up) is added to, not overwritten, when
several app servers serve one participant's frames."""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from gazepref import store


def test_two_servers_add_their_set_up_frames(make_app, tmp_path):
    from gazetest import post_frames, to_calibration, webcam_toml

    from gazepref.signals.synthetic_face import jpeg

    toml = str(webcam_toml(tmp_path / "webcam.toml"))
    first, second = make_app(STUDY_CONFIG=toml), make_app(STUDY_CONFIG=toml)  # two servers, one database
    assert first.extensions["gazepref"] is not second.extensions["gazepref"]
    token = to_calibration(first.test_client(), "CAM-TWO")["token"]
    dark = jpeg(np.zeros((240, 320, 3), np.uint8))
    for i, app in enumerate([first, second, first]):
        r = post_frames(app.test_client(), token, {"phase": "setup", "t": [i * 300.0 + k for k in (0, 100)]},
                        [dark] * 2)
        assert r.status_code == 200
    with first.extensions["gazepref"].sessions() as s:
        setup = s.scalars(select(store.Participant)).one().state["setup"]
    # the first server's second batch is pending (same message, within WRITE_EVERY_S): 4 written
    assert setup["frames"] == 4 and setup["face_found"] == 0 and sum(setup["codes"].values()) == 4

    # the shutdown writes what the first server still holds (flush_pending): all 6 frames
    from gazepref.capture_site.setup_log import flush_pending

    with first.app_context():
        assert flush_pending() == 1
        assert flush_pending() == 0  # nothing twice
    with first.extensions["gazepref"].sessions() as s:
        setup = s.scalars(select(store.Participant)).one().state["setup"]
    assert setup["frames"] == 6 and sum(setup["codes"].values()) == 6


def test_counts_written_late_keep_the_time_their_frames_came(make_app, tmp_path, monkeypatch):
    """The shutdown writes the set-up frames a server still holds (the last few seconds before the
    participant started the calibration): their summary keeps the time those frames came, not the
    time of the restart. Stamped at the write, a restart an hour later made a participant who had
    stopped at the set-up "in progress" again (and lengthened every finished one's duration)."""
    import datetime as dt

    from gazetest import webcam_toml

    from gazepref.capture_site.quality import participant_quality
    from gazepref.capture_site.setup_log import flush_pending

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam.toml")))
    _two_dark_batches(app, "CAM-LATE")  # the second stays pending
    came = store.utcnow()
    restart = came + dt.timedelta(hours=1)
    monkeypatch.setattr(store, "utcnow", lambda: restart)  # the shutdown, an hour later
    with app.app_context():
        assert flush_pending() == 1
    with app.extensions["gazepref"].sessions() as s:
        setup = s.scalars(select(store.Participant)).one().state["setup"]
        [row] = participant_quality(s, s.scalars(select(store.Study)).one(), now=restart + dt.timedelta(minutes=1))
    assert setup["frames"] == 4 and dt.datetime.fromisoformat(setup["updated_at"]) <= came
    assert row["status"] == "stopped" and row["reason"].startswith("at the camera set-up: no face")


def _stopped_reason(app) -> str:
    import datetime as dt

    from gazepref.capture_site.quality import participant_quality

    with app.extensions["gazepref"].sessions() as s:
        later = store.utcnow() + dt.timedelta(hours=1)
        [row] = participant_quality(s, s.scalars(select(store.Study)).one(), now=later)
    assert row["status"] == "stopped"
    return row["reason"]


def test_frames_after_a_camera_error_supersede_it(make_app, tmp_path):
    """A participant who denied the camera, allowed it on "Try the camera again" and then stopped
    at the set-up is reported with what the camera showed, not the old "camera access denied"."""
    import time

    from gazetest import post_frames, to_calibration, webcam_toml

    from gazepref.signals.synthetic_face import jpeg

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam.toml")))
    client = app.test_client()
    gaze = to_calibration(client, "CAM-RETRY")
    headers = {"X-Participant-Token": gaze["token"]}
    assert client.post(gaze["urls"]["camera_error"], json={"reason": "denied"}, headers=headers).status_code == 200
    assert _stopped_reason(app) == "at the camera set-up: camera access denied"
    time.sleep(0.01)  # the frames come after the error
    dark = jpeg(np.zeros((240, 320, 3), np.uint8))
    assert post_frames(client, gaze["token"], {"phase": "setup", "t": [0.0, 100.0]}, [dark] * 2).status_code == 200
    reason = _stopped_reason(app)
    assert "denied" not in reason and reason.startswith("at the camera set-up: no face"), reason


def test_a_camera_started_report_supersedes_an_earlier_error(make_app, tmp_path):
    """The set-up page reports that the camera opened (after a retry): the earlier error no longer
    counts, also when no frame arrived before the participant left."""
    from gazetest import to_calibration, webcam_toml

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam.toml")))
    client = app.test_client()
    gaze = to_calibration(client, "CAM-STARTED")
    headers = {"X-Participant-Token": gaze["token"]}
    assert client.post(gaze["urls"]["camera_error"], json={"reason": "not-found"}, headers=headers).status_code == 200
    assert gaze["urls"]["camera_started"]
    assert client.post(gaze["urls"]["camera_started"], headers=headers).status_code == 200
    reason = _stopped_reason(app)
    assert "no camera found" not in reason and "before any frame arrived" in reason, reason
    # a later error counts again
    assert client.post(gaze["urls"]["camera_error"], json={"reason": "denied"}, headers=headers).status_code == 200
    assert _stopped_reason(app) == "at the camera set-up: camera access denied"
    # and someone else's token writes nothing
    assert client.post(gaze["urls"]["camera_started"], headers={"X-Participant-Token": "x"}).status_code == 401


def test_frames_counted_before_a_camera_error_do_not_clear_it(make_app, tmp_path, monkeypatch):
    """Set-up counts written late (the shutdown's flush) of frames that came before the camera
    failed do not hide the error."""
    import datetime as dt

    from gazetest import to_calibration, webcam_toml

    from gazepref.capture_site import setup_log

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam.toml")))
    gaze = to_calibration(app.test_client(), "CAM-LATE-FLUSH")
    with app.extensions["gazepref"].sessions() as s:
        p = s.scalars(select(store.Participant)).one()
        key = (p.id, p.pseudonym)
    before = (store.utcnow() - dt.timedelta(seconds=30)).isoformat()
    with app.app_context():
        setup_log.note_camera_error(key, "failed")
        setup_log._write(key, {"last_code": "no-face"}, {"frames": 2, "face_found": 0, "codes": {"no-face": 2}}, before)
    assert gaze and _stopped_reason(app) == "at the camera set-up: camera could not be started"


def test_counts_a_server_holds_reach_the_database_within_seconds(make_app, tmp_path, monkeypatch):
    """A participant's last set-up frames, held in memory (within WRITE_EVERY_S of the last write),
    are written at the end of a later request of anyone once they are that old, not only at the
    server's shutdown: the dashboard's frames and "why they stopped" of someone who left at the
    set-up (or whose round another host took) were short until then."""
    from types import SimpleNamespace

    from gazetest import webcam_toml

    from gazepref.capture_site import setup_log

    clock = [1000.0]
    monkeypatch.setattr(setup_log, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam.toml")))
    _two_dark_batches(app, "CAM-HELD")  # the second stays pending

    def stored() -> int:
        with app.extensions["gazepref"].sessions() as s:
            return s.scalars(select(store.Participant)).one().state["setup"]["frames"]

    assert stored() == 2
    clock[0] += setup_log.WRITE_EVERY_S + 1
    app.test_client().get("/")  # another participant's request
    assert stored() == 4


def _two_dark_batches(app, pid: str) -> None:
    """A participant at the set-up posts two batches of 2 black frames; the second stays pending
    in this server's memory (same face status, within WRITE_EVERY_S of the first's write)."""
    from gazetest import post_frames, to_calibration

    from gazepref.signals.synthetic_face import jpeg

    client = app.test_client()
    token = to_calibration(client, pid)["token"]
    dark = jpeg(np.zeros((240, 320, 3), np.uint8))
    for t in (0.0, 300.0):
        assert post_frames(client, token, {"phase": "setup", "t": [t, t + 100]}, [dark] * 2).status_code == 200


def test_camera_reports_take_frame_tokens_and_end_with_the_study(make_app, tmp_path):
    """Each camera report is a write of the participant's set-up summary: they take tokens of the
    participant's frame-batch limit (a page posting them in a loop slowed everyone's writes), and
    once the study is over for them the summary stays as the dashboard showed it."""
    from gazetest import to_calibration, webcam_toml

    from gazepref.capture_site.flow import set_state

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam.toml")), GAZE_RATE_PER_S=0.001, GAZE_BURST=3)
    client = app.test_client()
    gaze = to_calibration(client, "CAM-LOOP")
    headers = {"X-Participant-Token": gaze["token"]}
    answers = [client.post(gaze["urls"]["camera_error"], json={"reason": "denied"}, headers=headers).status_code,
               client.post(gaze["urls"]["camera_started"], headers=headers).status_code,
               client.post(gaze["urls"]["camera_error"], json={"reason": "failed"}, headers=headers).status_code,
               client.post(gaze["urls"]["camera_started"], headers=headers).status_code,
               client.post(gaze["urls"]["camera_error"], json={"reason": "denied"}, headers=headers).status_code]
    assert answers == [200, 200, 200, 429, 429]
    assert _stopped_reason(app) == "at the camera set-up: camera could not be started"

    with app.extensions["gazepref"].sessions() as s:
        p = s.scalars(select(store.Participant)).one()
        set_state(p, pos=len(p.state["steps"]) - 1)  # at "done"
        s.commit()
    r = client.post(gaze["urls"]["camera_error"], json={"reason": "not-found"}, headers=headers)
    assert r.status_code == 409 and "over" in r.json["error"], r.json
    with app.extensions["gazepref"].sessions() as s:
        assert s.scalars(select(store.Participant)).one().state["setup"]["camera_error"] == "failed"


def test_counts_the_database_cannot_take_stay_pending_for_the_next_write(make_app, tmp_path, monkeypatch, caplog):
    """A write of the set-up counts during a database outage (a restart) gives them back to the
    pending ones: they were taken from them first, and an outage lost them for good."""
    import logging

    from sqlalchemy.exc import OperationalError

    from gazetest import webcam_toml

    from gazepref.capture_site import setup_log

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam.toml")))
    for pid in ("CAM-OUTAGE-1", "CAM-OUTAGE-2"):
        _two_dark_batches(app, pid)  # 2 frames written, 2 pending
    write, tried = setup_log._write, []

    def database_away(*args, **kwargs):
        tried.append(args[0])
        raise OperationalError("UPDATE participants ...", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(setup_log, "_write", database_away)
    with app.app_context(), caplog.at_level(logging.WARNING):
        assert setup_log.flush_pending() == 0
    assert len(tried) == 1  # the others wait without a failed write each (in a request's teardown)
    assert any("kept for a later write" in r.getMessage() and not r.exc_info for r in caplog.records)
    monkeypatch.setattr(setup_log, "_write", write)  # the database is back
    with app.app_context():
        assert setup_log.flush_pending() == 2
        assert setup_log.flush_pending() == 0
    with app.extensions["gazepref"].sessions() as s:
        setups = [p.state["setup"] for p in s.scalars(select(store.Participant))]
    assert [(x["frames"], sum(x["codes"].values())) for x in setups] == [(4, 4), (4, 4)]


@pytest.mark.parametrize("dim, says", [
    (False, "at the camera set-up: no face in the camera picture (dark, black or covered camera?) (8 set-up frames, face found in 0%)"),
    (True, "at the camera set-up: face too dark (not lit from the front) (8 set-up frames, face found in 100%)"),
])
def test_a_dark_picture_and_a_dim_face_are_told_apart(make_app, tmp_path, dim, says):
    """The face status "dark" is both a black picture (no face: a covered camera) and a face found
    but too dim; the dashboard said "no face" beside "face found in 100%" for the second. The set-up
    summary counts the dark frames with a face (``dim``): a face well lit for a while and then a
    covered camera is still "no face"."""
    from gazetest import to_calibration, webcam_toml

    from gazepref.capture_site import setup_log
    from gazepref.schema import GazeFlag

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam.toml")))
    to_calibration(app.test_client(), "CAM-DIM")
    with app.extensions["gazepref"].sessions() as s:
        p = s.scalars(select(store.Participant)).one()
        who = (p.id, p.pseudonym)
    flags = int(GazeFlag.TOO_DARK) if dim else int(GazeFlag.TOO_DARK | GazeFlag.NO_FACE)
    row = {"flags": flags, "face_size": 0.15, "face_x": 0.5, "face_y": 0.5}
    with app.test_request_context():
        setup_log.note_setup_frames(who, [row] * 8)
        setup_log.flush_pending()
    assert _stopped_reason(app) == says
