"""The page's picture measures (capture_site/static/facemesh.js) against the Python definitions
they copy, run in Node.js on the astronaut photo: grey levels (cv2.cvtColor), the 10x6 eye
patches (eye_features.eye_patch), the sharpness (webcam._sharpness), and the face box with its
brightness and saturated share (webcam.image_sample; the OVEREXPOSED flag's measure, on an
over-exposed picture too). The landmarks are the Python Face Mesh's, so only the definitions differ."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gazepref.signals import eye_features
from gazepref.signals.webcam import _sharpness, image_sample

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
skdata = pytest.importorskip("skimage.data")

FACEMESH_JS = Path(__file__).resolve().parents[2] / "capture_site" / "static" / "facemesh.js"

SCRIPT = """
import * as fm from "./facemesh.mjs";
import fs from "fs";
const job = JSON.parse(fs.readFileSync("job.json", "utf8"));
const rgba = new Uint8Array(fs.readFileSync("rgba.bin"));
const grey = fm.greyOf(rgba, job.w * job.h);
const out = { grey: Array.from(grey.slice(0, 1000)), greySum: grey.reduce((a, b) => a + b, 0),
  patches: job.eyes.map(([a, b]) => fm.eyePatch(grey, job.w, job.h, a, b, 10, 6)),
  sharpness: job.boxes.map((box) => fm.sharpness(grey, job.w, box)),
  levels: ["rgba.bin", "bright.bin"].map((name) => {
    const g = fm.greyOf(new Uint8Array(fs.readFileSync(name)), job.w * job.h);
    const box = fm.faceBox(job.pts, job.w, job.h);
    return { box, ...fm.boxLevels(g, job.w, box) };
  }) };
process.stdout.write(JSON.stringify(out));
"""


def test_the_page_measures_follow_the_python_definitions(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is missing (make serve / make test need it for npm)")
    from gazepref.signals.face_mesh import FaceMeshRunner

    rgb = cv2.resize(skdata.astronaut(), (320, 240), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    runner = FaceMeshRunner(static_image_mode=True)
    pts = runner.process(rgb)[0]
    runner.close()
    h, w = grey.shape
    eyes = [(pts[e.image_left].tolist(), pts[e.image_right].tolist()) for e in eye_features.EYES]
    lo, hi = pts.min(axis=0).astype(int), pts.max(axis=0).astype(int)
    # (the last two: 128 px wide and an odd height, so the 64 px copy is x.5 rows high: rounded to even)
    boxes = [[int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])], [100, 20, 230, 150], [10, 10, 40, 30],
             [100, 20, 227, 148], [60, 40, 187, 176]]
    bright = np.clip(rgb.astype(np.float64) * 2.2, 0, 255).astype(np.uint8)  # over-exposed (gain 2.2)
    for name, picture in (("rgba.bin", rgb), ("bright.bin", bright)):
        (tmp_path / name).write_bytes(np.dstack([picture, np.full((h, w), 255, np.uint8)]).tobytes())
    (tmp_path / "job.json").write_text(json.dumps({"w": w, "h": h, "eyes": eyes, "boxes": boxes,
                                                   "pts": pts.tolist()}))
    shutil.copy(FACEMESH_JS, tmp_path / "facemesh.mjs")
    (tmp_path / "run.mjs").write_text(SCRIPT)
    out = json.loads(subprocess.run([node, "run.mjs"], cwd=tmp_path, capture_output=True, check=True,
                                    timeout=60).stdout)

    assert out["grey"] == grey.ravel()[:1000].tolist() and out["greySum"] == int(grey.sum())
    for eye, got in zip(eye_features.EYES, out["patches"]):
        ref = eye_features.eye_patch(grey, pts, eye)
        # bilinear weights: OpenCV's fixed point (1/32 px) against floats: a grey level here and
        # there before the equalisation
        assert np.abs(np.array(got) - ref).mean() < 0.01 and np.abs(np.array(got) - ref).max() < 0.1
    for box, got in zip(boxes, out["sharpness"]):
        x0, y0, x1, y1 = box
        # the same definition: what is left is OpenCV's resize to whole grey levels (up to ~0.4 %)
        assert got == pytest.approx(_sharpness(grey[y0:y1 + 1, x0:x1 + 1]), rel=0.006)
    clipped = []
    for picture, got in zip((rgb, bright), out["levels"]):
        ref = image_sample(cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY), [pts], None)
        lo_, hi_ = np.clip(pts.min(axis=0), 0, [w - 1, h - 1]).astype(int), np.clip(pts.max(axis=0), 0, [w - 1, h - 1]).astype(int)
        assert got["box"] == [int(lo_[0]), int(lo_[1]), int(hi_[0]), int(hi_[1])]
        assert got["mean"] == pytest.approx(ref.brightness, abs=1e-9)
        assert got["saturated"] == pytest.approx(ref.clipped, abs=1e-12)
        clipped.append(got["saturated"])
    assert clipped[0] < 0.05 and clipped[1] > 0.3, clipped  # (the bright picture has saturated pixels to count)


def test_the_mesh_scale_keeps_within_humans_largest_picture(tmp_path):
    """The page meshes its picture scaled up 4x (Human's whole-pixel points in 1/4 px steps), but
    Human shrinks any picture over 3840 px and gives its points in the smaller one's pixels: a
    study's 1280 px pictures at 4x (5120 px) had every landmark at 0.75 of its place. The scale is
    the largest whole number within 3840 px, at most 4; and the eye points wait for the iris model."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is missing (make serve / make test need it for npm)")
    shutil.copy(FACEMESH_JS, tmp_path / "facemesh.mjs")
    (tmp_path / "run.mjs").write_text("""
import * as fm from "./facemesh.mjs";
const sizes = [[320, 240], [640, 480], [960, 720], [1280, 720], [1280, 960], [80, 60]];
const mesh = Array.from({ length: 478 }, (_, i) => [4 * i, 8 * i, 0]);
const pts = fm.meshes({ face: [{ mesh, box: [0, 0, 10, 10] }] }, 4)[0];
process.stdout.write(JSON.stringify({ scales: sizes.map(([w, h]) => fm.meshScale(w, h)), n: pts.length,
  first: pts[1], iris: pts[470] }));
""")
    out = json.loads(subprocess.run([node, "run.mjs"], cwd=tmp_path, capture_output=True, check=True,
                                    timeout=60).stdout)
    assert out["scales"] == [4, 4, 4, 3, 3, 4]
    assert out["n"] == 478 and out["first"] == [1.125, 2.125] and out["iris"] == [None, None]  # (NaN in JSON)
