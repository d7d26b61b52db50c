"""Browser mode (``[gaze] compute = "browser"``) without a browser: the page's landmark samples
(made here from the Python Face Mesh of the astronaut's moving face, as the page would send them)
calibrate and record gaze; the study takes no camera picture; the rows are those of the server
pipeline on the same pictures (one definition of every feature)."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from sqlalchemy import select

from gazepref import store
from gazepref.capture_site.config import ConfigError, load_config
from gazepref.capture_site.gaze_settings import gaze_settings
from gazepref.capture_site.vendor import version_tag
from gazepref.signals.synthetic_face import jpeg
from gazepref.signals.synthetic_face import moving_face as moving
from gazepref.signals.webcam import SAMPLE_LANDMARKS, GazeTracker
from gazetest import (CALIBRATION_TARGETS, answer_step, page_sample, post_frames, post_sample_round, to_calibration,
                      webcam_toml)
from sitetest import page_data

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def runner():
    from gazepref.signals.face_mesh import FaceMeshRunner

    r = FaceMeshRunner()
    yield r
    r.close()


@pytest.fixture
def bapp(make_app, tmp_path):
    return make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "browser.toml", 'compute = "browser"')))


def test_browser_mode_calibrates_and_records_from_samples_and_refuses_pictures(bapp, runner):
    client = bapp.test_client()
    gaze = to_calibration(client, "CAM-SAMPLES")
    token = gaze["token"]
    s = gaze["settings"]
    assert s["compute"] == "browser" and s["mesh_backend"] == "wasm" and s["landmarks"] == list(SAMPLE_LANDMARKS)
    assert gaze["urls"]["samples"] == "/api/gaze/samples"
    with bapp.app_context():  # the vendor URLs carry the installed versions: cached for a year
        assert gaze["urls"]["vendor"] == f"/vendor/{version_tag()}/" and "human-" in version_tag()

    # no picture is taken in: frames, multipart rounds
    r = post_frames(client, token, {"phase": "setup", "t": [0.0]}, [jpeg(moving(0))])
    assert r.status_code == 403 and "browser" in r.json["error"]
    setup = [page_sample(runner, moving(i), 100.0 * i) for i in range(3)]
    r = client.post("/api/gaze/samples", json={"phase": "setup", "samples": setup},
                    headers={"X-Participant-Token": token})
    assert r.status_code == 200 and r.json["face"]["found"] and len(r.json["usable"]) == 3, r.json
    assert "batch_ms" not in r.json  # set-up samples keep the study's batch_ms (the page waits for them)

    r = post_sample_round(client, token, runner, "calibration", CALIBRATION_TARGETS)
    assert r.status_code == 200, r.json
    r = post_sample_round(client, token, runner, "validation", r.json["validation_targets"])
    assert r.status_code == 200, r.json
    assert answer_step(client).status_code == 302
    answer_step(client, {"understand_before": "3"})
    data = page_data(client.get("/step").text)
    task_id = data["task"]

    from gazepref.signals.face_mesh import FaceMeshRunner

    frames = [moving(i) for i in range(6)]
    fresh = FaceMeshRunner()  # a fresh video-mode mesh, as the reference tracker's below
    samples = [page_sample(fresh, f, 5000.0 + 100 * i) for i, f in enumerate(frames)]
    fresh.close()
    batch = {"phase": "task", "task": task_id, "seq": 0, "origin": 1.7e12, "samples": samples}
    body = gzip.compress(json.dumps(batch).encode())  # as the outbox sends it
    headers = {"X-Participant-Token": token, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    r = client.post("/api/gaze/samples", data=body, headers=headers)
    assert r.status_code == 200 and r.json["stored"] == 6 and r.json["calibrated"], r.json
    assert r.json["batch_ms"] == 1000  # the next batch in the study's task_batch_ms: nothing waited here
    r = client.post("/api/gaze/samples", data=body, headers=headers)  # replay (the outbox resends)
    assert r.status_code == 200 and r.json["duplicate"] and r.json["stored"] == 0
    pacer = bapp.extensions["gazepref_pacer"]  # as after a while of requests waiting for the CPU
    for factor, asked in ((2.5, 2500), (16.0, 4000)):  # at most task_batch_max_ms (4000 by default)
        pacer.factor_ = factor
        assert client.post("/api/gaze/samples", data=body, headers=headers).json["batch_ms"] == asked
    pacer.factor_ = 1.0

    bad = dict(batch, seq=1, samples=[dict(samples[0], lm=samples[0]["lm"][:-2])])
    r = client.post("/api/gaze/samples", json=bad, headers={"X-Participant-Token": token})
    assert r.status_code == 400 and "samples[0].lm" in r.json["error"]
    # a batch numbered at the top of the range (a forged or corrupted counter) is refused: stored,
    # it would leave a reloaded page seqs the site refuses (chunks.SEQ_FREE)
    r = client.post("/api/gaze/samples", json=dict(batch, seq=2**31 - 1), headers={"X-Participant-Token": token})
    assert r.status_code == 400 and "jumps ahead" in r.json["error"], r.json
    reloaded = page_data(client.get("/step").text)
    assert reloaded["next_seq"] == 1 and reloaded["gaze"]["next_seq"] == 1

    with bapp.extensions["gazepref"].sessions() as dbs:
        model = dbs.scalars(select(store.Calibration).where(store.Calibration.kind == "outcome")).one().model
        gz = store.read_stream(dbs, dbs.get(store.Task, task_id), "gaze").to_pandas()
        assert not dbs.scalars(select(store.GazeFrame)).all()
    from gazepref.signals.calibration import GazeCalibration

    # the server pipeline on the same pictures gives the same rows (the page's rounding aside)
    with GazeTracker(GazeCalibration.from_bytes(model)) as tracker:
        ref = [tracker.process_image(f, 5000.0 + 100 * i) for i, f in enumerate(frames)]
    cols = [c for c in ref[0] if c.startswith(("eye_", "face_"))]
    got = gz[cols].to_numpy(float)
    want = np.array([[r[c] for c in cols] for r in ref], float)
    assert np.allclose(got, want, atol=2e-3, rtol=1e-4), [(c, float(d)) for c, d in zip(cols, np.abs(got - want).max(0)) if d > 2e-3]
    assert np.allclose(gz[["head_yaw", "head_pitch", "head_roll"]].to_numpy(float),
                       [[r["head_yaw"], r["head_pitch"], r["head_roll"]] for r in ref], atol=0.2)
    # the sight point reads the iris landmark against an eye of ~5 px radius in this 320 px
    # picture: the page's 0.01 px rounding moves it by up to ~0.05 cm
    assert np.allclose(gz[["sight_x_cm", "sight_y_cm"]].to_numpy(float),
                       [[r["sight_x_cm"], r["sight_y_cm"]] for r in ref], atol=0.1)
    # ... and the estimate by some px: these calibration pictures move the face, not the eyes, so
    # the fitted gains are arbitrary (here ~75 px per cm of sight); 36 px at most here
    assert np.allclose(gz[["x", "y"]].to_numpy(float), [[r["x"], r["y"]] for r in ref], atol=50.0)
    assert (gz["flags"].to_numpy(int) == [int(r["flags"]) for r in ref]).all()


def test_an_overexposed_face_from_the_page_is_flagged_as_from_a_picture(runner):
    """The page sends the face box's saturated share (``o``), so a face that is mostly saturated
    carries OVEREXPOSED in browser mode too (from the picture: tests/signals/test_webcam.py);
    a page that sends no ``o`` is never flagged, and a share outside 0-1 is refused."""
    from gazepref.capture_site.api import ApiError
    from gazepref.capture_site.gaze_samples import _parse_checked, parse_samples
    from gazepref.schema import GazeFlag
    from gazepref.signals.synthetic_face import face_frame

    bright = page_sample(runner, face_frame(scale=1.0, size=(640, 480), brightness=1.8), 0.0)
    normal = page_sample(runner, face_frame(scale=1.0, size=(640, 480)), 100.0)
    assert bright["o"] > 0.5 and normal["o"] < 0.05
    unsent = {k: v for k, v in bright.items() if k != "o"}
    for read in (lambda b: parse_samples(b, 10), _parse_checked):  # the quick reading, the checked one
        samples, _ = read([bright, normal, unsent])
        with GazeTracker(static_image_mode=True) as tracker:
            flags = [int(tracker.process_sample(s)["flags"]) & GazeFlag.OVEREXPOSED for s in samples[:3]]
        assert flags == [GazeFlag.OVEREXPOSED, 0, 0]
    for bad in (1.5, -0.1, "x"):  # (the quick reading hands these to the checked one, which names them)
        with pytest.raises(ApiError, match=r"samples\[0\]\.o"):
            parse_samples([dict(bright, o=bad)], 10)


def test_server_mode_refuses_samples_and_keeping_pictures_needs_it(make_app, tmp_path):
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "server.toml")))
    client = app.test_client()
    token = to_calibration(client, "CAM-SERVER")["token"]
    r = client.post("/api/gaze/samples", json={"phase": "setup", "samples": []},
                    headers={"X-Participant-Token": token})
    assert r.status_code == 403 and "server" in r.json["error"]

    consent = "camera_images = true"
    kept = load_config(webcam_toml(tmp_path / "kept.toml", "keep_frames = true\ncompute = \"server\"", consent))
    assert gaze_settings(kept).compute == "server"
    default = load_config(webcam_toml(tmp_path / "default.toml", 'compute = "browser"'))
    assert gaze_settings(default).compute == "browser"
    both = webcam_toml(tmp_path / "both.toml", 'keep_frames = true\ncompute = "browser"', consent)
    with pytest.raises(ConfigError, match=r"both\.toml: gaze\.keep_frames = true needs gaze\.compute"):
        load_config(both)  # the study file is refused as it is read, naming it


def test_sample_batches_are_rate_limited_per_participant(make_app, tmp_path, database):
    """The frame-batch limit (GAZE_RATE_PER_S, GAZE_BURST) holds for sample batches on both
    databases (PostgreSQL takes the token in the lookup's own statement); a refused batch is a
    429 with Retry-After, and an unknown token is a 401, not a 429."""
    import uuid

    extra = {"DATABASE_URL": database} if database else {}
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "browser.toml", 'compute = "browser"')),
                   GAZE_RATE_PER_S=0.001, GAZE_BURST=3, **extra)
    client = app.test_client()
    token = to_calibration(client, f"CAM-{uuid.uuid4().hex[:8]}")["token"]  # one PostgreSQL serves the session
    body = {"phase": "setup", "samples": [{"t": 1.0, "w": 320, "h": 240, "n": 0, "b": 0.0}]}
    codes = [client.post("/api/gaze/samples", json=body, headers={"X-Participant-Token": token}) for _ in range(5)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    assert codes[-1].headers["Retry-After"] == "1" and "slow down" in codes[-1].json["error"]
    r = client.post("/api/gaze/samples", json=body, headers={"X-Participant-Token": "nobody"})
    assert r.status_code == 401


def test_a_participant_out_of_sample_tokens_is_refused_before_a_large_body_is_read(make_app, tmp_path, runner,
                                                                                  monkeypatch):
    """As ingest: a samples body larger than the largest legal batch's (``LARGE_SAMPLES_BYTES``,
    as JSON; gzip: as its trailer says) is decompressed and parsed only when the participant's
    frame bucket holds a token. A legal batch, also one of ``MAX_SAMPLES_PER_BATCH`` samples
    (above the telemetry's LARGE_JSON_BYTES: a paced page's), costs no extra read: parsed, then
    the take refuses it."""
    from gazepref.capture_site import batches, gaze
    from gazepref.capture_site.gaze_settings import MAX_SAMPLES_PER_BATCH
    from gazepref.capture_site.ratelimit import DbRateLimiter

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "browser.toml", 'compute = "browser"')),
                   GAZE_RATE_PER_S=0.001, GAZE_BURST=1)
    client = app.test_client()
    token = to_calibration(client, "CAM-TOKENS")["token"]
    sample = page_sample(runner, moving(0), 0.0)
    headers = {"X-Participant-Token": token, "Content-Type": "application/json", "Content-Encoding": "gzip"}

    def body(n):
        return gzip.compress(json.dumps({"phase": "setup", "samples": [dict(sample, t=100.0 * i)
                                                                       for i in range(n)]}).encode())

    n = MAX_SAMPLES_PER_BATCH
    assert batches.LARGE_JSON_BYTES < len(json.dumps({"samples": [sample] * n})) < gaze.LARGE_SAMPLES_BYTES
    assert client.post("/api/gaze/samples", data=body(n), headers=headers).status_code == 200  # the one token
    decoded, looked = [], []
    decode, has_token = batches.decode_body, DbRateLimiter.has_token
    monkeypatch.setattr(batches, "decode_body", lambda raw, gz: decoded.append(len(raw)) or decode(raw, gz))
    monkeypatch.setattr(DbRateLimiter, "has_token", lambda self, key: looked.append(key) or has_token(self, key))
    r = client.post("/api/gaze/samples", data=body(3 * n), headers=headers)
    assert r.status_code == 429 and "slow down" in r.json["error"] and decoded == [] and len(looked) == 1
    for k in (n, 2):  # legal: parsed, then the take refuses
        r = client.post("/api/gaze/samples", data=body(k), headers=headers)
        assert r.status_code == 429 and len(decoded) == 1 and len(looked) == 1
        decoded.clear()


def _far(s, key, axis, by):
    """``s`` with every ``key`` x (axis 0) or y (axis 1) moved ``by`` pictures' sizes."""
    size = s["w"] if axis == 0 else s["h"]
    return [v + by * size if i % 2 == axis else v for i, v in enumerate(s[key])]


