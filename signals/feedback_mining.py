"""Feedback mining: naturally occurring feedback in conversation logs, one row per answered reaction.

For every assistant turn that is directly followed by a user turn (see
:meth:`gazepref.datasets.conversations.Conversation.exchanges`), the user's reaction is classified
as feedback on that answer by :func:`gazepref.signals.text_feedback.classify_feedback` (the offline
MiniLM + rules classifier by default, the LLM judge with ``backend="llm"``). Each row holds:

``conversation_id``, ``user_id`` (as the source gives it; ``None`` when it has none), ``turn``
(0-based position of the assistant message in the conversation, counting every message: not a
recording's turn index), ``turn_id`` (the source's id of the answer's turn — a recording's
``turn_id``, the key of its feature tables; WildChat's ``turn_identifier``; ``None`` when the source
has none), ``model``, ``request`` (the
nearest earlier user message), ``response`` (the answer), ``reaction`` (the user's next message),
``nof`` (category), ``sat`` (satisfied / neutral / dissatisfied), ``ordinal`` (the 1-5 level),
``level`` (its name) and ``confidence`` (the classifier's probability of its verdict).

The 1-5 level (:data:`LEVELS`) is a property of the *answer*, read off the reaction:

=====  ============  ==================================================================
level  name          reaction
=====  ============  ==================================================================
1      rejection     ``repeat_rephrase``, ``make_aware_without_correction``
2      correction    ``make_aware_with_correction`` (says what is wrong and the fix)
3      neutral       ``ask_clarification``; ``none`` (a new request)
4      engagement    ``none`` that builds on the answer (picks up what it introduced)
5      satisfaction  ``positive`` (thanks, praise)
=====  ============  ==================================================================

The last assistant turn of a conversation has no reaction and gets no row (its level is unknown,
not neutral). :func:`mine` streams; :func:`mine_to_folder` writes ``feedback.parquet`` and
``summary.json`` (counts per category, level and satisfaction, and the reader's report of malformed
records) and is what ``gazepref feedback mine`` runs.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gazepref.datasets.conversations import Conversation, ReadReport, open_conversations

from .text_feedback import CATEGORIES, ORDINAL_NAMES

#: level -> name (the same scale as :data:`gazepref.signals.text_feedback.ORDINAL_NAMES`).
LEVELS: dict[int, str] = dict(ORDINAL_NAMES)
COLUMNS = ("conversation_id", "user_id", "turn", "turn_id", "model", "request", "response", "reaction", "nof",
           "sat", "ordinal", "level", "confidence")
#: what a table must have to be read as mined (``turn_id`` came later: a table without it reads with None)
REQUIRED = tuple(c for c in COLUMNS if c != "turn_id")
TABLE = "feedback.parquet"
SUMMARY = "summary.json"


def mine(conversations: Iterable[Conversation], backend: str = "offline", batch_size: int = 256,
         classifier: Any = None, base_url: str | None = None, model: str | None = None) -> Iterator[dict[str, Any]]:
    """One row per (answer, reaction) of ``conversations`` (see the module doc), in input order.

    Reactions are classified ``batch_size`` at a time, so a stream of conversations is mined in
    bounded memory."""
    from .text_feedback import classify_feedback

    buf: list[dict[str, Any]] = []

    def flush() -> list[dict[str, Any]]:
        recs = [{"prev_query": r["request"], "prev_response": r["response"], "next_query": r["reaction"]} for r in buf]
        res = classify_feedback(recs, backend=backend, base_url=base_url, model=model, classifier=classifier)
        out = [dict(r, nof=v["nof"], sat=v["sat"], ordinal=int(v["ordinal"]), level=LEVELS[int(v["ordinal"])],
                    confidence=float(v["confidence"])) for r, v in zip(buf, res)]
        buf.clear()
        return out

    for conv in conversations:
        for i, request, answer, reaction in conv.exchanges():
            buf.append({"conversation_id": conv.conversation_id, "user_id": conv.user_id, "turn": i,
                        "turn_id": answer.turn_id, "model": answer.model, "request": request, "response": answer.text,
                        "reaction": reaction.text})
        if len(buf) >= batch_size:
            yield from flush()
    if buf:
        yield from flush()


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts per category (``nof``), level and satisfaction, and the mean confidence per category."""
    n, cats, levels, sats, conf = 0, Counter(), Counter(), Counter(), Counter()
    convs: set[str] = set()
    for r in rows:
        n += 1
        cats[r["nof"]] += 1
        levels[int(r["ordinal"])] += 1
        sats[r["sat"]] += 1
        conf[r["nof"]] += float(r["confidence"])
        convs.add(r["conversation_id"])
    return {
        "rows": n, "conversations_with_rows": len(convs),
        "by_category": {c: cats.get(c, 0) for c in CATEGORIES},
        "by_level": {f"{k} {v}": levels.get(k, 0) for k, v in LEVELS.items()},
        "by_sat": {s: sats.get(s, 0) for s in ("satisfied", "neutral", "dissatisfied")},
        "mean_confidence": {c: round(conf[c] / cats[c], 4) for c in CATEGORIES if cats.get(c)},
    }


