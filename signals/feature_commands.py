"""``gazepref features SOURCE --out DIR [--overwrite] [--jobs N] [--json]``: the feature tables of a recording
(a folder or a study in the site's database)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..datasets.sources import add_source_arguments, source_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "features",
        help="compute gaze/mouse features per response, comparison and sentence (Parquet)",
        description="Compute the feature tables (responses.parquet, comparisons.parquet, "
                    "sentences.parquet, and sequential.parquet when SOURCE has pointwise turns after a "
                    "first one) of SOURCE: an IFLLM-layout folder, a gazepref Parquet export or the slug "
                    "of a study in the site's database. Columns: docs/features.md.",
    )
    add_source_arguments(p, dest="data")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the feature tables of an earlier run in --out (a folder holding anything else is refused)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes (default: number of CPUs)")
    p.add_argument("--no-sentences", action="store_true", help="skip sentences.parquet")
    p.add_argument("--text-feedback", action="store_true",
                   help="add post_fb_* columns: the next message classified as feedback (slow; needs the ML extra)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import UserError
    from ..cli import emit
    from ..files import check_out_folder, holds_only
    from . import features

    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise UserError("--jobs must be at least 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; --out names the folder the tables are written to")
    check_out_folder(out, args.overwrite, lambda folder: holds_only(folder, features.TABLE_FILES),
                     "gazepref features")  # checked before hours of work
    rec = source_from_args(args, "data")
    res = features.build(rec, jobs=jobs, sentences=not args.no_sentences, progress=not args.json,
                         text_feedback=args.text_feedback)
    stats = dict(res.stats)
    stats["outputs"] = features.write(res, args.out)
    stats["default_features"] = {
        "responses": len(features.default_feature_columns(res.responses)),
        "comparisons": len(features.default_feature_columns(res.comparisons)),
    }
    emit(stats, args.json)
    return 0
