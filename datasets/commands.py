"""CLI: ``gazepref data ...``."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="read, summarise, convert and export recordings")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    p = dsub.add_parser("summary", help="count workers, tasks, queries and samples",
                        description="Summarise an IFLLM-layout folder or a gazepref export.")
    p.add_argument("path", help="IFLLM-layout folder (query_logs_table.csv, user_behavior/) or export")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_summary)


def _summary(args: argparse.Namespace) -> int:
    from ..cli import emit
    from .ifllm import open_release

    emit(open_release(args.path).summary(), args.json)
    return 0