@pytest.mark.parametrize("field, change, says", [
    ("p", lambda s: [[v] for v in s["p"]], "samples[1].p must be a list"),  # once a 500 (a 2-D patch)
    ("lm", lambda s: [0.0] * len(s["lm"]), "samples[1].lm: the outer eye corners"),  # once took the pose anywhere
    ("lm", lambda s: _far(s, "lm", 0, 3.0), "samples[1].lm: a landmark lies far outside"),
    ("lm", lambda s: _far(s, "lm", 1, -2.5), "samples[1].lm: a landmark lies far outside"),
    ("c", lambda s: _far(s, "c", 0, 2.5), "samples[1].c: the face's centre"),
    ("lm", lambda s: [str(v) for v in s["lm"]], "samples[1].lm must be a list"),  # numpy reads "160" as 160
    ("lm", lambda s: [True] * len(s["lm"]), "samples[1].lm must be a list"),
    ("b", lambda s: 1e300, "samples[1].b must be a brightness"),  # once stored as inf
    ("b", lambda s: -3.0, "samples[1].b must be a brightness"),
    ("s", lambda s: 1e300, "samples[1].s must be a sharpness"),
    ("p", lambda s: [1e308] * len(s["p"]), "samples[1].p must hold values from 0 to 1"),  # once 120 infs
    # once taken and reported usable: the round then failed to fit, spending an attempt
    ("p", lambda s: None, "samples[1].p: the eye patches are missing"),
])
def test_values_no_picture_of_a_face_gives_are_refused(runner, field, change, says):
    """A sample the page cannot have made is refused with 400 naming it, whether the batch is
    read at once (every sample alike) or sample by sample (one among good ones)."""
    from gazepref.capture_site.api import ApiError
    from gazepref.capture_site.gaze_samples import parse_samples

    good = [page_sample(runner, moving(i), 100.0 * i) for i in range(3)]
    samples, times = parse_samples(good, 60)
    assert times == [0.0, 100.0, 200.0] and all(s.pts is not None for s in samples)
    bad = [dict(s, **{field: change(s)}) for s in good]
    for batch in ([good[0], bad[1], good[2]], bad):
        with pytest.raises(ApiError) as e:
            parse_samples(batch, 60)
        assert e.value.status == 400 and e.value.message.startswith(says.replace("[1]", "[1]" if batch[0] is good[0]
                                                                                 else "[0]")), e.value.message


