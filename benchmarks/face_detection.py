"""Which face sizes the webcam pipeline finds in still pictures, with and without the search for
small faces (``FaceMeshRunner(small_faces=...)``, :mod:`gazepref.signals.face_mesh`), and what
that search costs.

    .venv/bin/python benchmarks/face_detection.py [--repeats 3] [--json]

Pictures: the astronaut's head and shoulders (``synthetic_face.face_frame``) on a grey ground at
320 x 240 (the site's capture size), 640 x 480, 1280 x 720 and 1920 x 1080, at several sizes,
centred and moved a fifth of the width to the side. Per picture size and face scale: the eye
span (outer corners) over the picture's width, where the face is found (centred, to the side) by
the mesh alone and with the search, and the milliseconds per picture of each (median over
``--repeats``; the search runs only where the mesh found nothing). A head-and-shoulders laptop
framing puts the eye span near 0.09 of the width; a 1280 x 720 webcam further away puts it
lower.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import cv2
import numpy as np

from gazepref.signals.face_mesh import FaceMeshRunner
from gazepref.signals.synthetic_face import face_frame

SIZES = ((320, 240), (640, 480), (1280, 720), (1920, 1080))
SCALES = (0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.7, 1.0)


def _run(runner: FaceMeshRunner, rgb: np.ndarray, repeats: int) -> tuple[list[np.ndarray], float]:
    times, faces = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        faces = runner.process(rgb)
        times.append((time.perf_counter() - t) * 1000)
    return faces, float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    results = []
    with FaceMeshRunner(static_image_mode=True, small_faces=False) as plain, \
            FaceMeshRunner(static_image_mode=True) as search:
        for size in SIZES:
            for scale in SCALES:
                row = {"picture": f"{size[0]}x{size[1]}", "face_scale": scale, "eye_span_ratio": None}
                for place, dx in (("centred", 0.0), ("side", size[0] / 5)):
                    rgb = cv2.cvtColor(face_frame(scale=scale, dx=dx, size=size), cv2.COLOR_BGR2RGB)
                    for name, runner in (("mesh", plain), ("search", search)):
                        faces, ms = _run(runner, rgb, args.repeats)
                        row[f"{name}_{place}_found"] = bool(faces)
                        row[f"{name}_{place}_ms"] = round(ms, 1)
                        if faces and row["eye_span_ratio"] is None:
                            row["eye_span_ratio"] = round(float(np.linalg.norm(faces[0][263] - faces[0][33]) / size[0]), 3)
                results.append(row)
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        print()
        return 0
    print(f"{'picture':>10} {'scale':>5} {'eye span':>8}  {'mesh alone':>22}  {'with the search':>22}")
    print(f"{'':>10} {'':>5} {'/ width':>8}  {'centred':>10} {'side':>11}  {'centred':>10} {'side':>11}")
    for r in results:
        cells = []
        for name in ("mesh", "search"):
            for place in ("centred", "side"):
                found = "yes" if r[f"{name}_{place}_found"] else "no"
                cells.append(f"{found:>3} {r[f'{name}_{place}_ms']:5.1f}ms")
        span = "-" if r["eye_span_ratio"] is None else f"{r['eye_span_ratio']:.3f}"
        print(f"{r['picture']:>10} {r['face_scale']:>5} {span:>8}  {cells[0]:>10} {cells[1]:>11}  {cells[2]:>10} {cells[3]:>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
