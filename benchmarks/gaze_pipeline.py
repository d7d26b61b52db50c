"""Milliseconds per frame of the webcam gaze pipeline (decode -> face mesh -> features -> gaze).

Frames: the astronaut photo (skimage) moving and zooming, encoded as JPEG at the site's default
320x240 (and 640x480 for comparison), one tracker as for one participant. Prints wall-clock
ms per frame (mean, p50, p99) and CPU ms per frame (all threads; on a shared machine the wall
figures include waiting for a core). Frames are stamped at ``--fps`` (default 10, as the
site), so the video tracker's periodic face count (once a second of stream time) runs as often
as it would in a study. The served-app benchmark with K participants is benchmarks/gaze.py.

    .venv/bin/python benchmarks/gaze_pipeline.py [--frames 300] [--fps 10]
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from gazepref.signals.calibration import GazeCalibration
from gazepref.signals.synthetic_face import face_frame, jpeg
from gazepref.signals.frame_decode import decode_jpeg
from gazepref.signals.webcam import GazeTracker, process_frame


def frames(n: int, size: tuple[int, int]) -> list[bytes]:
    """JPEGs (quality 80) of the face filling 80-90 % of the frame height, drifting sideways."""
    out = []
    for i in range(n):
        s = np.sin(2 * np.pi * i / 60)
        out.append(jpeg(face_frame(scale=0.96 + 0.12 * s, dx=0.1 * size[0] * s, size=size), quality=80))
    return out


def calibration(tracker: GazeTracker, jpegs: list[bytes]) -> GazeCalibration:
    rows = [tracker.process_jpeg(j) for j in jpegs[:30]]
    rng = np.random.default_rng(0)
    return GazeCalibration().fit(rows, rng.uniform(0, 1000, (len(rows), 2)))


def bench(size: tuple[int, int], n: int, static: bool, fps: float = 10.0) -> dict[str, float]:
    jpegs = frames(n, size)
    decode = []
    for j in jpegs:
        t0 = time.perf_counter()
        decode_jpeg(j)
        decode.append(time.perf_counter() - t0)
    with GazeTracker(static_image_mode=static) as tracker:
        tracker.calibration = calibration(tracker, jpegs)
        for j in jpegs[:10]:  # warm-up
            process_frame(tracker, j, 0.0)
        total, found = [], 0
        cpu0 = time.process_time()
        for i, j in enumerate(jpegs):
            t0 = time.perf_counter()
            row = process_frame(tracker, j, i * 1000.0 / fps)
            total.append(time.perf_counter() - t0)
            found += row["face_count"] > 0
        cpu = time.process_time() - cpu0
    ms = np.array(total) * 1000
    return {"decode_ms": 1000 * float(np.mean(decode)), "ms_per_frame": float(ms.mean()),
            "cpu_ms_per_frame": 1000 * cpu / n,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "face_found_ratio": found / n, "fps_one_core": 1000 / float(ms.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=10.0, help="frame times (ms) step at this rate")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"{'frame':>9} {'mode':>7} {'decode ms':>9} {'ms/frame':>8} {'cpu ms':>6} {'p50':>6} {'p99':>6} "
          f"{'found':>6} {'fps':>6}")
    for size in ((320, 240), (640, 480)):
        for static in (False, True):
            r = bench(size, args.frames, static, args.fps)
            print(f"{size[0]}x{size[1]:<5} {'still' if static else 'video':>7} {r['decode_ms']:9.2f} "
                  f"{r['ms_per_frame']:8.2f} {r['cpu_ms_per_frame']:6.2f} {r['p50_ms']:6.2f} {r['p99_ms']:6.2f} "
                  f"{r['face_found_ratio']:6.2f} {r['fps_one_core']:6.1f}")


if __name__ == "__main__":
    main()
