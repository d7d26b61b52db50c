"""The study's [gaze] table: keep_frames needs the consent to cover it; recalibrate_every puts
calibration steps between tasks, and such a step needs a new calibration."""
from __future__ import annotations

import random

import pytest

from gazepref.capture_site.app import SiteStartError
from gazepref.capture_site.config import ConfigError, load_config
from gazepref.capture_site.gaze_settings import gaze_settings
from gazepref.capture_site.plan import make_plan, make_steps
from gazetest import (answer_step, calibrate, current_step, finish_task, gaze_data, post_round, to_calibration,
                      webcam_toml)
from sitetest import STUDY_TOML, Walker

CONSENT = 'camera_images = true'


def test_defaults(tmp_path):
    s = gaze_settings(load_config(webcam_toml(tmp_path / "s.toml")))
    assert (s.keep_frames, s.drift_correction, s.recalibrate_every, s.face_check_ms) == (False, False, 0, 1000)
    assert s.interaction_calibration and s.click_correction  # continuous calibration from clicks is on
    assert s.page()["keep_frames"] is False
    # browser mode: set-up samples every 500 ms (answered with the face status), task samples every 1000 ms
    assert (s.page()["batch_ms"], s.page()["task_batch_ms"]) == (500, 1000)
    # ... and at most every 4 s while the server is short of CPU (gaze_pacing.py)
    assert s.page()["task_batch_max_ms"] == 4000


@pytest.mark.parametrize("line, worker", [
    ("", True),  # the default: the page's face mesh in a Web Worker, off its main thread (facemesh.js startMesh)
    ("mesh_worker = false", False), ("mesh_worker = true", True)])
def test_the_study_may_keep_the_face_mesh_on_the_pages_main_thread(tmp_path, line, worker):
    toml = webcam_toml(tmp_path / "s.toml", f'compute = "browser"\n{line}')
    assert gaze_settings(load_config(toml)).page()["mesh_worker"] is worker


def test_mesh_worker_is_true_or_false(tmp_path):
    with pytest.raises(ConfigError, match="mesh_worker.*true or false"):
        gaze_settings(load_config(webcam_toml(tmp_path / "s.toml", 'mesh_worker = "no"')))


@pytest.mark.parametrize("lines, affine, offset", [
    ("", True, False),  # the default: continuous calibration
    ("drift_correction = true", False, True),  # the offset alone, as asked
    ("drift_correction = true\ninteraction_calibration = true", True, True),  # (the affine one then)
    ("interaction_calibration = false", False, False),  # no correction from clicks
])
def test_which_correction_clicks_make(tmp_path, lines, affine, offset):
    from gazepref.signals.calibration import InteractionRecalibrator
    from gazepref.signals.gaze_recalibrate import study_corrector

    cfg = load_config(webcam_toml(tmp_path / "s.toml", lines))
    s = gaze_settings(cfg)
    assert (s.interaction_calibration, s.drift_correction, s.click_correction) == (affine, offset, affine or offset)
    if affine or offset:  # what gaze recalibrate --interactions replays: the site's corrector
        assert isinstance(study_corrector(cfg.raw), InteractionRecalibrator) == affine


@pytest.mark.parametrize("lines, longest", [
    ((), 4000), (("fps = 30",), 2000),  # at most 60 samples a batch
    (("task_batch_ms = 5000", "fps = 5"), 5000),  # never below the usual interval
    (("task_batch_max_ms = 1000",), 1000),  # the same as task_batch_ms: no pacing
])
def test_the_longest_task_batch_interval_follows_fps(tmp_path, lines, longest):
    s = gaze_settings(load_config(webcam_toml(tmp_path / "s.toml", "\n".join(lines))))
    assert s.task_batch_max_ms == longest


