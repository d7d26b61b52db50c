"""Webcam gaze accuracy when the head moves between sessions: simulated landmarks, both
``gaze evaluate`` protocols, the calibration models side by side.

    .venv/bin/python benchmarks/gaze_head_motion.py [--people 12] [--sessions 6] [--seed 1] [--json]

People and sittings come from :mod:`gazepref.signals.synthetic_gaze`: a 3-D face whose eyes turn
to each target of a 16-point grid (three pictures per target per session), its head placed anew
each session (45-75 cm away, up to 7 cm to the side, turned by a few degrees) and turning a little
towards each target; landmark noise 0.6 px. The eye model, camera and people differ from what the
pipeline assumes (:mod:`gazepref.signals.line_of_sight`). No eye patches (no pixels): the
appearance block is not measured here (``benchmarks/gaze_accuracy.py`` has pixels, but its photo
cannot turn).

Models: ``auto`` (the default: with several calibrating sessions, whichever of sight, one-stage
and blend predicts held-out sessions best; with one, blend), ``sight`` (always the line-of-sight
model, eye corrections on), ``sight alone`` (no corrections), ``one-stage`` (eye features and head
pose in one ridge: the model before line of sight), ``blend`` (the mean of sight and one-stage).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from gazepref.signals.calibration import GazeCalibration
from gazepref.signals.gaze_batch import ERROR_PARTS, PROTOCOLS, person_errors, split_predictions
from gazepref.signals.synthetic_gaze import people

MODELS = {
    "auto": lambda: GazeCalibration(fill_missing=True),
    "sight": lambda: GazeCalibration(fill_missing=True, kind="sight"),
    "sight alone": lambda: GazeCalibration(fill_missing=True, kind="sight", sight_corrections=False),
    "one-stage": lambda: GazeCalibration(fill_missing=True, kind="one-stage"),
    "blend": lambda: GazeCalibration(fill_missing=True, kind="blend"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=12)
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    data = people(args.people, args.sessions, seed=args.seed)
    results = []
    for protocol in PROTOCOLS:
        for name, make in MODELS.items():
            per = [person_errors(y, split_predictions(rows, y, sessions, make, protocol), protocol, sessions)
                   for rows, y, sessions in data]
            errors = [p["error_px"] for p in per]
            parts = {k: float(np.mean([p[k] for p in per])) for k in ERROR_PARTS}
            kinds: dict[str, int] = {}
            for p in per:
                for k, n in p["models"].items():
                    kinds[k] = kinds.get(k, 0) + n
            results.append({"protocol": protocol, "model": name, "mean_error_px": float(np.mean(errors)), **parts,
                            "per_person_px": [round(e, 1) for e in errors], "models_fitted": kinds})
    if args.json:
        print(json.dumps({"people": args.people, "sessions": args.sessions, "seed": args.seed, "results": results},
                         indent=2))
    else:
        for r in results:
            kinds = ", ".join(f"{k} {n}" for k, n in r["models_fitted"].items())
            print(f"{r['protocol']:18s} {r['model']:12s} {r['mean_error_px']:6.1f} px  "
                  f"(people {min(r['per_person_px']):.0f}-{max(r['per_person_px']):.0f}; {kinds}; "
                  f"bias {r['bias_px']:.0f}, spread {r['spread_px']:.0f}, session offset {r['session_offset_px']:.0f}, "
                  f"without it {r['error_without_offset_px']:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
