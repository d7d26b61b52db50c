"""Print the reward-model table (docs/reward_models.md) for a recording.

    .venv/bin/python benchmarks/reward_eval.py ~/.cache/gazepref/ifllm-dev/dataset [--seeds 5]
        [--protocol group|random] [--text-feedback] [--json OUT.json] [--held-out-splits N]

The same as ``gazepref reward evaluate DATA``: K-fold CV grouped by worker (default), repeated
over seeds, nested CV for the L2 strengths, worker-bootstrap CI of the fused-vs-best-text gain.

``--held-out-splits N`` instead rehearses the held-out-worker judging through the train/test path
(``gazepref reward evaluate --train A --test B``): N times, a random quarter of the workers is the
test, the rest the training data; it prints each split's accuracy per track and the mean.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from gazepref.models import evaluation as ev


TRACKS = ("text", "implicit", "fused", "personalized")


def held_out_splits(data: ev.RewardData, models: dict, n: int, seed: int = 100) -> np.ndarray:
    """Accuracy per track (rows: splits) of train/test runs with a random quarter of the workers
    held out each time; prints a line per split and the mean."""
    workers = np.unique(data.groups.astype(str))
    rows = []
    print("split  test_workers  test_pairs  " + "  ".join(TRACKS))
    for s in range(n):
        test_w = np.random.default_rng(seed + s).choice(workers, size=max(1, len(workers) // 4), replace=False)
        test = np.isin(data.groups.astype(str), test_w)
        rep = ev.train_test(data.subset(np.flatnonzero(~test)), data.subset(np.flatnonzero(test)), models, n_boot=200)
        acc = [100 * rep[t]["accuracy"] if t in rep else np.nan for t in TRACKS]
        rows.append(acc)
        print(f"{s:5d}  {len(test_w):12d}  {int(test.sum()):10d}  " + "  ".join(f"{v:.1f}" for v in acc))
    mean = np.nanmean(rows, axis=0)
    print("mean" + " " * 31 + "  ".join(f"{v:.1f}" for v in mean))
    return np.array(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--protocol", choices=("group", "random"), default="group")
    ap.add_argument("--models", help="comma-separated subset")
    ap.add_argument("--text-feedback", action="store_true")
    ap.add_argument("--json", help="also write the report as JSON here")
    ap.add_argument("--held-out-splits", type=int, default=0, metavar="N",
                    help="rehearse train/test on N random splits (a quarter of the workers held out)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    data = ev.load_data(a.data, text_feedback=a.text_feedback, progress=True)
    models = ev.default_models(text_feedback=a.text_feedback)
    if a.models:
        models = {k: models[k] for k in a.models.split(",")}
    if a.held_out_splits:
        held_out_splits(data, models, a.held_out_splits)
        print(f"{time.perf_counter() - t0:.0f} s")
        return
    rep = ev.evaluate(data, models, protocol=a.protocol, folds=a.folds, seeds=tuple(range(a.seeds)), progress=True)
    print(ev.markdown(rep))
    print(f"\n{len(data.y)} comparisons, {rep['participants']} participants, {time.perf_counter() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=2, default=float)


if __name__ == "__main__":
    main()