def test_keep_frames_needs_the_consent_flag(tmp_path, make_app):
    path = webcam_toml(tmp_path / "s.toml", "keep_frames = true")
    with pytest.raises(ConfigError, match="consent.camera_images = true"):
        gaze_settings(load_config(path))
    with pytest.raises(SiteStartError, match="keep_frames"):
        make_app(STUDY_CONFIG=str(path))  # the site refuses to start, in one line
    ok = gaze_settings(load_config(webcam_toml(tmp_path / "ok.toml", "keep_frames = true", CONSENT)))
    assert ok.keep_frames


@pytest.mark.parametrize("key, value", [("keep_frames", "1"), ("drift_correction", '"yes"'),
                                        ("recalibrate_every", "-1"), ("face_check_ms", "1.5")])
def test_bad_values_name_the_key(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"gaze.{key}"):
        gaze_settings(load_config(webcam_toml(tmp_path / "s.toml", f"{key} = {value}", CONSENT)))


@pytest.mark.parametrize("key, value", [("pass_accuracy_px", "-5"), ("pass_accuracy_px", "nan"),
                                        ("roi_radius_px", "0"), ("idle_s", "inf"), ("setup_timeout_s", "-1.0")])
def test_numbers_must_be_finite_and_not_negative_and_errors_name_the_file(tmp_path, key, value):
    """A NaN or negative pass threshold would fail (or pass) every validation round, an infinite
    idle time never closes a tracker: the study file is refused, naming the file and the key."""
    path = webcam_toml(tmp_path / "s.toml")
    line = f"{key} = {value}" if key == "pass_accuracy_px" else f"pass_accuracy_px = 5000\n{key} = {value}"
    path.write_text(path.read_text().replace("pass_accuracy_px = 5000", line))
    with pytest.raises(ConfigError, match=rf"^{path}: gaze\.{key} must be a finite number"):
        load_config(path)


def test_plan_has_a_calibration_step_every_n_tasks(tmp_path):
    text = webcam_toml(tmp_path / "s.toml", "recalibrate_every = 2").read_text()
    path = tmp_path / "five.toml"
    path.write_text(text.replace("pairwise = 1", "pairwise = 3").replace("pointwise = 1", "pointwise = 2"))
    cfg = load_config(path)
    steps = make_steps(cfg, make_plan(cfg, [], random.Random(0)))
    cal = [s for s in steps if s.startswith("calibration")]
    assert cal == ["calibration", "calibration:2", "calibration:4"]
    assert steps.index("calibration:2") == steps.index("pre:2") - 1, "before the task's pre-task questions"
    assert steps.index("post:1") < steps.index("calibration:2")
    never = load_config(webcam_toml(tmp_path / "never.toml"))
    assert [s for s in make_steps(never, make_plan(never, [], random.Random(0))) if s.startswith("calibration")] \
        == ["calibration"]
    off = load_config(STUDY_TOML)
    assert not any(s.startswith("calibration") for s in make_steps(off, make_plan(off, [], random.Random(0))))


def test_recalibration_step_between_tasks_needs_a_new_calibration(make_app, tmp_path):
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", "recalibrate_every = 1")))
    client = app.test_client()
    gaze = to_calibration(client)
    calibrate(client, gaze["token"])
    assert answer_step(client).status_code == 302
    finish_task(client, Walker(client))
    assert current_step(client) == "calibration:1"
    page = client.get("/step").text
    assert "Camera calibration again" in page and 'id="gaze-data"' in page
    assert "outcome" not in gaze_data(page), "the first step's outcome is not this step's"
    r = answer_step(client)
    assert r.status_code == 400 and "complete the camera calibration" in r.text, "the first calibration is not enough"
    r = post_round(client, gaze["token"], "calibration", [(128, 80), (640, 400), (1152, 80), (128, 720), (1152, 720)])
    assert r.status_code == 200, r.json
    r = answer_step(client)
    assert r.status_code == 400 and "complete the camera calibration" in r.text, "a calibration is checked first"
    r = post_round(client, gaze["token"], "validation", [(256, 160), (1024, 640), (1024, 160), (256, 640)])
    assert r.status_code == 200 and r.json["outcome"]["passed"], r.json
    assert gaze_data(client.get("/step").text)["outcome"]["passed"]  # a reload now shows it
    assert answer_step(client).status_code == 302
    assert current_step(client) == "pre:1"


