"""CLI: ``gazepref feedback classify FILE.jsonl`` — naturally occurring feedback in next messages;
``gazepref feedback mine LOGS --out DIR`` — the same over whole conversation logs."""
from __future__ import annotations

import argparse
from typing import Any

from gazepref import UserError

from ..datasets.sources import add_database_arguments

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

    m = fsub.add_parser("mine", help="mine feedback from conversation logs into a table",
                        description="For every assistant turn followed by a user turn: the reaction's feedback "
                                    "category (nof), satisfaction (sat), 1-5 level (ordinal) and confidence. LOGS is "
                                    "a log file (OpenAI messages JSONL, ShareGPT, WildChat-style; .jsonl, .json, "
                                    ".parquet), a folder of them, a recording folder (IFLLM, gazepref export) or a "
                                    "study slug. Writes OUT/feedback.parquet and OUT/summary.json "
                                    "(see docs/feedback_mining.md).")
    m.add_argument("logs", metavar="LOGS", help="log file or folder, recording folder, or study slug")
    m.add_argument("--out", required=True, help="output folder (new or empty)")
    m.add_argument("--overwrite", action="store_true",
                   help="replace the mined tables of --out, a folder this command wrote (default: refuse a non-empty "
                        "--out)")
    m.add_argument("--format", dest="fmt", default="auto",
                   choices=("auto", "openai", "sharegpt", "wildchat", "recording"),
                   help="record format (default: recognised per record by its keys)")
    m.add_argument("--backend", choices=("offline", "llm"), default="offline",
                   help="offline: MiniLM embeddings + rules (default); llm: an OpenAI-compatible judge")
    m.add_argument("--base-url", help="llm backend: API root (default $GAZEPREF_LLM_BASE_URL)")
    m.add_argument("--model", help="llm backend: model name (default $GAZEPREF_LLM_MODEL)")
    m.add_argument("--limit", type=int, help="mine only the first N conversations (default: all)")
    m.add_argument("--strict", action="store_true", help="stop at the first malformed record instead of counting it")
    add_database_arguments(m)  # when LOGS is a study slug
    m.add_argument("--json", action="store_true",
                   help="print the rows as a JSON list (ids and labels, no texts)")
    m.set_defaults(func=_mine)


def read_records(path: str) -> list[dict[str, str]]:
    """The records of a JSONL file; the first bad line (not JSON, a key missing, a value not a
    string, no ``next_query`` to classify) raises :class:`UserError` naming it. A null
    ``prev_query`` or ``prev_response`` reads as empty (a conversation's first message has none)."""
    from gazepref.datasets.conversations import read_jsonl

    def record(n: int, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise UserError(f"{path}, line {n}: expected a JSON object with {', '.join(REQUIRED)}")
        missing = [k for k in REQUIRED if k not in obj]
        if missing:
            raise UserError(f"{path}, line {n}: missing key {', '.join(missing)}")
        bad = [k for k in REQUIRED if obj[k] is not None and not isinstance(obj[k], str)]
        if bad:
            raise UserError(f"{path}, line {n}: {', '.join(bad)} must be a string")
        if obj["next_query"] is None or not obj["next_query"].strip():  # (read as "": classified,
            # confidently, as neutral)
            raise UserError(f"{path}, line {n}: next_query is {'null' if obj['next_query'] is None else 'empty'}: "
                            "there is no message to classify")
        return {k: obj[k] or "" for k in REQUIRED} | {"line": n}

    return read_jsonl(path, check=record)


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


JSON_ROW_KEYS = ("conversation_id", "turn", "turn_id", "model", "nof", "sat", "ordinal", "level", "confidence")


def _mine_text(s: dict[str, Any]) -> str:
    read = s["read"]
    lines = [f"mined {s['rows']} answers with a reaction from {read['conversations']} conversations "
             f"({read['records']} records, {read['malformed']} malformed) -> {s['table']}"]
    if read["malformed"]:
        lines.append("malformed: " + ", ".join(f"{k} ({v})" for k, v in read["malformed_by_reason"].items()))
        lines += [f"  e.g. {e}" for e in read["malformed_examples"]]
    lines.append("category                        rows")
    lines += [f"{k:<30} {v:>5}" for k, v in s["by_category"].items()]
    lines.append("level                           rows")
    lines += [f"{k:<30} {v:>5}" for k, v in s["by_level"].items()]
    return "\n".join(lines)


def _mine(args: argparse.Namespace) -> int:
    from gazepref.cli import emit

    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    from gazepref.settings import current

    if args.backend == "llm" and not (args.base_url or current().llm_base_url):
        raise UserError("--backend llm needs --base-url (or GAZEPREF_LLM_BASE_URL)")
    from gazepref.files import check_out_folder, holds_only
    from gazepref.signals.feedback_mining import MINED_FILES, mine_to_folder

    # (into a features or export folder it wrote its two files beside theirs, and `features
    # --overwrite` then refused the folder)
    check_out_folder(args.out, args.overwrite, lambda folder: holds_only(folder, MINED_FILES), "feedback mine")
    s = mine_to_folder(args.logs, args.out, fmt=args.fmt, backend=args.backend, base_url=args.base_url,
                       model=args.model, strict=args.strict, limit=args.limit, show_progress=not args.json,
                       db=args.db, instance=args.instance, keep_rows=args.json)
    if args.json:
        # the rows as a JSON list (ids and labels; the texts are in the table); the counts in OUT/summary.json
        emit([{k: r[k] for k in JSON_ROW_KEYS} for r in s.pop("rows_mined")], True)
    else:
        emit(s, False, _mine_text)
    return 0
