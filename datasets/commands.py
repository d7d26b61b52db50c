"""CLI: ``gazepref data summary`` and ``gazepref data export``."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="summarise and export recordings",
                          description="Read, summarise and export recordings: an IFLLM-layout folder, "
                                      "a gazepref Parquet export, or a study in the site's database.")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = dsub.add_parser("summary", help="count workers, tasks, queries and samples",
                        description="Count workers, tasks, queries (pairwise, labelled, pointwise), unique "
                                    "gaze and mouse samples, and malformed rows skipped.")
    p.add_argument("path", help="IFLLM-layout folder (query_logs_table.csv, user_behavior/) or a gazepref export")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_summary)

    p = dsub.add_parser("schema", help="describe the sample streams of the recording schema",
                        description="Print every sample stream's columns with type, unit and meaning.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_schema)

    p = dsub.add_parser("export", help="export to Parquet or to the IFLLM layout",
                        description="Export a recording (IFLLM folder, Parquet export, or --study from the "
                                    "site database) to Parquet or to the IFLLM release layout.")
    p.add_argument("source", nargs="?", help="IFLLM-layout folder or gazepref Parquet export")
    p.add_argument("--study", help="export this study (slug) from the site database instead")
    p.add_argument("--db", help="database URL (default: the instance folder's SQLite)")
    p.add_argument("--instance", help="instance folder of the site (default ./instance)")
    p.add_argument("--to", choices=("parquet", "ifllm"), default="parquet", help="output format")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_export)


def _summary(args: argparse.Namespace) -> int:
    from ..cli import emit
    from .recording import open_recording

    rec = open_recording(args.path)
    summary = rec.summary(progress=not args.json) if hasattr(rec, "summary") else None
    emit(summary, args.json)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from .. import schema
    from ..cli import emit

    doc = {
        s.name: {"doc": s.doc, "extra_float_prefixes": list(s.extra_prefixes),
                 "columns": [{"name": c.name, "type": str(c.type), "unit": c.unit, "required": c.required,
                              "doc": c.doc} for c in s.columns]}
        for s in schema.STREAMS.values()
    }

    def text(d: dict) -> str:
        lines = []
        for name, s in d.items():
            lines.append(f"{name}: {s['doc']}")
            for c in s["columns"]:
                req = "" if c["required"] else " (optional)"
                unit = f" [{c['unit']}]" if c["unit"] else ""
                lines.append(f"  {c['name']:<12} {c['type']:<7}{unit} {c['doc']}{req}")
            if s["extra_float_prefixes"]:
                lines.append(f"  + float32 columns named {', '.join(p + '*' for p in s['extra_float_prefixes'])}")
        return "\n".join(lines)

    emit(doc, args.json, text)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .. import UserError
    from ..cli import emit
    from .export import export_ifllm, export_parquet
    from .recording import open_recording

    if bool(args.source) == bool(args.study):
        raise UserError("give either a SOURCE folder or --study SLUG")
    if args.study:
        from .store_recording import StoreRecording

        rec = StoreRecording.open(args.study, db_url=args.db, instance=args.instance)
    else:
        rec = open_recording(args.source)
    write = export_parquet if args.to == "parquet" else export_ifllm
    emit(write(rec, args.out, overwrite=args.overwrite, progress=not args.json), args.json)
    return 0
