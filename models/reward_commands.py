"""``gazepref reward ...``: evaluate, train and apply reward models.

SOURCE (DATA) is an IFLLM-layout folder, a gazepref Parquet export or a study slug in the site's
database (``--db``/``--instance``; see :func:`gazepref.datasets.sources.open_source`).

* ``gazepref reward evaluate DATA [--json] [--protocol group|random] [--seeds N] [--folds K]``
* ``gazepref reward evaluate --train DATA_A --test DATA_B [--json]`` (participants of DATA_B that are also
  in DATA_A are left out of the test, with a note; ``test_participants_left_out`` counts them)
* ``gazepref reward train DATA --out MODEL [--model NAME]``
* ``gazepref reward score MODEL DATA --out FILE`` (``.parquet``, ``.csv`` or ``.jsonl``)
* ``gazepref reward ordinal train|evaluate SOURCE`` (the ordinal model on mined feedback levels,
  :mod:`gazepref.models.ordinal_commands`)

The JSON report has, for each of ``text``, ``implicit``, ``fused``, ``personalized``: ``accuracy``,
``auc``, ``n`` (and log-loss, ECE, stds, the model's name); ``models`` has every model and
ablation; ``gain_fused_vs_best_text`` the participant-bootstrap CI (see :mod:`gazepref.models.evaluation`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import UserError
from ..datasets.sources import add_source_arguments, source_from_args


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("reward", help="reward models: evaluate, train, score",
                              description="Text, implicit-feedback, fused and personalised reward models.")
    sub = p.add_subparsers(dest="reward_command", metavar="SUBCOMMAND", required=True)

    e = sub.add_parser("evaluate", help="cross-validated report (grouped by participant), or train/test")
    add_source_arguments(e, dest="data", nargs="?")
    e.add_argument("--train", metavar="SOURCE", help="train on this recording (folder or study slug) ...")
    e.add_argument("--test", metavar="SOURCE", help="... and test on this one")
    e.add_argument("--protocol", choices=("group", "random"), default="group",
                   help="group: K-fold grouped by participant (default); random: the IFLLM anchor's plain K-fold")
    e.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    e.add_argument("--seeds", type=int, default=5, help="repetitions with different fold assignments (default 5; seeds "
                   "giving the same folds, as leave-one-participant-out does, are run once)")
    e.add_argument("--models", help="comma-separated model names (default: all)")
    e.add_argument("--text-feedback", action="store_true",
                   help="also the text-feedback ablation (the user's next message; post-decision), "
                        "its models added to --models")
    e.add_argument("--features", choices=("inbox", "hits", "signals", "both"), default="inbox",
                   help="implicit features from the comparison table of `gazepref features`: its in-box family "
                        "(inbox, the default; hits is the old name), its other pairwise measures (signals), or both")
    e.add_argument("--markdown", help="also write the table as Markdown to this file")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("train", help="train a reward model on all labelled comparisons and save it")
    add_source_arguments(t, dest="data")
    t.add_argument("--out", required=True, help="model folder to write (new or empty)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the reward model folder --out (only one; default: refuse a non-empty --out)")
    t.add_argument("--model", default="late_fusion_worker_cal",
                   help="model name (see `reward evaluate --json`; default late_fusion_worker_cal)")
    t.add_argument("--text-model", default="structure_bt", help="text-only fallback model (default structure_bt)")
    t.add_argument("--json", action="store_true", help="print the saved model's manifest as JSON, with out")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("score", help="score every pairwise turn of a recording")
    s.add_argument("model", help="model folder (from `gazepref reward train`)")
    add_source_arguments(s, dest="data")
    s.add_argument("--out", required=True, help="scores file: .parquet, .csv, .jsonl or .json (columns: "
                   "docs/reward_models.md, 'Scoring API')")
    s.add_argument("--json", action="store_true", help="print JSON: out, comparisons (rows scored), model")
    s.set_defaults(func=cmd_score)

    from .ordinal_commands import add_parser as add_ordinal

    add_ordinal(sub)  # gazepref reward ordinal train|evaluate


def _models(names: str | None, text_feedback: bool):
    from .evaluation import default_models

    ms = default_models(text_feedback=text_feedback)
    if not names:
        return ms
    want = [n.strip() for n in names.split(",") if n.strip()]
    bad = [n for n in want if n not in ms]
    if bad:
        raise UserError(f"unknown model(s) {', '.join(bad)}; known: {', '.join(ms)}")
    if text_feedback:  # --text-feedback asks for its ablations: with --models they were left out unnamed
        plain = default_models()
        want += [n for n in ms if n not in plain and n not in want]
    return {n: ms[n] for n in want}


def _usable(models: dict, data, named: str | None) -> dict:
    """The default set without the implicit-only models the data has no columns for (said on
    stderr); models named with --models are kept, so their fit says what is missing."""
    from . import evaluation as ev

    if named:
        return models
    usable = ev.applicable_models(models, data.X)
    left = sorted(set(models) - set(usable))
    if left:
        print(f"note: no implicit features in the data (no gaze or pointer trajectories?); left out: "
              f"{', '.join(left)}", file=sys.stderr)
    return usable


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..cli import emit
    from . import evaluation as ev

    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, not {args.folds}")
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, not {args.seeds}")
    models = _models(args.models, args.text_feedback)
    if args.train or args.test:
        if not (args.train and args.test) or args.data:
            raise UserError("give either SOURCE, or both --train and --test")
        train = ev.load_data(source_from_args(args, spec=args.train), text_feedback=args.text_feedback,
                             progress=True, features=args.features)
        test = ev.load_data(source_from_args(args, spec=args.test), text_feedback=args.text_feedback,
                            progress=True, features=args.features)
        try:
            test, shared = ev.held_out_test(train, test)
        except ValueError as e:
            raise UserError(f"--train and --test: {e}") from None
        if shared:
            print(f"note: {len(shared)} participant(s) of --test are also in --train; their comparisons are left "
                  f"out of the test ({len(test.y)} comparisons of {len(set(test.groups))} participants remain)",
                  file=sys.stderr)
        report = ev.train_test(train, test, _usable(models, train, args.models), progress=True)
        report["test_participants_left_out"] = len(shared)
    else:
        if not args.data:
            raise UserError("give SOURCE (or --train and --test)")
        data = ev.load_data(source_from_args(args, "data"), text_feedback=args.text_feedback, progress=True, features=args.features)
        from .cross_validation import n_folds

        k = n_folds(data, args.protocol, args.folds)
        if len(data.y) < 2 * k:
            raise UserError(f"only {len(data.y)} labelled comparisons: too few for {k}-fold CV")
        if k < args.folds:
            print(f"note: {k} participants: CV grouped by participant runs {k} folds (leave-one-participant-out), not "
                  f"{args.folds}", file=sys.stderr)
        report = ev.evaluate(data, _usable(models, data, args.models), protocol=args.protocol, folds=args.folds,
                             seeds=tuple(range(args.seeds)), progress=True)
        if report["seeds_run"] < args.seeds:
            lowo = " (leave-one-participant-out)" if args.protocol == "group" and args.folds >= report["participants"] else ""
            print(f"note: the {args.seeds} seeds give {report['seeds_run']} distinct fold assignment(s){lowo}; "
                  f"the folds were run for {report['seeds_run']} seed(s), not {args.seeds} (seeds_run)",
                  file=sys.stderr)
    if args.markdown:
        Path(args.markdown).write_text(ev.markdown(report) + "\n")
    emit(report, args.json, lambda r: ev.markdown(r))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..cli import emit
    from .scoring import check_model_out, train_reward_model

    out = check_model_out(args.out, args.overwrite)  # (before the training)
    rm = train_reward_model(source_from_args(args, "data"), model=args.model, text_model=args.text_model, progress=True)
    path = rm.save(out)
    emit({"out": str(path), **rm.manifest}, args.json)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ..cli import emit
    from .scoring import load_reward_model

    out = Path(args.out).expanduser()
    if out.suffix not in (".parquet", ".csv", ".jsonl", ".json"):  # (before the work)
        raise UserError(f"--out must end in .parquet, .csv, .jsonl or .json: {out}")
    if not out.parent.is_dir():  # (as `plot --out`: a mistyped folder is not made, anywhere)
        raise UserError(f"no such folder for --out: {out.parent}")
    rm = load_reward_model(args.model)
    rec = source_from_args(args, "data")
    df = rm.score_recording(rec, progress=True)
    if not len(df):
        raise UserError(f"no pairwise turns to score in {args.data}")
    # keys named as in the feature tables, so the scores join comparisons.parquet (scoring.SCORE_COLUMNS)
    if out.suffix == ".parquet":
        df.to_parquet(out, index=False)
    elif out.suffix == ".csv":
        df.to_csv(out, index=False)
    else:  # .jsonl: one object a line; .json: one list
        df.to_json(out, orient="records", lines=out.suffix == ".jsonl", force_ascii=False)
    emit({"out": str(out), "comparisons": int(len(df)), "model": rm.manifest.get("model")}, args.json)
    return 0
