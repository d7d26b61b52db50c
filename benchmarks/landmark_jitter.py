"""How much the landmark features jitter from picture to picture when nothing moves: the
astronaut photo (``gazepref.signals.synthetic_face``) at three face sizes, each as 30 pictures
with Gaussian sensor noise and a sub-pixel shift, through Face Mesh (still-image mode, as ``gaze
evaluate`` runs it). Prints the standard deviation over each set of the head pose
(``signals/head_pose.py``: yaw, pitch, roll in deg, position in cm) and of the iris offsets
(``iris_u``, ``iris_v`` in eye widths, mean of both eyes), the latter also as degrees of the eye's
turn (an eye 3 cm wide between its corners, the iris 1.05 cm from the centre of rotation:
:mod:`gazepref.signals.line_of_sight`), which at 60 cm is ~1 cm on the screen per degree.

    .venv/bin/python benchmarks/landmark_jitter.py [--pictures 30] [--noise 4] [--seed 0] [--json]

A photo slid or zoomed across the picture (``synthetic_face.moving_face``) is not a still head:
a flat picture of a 3-D face seen off-axis has no perspective change, which the pose explains as
a turn of about atan(shift / focal length), several degrees. That is not jitter, so it is not
measured here.
"""
from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np

from gazepref.signals import head_pose, line_of_sight
from gazepref.signals.eye_features import EYES, eye_geometry
from gazepref.signals.face_mesh import FaceMeshRunner
from gazepref.signals.synthetic_face import face_frame

#: (picture size, face scale): eye spans of ~80, ~50 and ~40 px
SETTINGS = (((640, 480), 1.0), ((640, 480), 0.6), ((320, 240), 1.0))
#: eye width between the corners (cm), for the iris offsets' degrees
EYE_WIDTH_CM = 3.0


def iris_offsets(pts: np.ndarray) -> list[float]:
    """iris_u and iris_v (eye widths), mean of both eyes."""
    g = [eye_geometry(pts, e) for e in EYES]
    return [float(np.mean([d[f"eye_{e.name}_iris_{a}"] for d, e in zip(g, EYES)])) for a in "uv"]


def degrees(sd_eye_widths: float) -> float:
    return float(np.degrees(np.arcsin(min(1.0, sd_eye_widths * EYE_WIDTH_CM / line_of_sight.IRIS_RADIUS_CM))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pictures", type=int, default=30)
    ap.add_argument("--noise", type=float, default=4.0, help="sensor noise, grey levels (sd)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    out = []
    with FaceMeshRunner(static_image_mode=True) as mesh:
        for (w, h), scale in SETTINGS:
            poses, irises, spans = [], [], []
            for _ in range(args.pictures):
                image = face_frame(scale=scale, dx=rng.uniform(-1, 1), dy=rng.uniform(-1, 1), size=(w, h))
                image = np.clip(image + rng.normal(0, args.noise, image.shape), 0, 255).astype(np.uint8)
                faces = mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                if not faces:
                    continue
                pose = head_pose.HeadPoseEstimator().estimate(faces[0], w, h)
                poses.append([pose[c] for c in head_pose.COLUMNS])
                irises.append(iris_offsets(faces[0]))
                spans.append(float(np.linalg.norm(faces[0][263] - faces[0][33])))
            sd = np.std(np.array(poses), axis=0)
            iris_sd = np.std(np.array(irises), axis=0)
            out.append({"picture": [w, h], "eye_span_px": round(float(np.mean(spans)), 1), "pictures": len(poses),
                        **{f"{c}_sd": round(float(v), 3) for c, v in zip(head_pose.COLUMNS, sd)},
                        "iris_u_sd": round(float(iris_sd[0]), 4), "iris_v_sd": round(float(iris_sd[1]), 4),
                        "iris_u_sd_deg": round(degrees(iris_sd[0]), 2), "iris_v_sd_deg": round(degrees(iris_sd[1]), 2)})
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for r in out:
            print(f"{r['picture'][0]}x{r['picture'][1]}, eye span {r['eye_span_px']:5.1f} px, {r['pictures']} pictures: "
                  f"sd yaw {r['head_yaw_sd']:.2f}, pitch {r['head_pitch_sd']:.2f}, roll {r['head_roll_sd']:.2f} deg; "
                  f"x {r['head_tx_sd']:.2f}, y {r['head_ty_sd']:.2f}, distance {r['head_tz_sd']:.2f} cm; "
                  f"iris u {r['iris_u_sd']:.4f} ({r['iris_u_sd_deg']:.1f} deg), "
                  f"v {r['iris_v_sd']:.4f} ({r['iris_v_sd_deg']:.1f} deg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
