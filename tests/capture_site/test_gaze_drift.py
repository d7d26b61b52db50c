"""Drift correction from clicks during tasks (``[gaze] drift_correction = true``): a click the
telemetry stores shifts the gaze rows of later frame batches by click - gaze."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pytest

from gazepref import store
from gazepref.schema import GazeFlag
from gazepref.signals.calibration import GazeCalibration
from gazepref.signals.gaze_recalibrate import reestimate
from gazepref.signals.synthetic_face import jpeg
from gazepref.signals.synthetic_face import moving_face as moving
from gazetest import post_frames, to_task, webcam_toml

pytest.importorskip("mediapipe")
pytest.importorskip("skimage.data")

ORIGIN = 1.7e12


def frames_batch(client, token, task_id, seq, t0, clicks=None, origin=ORIGIN):
    meta = {"phase": "task", "task": task_id, "seq": seq, "origin": origin, "t": [t0 + 100.0 * i for i in range(5)]}
    if clicks is not None:  # the page's count of its click and caret rows (webcam.js taskMeta)
        meta["clicks"] = clicks
    r = post_frames(client, token, meta, [jpeg(moving(5 * seq + i)) for i in range(5)])
    assert r.status_code == 200 and r.json["stored"] == 5, r.json


def click(client, token, task_id, seq, t, x, y, target="window", kind="click", origin=ORIGIN):
    r = client.post("/api/ingest", json={"task": task_id, "seq": seq, "origin": origin, "streams": {"events": {
        "t": [t], "type": [kind], "target": [target], "x": [x], "y": [y]}}},
        headers={"X-Participant-Token": token})
    assert r.status_code == 200 and r.json["stored"] == 1, r.json


def stored_gaze(app, task_id):
    with app.extensions["gazepref"].sessions() as s:
        task = s.get(store.Task, task_id)
        model = GazeCalibration.from_bytes(s.query(store.Calibration).filter_by(kind="calibration").one().model)
        return store.read_stream(s, task, "gaze"), model


def test_a_click_in_a_task_shifts_later_gaze_rows(make_app, tmp_path):
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", "drift_correction = true")))
    client = app.test_client()
    token, task_id = to_task(client)
    frames_batch(client, token, task_id, 0, 5000.0)
    first, model = stored_gaze(app, task_id)
    assert first.column("drift_x").to_pylist() == [0.0] * 5, "no click yet: no correction"
    ok = (first.column("flags").to_numpy() & GazeFlag.NO_FACE) == 0
    assert ok.all()
    # the participant clicks at t = 5350 a point 60 px right of and 40 px above where the tracker
    # put their gaze in the 400 ms before (rows 5000..5300)
    x, y = first.column("x").to_numpy()[:4], first.column("y").to_numpy()[:4]
    click(client, token, task_id, 0, 5350.0, float(np.median(x)) + 60.0, float(np.median(y)) - 40.0)
    frames_batch(client, token, task_id, 1, 5500.0)
    table, _ = stored_gaze(app, task_id)
    later = table.slice(5)
    np.testing.assert_allclose(later.column("drift_x").to_numpy(), 60.0, atol=0.01)
    np.testing.assert_allclose(later.column("drift_y").to_numpy(), -40.0, atol=0.01)
    # x - drift_x is the tracker's own estimate: re-estimating from the stored features gives it
    raw = reestimate(later, model)
    np.testing.assert_allclose(later.column("x").to_numpy() - raw.column("x").to_numpy(), 60.0, atol=0.5)
    np.testing.assert_allclose(later.column("y").to_numpy() - raw.column("y").to_numpy(), -40.0, atol=0.5)


def _first_batch(make_app, tmp_path, gaze: str):
    """A task of the webcam study with ``gaze`` in its [gaze] table, its first batch of frames
    stored: (app, client, token, task id, the model, the median x and y of the batch's gaze)."""
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", gaze)))
    client = app.test_client()
    token, task_id = to_task(client)
    frames_batch(client, token, task_id, 0, 5000.0)
    first, model = stored_gaze(app, task_id)
    x, y = float(np.median(first.column("x").to_numpy())), float(np.median(first.column("y").to_numpy()))
    return app, client, token, task_id, model, x, y


def test_a_batch_reads_the_stored_clicks_only_when_the_page_made_one_not_read(make_app, tmp_path, monkeypatch):
    """A batch says how many click and caret rows its page has made (``clicks``): while this
    process has read as many of that page's, nothing new can be stored and the batch is corrected
    without reading the task's events (a query a batch saved); a new click, a batch that does not
    say, or a new task reads them, and the rows are corrected as before."""
    from gazepref.capture_site import gaze_drift

    calls = []
    update = gaze_drift.update
    monkeypatch.setattr(gaze_drift, "update", lambda *a: (calls.append(a[2]), update(*a))[1])
    monkeypatch.setattr(gaze_drift, "REREAD_S", 3600.0)  # (the periodic read: below)
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml")))  # continuous calibration: the default
    client = app.test_client()
    token, task_id = to_task(client)
    frames_batch(client, token, task_id, 0, 5000.0, clicks=0)
    assert calls == [task_id]  # a new task: read
    frames_batch(client, token, task_id, 1, 5500.0, clicks=0)
    assert calls == [task_id]  # nothing made, nothing read
    first, _ = stored_gaze(app, task_id)
    x, y = float(np.median(first.column("x").to_numpy()[6:10])), float(np.median(first.column("y").to_numpy()[6:10]))
    click(client, token, task_id, 0, 5950.0, x + 30.0, y - 20.0, target="composer")
    frames_batch(client, token, task_id, 2, 6000.0, clicks=1)
    frames_batch(client, token, task_id, 3, 6500.0, clicks=1)
    assert len(calls) == 2  # read once: the click, then nothing new
    table, _ = stored_gaze(app, task_id)
    np.testing.assert_allclose(table.column("drift_x").to_numpy()[10:], 30.0, atol=0.5)
    assert table.column("drift_clicks").to_pylist()[10:] == [1.0] * 10
    frames_batch(client, token, task_id, 4, 7000.0)  # a page that does not say: read
    assert len(calls) == 3
    # the page's last click is stored after its last batch; it reloads: the new page load's first
    # batch reads (the click of the one before), though the new page has made none
    last, _ = stored_gaze(app, task_id)  # the uncorrected gaze of the 400 ms before it (rows at 7100-7400)
    raw = [float(np.median((last.column(c).to_numpy() - last.column(f"drift_{c}").to_numpy())[21:25])) for c in "xy"]
    click(client, token, task_id, 1, 7450.0, raw[0] + 30.0, raw[1] - 20.0, target="composer")
    frames_batch(client, token, task_id, 0, 100.0, clicks=0, origin=ORIGIN + 8000.0)
    frames_batch(client, token, task_id, 1, 600.0, clicks=0, origin=ORIGIN + 8000.0)
    assert len(calls) == 4
    table, _ = stored_gaze(app, task_id)
    assert table.column("drift_clicks").to_pylist()[-10:] == [2.0] * 10
    # and a drift state reads at least every REREAD_S (clicks stored late, or read by another process)
    with app.extensions["gazepref_trackers"]._lock:
        (entry,) = app.extensions["gazepref_trackers"]._entries.values()
    drift = entry.latest().drift
    now = drift.read_at + 1.0
    assert not gaze_drift.needs_update(drift, task_id, ORIGIN + 8000.0, 0, now=now)
    assert gaze_drift.needs_update(drift, task_id, ORIGIN + 8000.0, 0, now=now + 3600.0)


def test_a_study_without_click_corrections_stores_the_calibrations_estimates(make_app, tmp_path):
    """``interaction_calibration = false`` (continuous calibration is on by default): a click
    moves nothing and the rows carry no correction columns."""
    app, client, token, task_id, model, x, y = _first_batch(make_app, tmp_path, "interaction_calibration = false")
    click(client, token, task_id, 0, 5350.0, x + 60.0, y - 40.0)
    frames_batch(client, token, task_id, 1, 5500.0)
    table, _ = stored_gaze(app, task_id)
    assert "drift_x" not in table.column_names and "drift_clicks" not in table.column_names
    np.testing.assert_allclose(table.column("x").to_numpy(), reestimate(table, model).column("x").to_numpy(), atol=0.5)


def test_clicks_far_from_the_gaze_or_without_gaze_are_ignored(make_app, tmp_path):
    app, client, token, task_id, _, x, y = _first_batch(make_app, tmp_path, "drift_correction = true")
    click(client, token, task_id, 0, 5350.0, x + 900.0, y)  # clicked without looking
    click(client, token, task_id, 1, 4000.0, x, y)  # before any gaze sample
    frames_batch(client, token, task_id, 1, 5500.0)
    table, _ = stored_gaze(app, task_id)
    assert table.slice(5).column("drift_x").to_pylist() == [0.0] * 5


@pytest.mark.parametrize("setting", ["drift_correction", "interaction_calibration"])
def test_clicks_on_the_rating_and_choice_controls_never_correct_the_gaze(make_app, tmp_path, setting):
    """A click on the controls says which option was chosen: calibrating on it would move later
    gaze toward that option. Only the other clicks and the caret while typing (here in the
    composer) count. A click at (0, 0) is a button pressed with the keyboard in pages before such
    clicks lost their position: not where the participant looked, so it does not count either."""
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", f"{setting} = true")))
    client = app.test_client()
    token, task_id = to_task(client)
    frames_batch(client, token, task_id, 0, 5000.0)
    first, _ = stored_gaze(app, task_id)
    x, y = float(np.median(first.column("x").to_numpy()[:4])), float(np.median(first.column("y").to_numpy()[:4]))
    click(client, token, task_id, 0, 5350.0, x - 120.0, y + 90.0, target="controls")
    click(client, token, task_id, 1, 5360.0, 0.0, 0.0, target="composer")  # Enter on Send, old page
    frames_batch(client, token, task_id, 1, 5500.0)
    table, _ = stored_gaze(app, task_id)
    assert table.slice(5).column("drift_x").to_pylist() == [0.0] * 5
    assert table.slice(5).column("drift_clicks").to_pylist() == [0.0] * 5
    click(client, token, task_id, 2, 5350.0, x + 30.0, y - 20.0, target="composer", kind="caret")  # typing
    frames_batch(client, token, task_id, 2, 6000.0)
    later = stored_gaze(app, task_id)[0].slice(10)
    # one click: an offset (the affine part needs clicks spread over the screen)
    np.testing.assert_allclose(later.column("drift_x").to_numpy(), 30.0, atol=0.5)
    np.testing.assert_allclose(later.column("drift_y").to_numpy(), -20.0, atol=0.5)
    assert later.column("drift_clicks").to_pylist() == [1.0] * 5

    # gazepref gaze recalibrate: leaves the clicks out by default, or replays them
    from gazepref.signals.gaze_recalibrate import reestimate_participant

    with app.extensions["gazepref"].sessions() as s:
        part = s.get(store.Task, task_id).participant
        (_, plain, _), = list(reestimate_participant(s, part))
        (_, replayed, _), = list(reestimate_participant(s, part, interactions=True))
    assert "drift_x" not in plain.column_names
    t = replayed.column("t").to_numpy()
    dx = replayed.column("drift_x").to_numpy()
    assert (dx[t < 5350] == 0).all() and np.allclose(dx[t >= 6000], 30.0, atol=0.5)
    assert replayed.column("drift_clicks").to_numpy()[t >= 6000].tolist() == [1.0] * 5, "the controls and (0, 0) clicks are left out"
    np.testing.assert_allclose(replayed.column("x").to_numpy()[t >= 6000], later.column("x").to_numpy(), atol=0.5)


@pytest.mark.parametrize("setting", ["drift_correction", "interaction_calibration"])
def test_live_rows_are_what_the_replay_gives(make_app, tmp_path, setting):
    """The telemetry sends a click before the gaze batch that holds its moment (its events go out
    each second; gaze batches later). The rows of that batch before the click stay as they were,
    the click pairs with the whole 400 ms before it (samples stored and in the batch), and
    ``gazepref gaze recalibrate --interactions`` replays the task to the same rows, with the
    corrector the study used (an offset: median of the clicks; continuous calibration: weighted
    mean and scale). Before, the click corrected the whole batch, rows before it included, paired
    with the one stored sample of its window, and the replay always used the affine corrector."""
    from gazepref.signals.calibration import DriftCorrector, InteractionRecalibrator
    from gazepref.signals.gaze_recalibrate import reestimate_participant, replay_interactions

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", f"{setting} = true")))
    client = app.test_client()
    token, task_id = to_task(client)
    frames_batch(client, token, task_id, 0, 5000.0)
    first, _ = stored_gaze(app, task_id)
    gx, gy = float(np.median(first.column("x").to_numpy())), float(np.median(first.column("y").to_numpy()))
    clicks = [(5750.0, 80.0, -50.0), (6250.0, 20.0, -90.0), (6850.0, 140.0, 10.0)]
    for seq, (t0, (when, dx, dy)) in enumerate(zip((5500.0, 6000.0, 6500.0), clicks)):
        click(client, token, task_id, seq, when, gx + dx, gy + dy)  # before the batch holding it
        frames_batch(client, token, task_id, seq + 1, t0)
    live, _ = stored_gaze(app, task_id)
    t = live.column("t").to_numpy()
    np.testing.assert_array_equal(live.column("drift_clicks").to_numpy(), (t[:, None] >= [c[0] for c in clicks]).sum(axis=1))
    with app.extensions["gazepref"].sessions() as s:
        part = s.get(store.Task, task_id).participant
        (task, replayed, _), = list(reestimate_participant(s, part, interactions=True))
        events = store.read_stream(s, task, "events")
    for name in ("x", "y", "drift_x", "drift_y", "drift_clicks"):
        np.testing.assert_allclose(replayed.column(name).to_numpy(), live.column(name).to_numpy(), atol=0.05, err_msg=name)
    other = InteractionRecalibrator() if setting == "drift_correction" else DriftCorrector()
    raw = replayed
    for c in ("x", "y"):
        raw = raw.set_column(raw.schema.get_field_index(c), c, pa.compute.subtract(raw.column(c), raw.column(f"drift_{c}")))
    assert np.abs(replay_interactions(raw, events, other).column("x").to_numpy() - live.column("x").to_numpy()).max() > 3, \
        "the two correctors differ on these clicks: the replay has to use the study's"


def test_a_chunk_committed_late_with_a_lower_id_is_still_read(make_app, tmp_path):
    """Under concurrent writers (PostgreSQL) an events chunk can become visible after one with a
    higher id: the drift reader must not skip it."""
    import pyarrow as pa

    from gazepref.capture_site import gaze_drift

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", "drift_correction = true")))
    client = app.test_client()
    token, task_id = to_task(client)
    frames_batch(client, token, task_id, 0, 5000.0)

    def events(seq, chunk_id, t):
        tab = pa.table({"t": [t], "type": ["click"], "target": ["window"], "x": [10.0], "y": [20.0]})
        c = store.make_chunk(task_id, "events", seq, tab, ORIGIN)
        c.id = chunk_id
        return c

    drift = gaze_drift.ParticipantDrift()
    with app.extensions["gazepref"].sessions() as s:
        s.add(events(1, 10_000, 9000.0))
        s.commit()
        gaze_drift.update(s.connection(), drift, task_id)
        assert [p[0] for p in drift.pending] == [ORIGIN + 9000.0]
        s.add(events(0, 9_000, 8000.0))  # the earlier transaction commits last
        s.commit()
        gaze_drift.update(s.connection(), drift, task_id)
        assert sorted(p[0] for p in drift.pending) == [ORIGIN + 8000.0, ORIGIN + 9000.0]
        gaze_drift.update(s.connection(), drift, task_id)  # nothing new: nothing read twice
        assert len(drift.pending) == 2


def test_a_clicks_window_in_rows_not_stored_yet_is_used(make_app, tmp_path):
    """The WebSocket scores a frame at a time and commits its rows every ``GAZE_WS_COMMIT_MS``: a
    click's 400 ms window can lie in rows corrected but not stored yet. The drift state keeps the
    rows it corrected lately, so the click pairs with them (it was used up against an empty window
    and lost)."""
    from gazepref.capture_site import gaze_drift

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", "drift_correction = true")))
    client = app.test_client()
    token, task_id = to_task(client)
    frames_batch(client, token, task_id, 0, 4000.0)  # stored: 4000..4400
    drift = gaze_drift.ParticipantDrift()
    with app.extensions["gazepref"].sessions() as s:
        gaze_drift.update(s.connection(), drift, task_id)
        for t in (5000.0, 5100.0, 5200.0, 5300.0, 5400.0):  # one frame at a time, not stored
            gaze_drift.apply([{"t": t, "x": 640.0, "y": 360.0, "flags": 0, "confidence": 1.0}], drift, ORIGIN, task_id)
        click(client, token, task_id, 0, 5350.0, 700.0, 300.0)
        gaze_drift.update(s.connection(), drift, task_id)
        row = {"t": 5500.0, "x": 640.0, "y": 360.0, "flags": 0, "confidence": 1.0}
        gaze_drift.apply([row], drift, ORIGIN, task_id)
    assert drift.clicks_used == 1 and not drift.pending
    assert (row["drift_x"], row["drift_y"], row["x"], row["y"]) == (60.0, -60.0, 700.0, 300.0)
    other = {"t": 5600.0, "x": 640.0, "y": 360.0, "flags": 0, "confidence": 1.0}
    gaze_drift.apply([other], drift, ORIGIN, task_id + 1)  # another task's rows: not this correction
    assert other["x"] == 640.0 and other["drift_clicks"] == 0.0