def test_recalibration_is_skipped_in_a_mouse_only_session(make_app, tmp_path):
    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", "recalibrate_every = 1")))
    client = app.test_client()
    to_calibration(client)
    assert answer_step(client, {"outcome": "no-camera"}).status_code == 302
    finish_task(client, Walker(client))
    assert current_step(client) == "calibration:1"
    page = client.get("/step").text
    assert "continues without the webcam" in page and 'id="gaze-data"' not in page
    assert answer_step(client).status_code == 302
    assert current_step(client) == "pre:1"


@pytest.mark.parametrize("lines, message", [
    (("fps = 30", "batch_ms = 2000"), "60 frames per batch"),
    (("fps = 30", "task_batch_ms = 2500", 'compute = "browser"'), "75 samples per batch"),
    (("fps = 30", "task_batch_max_ms = 2500", 'compute = "browser"'), "75 samples per batch"),
    (("task_batch_ms = 2000", "task_batch_max_ms = 1500"), "below gaze.task_batch_ms"),
    (("fps = 30", "settle_ms = 3000", 'compute = "server"'),
     r"would send 460 frames of 320x240 \(5 dots x 92 a dot, gaze.fps x \(gaze.settle_ms \+ 50 ms\)"),
    # browser mode sends landmark samples, as many (before, the message spoke of frames and their
    # size, and suggested a lower fps or frame size, which cannot help against min_frames)
    (("min_frames = 30", "calibration_points = 9", 'compute = "browser"'),
     r"would send 540 samples \(9 dots x 60 a dot, twice gaze.min_frames; at most 400 a round\): lower gaze.min_frames"),
    (("width = 1280", "height = 960", "fps = 30", "settle_ms = 1000", 'compute = "server"'), "MiB"),
])
def test_settings_whose_requests_the_server_would_refuse_fail_at_start(tmp_path, lines, message):
    path = webcam_toml(tmp_path / "s.toml", "\n".join(x for x in lines if not x.startswith("calibration_points")))
    for line in (x for x in lines if x.startswith("calibration_points")):  # (the test study sets 5)
        path.write_text(path.read_text().replace("calibration_points = 5", line))
    with pytest.raises(ConfigError, match=message):
        gaze_settings(load_config(path))
    ok = gaze_settings(load_config(webcam_toml(tmp_path / "ok.toml", "fps = 30\nwidth = 640\nheight = 480")))
    assert ok.round_frames == 5 * 20  # 650 ms of 30 fps frames per target


def test_a_tracker_unused_for_its_studys_idle_s_is_closed(tmp_path):
    """``[gaze] idle_s`` reaches the tracker registry: a participant's tracker unused that long
    is closed (forgotten) at the next use of the registry; another study's longer idle_s keeps
    its own participant's; without settings the registry's own time applies."""
    import time
    from dataclasses import replace

    from gazepref.capture_site.gaze_trackers import TrackerRegistry

    short = gaze_settings(load_config(webcam_toml(tmp_path / "short.toml", "idle_s = 0.2")))
    long = gaze_settings(load_config(webcam_toml(tmp_path / "long.toml", "idle_s = 60")))
    reg = TrackerRegistry(idle_s=0.2)
    first, kept = reg.get((1, "a"), short), reg.get((2, "b"), long)
    reg.get((3, "c"))
    time.sleep(0.3)
    assert reg.get((4, "d"), long) is not None and len(reg) == 2  # (1, "a") and (3, "c") swept
    assert reg.get((2, "b"), long) is kept and reg.get((1, "a"), short) is not first
    # a stored config read without the strict checks: 0, a negative time or NaN is no time
    from gazepref.capture_site.gaze_trackers import _idle_s

    assert [_idle_s(replace(short, idle_s=v)) for v in (0.0, -1.0, float("nan"), float("inf"), 5.0)] == \
        [None, None, None, None, 5.0]
