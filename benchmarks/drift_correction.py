"""Offset drift correction from clicks (``[gaze] drift_correction = true`` alone:
:class:`gazepref.signals.calibration.DriftCorrector`) on synthetic people: how much a later
sitting's error it removes, after N clicks, against the plain median of the last 5 click
differences (the correction before 08 Dec 2026).

    .venv/bin/python benchmarks/drift_correction.py [--people 6] [--sittings 4] [--seed 5]
                                                    [--clicks 1 3 10 30] [--pictures 5] [--json]

Each person (``synthetic_gaze.people``: a face, sittings with their own posture and light) is
calibrated on one sitting and predicts another (``gaze evaluate``'s one-round protocol, every
ordered pair of sittings); each click lands on one of the predicted sitting's dots, paired with
the median of ``--pictures`` of that dot's predicted pictures (the site pairs a click with the
usable estimates of the 400 ms before it: 4-6 at 10-15 Hz). Prints the mean error (px) over
people and pairs: uncorrected, the plain median of 5, this correction; per model (sight, blend).
"""
from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=6)
    ap.add_argument("--sittings", type=int, default=4)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--clicks", type=int, nargs="+", default=[1, 3, 10, 30])
    ap.add_argument("--pictures", type=int, default=5, help="a click's estimate: the median of this many pictures")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import numpy as np

    from gazepref.signals.calibration import DriftCorrector, GazeCalibration
    from gazepref.signals.gaze_batch import protocol_splits
    from gazepref.signals.synthetic_gaze import people

    class PlainMedian(DriftCorrector):
        """The correction before 08 Dec 2026: the plain median of the last ``window`` differences."""

        @property
        def offset(self) -> tuple[float, float]:
            if not self._diffs:
                return 0.0, 0.0
            d = np.array(self._diffs)
            return float(np.median(d[:, 0])), float(np.median(d[:, 1]))

    data = people(args.people, args.sittings, seed=args.seed)
    out = []
    for n_clicks in args.clicks:
        rng = np.random.default_rng(0)
        for kind in ("sight", "blend"):
            errors: dict[str, list[float]] = {}
            for rows, y, sittings in data:
                for _, train, test in protocol_splits(sittings, "one-round"):
                    pred = GazeCalibration(fill_missing=True, kind=kind).fit(rows[train], y[train]).predict(rows[test])
                    yt = y[test]
                    targets = np.unique(yt, axis=0)
                    clicks = []
                    for _ in range(n_clicks):
                        t = targets[rng.integers(len(targets))]
                        idx = np.flatnonzero((yt == t).all(axis=1))
                        picked = rng.choice(idx, min(args.pictures, len(idx)), replace=False)
                        clicks.append((np.median(pred[picked], axis=0), t))
                    errors.setdefault("uncorrected", []).append(float(np.linalg.norm(pred - yt, axis=1).mean()))
                    for name, corrector in (("plain_median_5", PlainMedian(window=5)), ("drift_corrector", DriftCorrector())):
                        for k, (g, t) in enumerate(clicks):
                            corrector.add_click(g, t, t_ms=1000.0 * k)
                        errors.setdefault(name, []).append(
                            float(np.linalg.norm(corrector.apply(pred) - yt, axis=1).mean()))
            out.append({"clicks": n_clicks, "model": kind, **{k: round(float(np.mean(v)), 1) for k, v in errors.items()}})
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{args.people} people x {args.sittings} sittings (seed {args.seed}); mean error px, one-round")
    for row in out:
        print(f"{row['model']:6s} {row['clicks']:3d} clicks: uncorrected {row['uncorrected']:6.1f}  "
              f"plain median of 5 {row['plain_median_5']:6.1f}  drift corrector {row['drift_corrector']:6.1f}")


if __name__ == "__main__":
    main()