def _schema():
    import pyarrow as pa

    return pa.schema([("conversation_id", pa.string()), ("user_id", pa.string()), ("turn", pa.int32()),
                      ("turn_id", pa.string()), ("model", pa.string()), ("request", pa.string()), ("response", pa.string()),
                      ("reaction", pa.string()), ("nof", pa.string()), ("sat", pa.string()),
                      ("ordinal", pa.int8()), ("level", pa.string()), ("confidence", pa.float32())])


#: what :func:`mine_to_folder` writes into its folder
MINED_FILES = ("feedback.parquet", "summary.json")


def mine_to_folder(source: str | os.PathLike, out: str | os.PathLike, fmt: str = "auto", backend: str = "offline",
                   base_url: str | None = None, model: str | None = None, strict: bool = False,
                   limit: int | None = None, show_progress: bool = False, db: str | None = None,
                   instance: str | None = None, keep_rows: bool = False, classifier: Any = None
                   ) -> dict[str, Any]:
    """Mine ``source`` (a log file or folder, a recording, a study slug) into ``out/feedback.parquet``
    and ``out/summary.json``; return the summary (with ``rows`` holding the mined rows when
    ``keep_rows``). ``limit``: stop after that many conversations."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gazepref.progress import progress

    import itertools

    from gazepref import UserError

    outp = Path(out).expanduser()
    if outp.exists() and not outp.is_dir():
        raise UserError(f"--out {outp} is a file; give a folder")
    report = ReadReport()
    convs = open_conversations(source, fmt, report, strict, db=db, instance=instance)
    first = next(convs, None)  # a missing or unreadable source fails before anything is written
    convs = itertools.chain([] if first is None else [first], convs)
    if limit is not None:
        convs = itertools.islice(convs, limit)
    created = not outp.exists()
    outp.mkdir(parents=True, exist_ok=True)
    tmp = outp / (TABLE + ".part")
    schema = _schema()
    kept: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    try:
        with pq.ParquetWriter(tmp, schema) as w:
            for r in mine(progress(convs, desc="mining", enable=show_progress), backend=backend,
                          classifier=classifier, base_url=base_url, model=model):
                batch.append(r)
                counts.append({k: r[k] for k in ("conversation_id", "nof", "ordinal", "sat", "confidence")})
                if keep_rows:
                    kept.append(r)
                if len(batch) >= 4096:
                    w.write_table(pa.Table.from_pylist(batch, schema))
                    batch = []
            if batch:
                w.write_table(pa.Table.from_pylist(batch, schema))
    except BaseException:  # a record refused by --strict, the LLM judge failing, Ctrl-C: leave no part file
        tmp.unlink(missing_ok=True)
        if created and not any(outp.iterdir()):
            outp.rmdir()
        raise
    os.replace(tmp, outp / TABLE)
    summary = {"source": str(source), "backend": backend, "table": str(outp / TABLE), **summarize(counts),
               "read": report.to_dict()}
    (outp / SUMMARY).write_text(json.dumps(summary, indent=2))
    if keep_rows:
        summary["rows_mined"] = kept
    return summary


def read_mined(path: str | os.PathLike):
    """The mined table (a DataFrame) of a ``feedback mine`` folder or its ``feedback.parquet``."""
    import pandas as pd

    from gazepref import UserError

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / TABLE
    if not p.exists():
        raise UserError(f"no mined feedback at {p} (run `gazepref feedback mine LOGS --out DIR`)")
    df = pd.read_parquet(p)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(f"{p}: not a mined feedback table (missing {', '.join(missing)})")
    if "turn_id" not in df.columns:  # mined before turn_id was written
        df.insert(df.columns.get_loc("turn") + 1, "turn_id", None)
    return df


def is_mined(path: str | os.PathLike) -> bool:
    p = Path(path).expanduser()
    return (p.is_dir() and (p / TABLE).exists()) or (p.is_file() and p.name.endswith(".parquet")
                                                    and _has_columns(p))


def _has_columns(p: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(p).names)
    except Exception:  # noqa: BLE001 - not Parquet
        return False
    return set(REQUIRED) <= names


__all__ = ["COLUMNS", "LEVELS", "is_mined", "mine", "mine_to_folder", "read_mined", "summarize"]
