"""Accuracy of the text-feedback classifier; prints the tables quoted in docs/text_feedback.md.

    python benchmarks/feedback_eval.py [--cv] [--ifllm DIR] [--show-flags] [--stress [FILE]] [--json]

1. Per-class precision/recall of the default offline classifier (trained on the packaged
   ``feedback_train.jsonl``) on the packaged, disjoint ``feedback_eval.jsonl``; the share of
   no-feedback messages it flags (false flags) and the confusion matrix.
2. With ``--cv``: 5-fold cross-validation on the training set, grouped by conversation.
3. With ``--ifllm DIR`` (an IFLLM-layout folder, e.g. the unpacked dev archive): the share of *real*
   consecutive query pairs (same worker and task, by ``query_timestamp``) that it flags as feedback.
   IFLLM shows no previous response to the next query in pointwise tasks, so the previous response is
   ``llm_response_1``. Most such pairs are new questions, so this estimates the false-flag rate;
   verbatim repeats (often re-submissions after a site error) are counted separately.
4. With ``--stress``: accuracy per phenomenon on ``benchmarks/data/feedback_stress.jsonl`` (or FILE),
   realistic chat-style variants (lower case, typos and abbreviations, one-word replies, terse
   instructions, sarcasm, negation, emoji, pasted errors, a few non-English words, long messages
   with the cue at the end, repeats with typos, plain new questions as controls). Each line has a
   ``phenomenon`` key besides the usual ones; ``--show-errors`` lists the misclassified lines.
5. With ``--probe``: the same per-phenomenon table on ``benchmarks/data/feedback_probe.jsonl`` (or
   FILE), a held-out-style chat probe set of 178 messages in 18 phenomena, written before the rules
   v3 round was measured on it (see docs/text_feedback.md). ``--probe
   benchmarks/data/feedback_probe_blind.jsonl`` runs the blind probe set (130 messages, written from
   the taxonomy alone before the rules were read); ``benchmarks/data/feedback_probe_logs.jsonl`` and
   ``benchmarks/data/feedback_probe_crowd.jsonl`` are the log-style and crowdworker-style blind sets
   (132 and 131 messages), ``benchmarks/data/feedback_probe_mixed.jsonl`` the mixed-style one (139),
   ``benchmarks/data/feedback_probe_r6.jsonl`` the round-6 one (159, mostly corrections and reworded
   repeats, with near-miss no-feedback controls), ``benchmarks/data/feedback_probe_r7.jsonl`` the
   round-7 one (151, a natural mix, 68 of them no feedback). Both tables also give per-class precision/recall,
   the no-feedback false-flag rate and the confusion counts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def eval_metrics(rows, preds) -> dict:
    from gazepref.signals.text_feedback import CATEGORIES, NONE

    y = [r["label"] for r in rows]
    per = {}
    for c in CATEGORIES:
        tp = sum(1 for a, b in zip(y, preds) if a == c and b == c)
        npred = sum(1 for b in preds if b == c)
        ntrue = sum(1 for a in y if a == c)
        per[c] = {
            "precision": tp / npred if npred else float("nan"),
            "recall": tp / ntrue if ntrue else float("nan"),
            "support": ntrue,
        }
    none_idx = [i for i, a in enumerate(y) if a == NONE]
    fb_idx = [i for i, a in enumerate(y) if a != NONE]
    return {
        "n": len(rows),
        "accuracy": sum(a == b for a, b in zip(y, preds)) / len(rows),
        "per_class": per,
        "none_false_flag_rate": sum(preds[i] != NONE for i in none_idx) / max(1, len(none_idx)),
        "feedback_detected": sum(preds[i] != NONE for i in fb_idx) / max(1, len(fb_idx)),
        "confusion": {c: dict(Counter(b for a, b in zip(y, preds) if a == c)) for c in CATEGORIES},
    }


def ifllm_pairs(folder: str) -> list[dict]:
    """Consecutive (previous query, its first response, next query) triples of each worker's task."""
    import pandas as pd

    q = pd.read_csv(os.path.join(folder, "query_logs_table.csv"))
    q = q.sort_values(["user_id", "task_id", "query_timestamp", "query_ID"], kind="stable")
    out = []
    for _, g in q.groupby(["user_id", "task_id"], sort=False):
        g = g.reset_index(drop=True)
        for i in range(1, len(g)):
            out.append(
                {
                    "prev_query": str(g.user_query[i - 1] if pd.notna(g.user_query[i - 1]) else ""),
                    "prev_response": str(g.llm_response_1[i - 1] if pd.notna(g.llm_response_1[i - 1]) else ""),
                    "next_query": str(g.user_query[i] if pd.notna(g.user_query[i]) else ""),
                }
            )
    return out


