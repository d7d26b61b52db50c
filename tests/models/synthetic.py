"""Synthetic comparison frames where the signal is known."""
from __future__ import annotations

import numpy as np
import pandas as pd

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega").split()


def make_frame(n_workers: int = 12, per_worker: int = 10, seed: int = 0, rule: str = "longer",
               implicit: bool = True) -> pd.DataFrame:
    """Pairs with random texts; ``rule='longer'``: the longer text wins; ``'gaze'``: the response with
    more gaze dwell wins (lengths random); ``'random'``: labels are coin flips."""
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(n_workers):
        for k in range(per_worker):
            n0, n1 = rng.integers(5, 120, size=2)
            while n1 == n0:
                n1 = rng.integers(5, 120)
            t0 = " ".join(rng.choice(WORDS, n0)) + "."
            t1 = " ".join(rng.choice(WORDS, n1)) + "."
            g = rng.normal(size=1)[0]
            if rule == "longer":
                y = float(n0 > n1)
            elif rule == "gaze":
                y = float(g > 0)
            else:
                y = float(rng.integers(0, 2))
            row = {"turn_id": f"{w}-{k}", "task_id": f"w{w}/{k // 3}", "worker": f"w{w}", "index": k % 3,
                   "epoch_ms": 1e12 + 1e5 * k, "seq": k, "prompt": f"question {k}", "text_0": t0, "text_1": t1,
                   "model_0": "m_a", "model_1": "m_b", "bullets": 0.0, "next_query": "", "y": y}
            if implicit:
                row.update({"gaze_d_share": g * 0.2 + rng.normal(scale=0.02), "gaze_d_log_dwell": g + rng.normal(scale=0.1),
                            "mouse_d_share": rng.normal(scale=0.2), "gaze_s_log_total_s": 3.0})
            rows.append(row)
    return pd.DataFrame(rows)
