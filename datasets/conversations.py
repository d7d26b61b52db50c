"""Conversation logs: one model for chats from any source, and streaming readers for the common formats.

A :class:`Conversation` is an id, the user's id where the source has one, and its :class:`Turn` s
(role ``user`` / ``assistant`` / ``system``, text, the model that wrote an assistant turn). Readers:

``openai``
    JSON lines with a ``messages`` list of ``{"role", "content"}`` (OpenAI chat format; ``content``
    may be a list of parts, whose ``text`` parts are joined); optional ``id`` / ``conversation_id``,
    ``user`` / ``user_id`` and ``model``.
``sharegpt``
    records with ``conversations``: a list of ``{"from", "value"}`` (``human``/``user``,
    ``gpt``/``chatgpt``/``assistant``/``model``/..., ``system``); optional ``id``, ``model``.
``wildchat``
    WildChat-style records: a ``conversation`` list of ``{"role", "content"}`` (turns may carry
    their own ``model``), ``conversation_hash`` / ``conversation_id`` as the id, ``hashed_ip`` /
    ``user_id`` as the user, ``model`` for the assistant turns.
``recording``
    any :class:`gazepref.datasets.recording.Recording` (the IFLLM release, a gazepref Parquet export,
    a study in the site's database): one conversation per task, its queries in order, each
    followed by the answer the chat continued from (``responses[0]``: the left one in a pairwise
    turn, which is what IFLLM puts into the next query's context, ``Turn.context``). The queries
    are mined as typed; the prompts of pairs and examples carry them as the LLM received them
    (``prompt_sent``, :attr:`Turn.sent`).

Files are ``.jsonl`` (one record a line; streamed; :func:`iter_jsonl` / :func:`read_jsonl`, which
every JSON-lines reader of gazepref uses), ``.json`` (one record or a list of them; read
whole) or ``.parquet`` (streamed in batches, e.g. the WildChat release); ``.gz`` JSON lines are
read through gzip. With ``fmt="auto"`` each record's format is recognised by its keys
(``messages`` / ``conversations`` / ``conversation``).

Malformed records are never dropped silently: :class:`ReadReport` counts them by reason and keeps
the first few locations (``file:line``); ``strict=True`` raises :class:`gazepref.UserError` on the
first one instead.
"""
from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import UserError

FORMATS = ("auto", "openai", "sharegpt", "wildchat", "recording")
ROLES = ("system", "user", "assistant")
#: ShareGPT ``from`` / other speaker names → role.
ROLE_ALIASES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "chatgpt": "assistant", "assistant": "assistant", "model": "assistant", "bard": "assistant",
    "bing": "assistant", "bot": "assistant", "ai": "assistant", "claude": "assistant", "gemini": "assistant",
    "system": "system", "developer": "system",
}
#: Roles that carry no chat text for mining (tool calls, function results): skipped, counted.
SKIPPED_ROLES = ("tool", "function", "ipython", "observation")
MAX_EXAMPLES = 5


@dataclass
class Turn:
    """One message of a conversation. ``turn_id``: the source's id of the turn, where it has one.
    ``sent``: a user message as the LLM received it, where that differs from what was typed
    (a recording's ``prompt_sent``: IFLLM's " respond using bullet points"); the mining reads
    ``text``, the prompts of pairs and examples (:meth:`Conversation.messages`) ``sent``."""

    role: str  # "user", "assistant" or "system"
    text: str
    model: str = ""  # assistant turns: the model that wrote it, where known
    turn_id: str | None = None
    sent: str | None = None


@dataclass
class Conversation:
    conversation_id: str
    turns: list[Turn]
    user_id: str | None = None
    source: str = ""  # the format it was read from

    def exchanges(self) -> Iterator[tuple[int, str, Turn, Turn]]:
        """``(i, request, answer, reaction)`` for every assistant turn ``turns[i]`` directly followed
        by a user turn: ``request`` is the text of the nearest earlier user turn ('' if none)."""
        request = ""
        for i, t in enumerate(self.turns):
            if t.role == "user":
                request = t.text
            elif t.role == "assistant" and i + 1 < len(self.turns) and self.turns[i + 1].role == "user":
                yield i, request, t, self.turns[i + 1]

    def messages(self, upto: int | None = None) -> list[dict[str, str]]:
        """The turns before index ``upto`` (all when None) as chat messages ``{"role", "content"}``,
        as the LLM received them (:attr:`Turn.sent` where set)."""
        return [{"role": t.role, "content": t.sent or t.text} for t in self.turns[:upto]]