def ifllm_flag_rate(folder: str, clf, show: bool = False) -> dict:
    from gazepref.signals.text_feedback import NONE
    from gazepref.signals.text_feedback_rules import normalize

    pairs = ifllm_pairs(folder)
    t0 = time.perf_counter()
    res = clf.classify(pairs)
    secs = time.perf_counter() - t0
    exact = [normalize(p["next_query"]) == normalize(p["prev_query"]) for p in pairs]
    flagged = [r["nof"] != NONE for r in res]
    n_other = sum(1 for e in exact if not e)
    out = {
        "pairs": len(pairs),
        "flagged": sum(flagged),
        "flag_rate": sum(flagged) / max(1, len(pairs)),
        "verbatim_repeats": sum(exact),
        "flagged_excluding_verbatim": sum(f for f, e in zip(flagged, exact) if not e),
        "flag_rate_excluding_verbatim": sum(f for f, e in zip(flagged, exact) if not e) / max(1, n_other),
        "by_category": dict(Counter(r["nof"] for r in res)),
        "engaged_followups": sum(1 for r in res if r["ordinal"] == 4),
        "seconds": round(secs, 2),
    }
    if show:
        for p, r, e in zip(pairs, res, exact):
            if r["nof"] != NONE and not e:
                print(f"  {r['nof']:<30} {r['confidence']:.2f} | {p['prev_query'][:70]!r} -> {p['next_query'][:90]!r}")
    return out


def train_cv(folds: int = 5) -> dict:
    """Cross-validation on the training set, grouped by conversation (previous query)."""
    from sklearn.model_selection import GroupKFold

    from gazepref.signals.text_feedback import TextFeedbackClassifier, load_jsonl

    rows = load_jsonl("feedback_train.jsonl")
    groups = [r["prev_query"] for r in rows]
    preds = [None] * len(rows)
    for tr, te in GroupKFold(n_splits=folds).split(rows, groups=groups):
        clf = TextFeedbackClassifier().fit([rows[i] for i in tr], [rows[i]["label"] for i in tr])
        for i, p in zip(te, clf.predict([rows[i] for i in te])):
            preds[i] = p
    return eval_metrics(rows, preds)


STRESS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "feedback_stress.jsonl")
PROBE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "feedback_probe.jsonl")


def stress_metrics(rows, preds) -> dict:
    """Accuracy, feedback detected and no-feedback flagged, per ``phenomenon`` and over all rows."""
    from gazepref.signals.text_feedback import NONE

    def summary(idx):
        fb = [i for i in idx if rows[i]["label"] != NONE]
        nn = [i for i in idx if rows[i]["label"] == NONE]
        return {
            "n": len(idx),
            "correct": sum(preds[i] == rows[i]["label"] for i in idx),
            "accuracy": sum(preds[i] == rows[i]["label"] for i in idx) / max(1, len(idx)),
            "feedback": len(fb),
            "feedback_detected": sum(preds[i] != NONE for i in fb),
            "none": len(nn),
            "none_flagged": sum(preds[i] != NONE for i in nn),
        }

    by = {}
    for i, r in enumerate(rows):
        by.setdefault(r.get("phenomenon", "?"), []).append(i)
    m = eval_metrics(rows, preds)
    return {
        "per_class": m["per_class"],
        "confusion": m["confusion"],
        "none_false_flag_rate": m["none_false_flag_rate"],
        "per_phenomenon": {k: summary(v) for k, v in by.items()},
        "all": summary(list(range(len(rows)))),
        "errors": [
            {"phenomenon": r.get("phenomenon", "?"), "next_query": r["next_query"], "label": r["label"], "predicted": p}
            for r, p in zip(rows, preds)
            if p != r["label"]
        ],
    }


