"""Calibration accuracy of the browser mode's landmarks: ``gazepref gaze evaluate`` on a manifest
with each image's landmarks from the participant's page (Human's face mesh, in headless Chromium)
instead of the server's Face Mesh.

    .venv/bin/python benchmarks/page_accuracy.py MANIFEST [--protocol one-round] [--width 320] [--server] [--json]

A study in browser mode (the default) calibrates and predicts with the landmarks its page computes;
``gazepref gaze evaluate`` runs the server's pipeline (MediaPipe in Python), whose landmarks agree
with the page's to ~1 px but whose derived features differ a little (the two meshes are different
models: tests/capture_site/test_browser_gaze.py, TOLERANCE). This script measures the browser
path on the same images and protocols: it starts the study site (browser mode) in Chromium, lets
the calibration page load its face mesh (a fake camera), then gives the mesh each image of the
manifest, drawn on a canvas ``--width`` px wide as the page draws the camera picture (the study's
``[gaze] width``, 320 by default; 0: the image's own size), and turns each sample into a tracker
row with the server's own code (``gaze_samples.parse_samples``, ``GazeTracker.process_sample``:
the rows a study stores). The evaluation is then ``gaze evaluate``'s (``evaluate_manifest`` with
these rows). ``--server`` also evaluates the server's pipeline on the full images (what ``gazepref
gaze evaluate`` prints) and on the same canvas size, for comparison in one run. Prints one JSON
object: ``page`` (and ``server``, ``server_at_width``), each as ``gaze evaluate --json``.
Needs Chromium (``make browser``); ~0.1-0.3 s an image on a 2-core machine.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "capture_site"))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: one picture (PNG bytes) through the page's face mesh, drawn on a canvas ``width`` px wide (0: its
#: own size), as the page draws the camera picture
SAMPLE_JS = """async ({ b64, width, landmarks, patchSize }) => {
  const mesh = window.gazepref.calibration.capture.mesh;
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const w = width > 0 ? width : bitmap.width;
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = Math.round(w * bitmap.height / bitmap.width);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return await mesh.sample(canvas, ctx, landmarks, patchSize);
}"""


def page_features(page, width: int) -> Callable:
    """An ``image_features`` (signals.gaze_batch) whose landmarks come from ``page``'s face mesh:
    each picture as OpenCV reads it (the server's reading), given to the page losslessly."""
    import cv2

    from gazepref.capture_site.gaze_samples import parse_samples
    from gazepref.signals.eye_features import PATCH_SIZE
    from gazepref.signals.gaze_batch import image_features
    from gazepref.signals.webcam import SAMPLE_LANDMARKS

    def sample_of(image: np.ndarray):
        png = cv2.imencode(".png", image)[1].tobytes()
        sample = page.evaluate(SAMPLE_JS, {"b64": base64.b64encode(png).decode(), "width": width,
                                           "landmarks": list(SAMPLE_LANDMARKS), "patchSize": list(PATCH_SIZE)})
        (face,), _ = parse_samples([{**sample, "t": 0.0}], 1)
        return face

    return lambda paths, progress=None, groups=None: image_features(paths, progress, groups, sample_of=sample_of)


def resized_features(width: int) -> Callable:
    """The server's ``image_features`` on the images scaled to ``width`` px (as the page's canvas)."""
    import cv2

    from gazepref.signals import gaze_batch

    def features(paths, progress=None, groups=None):
        with tempfile.TemporaryDirectory() as d:
            scaled = []
            for i, p in enumerate(paths):
                image = gaze_batch.read_image(p)
                if image is None:
                    scaled.append(p)
                    continue
                h = round(width * image.shape[0] / image.shape[1])
                out = str(Path(d) / f"{i}.png")
                cv2.imwrite(out, cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA))
                scaled.append(out)
            return gaze_batch.image_features(scaled, progress, groups)

    return features


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("manifest")
    ap.add_argument("--protocol", default="leave-session-out", choices=["leave-session-out", "one-round"])
    ap.add_argument("--model", default="auto")
    ap.add_argument("--width", type=int, default=320, help="canvas width the page draws each image at (0: its own)")
    ap.add_argument("--backend", default="wasm", choices=["webgl", "wasm", "cpu"])
    ap.add_argument("--server", action="store_true", help="also the server's pipeline, for comparison")
    ap.add_argument("--json", action="store_true", help="(the output is JSON either way)")
    a = ap.parse_args(argv)
    from gazepref import UserError
    from gazepref.signals.gaze_batch import evaluate_manifest
    from browsertest import wait_for_function
    from page_mesh import calibration_page  # (benchmarks/page_mesh.py)

    out: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as d:
            with calibration_page(Path(d), f'mesh_backend = "{a.backend}"\nfps = 5', "accuracy", 120_000) as (page, _):
                wait_for_function(page, "window.gazepref && window.gazepref.calibration.capture"
                                        " && window.gazepref.calibration.capture.samples >= 1", timeout=120_000)
                page.evaluate("window.gazepref.calibration.capture.stop()")  # the mesh stays: the images only
                out["page"] = evaluate_manifest(a.manifest, protocol=a.protocol, kind=a.model,
                                                features=page_features(page, a.width))
                out["page"]["landmarks"] = {"source": "page", "width": a.width or "image",
                                            "backend": page.evaluate("window.gazepref.calibration.capture.mesh.backend")}
        if a.server:
            out["server"] = evaluate_manifest(a.manifest, protocol=a.protocol, kind=a.model)
            if a.width:
                out["server_at_width"] = evaluate_manifest(a.manifest, protocol=a.protocol, kind=a.model,
                                                           features=resized_features(a.width))
    except UserError as e:
        print(f"page_accuracy.py: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