def test_a_round_of_landmarks_no_face_has_is_refused_without_spending_an_attempt(make_app, tmp_path, runner):
    """A calibration round whose samples hold landmarks of no face (all at one point), or times
    no page's clock reads, is a malformed request: 400, no round stored, no attempt spent (it was a 422 and a spent attempt,
    so under ``attempts = 1`` the participant's session went on without the webcam)."""
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "b.toml", 'compute = "browser"')))  # (one attempt)
    client = app.test_client()
    token = to_calibration(client, "CAM-ZEROS")["token"]
    samples, out, t = [], [], 1000.0
    for k, (x, y) in enumerate(CALIBRATION_TARGETS):
        s = page_sample(runner, moving(k), t)
        out.append({"x": x, "y": y, "t": [t]})
        samples.append(dict(s, lm=[0.0] * len(s["lm"])))
        t += 100.0
    r = client.post("/api/gaze/round", json={"kind": "calibration", "viewport": [1280, 800], "targets": out,
                                             "samples": samples}, headers={"X-Participant-Token": token})
    assert r.status_code == 400 and "samples[0].lm" in r.json["error"], r.json
    far = [dict(o, t=[1e300]) for o in out]  # no page's clock reads that (it too spent an attempt)
    r = client.post("/api/gaze/round", json={"kind": "calibration", "viewport": [1280, 800], "targets": far,
                                             "samples": [dict(s, t=1e300) for s in samples]},
                    headers={"X-Participant-Token": token})
    assert r.status_code == 400 and "targets[0].t must be a number between 0 and" in r.json["error"], r.json
    before = [dict(o, t=[-5.0]) for o in out]  # nor before the page's clock began
    r = client.post("/api/gaze/round", json={"kind": "calibration", "viewport": [1280, 800], "targets": before,
                                             "samples": [dict(s, t=-5.0) for s in samples]},
                    headers={"X-Participant-Token": token})
    assert r.status_code == 400 and "targets[0].t must be a number between 0 and" in r.json["error"], r.json
    with app.extensions["gazepref"].sessions() as dbs:
        assert not dbs.scalars(select(store.Calibration)).all()
    r = post_sample_round(client, token, runner, "calibration", CALIBRATION_TARGETS)
    assert r.status_code == 200, r.json