def _fmt(x: float) -> str:
    return "  n/a" if x != x else f"{x:5.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ifllm", help="IFLLM-layout folder to measure the flag rate on real follow-ups")
    ap.add_argument("--show-flags", action="store_true", help="print the flagged real pairs")
    ap.add_argument("--cv", action="store_true", help="also cross-validate on the training set (grouped by conversation)")
    ap.add_argument(
        "--stress", nargs="?", const=STRESS_FILE, metavar="FILE",
        help="accuracy per phenomenon on the chat-style stress set (default benchmarks/data/feedback_stress.jsonl)",
    )
    ap.add_argument(
        "--probe", nargs="?", const=PROBE_FILE, metavar="FILE",
        help="accuracy per phenomenon on the chat probe set (default benchmarks/data/feedback_probe.jsonl)",
    )
    ap.add_argument("--show-errors", action="store_true", help="with --stress/--probe: list the misclassified lines")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from gazepref.signals.text_feedback import CATEGORIES, default_classifier, load_jsonl

    t0 = time.perf_counter()
    clf = default_classifier()
    rows = load_jsonl("feedback_eval.jsonl")
    preds = list(clf.predict(rows))
    m = eval_metrics(rows, preds)
    m["seconds"] = round(time.perf_counter() - t0, 2)
    result = {"eval": m}
    if args.cv:
        result["train_cv"] = train_cv()
    if args.ifllm:
        result["ifllm"] = ifllm_flag_rate(args.ifllm, clf, show=args.show_flags)
    for key in ("stress", "probe"):
        if getattr(args, key):
            srows = load_jsonl(getattr(args, key))
            result[key] = stress_metrics(srows, list(clf.predict(srows)))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"eval set: {m['n']} messages, accuracy {m['accuracy']:.3f}")
    print("| category | precision | recall | support |\n| --- | --- | --- | --- |")
    for c in CATEGORIES:
        p = m["per_class"][c]
        print(f"| `{c}` | {_fmt(p['precision'])} | {_fmt(p['recall'])} | {p['support']} |")
    print(f"no-feedback messages flagged (false flags): {m['none_false_flag_rate']:.3f}")
    print(f"feedback messages detected as some feedback: {m['feedback_detected']:.3f}")
    print("confusion (true -> predicted counts):")
    for c in CATEGORIES:
        print(f"  {c:<30} {m['confusion'][c]}")
    if args.cv:
        c = result["train_cv"]
        print(
            f"training set, 5-fold CV grouped by conversation: accuracy {c['accuracy']:.3f}, no-feedback flagged "
            f"{c['none_false_flag_rate']:.3f}, feedback detected {c['feedback_detected']:.3f}, repeat recall "
            f"{c['per_class']['repeat_rephrase']['recall']:.2f}"
        )
    if args.ifllm:
        r = result["ifllm"]
        print(
            f"IFLLM real follow-ups: {r['pairs']} pairs, flagged {r['flagged']} ({r['flag_rate']:.3f}); "
            f"{r['verbatim_repeats']} verbatim repeats; excluding them flagged "
            f"{r['flagged_excluding_verbatim']} ({r['flag_rate_excluding_verbatim']:.3f}); "
            f"by category {r['by_category']}; engaged follow-ups {r['engaged_followups']}; {r['seconds']} s"
        )
    for key in ("stress", "probe"):
        if not getattr(args, key):
            continue
        s = result[key]
        print(f"{key} set ({getattr(args, key)}): {s['all']['n']} messages, accuracy {s['all']['accuracy']:.3f}")
        print("| phenomenon | messages | correct | feedback detected | no-feedback flagged |")
        print("| --- | --- | --- | --- | --- |")
        for k, v in list(s["per_phenomenon"].items()) + [("**all**", s["all"])]:
            fb = f"{v['feedback_detected']}/{v['feedback']}" if v["feedback"] else "–"
            nn = f"{v['none_flagged']}/{v['none']}" if v["none"] else "–"
            print(f"| {k} | {v['n']} | {v['correct']} ({v['accuracy']:.2f}) | {fb} | {nn} |")
        print("| category | precision | recall | support |\n| --- | --- | --- | --- |")
        for c in CATEGORIES:
            p = s["per_class"][c]
            print(f"| `{c}` | {_fmt(p['precision'])} | {_fmt(p['recall'])} | {p['support']} |")
        print(f"no-feedback messages flagged (false flags): {s['none_false_flag_rate']:.3f}")
        print("confusion (true -> predicted counts):")
        for c in CATEGORIES:
            print(f"  {c:<30} {s['confusion'][c]}")
        if args.show_errors:
            for e in s["errors"]:
                print(f"  {e['phenomenon']:<20} {e['label']:<30} -> {e['predicted']:<30} {e['next_query'][:80]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
