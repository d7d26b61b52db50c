"""Helpers of the webcam site tests: a webcam study config, walking to the calibration step,
posting frame batches and calibration rounds of the astronaut face (``skimage.data``)."""
from __future__ import annotations

import json
import re
from contextlib import closing, contextmanager
from io import BytesIO
from pathlib import Path

import numpy as np

from sqlalchemy import func, select

from gazepref import store
from gazepref.signals.synthetic_face import jpeg
from gazepref.signals.synthetic_face import moving_face as moving
from browsertest import launch, new_context, require_chromium, shared_playwright
from sitetest import STUDY_TOML, Walker, csrf_of, first_sentence

CALIBRATION_TARGETS = [(128, 80), (640, 400), (1152, 80), (128, 720), (1152, 720)]


def webcam_toml(path: Path, gaze: str = "", consent: str = "") -> Path:
    """The test study with ``webcam = "optional"``, 5-point calibration, one attempt, a lenient
    pass threshold, plus ``gaze`` lines in [gaze] and ``consent`` lines in [consent]. The server
    computes the landmarks (the page sends pictures) unless ``gaze`` sets ``compute``."""
    text = STUDY_TOML.read_text().replace('webcam = "off"', 'webcam = "optional"')
    if consent:
        text = text.replace('text = "Consent text for the tests."', f'text = "Consent text for the tests."\n{consent}')
    compute = "" if "compute" in gaze else 'compute = "server"\n'
    text += f"\n[gaze]\ncalibration_points = 5\nattempts = 1\npass_accuracy_px = 5000\n{compute}{gaze}\n"
    path.write_text(text)
    return path


def gaze_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="gaze-data">(.*?)</script>', html, re.S)
    assert m, "page has no gaze-data"
    return json.loads(m.group(1))


def answer_step(client, fields=None):
    page = client.get("/step").text
    step = re.search(r'name="step" value="([^"]+)"', page).group(1)
    return client.post("/step", data={"csrf_token": csrf_of(page), "step": step, **(fields or {})})


def current_step(client) -> str:
    m = re.search(r'name="step" value="([^"]+)"', client.get("/step").text)
    return m.group(1) if m else "done"


def to_calibration(client, pid: str = "CAM1") -> dict:
    client.get("/", query_string={"PROLIFIC_PID": pid, "STUDY_ID": "S", "SESSION_ID": "X"})
    page = client.get("/consent")
    client.post("/consent", data={"csrf_token": csrf_of(page.text), "decision": "agree"})
    for _ in range(3):
        page = client.get("/step").text
        step = re.search(r'name="step" value="([^"]+)"', page).group(1)
        if step == "calibration":
            return gaze_data(page)
        client.post("/step", data={"csrf_token": csrf_of(page), "step": step, "age": "30"})
    raise AssertionError("no calibration step")


def to_task(client, pid: str = "CAM1", browser: bool = False) -> tuple[str, int]:
    """A participant ``pid`` calibrated and on their first task's chat: (token, task id).
    ``browser``: a study computing the landmarks in the page (rounds of landmark samples)."""
    from sitetest import page_data

    token = to_calibration(client, pid)["token"]
    if browser:
        from gazepref.signals.face_mesh import FaceMeshRunner

        runner = FaceMeshRunner()
        try:
            r = post_sample_round(client, token, runner, "calibration", CALIBRATION_TARGETS)
            assert r.status_code == 200, r.json
            r = post_sample_round(client, token, runner, "validation", r.json["validation_targets"])
            assert r.status_code == 200 and r.json["passed"], r.json
        finally:
            runner.close()
    else:
        calibrate(client, token)
    assert answer_step(client).status_code == 302  # the calibration step
    answer_step(client, {"understand_before": "3"})
    return token, page_data(client.get("/step").text)["task"]


def post_frames(client, token, meta, frames, ctype="image/jpeg"):
    data = {"meta": json.dumps(meta), "frame": [(BytesIO(f), f"f{i}.jpg", ctype) for i, f in enumerate(frames)]}
    return client.post("/api/gaze/frames", data=data, content_type="multipart/form-data",
                       headers={"X-Participant-Token": token})


def post_round(client, token, kind, targets, viewport=(1280, 800), per_target=6, seen=None):
    """A round of ``per_target`` frames of the moving face per target (an int, or one per target);
    ``seen``: per target, the frames the page says it recorded (None: not said)."""
    frames, meta_targets, t = [], [], 1000.0
    for k, (x, y) in enumerate(targets):
        ts = []
        for j in range(per_target if isinstance(per_target, int) else per_target[k]):
            frames.append(jpeg(moving(k * 6 + j)))
            ts.append(t)
            t += 100.0
        meta_targets.append({"x": x, "y": y, "t": ts} | ({} if seen is None else {"seen": seen[k]}))
    data = {"meta": json.dumps({"kind": kind, "viewport": list(viewport), "targets": meta_targets}),
            "frame": [(BytesIO(f), f"f{i}.jpg", "image/jpeg") for i, f in enumerate(frames)]}
    return client.post("/api/gaze/round", data=data, content_type="multipart/form-data",
                       headers={"X-Participant-Token": token})