@pytest.mark.parametrize("mesh, said", [
    ("worker", "mesh must be {thread"),
    ({"thread": "gpu", "backend": "wasm", "ms_per_picture": 70}, "mesh.thread"),
    ({"thread": "worker", "backend": "WASM <b>", "ms_per_picture": 70}, "mesh.backend"),
    ({"thread": "worker", "backend": "wasm", "ms_per_picture": -1}, "mesh.ms_per_picture"),
    ({"thread": "worker", "backend": "wasm", "ms_per_picture": True}, "mesh.ms_per_picture"),
    ({"thread": "worker", "backend": "wasm", "ms_per_picture": 1e9}, "mesh.ms_per_picture"),
])
def test_how_the_pages_face_mesh_ran_is_what_a_page_says(make_app, tmp_path, runner, mesh, said):
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "b.toml", 'compute = "browser"')))
    client = app.test_client()
    token = to_calibration(client, "CAM-MESH-BAD")["token"]
    r = post_sample_round(client, token, runner, "calibration", CALIBRATION_TARGETS, per_target=5, extra={"mesh": mesh})
    assert r.status_code == 400 and said in r.json["error"], r.json
    with app.extensions["gazepref"].sessions() as dbs:
        assert not dbs.scalars(select(store.Calibration)).all()