@dataclass
class ReadReport:
    """What a reader saw: records read, conversations yielded, malformed records by reason."""

    records: int = 0
    conversations: int = 0
    malformed: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # "file:line: reason" of the first few
    skipped_messages: Counter = field(default_factory=Counter)  # tool/function messages left out
    formats: Counter = field(default_factory=Counter)
    repeated_ids: int = 0  # conversations whose id an earlier one had (renamed "<id>#<k>")

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def bad(self, where: str, reason: str, strict: bool) -> None:
        if strict:
            raise UserError(f"{where}: {reason}")
        self.malformed[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "conversations": self.conversations,
                "malformed": self.malformed_total, "malformed_by_reason": dict(self.malformed),
                "malformed_examples": list(self.examples), "skipped_messages": dict(self.skipped_messages),
                "formats": dict(self.formats), "repeated_ids": self.repeated_ids}


class Malformed(ValueError):
    """A record that is not a conversation (the message is the reason, counted in the report)."""


# --------------------------------------------------------------------------- one record


def _text(content: Any) -> str:
    """Message content as text: a string, or the ``text`` parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, Mapping) and isinstance(p.get("text"), str):
                parts.append(p["text"])
        return "\n".join(parts)
    raise Malformed("message content is neither text nor a list of parts")


def _opt_str(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    return str(v)


def detect_format(rec: Mapping[str, Any]) -> str:
    """``openai`` / ``sharegpt`` / ``wildchat`` from a record's keys; :class:`Malformed` if none fits."""
    if "messages" in rec:
        return "openai"
    if "conversations" in rec:
        return "sharegpt"
    if "conversation" in rec:
        return "wildchat"
    raise Malformed("no messages, conversations or conversation list")


def parse_record(rec: Any, fmt: str = "auto", default_id: str = "", report: ReadReport | None = None) -> Conversation:
    """One record of a log as a :class:`Conversation`; raises :class:`Malformed` with the reason."""
    if not isinstance(rec, Mapping):
        raise Malformed("record is not a JSON object")
    if fmt == "auto":
        fmt = detect_format(rec)
    key, role_key, text_key = {"openai": ("messages", "role", "content"),
                               "sharegpt": ("conversations", "from", "value"),
                               "wildchat": ("conversation", "role", "content")}[fmt]
    msgs = rec.get(key)
    if hasattr(msgs, "tolist"):  # a numpy array from Parquet
        msgs = msgs.tolist()
    if not isinstance(msgs, list):
        raise Malformed(f"{key} is not a list")
    rec_model = _opt_str(rec.get("model")) or ""
    turns: list[Turn] = []
    for j, m in enumerate(msgs):
        if not isinstance(m, Mapping):
            raise Malformed(f"message {j} is not an object")
        raw_role = m.get(role_key, m.get("role") if fmt == "sharegpt" else None)
        if raw_role is None:
            raise Malformed(f"message {j} has no {role_key}")
        r = str(raw_role).strip().lower()
        if r in SKIPPED_ROLES:
            if report is not None:
                report.skipped_messages[r] += 1
            continue
        role = ROLE_ALIASES.get(r)
        if role is None:
            raise Malformed(f"message {j} has an unknown role {str(raw_role)[:20]!r}")
        raw_text = m.get(text_key, m.get("content") if fmt == "sharegpt" else None)
        if raw_text is None and not (role == "assistant" and m.get("tool_calls")):
            raise Malformed(f"message {j} has no {text_key}")
        model = (_opt_str(m.get("model")) or rec_model) if role == "assistant" else ""
        tid = _opt_str(m.get("turn_identifier", m.get("id")))
        turns.append(Turn(role, _text(raw_text), model, tid))
    if not any(t.role == "user" for t in turns) or not any(t.role == "assistant" for t in turns):
        raise Malformed("no user or no assistant message")
    cid = _opt_str(rec.get("conversation_id", rec.get("conversation_hash", rec.get("id")))) or default_id
    uid = _opt_str(rec.get("user_id", rec.get("user", rec.get("hashed_ip"))))
    return Conversation(cid, turns, uid, fmt)


# --------------------------------------------------------------------------- files