def calibrate(client, token, targets=CALIBRATION_TARGETS) -> None:
    """A calibration and a validation round (5 + 4 targets, 6 frames each)."""
    r = post_round(client, token, "calibration", targets)
    assert r.status_code == 200, r.json
    r = post_round(client, token, "validation", r.json["validation_targets"])
    assert r.status_code == 200, r.json


def finish_task(client, walker: Walker) -> None:
    """Two chat turns, the task and its post-task questions answered."""
    data = walker.to_task()
    for i in range(2):
        turn = walker.chat_turn(data, i, f"question {i}")
    assert walker.answer().status_code == 200  # the task
    walker.answer({"summary": "learned things", "understand_after": "4", "copy_sentence": first_sentence(turn),
                   "attention": "2"})


def page_sample(runner, img: np.ndarray, t: float) -> dict:
    """What facemesh.js sends for ``img`` (BGR), rounded as the page rounds (``runner``: a
    :class:`~gazepref.signals.face_mesh.FaceMeshRunner`)."""
    import cv2

    from gazepref.signals.eye_features import EYES
    from gazepref.signals.webcam import SAMPLE_LANDMARKS, image_sample

    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    s = image_sample(grey, runner.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)), (10, 6))
    d = {"t": t, "w": s.width, "h": s.height, "n": s.count, "b": round(s.brightness, 2)}
    if s.pts is not None:
        d |= {"s": round(s.sharpness, 4), "o": round(s.clipped, 4), "c": [round(v, 2) for v in s.centre],
              "lm": [round(float(v), 2) for i in SAMPLE_LANDMARKS for v in s.pts[i]],
              "p": [round(float(v), 4) for e in EYES for v in s.patches[e.name]]}
    return d


def post_sample_round(client, token, runner, kind, targets, per_target=6, extra=None):
    """A round in browser mode: the page's landmark samples (:func:`page_sample`) of
    ``per_target`` frames of the moving face per target (``extra``: more of the round's keys)."""
    out, samples, t = [], [], 1000.0
    for k, (x, y) in enumerate(targets):
        ts = []
        for j in range(per_target):
            samples.append(page_sample(runner, moving(k * 6 + j), t))
            ts.append(t)
            t += 100.0
        out.append({"x": x, "y": y, "t": ts})
    body = {"kind": kind, "viewport": [1280, 800], "targets": out, "samples": samples} | (extra or {})
    return client.post("/api/gaze/round", json=body, headers={"X-Participant-Token": token})


def moving_face_samples(n: int) -> list[dict]:
    """What the page sends for the first ``n`` frames of ``synthetic_face.moving_face`` (its own
    Face Mesh in video mode; every sample at t = 0: the caller stamps them)."""
    from gazepref.signals.face_mesh import FaceMeshRunner
    from gazepref.signals.synthetic_face import moving_face

    runner = FaceMeshRunner()
    try:
        return [page_sample(runner, moving_face(i), 0.0) for i in range(n)]
    finally:
        runner.close()


def gaze_rows(dbs, task_id) -> int:
    return dbs.scalar(select(func.coalesce(func.sum(store.StreamChunk.n), 0)).where(
        store.StreamChunk.task_id == task_id, store.StreamChunk.stream == "gaze"))


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """A y4m video (Chromium's fake webcam) of BGR ``frames``."""
    import cv2

    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for fr in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(fr, cv2.COLOR_BGR2YUV_I420).tobytes())  # Y, U, V planes
    return path


def to_calibration_page(page, pid: str) -> None:
    """A participant with the Prolific id ``pid`` through consent, demographics and instructions
    in Chromium (``page``): the calibration page is loading when it returns."""
    page.goto(f"/?PROLIFIC_PID={pid}&STUDY_ID=S&SESSION_ID=X")
    page.click("#agree")
    page.fill("[name='age']", "30")
    page.click("#continue")  # demographics
    page.click("#continue")  # instructions


@contextmanager
def browser_context(app, video: Path | None, allow: bool = True, client=None):
    """A Chromium context on ``app`` with the fake webcam playing ``video`` (a y4m file; None: no
    camera); ``allow=False``: the participant denies the camera. ``client``: the context carries
    its session cookie (the participant that test client walked)."""
    require_chromium()
    from gazepref.capture_site.serving import BackgroundServer

    args = (["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}"]
            if video else [])
    if video and allow:
        args.append("--use-fake-ui-for-media-stream")
    # closed whatever fails (the module's shared driver would keep a browser left open running)
    with BackgroundServer(app) as url, closing(launch(shared_playwright(), args)) as browser:
        ctx = new_context(browser, viewport={"width": 1280, "height": 800}, base_url=url)
        try:
            if client is not None:
                ctx.add_cookies([{"name": "session", "value": client.get_cookie("session").value, "url": url}])
            yield ctx
        finally:
            ctx.close()


@contextmanager
def browser_page(app, video: Path | None, allow: bool = True):
    """A page of :func:`browser_context`."""
    with browser_context(app, video, allow) as ctx:
        page = ctx.new_page()
        yield page
