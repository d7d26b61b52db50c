"""CLI: ``gazepref feedback classify FILE.jsonl`` — naturally occurring feedback in next messages."""
from __future__ import annotations

import argparse
import json
from typing import Any

from gazepref import UserError

REQUIRED = ("prev_query", "prev_response", "next_query")


def register(sub: argparse._SubParsersAction) -> None:
    fb = sub.add_parser("feedback", help="text feedback in the user's next message",
                        description="Classify a user's next message as naturally occurring feedback on the "
                                    "previous answer (see docs/text_feedback.md).")
    fsub = fb.add_subparsers(dest="feedback_command", metavar="SUBCOMMAND", required=True)
    p = fsub.add_parser("classify", help="classify next messages from a JSONL file",
                        description="Read JSON lines with prev_query, prev_response and next_query; print per "
                                    "line the category (nof), satisfaction (sat), the 1-5 ordinal "
                                    "(rejection, correction, neutral, engagement, satisfaction) and a confidence.")
    p.add_argument("file", help="JSONL file, one object per line with prev_query, prev_response, next_query")
    p.add_argument("--backend", choices=("offline", "llm"), default="offline",
                   help="offline: MiniLM embeddings + rules (default); llm: an OpenAI-compatible judge")
    p.add_argument("--base-url", help="llm backend: API root, e.g. http://127.0.0.1:8000/v1 "
                                      "(default $GAZEPREF_LLM_BASE_URL)")
    p.add_argument("--model", help="llm backend: model name (default $GAZEPREF_LLM_MODEL)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=_classify)


def read_records(path: str) -> list[dict[str, str]]:
    """The records of a JSONL file; a bad line raises :class:`UserError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, expected a JSONL file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text: {e.reason}") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}, line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}, line {n}: expected a JSON object with {', '.join(REQUIRED)}")
        missing = [k for k in REQUIRED if k not in obj]
        if missing:
            raise UserError(f"{path}, line {n}: missing key {', '.join(missing)}")
        bad = [k for k in REQUIRED if obj[k] is not None and not isinstance(obj[k], str)]
        if bad:
            raise UserError(f"{path}, line {n}: {', '.join(bad)} must be a string")
        records.append({k: obj[k] or "" for k in REQUIRED} | {"line": n})
    return records


def _table(rows: list[dict[str, Any]]) -> str:
    from gazepref.signals.text_feedback import ORDINAL_NAMES

    head = f"{'line':>4}  {'nof':<30} {'sat':<12} {'ordinal':<16} {'conf':>5}  next_query"
    out = [head]
    for r in rows:
        q = r["next_query"].replace("\n", " ")
        q = q if len(q) <= 60 else q[:57] + "..."
        ordinal = f"{r['ordinal']} {ORDINAL_NAMES[r['ordinal']]}"
        out.append(f"{r['line']:>4}  {r['nof']:<30} {r['sat']:<12} {ordinal:<16} {r['confidence']:>5.2f}  {q}")
    return "\n".join(out)


def _classify(args: argparse.Namespace) -> int:
    from gazepref.cli import emit

    records = read_records(args.file)
    from gazepref.settings import current

    if args.backend == "llm" and not (args.base_url or current().llm_base_url):
        raise UserError("--backend llm needs --base-url (or GAZEPREF_LLM_BASE_URL)")
    from gazepref.signals.text_feedback import classify_feedback

    results = classify_feedback(records, backend=args.backend, base_url=args.base_url, model=args.model)
    if args.json:
        emit(results, True)
    else:
        rows = [dict(res, line=rec["line"], next_query=rec["next_query"]) for rec, res in zip(records, results)]
        emit(rows, False, _table)
    return 0
