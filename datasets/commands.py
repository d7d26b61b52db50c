"""CLI: ``gazepref data summary`` and ``gazepref data export``."""
from __future__ import annotations

import argparse

from .sources import add_source_arguments, source_from_args


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="summarise and export recordings",
                          description="Read, summarise and export recordings: an IFLLM-layout folder, "
                                      "a gazepref Parquet export, or a study in the site's database.")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = dsub.add_parser("summary", help="count participants, tasks, turns and samples",
                        description="Count participants, tasks, turns (pairwise_turns, pointwise_turns, each also "
                                    "_labelled), unique "
                                    "gaze and mouse samples, and malformed rows skipped. An IFLLM release's "
                                    "workers are its participants and its queries its turns. A study in the "
                                    "site's database: its consenting participants only, as every export and "
                                    "analysis reads it; participants_without_consent counts the others "
                                    "(declined, not asked yet, withdrew, data deleted).")
    add_source_arguments(p, dest="data")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_summary)

    p = dsub.add_parser("schema", help="describe the sample streams of the recording schema",
                        description="Print every sample stream's columns with type, unit and meaning.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_schema)

    p = dsub.add_parser("export", help="export to Parquet or to the IFLLM layout",
                        description="Export a recording (an IFLLM folder, a Parquet export, or a study in the "
                                    "site's database by slug) to Parquet or to the IFLLM release layout. A study's "
                                    "webcam frames kept with consent ([gaze] keep_frames) go to frames/, as in the "
                                    "dashboard's export.")
    add_source_arguments(p, dest="source", nargs="?")
    p.add_argument("--study", metavar="SLUG", help="the study SLUG in the site's database (same as giving SLUG as SOURCE)")
    p.add_argument("--to", choices=("parquet", "ifllm"), default="parquet", help="output format (default parquet)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export in --out, all of it (a folder holding anything else is refused)")
    p.add_argument("--gaze", metavar="DIR",
                   help="a study's gaze from a gazepref gaze recalibrate folder of it (re-estimated, or "
                        "with the clicks replayed) instead of the database's; the export's manifest says so "
                        "(Parquet manifest.json, IFLLM gaze_from.json), and features and plots then read it "
                        "(default: the database's gaze)")
    p.add_argument("--demographics", action="store_true",
                   help="also write the demographics answers (a study in the site's database, or an IFLLM "
                        "release's record_info_table.csv) to a separate demographics.csv; they may identify people")
    p.add_argument("--spreadsheet-safe", action="store_true",
                   help="for opening the CSV files in a spreadsheet: text cells beginning with = + - @ (a "
                        "formula to Excel, LibreOffice, Google Sheets) get a leading ' -- the text is then no "
                        "longer exact; the default keeps it exact for analysis")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_export)


def _summary(args: argparse.Namespace) -> int:
    from ..cli import emit

    rec = source_from_args(args, "data")
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
    from .export import DEMOGRAPHICS_FILE, export_recording

    if bool(args.source) == bool(args.study):
        raise UserError("give either SOURCE or --study SLUG")
    if args.study:
        from .store_recording import StoreRecording

        rec = StoreRecording.open(args.study, db_url=args.db, instance=args.instance)
    else:
        rec = source_from_args(args, "source")
    if args.gaze:
        if not hasattr(rec, "use_gaze"):
            raise UserError("--gaze: only a study in the site's database (SLUG) takes a gaze recalibrate folder")
        rec.use_gaze(args.gaze)
    manifest = export_recording(rec, args.out, args.to, demographics=args.demographics, overwrite=args.overwrite,
                                progress=not args.json, spreadsheet_safe=args.spreadsheet_safe)
    if not args.json:
        if args.demographics:
            n = manifest["demographics"]
            print(f"wrote {DEMOGRAPHICS_FILE} ({n} participants) -- it may identify people: keep it apart and "
                  "share it only as your ethics approval allows" if n
                  else "nobody answered the demographics questions: no demographics.csv (see DEMOGRAPHICS_README.txt)")
        if manifest.get("frames"):
            print(f"wrote {manifest['frames']} kept webcam frames to frames/ (index: frames/frames.csv) -- pictures "
                  "of faces: share them only as the consent and your ethics approval allow")
    emit(manifest, args.json)
    return 0
