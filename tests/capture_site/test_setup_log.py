"""The set-up summary (frames seen at the camera set-up) is added to, not overwritten, when
several app servers serve one participant's frames."""
from __future__ import annotations

import numpy as np
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

    from gazetest import post_frames, to_calibration, webcam_toml

    from gazepref.capture_site.quality import participant_quality
    from gazepref.capture_site.setup_log import flush_pending
    from gazepref.signals.synthetic_face import jpeg

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam.toml")))
    client = app.test_client()
    token = to_calibration(client, "CAM-LATE")["token"]
    dark = jpeg(np.zeros((240, 320, 3), np.uint8))
    for t in (0.0, 300.0):  # the second batch stays pending (same face status, within WRITE_EVERY_S)
        assert post_frames(client, token, {"phase": "setup", "t": [t, t + 100]}, [dark] * 2).status_code == 200
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