def test_a_round_keeps_how_the_pages_face_mesh_ran_for_the_export(make_app, tmp_path, runner):
    """A browser-mode round says where the page's face mesh ran (its Web Worker or the main thread,
    facemesh.js startMesh) and its ms a picture; stored with the round and exported
    (calibrations.parquet ``mesh_thread``, ``mesh_ms_per_picture``); a page of an earlier release
    says nothing (null)."""
    import pandas as pd

    from gazepref.capture_site.exporting import export_study

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "b.toml", 'compute = "browser"')))
    client = app.test_client()
    token = to_calibration(client, "CAM-MESH")["token"]
    mesh = {"thread": "main", "backend": "wasm", "ms_per_picture": 512.349}
    r = post_sample_round(client, token, runner, "calibration", CALIBRATION_TARGETS, extra={"mesh": mesh})
    assert r.status_code == 200, r.json
    r = post_sample_round(client, token, runner, "validation", r.json["validation_targets"])  # (no mesh said)
    assert r.status_code == 200, r.json
    with app.extensions["gazepref"].sessions() as dbs:
        export_study(dbs, dbs.scalars(select(store.Study)).one(), tmp_path / "out", "parquet")
    rounds = pd.read_parquet(tmp_path / "out" / "calibrations.parquet")
    got = rounds.set_index("kind")[["mesh_thread", "mesh_ms_per_picture"]]
    assert got.loc["calibration"].tolist() == ["main", 512.3]
    assert got.loc["validation"].isna().all()