def _records(path: Path) -> Iterator[tuple[str, Any, str | None]]:
    """``(location, record or None, error)`` for each record of a file, streaming where it can."""
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds
            raise UserError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
        row = 0
        for batch in pf.iter_batches(batch_size=1024):
            for r in batch.to_pylist():
                row += 1
                yield f"{name}:row {row}", r, None
        return
    if name.endswith((".json", ".json.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8-sig") as fh:
                data = json.load(fh)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}); use JSON lines for "
                            "one record per line") from None
        items = data if isinstance(data, list) else [data]
        for i, r in enumerate(items, 1):
            yield f"{name}:record {i}", r, None
        return
    for n, rec, err in iter_jsonl(path):
        yield f"{name}:{n}", rec, err


def iter_jsonl(path: str | os.PathLike, errors: str = "replace") -> Iterator[tuple[int, Any, str | None]]:
    """``(line number, record or None, error)`` for each non-blank line of a JSON-lines file.

    A ``.gz`` name is read through gzip. A leading UTF-8 byte order mark (Windows editors write one)
    is not text. ``errors`` is the decoding policy (``"replace"``: undecodable bytes never stop a
    stream; ``"strict"``: they raise ``UnicodeDecodeError``).
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors=errors) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line), None
            except json.JSONDecodeError as e:
                yield n, None, f"not valid JSON ({e.msg})"


def read_jsonl(path: str | os.PathLike, numbered: bool = False,
               check: Callable[[int, Any], Any] | None = None) -> list[Any]:
    """The records of a JSON-lines file (see :func:`iter_jsonl`), or ``(line number, record)`` pairs
    with ``numbered=True``. ``check(line number, record)``: what is kept of each record, called as
    the line is read (a :class:`UserError` it raises stops there: the first bad line is the one
    named, whether it is not JSON or not what the caller reads).

    Raises
    ------
    UserError
        naming the first bad line (``PATH, line N: not valid JSON (...)``), or for a missing file, a
        folder, or bytes that are not UTF-8.
    """
    out: list[Any] = []
    try:
        for n, rec, err in iter_jsonl(path, errors="strict"):
            if err is not None:
                raise UserError(f"{path}, line {n}: {err}")
            if check is not None:
                rec = check(n, rec)
            out.append((n, rec) if numbered else rec)
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, expected a JSONL file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text: {e.reason}") from None
    return out


def read_log(path: str | os.PathLike, fmt: str = "auto", report: ReadReport | None = None,
             strict: bool = False) -> Iterator[Conversation]:
    """Stream the conversations of one log file (``.jsonl``, ``.jsonl.gz``, ``.json``, ``.parquet``)."""
    if fmt not in FORMATS or fmt == "recording":
        raise UserError(f"unknown log format {fmt!r} (one of {', '.join(f for f in FORMATS if f != 'recording')})")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"no such file: {p}")
    rep = report if report is not None else ReadReport()
    for where, rec, err in _records(p):
        rep.records += 1
        if err is not None:
            rep.bad(where, err, strict)
            continue
        try:
            conv = parse_record(rec, fmt, default_id=f"{p.stem}:{where.rsplit(':', 1)[-1].split()[-1]}", report=rep)
        except Malformed as e:
            rep.bad(where, str(e), strict)
            continue
        rep.conversations += 1
        rep.formats[conv.source] += 1
        yield conv


def from_recording(rec: Any, report: ReadReport | None = None) -> Iterator[Conversation]:
    """One conversation per task of a :class:`~gazepref.datasets.recording.Recording`: its queries
    in order, each followed by ``responses[0]`` (see the module doc). Tasks without turns are skipped."""
    rep = report if report is not None else ReadReport()
    for task_id, turns in rec.turns_by_task().items():
        rep.records += 1
        out: list[Turn] = []
        for t in turns:
            tid = None if t.turn_id is None else str(t.turn_id)  # as the feature tables write it
            out.append(Turn("user", t.prompt or "", "", tid, t.prompt_sent or None))
            if t.responses:
                r = t.responses[0]
                out.append(Turn("assistant", r.text or "", r.model or "", tid))
        if not out:
            continue
        rep.conversations += 1
        rep.formats["recording"] += 1
        yield Conversation(str(task_id), out, str(turns[0].participant_id) if turns else None, "recording")


def open_conversations(source: str | os.PathLike, fmt: str = "auto", report: ReadReport | None = None,
                       strict: bool = False, db: str | None = None, instance: str | None = None
                       ) -> Iterator[Conversation]:
    """Conversations from a log file, a folder of log files, a recording folder, or a study slug.

    A folder that holds a recording (IFLLM layout or a gazepref export) is read as one; any other
    folder as all its ``*.jsonl``/``*.json``/``*.parquet``/``*.jsonl.gz`` files, in name order. A
    name that is no path is a study in the site's database (``db``/``instance`` as for
    :class:`~gazepref.datasets.store_recording.StoreRecording`).

    Conversation ids are unique within the source: one that an earlier conversation had (logs
    repeat them: WildChat's hashes of identical conversations, files merged twice) becomes
    ``<id>#<k>`` for its k-th occurrence, counted in the report's ``repeated_ids``, so rows keyed by
    (conversation, turn) never mix two conversations. The renaming follows the source's order, so
    two readings of one source agree.

    A source none of whose records is a conversation (a CSV table, a feature table, another
    program's JSON: every record malformed) is a :class:`gazepref.UserError` naming the commonest
    reason, once it is read: mining it "succeeded" with 0 conversations and an empty table; so is
    a source with no record at all (an empty file).
    """
    rep = report if report is not None else ReadReport()
    records0, conversations0, malformed0 = rep.records, rep.conversations, rep.malformed_total
    seen: dict[str, int] = {}  # id -> occurrences so far
    yield from _renamed(_open_source(source, fmt, rep, strict, db, instance), rep, seen)
    records = rep.records - records0
    if not records and rep.conversations == conversations0:
        raise UserError(f"{source}: no record in it, so no conversation to read (an empty file, or a recording or "
                        "study without chats)")
    if records and rep.conversations == conversations0 and rep.malformed_total - malformed0 == records:
        reason = rep.malformed.most_common(1)[0][0]
        raise UserError(f"{source}: none of its {records} records is a conversation (e.g. "
                        f"{rep.examples[-1] if rep.examples else reason}); expected OpenAI messages, ShareGPT or "
                        "WildChat records in .jsonl, .jsonl.gz, .json or .parquet, or a recording folder")


def _renamed(convs: Iterator[Conversation], rep: ReadReport, seen: dict[str, int]) -> Iterator[Conversation]:
    """``convs`` with ids made unique (see :func:`open_conversations`)."""
    for conv in convs:
        cid = conv.conversation_id
        if cid in seen:
            rep.repeated_ids += 1
            k = seen[cid]
            while f"{cid}#{k + 1}" in seen:  # a source's own id may look like a renamed one
                k += 1
            seen[cid] = k + 1
            cid = f"{cid}#{k + 1}"
            conv = replace(conv, conversation_id=cid)
        seen[cid] = seen.get(cid, 1)
        yield conv


def _open_source(source: str | os.PathLike, fmt: str, report: ReadReport, strict: bool, db: str | None,
                 instance: str | None) -> Iterator[Conversation]:
    p = Path(source).expanduser()
    if p.is_file():
        if fmt == "recording":
            raise UserError(f"{p} is a file; --format recording reads a recording folder or a study")
        yield from read_log(p, fmt, report, strict)
        return
    if p.is_dir():
        from .recording import open_recording

        try:
            rec = open_recording(p)
        except UserError:
            rec = None
        if rec is not None and fmt in ("auto", "recording"):
            yield from from_recording(rec, report)
            return
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(
            (".jsonl", ".json", ".parquet", ".jsonl.gz")))
        if not files:
            raise UserError(f"{p}: no recording and no conversation logs (*.jsonl, *.json, *.parquet)")
        for f in files:
            yield from read_log(f, fmt, report, strict)
        return
    # neither a file nor a folder: a study slug, else the one "no such file or folder (and not a
    # study slug)" message of every SOURCE
    from .sources import open_source

    yield from from_recording(open_source(str(source), db=db, instance=instance), report)


def iter_records(conversations: Iterable[Conversation]) -> Iterator[dict[str, Any]]:
    """Conversations as OpenAI-style records (``{"id", "user_id", "messages"}``, assistant turns with
    their ``model``), e.g. to write a recording out as a JSONL log."""
    for c in conversations:
        msgs = []
        for t in c.turns:
            m = {"role": t.role, "content": t.text}
            if t.role == "assistant" and t.model:
                m["model"] = t.model
            msgs.append(m)
        yield {"id": c.conversation_id, "user_id": c.user_id, "messages": msgs}


__all__ = ["Conversation", "FORMATS", "Malformed", "ReadReport", "Turn", "detect_format", "from_recording",
           "iter_jsonl", "iter_records", "open_conversations", "parse_record", "read_jsonl", "read_log"]
