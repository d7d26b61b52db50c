"""Webcam gaze accuracy on synthetic face images: both ``gaze evaluate`` protocols, with the
calibration's accuracy levers on and off.

    .venv/bin/python benchmarks/gaze_accuracy.py [--sessions 4] [--seeds 0] [--repeats 1]
        [--noise 0] [--face-scale 1] [--models auto one-stage ...] [--json]

Images: the astronaut photo (``gazepref.signals.synthetic_face``; a mirrored copy is the second
"person") placed per session at a different position, size, roll and brightness (the person
moved between sessions), and per image jittered by a few px. Gaze is simulated by moving the
contents of each eye opening (iris and sclera, inside the eye-contour landmarks) as an eye
turning to the point looked at would move its iris: the target plus a fixation error (N(0, 30
px) per axis) on a screen whose geometry the pipeline is not told (camera 1 cm above the
viewport's top centre, 45 CSS px per cm, focal length 500 px), seen from where the photo puts the
eye (its distance from the eye span, 9 cm between the outer corners), with the iris 0.4 eye
widths from the eye's centre of rotation. The frontal photo placed anywhere is a head turned to
face the camera (``synthetic_face.look``): its sessions differ in distance, place, roll and
light, but such a head keeps nearly the same eye turn for a target wherever it is, so posture
costs the eye-feature models little here; ``benchmarks/gaze_head_motion.py`` has heads that
face the screen. One image per target of a 16-point grid per session (one calibration
round; ``--repeats`` rounds per session), with Gaussian sensor noise of ``--noise`` grey levels
(standard deviation) before JPEG compression (quality 90); in each session one image is labelled
with the target it was not looking at (a participant who looked elsewhere). Then what
``evaluate_manifest`` does (the same functions: ``image_features``, ``split_predictions``,
``person_errors``) with ``--protocol leave-session-out`` and ``one-round``, and the calibration
models: ``auto`` (the default), ``sight``, ``sight alone`` (no eye corrections),
``one-stage`` (no line of sight), ``blend`` (the mean of sight and one-stage) and ``levers off``
(one-stage with target folds, blink rejection and trimming off). ``--seeds`` builds one manifest
per seed; figures are means over seeds and people.

A check that the parts work together on real images, not a prediction of real accuracy: the
synthetic eyes move only the iris, lids and head do not follow gaze, and lighting is uniform.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from gazepref.signals.calibration import GazeCalibration
from gazepref.signals.face_mesh import FaceMeshRunner
from gazepref.signals.gaze_batch import (ERROR_PARTS, PROTOCOLS, _mean, image_features, person_errors,
                                        read_manifest, split_predictions)
from gazepref.signals.synthetic_face import VIEWPORT_CENTRE, face_frame, look

sys.path.insert(0, str(Path(__file__).parent))
from gaze_head_motion import MODELS as CALIBRATION_MODELS  # noqa: E402  (benchmarks/gaze_head_motion.py)

GRID = [(x, y) for y in (100, 350, 600, 850) for x in (100, 550, 1000, 1450)]
CENTRE = VIEWPORT_CENTRE


def placed(mirror: bool, scale: float, dx: float, dy: float, roll_deg: float, light: float) -> np.ndarray:
    image = face_frame(scale=scale, dx=dx, dy=dy, size=(640, 480), brightness=light, mirror=mirror)
    if roll_deg:
        m = cv2.getRotationMatrix2D((320 + dx, 240 + dy), roll_deg, 1.0)
        image = cv2.warpAffine(image, m, (640, 480), flags=cv2.INTER_LINEAR, borderValue=(96, 96, 96))
    return image


def build_manifest(root: Path, sessions: int, seed: int, repeats: int = 1, noise: float = 0.0,
                   face_scale: float = 1.0, perturb=None, people: int = 2, jpeg_quality: int = 90) -> Path:
    """Write the images and ``manifest.csv`` under ``root``; returns the manifest's path.

    ``perturb(image, pts, person, session)``, when given, changes each image (BGR, after the
    gaze and the sensor noise, before the JPEG; ``pts``: the face's landmarks, None where the mesh
    found none) and returns the image to write (``benchmarks/gaze_conditions.py``); it must draw
    its own random numbers, so that the pictures' random stream stays that of ``seed``.
    ``people``: the first 1 or 2 of the astronaut and its mirror image."""
    rng = np.random.default_rng(seed)
    mesh = FaceMeshRunner(static_image_mode=True)
    rows = []
    try:
        for person, mirror in (("a", False), ("b", True))[:people]:
            for s in range(sessions):
                pose = dict(scale=face_scale * rng.uniform(1.1, 1.4), dx=rng.uniform(-40, 40), dy=rng.uniform(-15, 15),
                            roll_deg=rng.uniform(-6, 6), light=rng.uniform(0.85, 1.1))
                wrong = int(rng.integers(len(GRID)))
                for r, (i, target) in ((r, t) for r in range(repeats) for t in enumerate(GRID)):
                    jitter = dict(pose, dx=pose["dx"] + rng.normal(0, 2), dy=pose["dy"] + rng.normal(0, 2))
                    image = placed(mirror, **jitter)
                    faces = mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                    looked = np.array(GRID[(i + 5) % len(GRID)] if i == wrong and r == 0 else target, float)
                    looked += rng.normal(0, 30, 2)
                    if faces:
                        image = look(image, faces[0], tuple(looked))
                    if noise:
                        image = np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
                    if perturb is not None:
                        image = perturb(image, faces[0] if faces else None, person, s)
                    name = f"{person}_s{s}_{r}_{i:02d}.jpg"
                    cv2.imwrite(str(root / name), image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                    rows.append({"image": name, "x": target[0], "y": target[1], "person": person, "session": f"s{s}"})
    finally:
        mesh.close()
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


MODELS = {
    **CALIBRATION_MODELS,
    "levers off": lambda: GazeCalibration(fill_missing=True, kind="one-stage", group_targets=False,
                                          blink_ratio=None, trim=None),
}


#: the figures of ``person_errors`` averaged over people (``error_px`` and where it comes from)
PARTS = ("error_px", *ERROR_PARTS)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--repeats", type=int, default=1, help="calibration rounds per session")
    ap.add_argument("--noise", type=float, default=0.0, help="sensor noise, grey levels (sd)")
    ap.add_argument("--face-scale", type=float, default=1.0,
                    help="face size factor (1: eye span ~90-115 px in 640 x 480; 0.6: ~53-68 px)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    guess = float(np.mean([np.hypot(x - CENTRE[0], y - CENTRE[1]) for x, y in GRID]))
    per_person: dict[tuple[str, str], dict[str, dict]] = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = read_manifest(build_manifest(Path(tmp), args.sessions, seed, args.repeats, args.noise,
                                                    args.face_scale))
            for person, rows in manifest.groupby("person", sort=True):
                features, _ = image_features(rows["image"])
                targets = rows[["x", "y"]].to_numpy(dtype=np.float64)
                sessions = rows["session"].to_numpy()
                for protocol in PROTOCOLS:
                    for name in args.models:
                        splits = split_predictions(features, targets, sessions, MODELS[name], protocol)
                        per_person.setdefault((protocol, name), {})[f"{person}{seed}"] = person_errors(
                            targets, splits, protocol, sessions)
    out = {"mean_target_guess_px": guess, "seeds": args.seeds, "repeats": args.repeats, "noise": args.noise,
           "face_scale": args.face_scale,
           "results": [{"protocol": protocol, "model": name,
                        **{f"mean_{k}": _mean([r[k] for r in v.values()]) for k in PARTS},
                        "per_person_px": {p: r["error_px"] for p, r in v.items()}}
                       for (protocol, name), v in per_person.items()]}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"mean-target guess: {guess:.0f} px; seeds {args.seeds}, {args.repeats} round(s) a session, "
              f"sensor noise {args.noise:g}, face scale {args.face_scale:g}")
        for r in out["results"]:
            people = ", ".join(f"{p} {v:.0f}" for p, v in r["per_person_px"].items())
            parts = ", ".join(f"{k.removesuffix('_px').replace('_', ' ')} {_fmt(r['mean_' + k])}" for k in PARTS[1:])
            print(f"{r['protocol']:18s} {r['model']:12s} {r['mean_error_px']:6.1f} px  ({people}; {parts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