def test_the_quick_reading_takes_only_what_the_checked_one_takes(runner):
    """``parse_samples`` reads a batch at once and, at anything irregular, sample by sample
    (which names the problem): on random changes of real samples the quick reading never takes
    a sample the checked one refuses, and where it takes a batch it reads it as the checked one
    does."""
    from gazepref.capture_site.api import ApiError
    from gazepref.capture_site.gaze_samples import _Irregular, _parse_batch, _parse_checked

    rng = np.random.default_rng(7)
    real = [page_sample(runner, moving(i), 100.0 * i) for i in range(4)]
    changes = [
        lambda s, v: dict(s, b=v * 300), lambda s, v: dict(s, s=v * 2000 - 500),
        lambda s, v: dict(s, o=v * 2 - 0.5), lambda s, v: dict(s, w=int(16 + v * 5000)),
        lambda s, v: dict(s, c=[s["c"][0] + (v - 0.5) * 2000, s["c"][1]]),
        lambda s, v: dict(s, lm=[x + (v - 0.5) * 1500 if i == 7 else x for i, x in enumerate(s["lm"])]),
        lambda s, v: dict(s, p=[x + (v - 0.5) * 3 if i == 3 else x for i, x in enumerate(s["p"])]),
        lambda s, v: dict(s, lm=[x * v * 0.01 for x in s["lm"]]),
        lambda s, v: dict(s, n=int(v * 3)),
        lambda s, v: {k: x for k, x in s.items() if k != "p"},
    ]
    taken = refused = 0
    for _ in range(300):
        batch = [dict(s) for s in real]
        for k in rng.choice(len(batch), size=int(rng.integers(1, 3)), replace=False):
            batch[k] = changes[int(rng.integers(len(changes)))](batch[k], float(rng.random()))
        try:
            checked = _parse_checked(batch)
        except ApiError:
            checked = None
        try:
            quick = _parse_batch(batch)
        except _Irregular:
            quick = None
        if quick is None:
            refused += checked is None
            continue
        taken += 1
        assert checked is not None, batch
        assert quick[1] == checked[1]
        for a, b in zip(quick[0], checked[0]):
            assert (a.width, a.height, a.count, a.centre) == (b.width, b.height, b.count, b.centre)
            assert (a.pts is None) == (b.pts is None) and (a.pts is None or np.array_equal(a.pts, b.pts, equal_nan=True))
    assert taken > 30 and refused > 30, (taken, refused)  # both kinds were met
