"""Feedback mining and the ordinal reward model on an IFLLM-layout folder; prints the figures
quoted in docs/feedback_mining.md.

    python benchmarks/feedback_mining.py [DIR] [--out DIR] [--folds 5] [--json]

DIR defaults to the unpacked dev archive (``$GAZEPREF_CACHE/ifllm-dev/dataset``). Steps:

1. ``gazepref feedback mine DIR``: counts per category and level (offline classifier), seconds;
2. the pairs and KTO examples the feedback label sources build from them;
3. the ordinal model's grouped cross-validation (by worker, and by conversation = task).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    cache = Path(os.environ.get("GAZEPREF_CACHE") or Path.home() / ".cache" / "gazepref")
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=str(cache / "ifllm-dev" / "dataset"))
    ap.add_argument("--out", help="where to write the mined table (default: $GAZEPREF_CACHE/feedback-mining/dev "
                                  "for the dev archive, else a temporary folder)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.out is None:  # another folder's table must not take the dev archive's place in the cache
            dev = Path(a.data).resolve() == (cache / "ifllm-dev" / "dataset").resolve()
            a.out = str(cache / "feedback-mining" / "dev") if dev else tmp
        run(a)


def run(a: argparse.Namespace) -> None:

    from gazepref.datasets.conversations import open_conversations
    from gazepref.datasets.feedback_pairs import build_feedback_kto, build_feedback_pairs, feedback_index
    from gazepref.datasets.preference import BuildStats
    from gazepref.models.ordinal_rm import OrdinalFeedbackRM, cross_validate, training_data
    from gazepref.signals.feedback_mining import mine_to_folder, read_mined

    res: dict = {"data": a.data}
    t0 = time.perf_counter()
    s = mine_to_folder(a.data, a.out, show_progress=not a.json)
    res["mining"] = {k: s[k] for k in ("rows", "conversations_with_rows", "by_category", "by_level", "by_sat",
                                       "mean_confidence")}
    res["mining"]["conversations"] = s["read"]["conversations"]
    res["mining"]["seconds"] = round(time.perf_counter() - t0, 1)
    df = read_mined(a.out)
    fb = feedback_index(df)
    st_p, st_k = BuildStats(), BuildStats()
    pairs = build_feedback_pairs(open_conversations(a.data), fb, stats=st_p)
    kto = build_feedback_kto(open_conversations(a.data), fb, stats=st_k)
    res["feedback_pairs"] = {"pairs": len(pairs), **st_p.extra}
    res["feedback_kto"] = {"examples": len(kto), **st_k.extra}
    for group in ("user", "conversation"):
        t0 = time.perf_counter()
        X, y, g = training_data(df, group)
        r = cross_validate(X, y, g, OrdinalFeedbackRM(), folds=a.folds)
        r.pop("per_fold")
        r["seconds"] = round(time.perf_counter() - t0, 1)
        res[f"ordinal_cv_by_{group}"] = r
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
