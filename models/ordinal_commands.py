"""``gazepref reward ordinal train|evaluate``: the ordinal reward model on mined feedback levels.

* ``gazepref reward ordinal evaluate SOURCE [--group user|conversation] [--folds K] [--json]``
* ``gazepref reward ordinal train SOURCE --out MODEL [--cv K] [--json]``

SOURCE is a ``gazepref feedback mine`` folder (its ``feedback.parquet``), or anything that command
reads (a log file or folder, a recording, a study slug), which is then mined first (offline
classifier; into ``MODEL/feedback`` for ``train``, a temporary folder for ``evaluate``). The saved
model is a reward model folder: ``--reward-model MODEL`` for ``gazepref align`` (``text_rm`` labels,
the win-rate judge) and ``gazepref reward score`` (see :mod:`gazepref.models.ordinal_rm`).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from .. import UserError
from ..datasets.sources import add_database_arguments


def add_parser(reward_sub: Any) -> None:
    """Add ``ordinal`` to the ``gazepref reward`` subcommands."""
    o = reward_sub.add_parser("ordinal", help="ordinal reward model on mined text-feedback levels",
                              description="A cumulative-link (CORAL-style) model of the 1-5 feedback level of an "
                                          "answer, from its MiniLM embedding and structure (docs/feedback_mining.md).")
    osub = o.add_subparsers(dest="ordinal_command", metavar="SUBCOMMAND", required=True)
    for name, helptext in (("evaluate", "grouped cross-validation: accuracy, pairwise agreement, Spearman, ECE"),
                           ("train", "train on all mined levels and save a reward model folder")):
        p = osub.add_parser(name, help=helptext)
        p.add_argument("source", metavar="SOURCE", help="`feedback mine` folder, or logs / recording / study slug "
                                                        "to mine first")
        add_database_arguments(p)  # when SOURCE is a study slug
        p.add_argument("--group", choices=("user", "conversation"), default="user",
                       help="cross-validation groups: users (default; conversations where there is no user "
                            "id) or conversations")
        p.add_argument("--C", type=_c_value, default="auto",
                       help="inverse L2 strength, or auto (default: chosen by inner grouped folds)")
        p.add_argument("--class-weight", choices=("none", "balanced"), default="none",
                       help="balanced: weight levels by inverse frequency (default none)")
        p.add_argument("--no-embedding", action="store_true", help="structure features only (no MiniLM)")
        p.add_argument("--encoder", metavar="PATH",
                       help="fine-tune this local transformer checkpoint as the utility instead of the frozen "
                            "MiniLM features (a GPU helps; nothing is downloaded)")
        p.add_argument("--steps", type=int, default=200, help="--encoder: optimizer steps (default 200)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "evaluate":
            p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
            p.set_defaults(func=cmd_evaluate)
        else:
            p.add_argument("--out", required=True, help="model folder to write (new or empty)")
            p.add_argument("--overwrite", action="store_true",
                           help="replace the reward model folder --out (only one; default: refuse a non-empty --out)")
            p.add_argument("--cv", type=int, default=0, metavar="K",
                           help="also cross-validate with K grouped folds and store the metrics in the manifest")
            p.set_defaults(func=cmd_train)


def _c_value(v: str) -> float | str:
    if v == "auto":
        return v
    try:
        c = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError("a positive number or auto") from None
    if not c > 0:
        raise argparse.ArgumentTypeError("a positive number or auto")
    return c


def _mined(source: str, into: Path, progress: bool, db: str | None = None, instance: str | None = None):
    from ..signals.feedback_mining import is_mined, mine_to_folder, read_mined

    if is_mined(source):
        return read_mined(source)
    mine_to_folder(source, into, show_progress=progress, db=db, instance=instance)
    return read_mined(into)


def _estimator(args: argparse.Namespace):
    from .ordinal_rm import OrdinalFeedbackRM, TransformerOrdinalRM

    if args.encoder:
        if not Path(args.encoder).expanduser().is_dir():
            raise UserError(f"--encoder: no such model folder: {args.encoder}")
        if not (Path(args.encoder).expanduser() / "config.json").exists():  # (a transformers traceback)
            raise UserError(f"--encoder {args.encoder}: not a Hugging Face model folder (config.json is missing)")
        if args.steps < 1:
            raise UserError("--steps must be at least 1")
        return TransformerOrdinalRM(model_path=str(Path(args.encoder).expanduser()), max_steps=args.steps,
                                    class_weight=None if args.class_weight == "none" else "balanced", seed=args.seed)
    return OrdinalFeedbackRM(C=args.C, embedding=not args.no_embedding,
                             class_weight=None if args.class_weight == "none" else "balanced")


def _metrics_text(r: dict[str, Any]) -> str:
    m, b = r["model"], r["majority_baseline"]
    lines = [f"{r['n']} answers, {r['groups']} groups, {r['folds']} grouped folds; levels {r['levels']}",
             f"accuracy            {m['accuracy']:.3f}  (majority level {b['accuracy']:.3f})",
             f"pairwise agreement  {m['pairwise_agreement']:.3f}  over {m['pairs']} pairs with different levels",
             f"spearman            {m['spearman']:.3f}",
             f"ece                 {m['ece']:.3f}  (majority level {b['ece']:.3f})",
             f"mae (expected lvl)  {m['mae']:.3f}  (majority level {b['mae']:.3f})"]
    return "\n".join(lines)


def _note_folds(r: dict, group: str) -> None:
    """Say on stderr when more folds were asked than there are groups (as `reward evaluate` does)."""
    if "folds_asked" in r:
        print(f"note: {r['groups']} {group} groups: grouped CV runs {r['folds']} folds (leave-one-{group}-out), "
              f"not {r['folds_asked']}", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..cli import emit
    from .ordinal_rm import cross_validate, training_data

    if args.folds < 2:
        raise UserError("--folds must be at least 2")
    with tempfile.TemporaryDirectory(prefix="gazepref-mine-") as tmp:
        df = _mined(args.source, Path(tmp), progress=not args.json, db=args.db, instance=args.instance)
    X, y, g = training_data(df, args.group)
    if len(y) == 0:
        raise UserError(f"{args.source}: no answers with a reaction to learn from")
    r = cross_validate(X, y, g, _estimator(args), folds=args.folds, seed=args.seed)
    _note_folds(r, args.group)
    r["group"] = args.group
    emit(r, args.json, _metrics_text)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..cli import emit
    from .ordinal_rm import MODEL_NAME, cross_validate, save, training_data

    from .scoring import check_model_out

    out = check_model_out(args.out, args.overwrite)
    df = _mined(args.source, out / "feedback", progress=not args.json, db=args.db, instance=args.instance)
    X, y, g = training_data(df, args.group)
    if len(set(y.tolist())) < 2:
        raise UserError(f"{args.source}: fewer than two different feedback levels ({len(y)} answers)")
    cv = None
    if args.cv:
        if args.cv < 2:
            raise UserError("--cv must be at least 2")
        cv = cross_validate(X, y, g, _estimator(args), folds=args.cv, seed=args.seed)
        _note_folds(cv, args.group)
        cv.pop("per_fold")
    est = _estimator(args)
    est.fit(X, y, **({"groups": g} if hasattr(est, "C") else {}))
    save(est, out, X["request"].tolist(), X["response"].tolist(),
         trained_on={"answers": int(len(y)), "groups": int(len(set(g.tolist()))), "source": str(args.source)}, cv=cv)
    # keys as `reward train --json` names them: out = the folder, model = the model's name
    res = {"out": str(out), "model": MODEL_NAME, "answers": int(len(y)),
           "levels": {int(k): int((y == k).sum()) for k in range(1, 6)},
           "thresholds": [round(float(t), 4) for t in est.thresholds_], "converged": est.converged_,
           "C": getattr(est, "C_", None), "cv": cv}
    emit(res, args.json, lambda r: f"saved {r['out']} ({r['answers']} answers, levels {r['levels']})"
         + ("\n" + _metrics_text(r["cv"]) if r["cv"] else ""))
    return 0
