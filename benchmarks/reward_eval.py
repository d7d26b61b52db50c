"""Print the reward-model table (docs/reward_models.md) for a recording.

    .venv/bin/python benchmarks/reward_eval.py ~/.cache/gazepref/ifllm-dev/dataset [--seeds 5]
        [--protocol group|random] [--text-feedback] [--json OUT.json]

The same as ``gazepref reward evaluate DATA``: K-fold CV grouped by worker (default), repeated
over seeds, nested CV for the L2 strengths, worker-bootstrap CI of the fused-vs-best-text gain.
"""
from __future__ import annotations

import argparse
import json
import time

from gazepref.models import evaluation as ev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--protocol", choices=("group", "random"), default="group")
    ap.add_argument("--models", help="comma-separated subset")
    ap.add_argument("--text-feedback", action="store_true")
    ap.add_argument("--json", help="also write the report as JSON here")
    a = ap.parse_args()
    t0 = time.perf_counter()
    data = ev.load_data(a.data, text_feedback=a.text_feedback, progress=True)
    models = ev.default_models(text_feedback=a.text_feedback)
    if a.models:
        models = {k: models[k] for k in a.models.split(",")}
    rep = ev.evaluate(data, models, protocol=a.protocol, folds=a.folds, seeds=tuple(range(a.seeds)), progress=True)
    print(ev.markdown(rep))
    print(f"\n{len(data.y)} comparisons, {rep['workers']} workers, {time.perf_counter() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=2, default=float)


if __name__ == "__main__":
    main()
