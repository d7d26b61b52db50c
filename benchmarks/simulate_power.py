"""Power of a gaze study: how many participants does the fused reward model need to beat text?

For each effect size D (``gazepref study simulate --effect D``, see docs/simulation.md) one pool of
simulated participants goes through the study site (``--pool`` of them, 8 pairwise turns each);
then, for each study size n, ``--reps`` studies of n participants are drawn from the pool (without
replacement) and evaluated as ``gazepref reward evaluate`` does (K-fold CV grouped by participant,
one fold seed). A study *succeeds* when the fused model (``late_fusion_worker_cal``) beats the best
text-only model with the 95 % participant-bootstrap CI of the gain above 0. Printed: the share of
studies that succeed (the power; at D = 0 the false-positive rate) and the mean gain in points.

Subsampling a finite pool understates the spread for n close to the pool size; keep n ≤ pool / 2
for the figures that matter. Text models: the length rule and the structure model (those of the
fused model's own text part); the slower TF-IDF and MiniLM models are left out to fit the grid in
about 20 minutes of a busy 2-core machine (they are at chance here too: the text says nothing).

    python benchmarks/simulate_power.py                      # the table of docs/simulation.md
    python benchmarks/simulate_power.py --effects 0,0.5 --sizes 10,20 --pool 40 --reps 10
    python benchmarks/simulate_power.py --effects 0.4 --exports 0=sim00,0.8=sim08   # reuse two pools
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = ("length_rule", "structure_bt", "late_fusion_worker_cal")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--effects", default="0,0.4,0.8", help="comma-separated effect sizes D")
    ap.add_argument("--sizes", default="5,10,20", help="comma-separated numbers of participants")
    ap.add_argument("--pool", type=int, default=40, help="simulated participants per effect")
    ap.add_argument("--reps", type=int, default=25, help="studies drawn per (effect, size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exports", default="",
                    help="reuse pools already simulated: EFFECT=DIR,... (`gazepref study simulate --out DIR`); "
                         "the other effects are simulated")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    from gazepref.capture_site.simulate import simulate
    from gazepref.models import evaluation as ev

    effects = [float(x) for x in args.effects.split(",")]
    given = {float(k): Path(v) for k, v in (item.split("=", 1) for item in args.exports.split(",") if item)}
    effects = sorted(set(effects) | set(given))
    sizes = [int(x) for x in args.sizes.split(",")]
    models = {k: v for k, v in ev.default_models().items() if k in MODELS}
    rng = np.random.default_rng(args.seed)
    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for e_i, effect in enumerate(effects):
            t0 = time.perf_counter()
            out = given.get(effect) or Path(tmp) / f"effect-{e_i}"
            if effect not in given:
                simulate(args.pool, effect, seed=args.seed * 1000 + e_i, out=out)
            data = ev.load_data(out, cache=False)
            workers = np.unique(data.groups)
            if max(sizes) > len(workers):
                raise SystemExit(f"effect {effect}: a size is above the pool's {len(workers)} participants")
            t_sim = time.perf_counter() - t0
            for n in sizes:
                gains, wins = [], []
                for _ in range(args.reps):
                    pick = set(rng.choice(workers, size=n, replace=False))
                    sub = data.subset(np.flatnonzero([w in pick for w in data.groups]))
                    rep = ev.evaluate(sub, models, folds=min(5, n), seeds=(0,), n_boot=1000)
                    g = rep["gain_fused_vs_best_text"]
                    gains.append(g["gain"])
                    wins.append(g["ci_low"] > 0)
                row = {"effect": effect, "participants": n, "comparisons_per_study": int(len(sub.y)),
                       "reps": args.reps, "power": float(np.mean(wins)), "mean_gain": float(np.mean(gains)),
                       "sd_gain": float(np.std(gains)), "pool": int(len(workers))}
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            print(f"effect {effect}: pool of {len(workers)} participants ready in {t_sim:.0f} s, evaluated in "
                  f"{time.perf_counter() - t0 - t_sim:.0f} s", file=sys.stderr, flush=True)
    print(f"\n{len(effects)} effects x {len(sizes)} sizes x {args.reps} studies drawn from pools of simulated "
          f"participants, {time.perf_counter() - started:.0f} s\n")
    print("| D | Φ(D) | " + " | ".join(f"n = {n}" for n in sizes) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in sizes) + " |")
    from math import erf, sqrt

    for effect in effects:
        cells = []
        for n in sizes:
            r = next(r for r in results if r["effect"] == effect and r["participants"] == n)
            cells.append(f"{100 * r['power']:.0f} % ({100 * r['mean_gain']:+.1f})")
        print(f"| {effect:g} | {0.5 * (1 + erf(effect / sqrt(2))):.2f} | " + " | ".join(cells) + " |")
    print("\ncells: share of studies where the fused model beats the best text model with the 95 % "
          "participant-bootstrap CI above 0 (mean gain in points)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
