"""Reader for the public IFLLM release (``query_logs_table.csv`` + ``user_behavior/``), as is.

The release's quirks (see ``../shared/ifllm/README.md``) are handled here, once:

* every row of a pairwise ``abs_gaze.csv`` is written twice → exact duplicate rows are dropped;
* ``rel_*`` files have 7 columns, or 6 in older files (no ``camera_green``) → both are read;
* the ``rel_*`` window text is written between quotes but not CSV-escaped (commas, quotes, a
  trailing ``"``) → each line is one record: x, y from the left, the numbers from the right, the
  window in between; lines that still do not parse are skipped and counted in
  :attr:`IFLLMRelease.report` (never silently);
* a model name with an embedded CR-LF, a ``0000-00-00`` timestamp → cleaned / kept as missing;
* ``preference``: pairwise 1.0 = left, 2.0 = right; pointwise 1.0 = better than the previous
  answer, 0.0 = worse; NaN = unlabelled;
* query timestamps that are off from the trajectories' epoch by whole hours (time-zone bugs) →
  the offset is detected per task folder from the on-text ``char_index`` values;
* a page reload inside a task folder restarts the page timer ``t`` (the epoch goes on) → each
  later page session's ``t`` is moved after the earlier one's (:func:`page_sessions`), counted in
  :attr:`ReadReport.page_reloads`.

Our exporter adds ``t_shown`` / ``t_decided`` columns to the query table (page timer, ms) and
``comment`` (the participant's free-text comment on the turn); they are read when present, and
samples then go to their turns by ``t_shown`` (the samples' own clock) instead of the query
timestamps (the server's clock, which need not agree with the participant's).

Tables are read eagerly (small); trajectories lazily, one task folder at a time, with pyarrow.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from .. import UserError, schema
from .derive import assign_turns, default_clock, derive_streams
from .recording import gaze_positions
from .text_mapping import window_near

QUERY_TABLE = "query_logs_table.csv"
TASK_TABLE = "task_table.csv"
RECORD_TABLE = "record_info_table.csv"
#: the record table's columns that are not demographics answers (the rest, in the release age,
#: location, education, race and gender, are: :meth:`IFLLMRelease.demographics`)
RECORD_NOT_DEMOGRAPHICS = ("user_id", "consent", "inserted_at")
BEHAVIOR_DIR = "user_behavior"
#: written by an export for spreadsheets (``--spreadsheet-safe``): its text cells are escaped, so
#: this reader refuses the folder (:class:`IFLLMRelease`)
SPREADSHEET_SAFE_FILE = "SPREADSHEET_SAFE.txt"

#: The prompt modifier behind IFLLM's ``adjustment == 1``.
BULLET_MODIFIER = " respond using bullet points"

QUERY_COLUMNS = [
    "query_ID", "user_id", "task_id", "user_query", "llm_response_1", "llm_response_2",
    "llm_name_1", "llm_name_2", "likert_1", "likert_2", "preference", "adjustment", "query_timestamp",
]
#: optional query-table columns our exporter adds (not in the release): when the responses were
#: shown and the ratings submitted, on the trajectories' page timer (ms)
QUERY_CLOCK_COLUMNS = ["t_shown", "t_decided"]
#: optional query-table column our exporter adds: the participant's comment on the turn
QUERY_COMMENT_COLUMNS = ["comment"]
#: optional query-table columns our exporter adds for what the release's ``adjustment`` (0/1, IFLLM's
#: one modifier, bullet points) cannot hold: the names of the prompt modifiers applied (a JSON
#: list), the prompt as the models got it, the strength of a pairwise choice (1-3). Where they
#: are, they are read in place of what ``adjustment`` implies (a study's modifier is not IFLLM's).
QUERY_TURN_COLUMNS = ["modifiers", "prompt_sent", "choice_strength"]
TASK_COLUMNS = [
    "user_id", "task_id", "copy_sentence", "summary", "feedback", "understand_before",
    "understand_after", "query_copy", "llm_response_copy", "accuracy", "finished", "domain",
]
#: the task-table columns that hold a task's answers (``schema.Task.answers``) under their own names
TASK_ANSWER_COLUMNS = ["copy_sentence", "summary", "understand_before", "understand_after", "query_copy",
                       "llm_response_copy", "finished"]
#: optional task-table columns our exporter adds (not in the release): the answer to a study's own
#: question ``ID`` (one the release has no column for) as ``question_ID``
QUESTION_PREFIX = "question_"
#: optional task-table columns our exporter adds after the release's for a site study: the webcam
#: calibration in force for the task (``schema.Task.calibration``); ``accuracy`` keeps WebGazer's %
TASK_CALIBRATION_COLUMNS = ["accuracy_px", "accuracy_deg", "precision_px", "data_loss", "calibration_attempts",
                            "calibration_passed"]
ABS_COLUMNS = ["x", "y", "t", "epoch_ms"]
REL_COLUMNS_7 = ["x", "y", "window", "char_index", "t", "camera_ok", "epoch_ms"]
REL_COLUMNS_6 = ["x", "y", "window", "char_index", "t", "epoch_ms"]

#: rel_* file name → (source, response position)
REL_FILES = {
    "rel_gaze.csv": ("gaze", 0),
    "rel_mouse.csv": ("mouse", 0),
    "rel_gaze_one.csv": ("gaze", 0),
    "rel_gaze_two.csv": ("gaze", 1),
    "rel_mouse_left.csv": ("mouse", 0),
    "rel_mouse_right.csv": ("mouse", 1),
}
HOUR_MS = 3_600_000.0
#: a page reload: the page timer drops by more than this while the epoch rises
RELOAD_DROP_MS = 1000.0
#: most physical lines one quoted window may span (a window is ≤ 20 characters)
_MAX_WINDOW_LINES = 20


def task_key(worker: str, task: int | str) -> str:
    """Our task id for an IFLLM (worker, task) registration."""
    return f"{worker}/{int(task)}"


def split_task_key(task_id: str) -> tuple[str, int]:
    worker, _, task = task_id.rpartition("/")
    if not worker:
        raise UserError(f"not an IFLLM task id (worker/task): {task_id!r}")
    return worker, int(task)


# --------------------------------------------------------------------------- file readers


@dataclass
class ReadReport:
    """Malformed rows skipped while reading, by file kind (``abs_gaze``, ``rel_mouse_left``, ...),
    and page reloads whose restarted page timer was put back on the folder's clock."""

    skipped: Counter = field(default_factory=Counter)
    page_reloads: int = 0

    @property
    def total(self) -> int:
        return sum(self.skipped.values())


_NUMERIC = {"x": pa.float32(), "y": pa.float32(), "t": pa.float64(), "epoch_ms": pa.float64(),
            "char_index": pa.int32(), "camera_ok": pa.int8()}


def _empty_table(names: list[str]) -> pa.Table:
    """No rows, the columns of a typed read (a 0-byte file: a batch never written, a truncated copy)."""
    return pa.table({n: pa.array([], _NUMERIC.get(n, pa.string())) for n in names})


def _read_csv(path: Path, names: list[str], typed: bool) -> tuple[pa.Table, int]:
    """Read a header-less CSV; records with the wrong number of fields are skipped and counted.

    ``typed``: parse numbers in C++ (fast); a value that is not a number makes pyarrow raise,
    and the caller falls back to reading strings and dropping such rows one by one.
    """
    if Path(path).stat().st_size == 0:
        return _empty_table(names), 0
    bad = 0

    def on_invalid(_row: Any) -> str:
        nonlocal bad
        bad += 1
        return "skip"

    types = {n: (_NUMERIC.get(n, pa.string()) if typed else pa.string()) for n in names}
    table = pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 24),
        parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                            quoted_strings_can_be_null=False),
    )
    return table, bad


def _read_numeric(path: Path, names: list[str], optional: tuple[str, ...] = ()) -> tuple[pa.Table, int]:
    """Typed read with a row-by-row fallback. Rows whose required numbers are missing or not
    numbers are dropped and counted; ``optional`` numeric columns may be empty (null)."""
    try:
        table, bad = _read_csv(path, names, typed=True)
    except pa.ArrowInvalid:
        raw, bad = _read_csv(path, names, typed=False)
        df = raw.to_pandas()
        keep = np.ones(len(df), dtype=bool)
        for n in names:
            if n in _NUMERIC:
                num = pd.to_numeric(df[n], errors="coerce")
                keep &= ~((df[n] != "") & num.isna()).to_numpy()  # text where a number belongs
                df[n] = num
        bad += int((~keep).sum())
        df = df[keep]
        table = pa.table({
            n: pa.array(df[n].to_numpy(), from_pandas=True).cast(_NUMERIC[n]) if n in _NUMERIC
            else pa.array(df[n].to_numpy(), pa.string())
            for n in names
        })
    required = [n for n in names if n in _NUMERIC and n not in optional]
    if required:
        masks = [pc.is_valid(table.column(n)) for n in required]
        ok = masks[0]
        for m in masks[1:]:
            ok = pc.and_(ok, m)
        n_bad = table.num_rows - int(pc.sum(ok).as_py() or 0)
        if n_bad:
            table = table.filter(ok)
            bad += n_bad
    return table, bad


def read_abs(path: Path) -> tuple[pa.Table, int]:
    """An ``abs_gaze``/``abs_mouse`` file: x, y (viewport px), t (page timer ms), epoch_ms."""
    return _read_numeric(path, ABS_COLUMNS)


def _rel_width(lines: list[str]) -> int:
    """6 or 7: the column count most of the (first) lines have. Counted without CSV quoting (the
    window text is not escaped): fields of lines without quotes, or fields after the last quote."""
    counts: Counter = Counter()
    for line in lines:
        if line:
            q = line.rfind('"')
            counts[line.count(",", q + 1) + (3 if q >= 0 else 1)] += 1
    return 6 if counts.get(6, 0) > counts.get(7, 0) else 7


def _unquote(w: str) -> str:
    """A window's text: outer quotes stripped. IFLLM wrote ``"`` + text + ``"`` without escaping;
    a CSV writer (our exports) doubles inner quotes — undone only where every inner quote is
    doubled."""
    if len(w) >= 2 and w[0] == w[-1] == '"':
        w = w[1:-1]
        if '""' in w and '"' not in w.replace('""', ""):
            w = w.replace('""', '"')
    return w


def _rel_record(line: str, width: int) -> str | None:
    """One ``rel_*`` line parsed from its text — x, y from the left, the 3 or 4 numbers from the
    right, the window is what lies between (outer quotes stripped) — and written back as a
    proper CSV record; None when it does not parse."""
    p = line.split(",", 2)
    if len(p) != 3:
        return None
    r = p[2].rsplit(",", width - 3)
    if len(r) != width - 2:
        return None
    try:
        float(p[0]), float(p[1]), float(r[2]), float(r[-1])
        if r[1]:
            int(r[1])
        if width == 7 and r[3]:
            int(r[3])
    except ValueError:
        return None
    r[0] = '"' + _unquote(r[0]).replace('"', '""') + '"'
    return ",".join([p[0], p[1], *r])


def read_rel(path: Path) -> tuple[pa.Table, int]:
    """A ``rel_*`` file: position relative to a response box and the character under it
    (``char_index`` -1 when not on text; ``camera_ok`` -1 in 6-column files).

    One record per line: IFLLM wrote the window as ``"`` + text + ``"`` without escaping, so a
    window ending in ``"`` (``"…""``) must not open a quoted field running over the following
    lines. Lines with no quotes or just the window's two go to pyarrow as they are; the others
    are parsed from their text (:func:`_rel_record`) and handed to pyarrow rewritten, in place.
    A quoted window holding line breaks (a CSV writer's multi-line field, as our own exports can
    have) is joined from the lines that follow an odd-quoted line, only while none of them parses
    alone. Lines that do not parse are skipped and counted."""
    data = Path(path).read_bytes()
    if not data.strip():
        return _empty_table(REL_COLUMNS_7), 0
    b = np.frombuffer(data, dtype=np.uint8)
    marks = np.flatnonzero((b == 10) | (b == 34))  # newlines and quotes, one pass
    is_nl = b[marks] == 10
    nl = marks[is_nl]
    n = len(b)
    starts = np.concatenate([[0], nl + 1]).astype(np.int64)
    if starts[-1] == n:  # the empty segment after a final newline
        starts = starts[:-1]
    nexts = np.append(starts[1:], n)
    ends = np.append(nl, n)[:len(starts)].astype(np.int64)
    if len(starts):
        ends -= (ends > starts) & (b[np.maximum(ends - 1, 0)] == 13)  # CR-LF
    nonempty = ends > starts
    # quotes per line: a quote's line is the number of newlines before it
    qcount = np.bincount(np.cumsum(is_nl)[~is_nl], minlength=len(starts))[:len(starts)]
    clean = nonempty & ((qcount == 0) | (qcount == 2))  # no quotes, or just the window's

    def text(i: int) -> str:
        return data[starts[i]:ends[i]].decode("utf-8", errors="replace")

    width = _rel_width([text(i) for i in np.flatnonzero(nonempty)[:50]])
    names = REL_COLUMNS_6 if width == 6 else REL_COLUMNS_7
    bad = 0
    multiline = False
    buf = data
    other = np.flatnonzero(~clean).tolist()
    if other:
        pieces, prev, done = [], 0, -1
        for i in other:
            if i <= done:  # joined into an earlier record
                continue
            pieces.append(data[prev:starts[i]])
            prev, done = nexts[i], i
            if not nonempty[i]:
                continue
            line = text(i)
            rec = _rel_record(line, width)
            if rec is None and line.count('"') % 2:
                j, joined = i + 1, line
                while j < len(starts) and j - i <= _MAX_WINDOW_LINES:
                    nxt = text(j)
                    if _rel_record(nxt, width) is not None:  # never swallow a line that parses
                        break
                    joined += "\n" + nxt
                    if nxt.count('"') % 2:
                        rec = _rel_record(joined, width)
                        if rec is not None:
                            prev, done, multiline = nexts[j], j, True
                        break
                    j += 1
            if rec is None:
                bad += 1
            else:
                pieces.append(rec.encode() + b"\n")
        pieces.append(data[prev:])
        buf = b"".join(pieces)

    invalid: list[tuple[int, str]] = []  # records pyarrow could not split (a comma in an unquoted window)

    def on_invalid(row: Any) -> str:
        invalid.append((row.number, row.text))
        return "skip"

    def read(source: bytes, typed: bool) -> pa.Table:
        invalid.clear()
        types = {n: (_NUMERIC.get(n, pa.string()) if typed else pa.string()) for n in names}
        return pcsv.read_csv(
            pa.py_buffer(source),
            read_options=pcsv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 24),
            parse_options=pcsv.ParseOptions(newlines_in_values=multiline, invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                                quoted_strings_can_be_null=False),
        )

    def read_typed(source: bytes) -> tuple[pa.Table, np.ndarray, int]:
        """The table, its rows' record numbers (1-based) and the rows dropped for text where a
        number belongs."""
        try:
            tb = read(source, True)
            return tb, _row_numbers(tb.num_rows, [k for k, _ in invalid]), 0
        except pa.ArrowInvalid:
            raw = read(source, False)
            nums = _row_numbers(raw.num_rows, [k for k, _ in invalid])
            keep = np.ones(raw.num_rows, dtype=bool)
            cols = {}
            for n in names:
                if n in _NUMERIC:
                    s = raw.column(n).to_pandas()
                    num = pd.to_numeric(s, errors="coerce")
                    keep &= ~((s != "") & num.isna()).to_numpy()
                    cols[n] = num
            tb = pa.table({n: pa.array(cols[n].to_numpy()[keep], from_pandas=True).cast(_NUMERIC[n])
                           if n in _NUMERIC else raw.column(n).filter(pa.array(keep)) for n in names})
            return tb, nums[keep], int((~keep).sum())

    table, nums, n_bad = read_typed(buf)
    bad += n_bad
    if invalid:  # rare: parsed from their text and put back in their place
        recs = [(k, _rel_record(s, width)) for k, s in invalid]
        bad += sum(r is None for _, r in recs)
        recs = [(k, r) for k, r in recs if r is not None]
        if recs:
            more, more_nums, n_bad = read_typed(("\n".join(r for _, r in recs) + "\n").encode())
            bad += n_bad + len(invalid)
            knums = np.array([k for k, _ in recs], dtype=np.int64)
            knums = np.where(knums < 1, 1 << 40, knums)[more_nums - 1]  # unknown numbers: last
            order = np.argsort(np.concatenate([nums, knums]), kind="stable")
            table = pa.concat_tables([table, more]).take(pa.array(order))
    ok = None
    for n in ("x", "y", "t", "epoch_ms"):  # required numbers present
        m = pc.is_valid(table.column(n))
        ok = m if ok is None else pc.and_(ok, m)
    n_bad = table.num_rows - int(pc.sum(ok).as_py() or 0)
    if n_bad:
        table, bad = table.filter(ok), bad + n_bad
    for n in ("char_index", "camera_ok"):
        if n in names and table.column(n).null_count:
            table = table.set_column(table.schema.get_field_index(n), n, pc.fill_null(table.column(n), -1))
    if "camera_ok" not in names:
        table = table.append_column("camera_ok", pa.array(np.full(table.num_rows, -1, dtype=np.int8)))
    return table, bad


def _row_numbers(n_parsed: int, invalid: list[int]) -> np.ndarray:
    """Record numbers (1-based) of the rows pyarrow parsed, in order: the ones it did not hand
    to the invalid-row handler."""
    allnums = np.arange(1, n_parsed + len(invalid) + 1, dtype=np.int64)
    if not invalid:
        return allnums
    return np.setdiff1d(allnums, np.asarray(invalid, dtype=np.int64), assume_unique=True)[:n_parsed]


def dedup_rows(table: pa.Table) -> pa.Table:
    """Drop exact duplicate rows of an ``abs_*`` table; the result is sorted by ``t``."""
    cols = [table.column(c).to_numpy() for c in ("t", "epoch_ms", "x", "y")]
    order = np.lexsort(cols[::-1])  # by t, then epoch, x, y: duplicates become neighbours
    s = [c[order] for c in cols]
    keep = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        same = np.ones(len(order) - 1, dtype=bool)
        for c in s:
            same &= c[1:] == c[:-1]
        keep[1:] = ~same
    return table.take(pa.array(order[keep]))


# --------------------------------------------------------------------------- tables


def _clean_name(s: Any) -> Any:
    if isinstance(s, str):
        return " ".join(s.replace("\r", "").replace("\n", "").split()) if ("\r" in s or "\n" in s) else s.strip()
    return s


def _read_table(path: Path, what: str, **kw: Any) -> pd.DataFrame:
    """A CSV table with a header; an empty file is a :class:`UserError` naming it."""
    try:
        return pd.read_csv(path, dtype={"user_id": str}, **kw)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty (expected {what} with a header row)") from None


def read_query_table(path: Path) -> pd.DataFrame:
    # the texts as written: a prompt, answer or comment "NA", "n/a" or "null" is that text, not a
    # missing value (pandas read them as NaN: a prompt "" beside its prompt_sent "NA", an answer
    # "nan"); an empty cell is empty
    texts = [c for c in _read_table(path, "the IFLLM query table", nrows=0).columns if c in QUERY_TEXT_COLUMNS]
    df = _read_table(path, "the IFLLM query table", keep_default_na=True, converters={c: str for c in texts})
    missing = [c for c in QUERY_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: not an IFLLM query table, missing columns {missing}")
    if "modifiers" in df.columns:
        df["modifiers"] = [_modifiers(v, path, i) for i, v in enumerate(df["modifiers"])]
    for c in ("llm_name_1", "llm_name_2"):
        df[c] = df[c].map(_clean_name)
    ts = pd.to_datetime(df["query_timestamp"], errors="coerce", format="%Y-%m-%d %H:%M:%S")  # UTC; 0000-.. → NaT
    df["epoch_ms"] = ts.astype("datetime64[ms]").astype("int64").astype("float64").where(ts.notna(), np.nan)
    r2 = df["llm_response_2"]
    df["pairwise"] = r2.notna() & (r2.astype(str).str.len() > 0)
    df["task_id"] = df["task_id"].astype(int)
    return df


#: the query table's columns of free text (read as written: :func:`read_query_table`)
QUERY_TEXT_COLUMNS = ("user_query", "llm_response_1", "llm_response_2", "comment", "modifiers", "prompt_sent")


def _modifiers(cell: Any, path: Path, row: int) -> list[str] | None:
    """A ``modifiers`` cell of our export (a JSON list of the modifiers' names); None: empty."""
    if not isinstance(cell, str) or cell == "":
        return None
    try:
        names = json.loads(cell)
    except ValueError:
        names = None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise UserError(f"{path}: row {row + 2}: modifiers {cell[:60]!r} is not a JSON list of names")
    return names


def _answer(text: str) -> Any:
    """A ``question_ID`` cell as our exporter wrote the answer: empty is no answer; a number or
    ``True``/``False`` written as Python writes it is one; anything else is the text as given
    (pandas would read ``"0042"`` as 42 and ``"None"``, ``"n/a"``, ``"NA"`` as missing)."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        if str(int(text)) == text:
            return int(text)
    except ValueError:
        pass
    try:
        if repr(float(text)) == text:
            return float(text)
    except ValueError:
        pass
    return text


def read_task_table(path: Path) -> pd.DataFrame:
    own = [c for c in _read_table(path, "the IFLLM task table", nrows=0).columns if str(c).startswith(QUESTION_PREFIX)]
    # a study's own answers (our export) as written, not as pandas guesses them: the raw text,
    # then _answer's reading in an object column (pandas would make 3 and a blank 3.0 and NaN)
    df = _read_table(path, "the IFLLM task table", converters={c: str for c in own})
    for c in own:
        df[c] = pd.Series([_answer(v) if isinstance(v, str) else None for v in df[c]], index=df.index, dtype=object)
    missing = [c for c in ("user_id", "task_id") if c not in df.columns]
    if missing:
        raise UserError(f"{path}: not an IFLLM task table, missing columns {missing}")
    df["task_id"] = df["task_id"].astype(int)
    return df


# --------------------------------------------------------------------------- the release


class IFLLMRelease:
    """An IFLLM-layout folder: ``query_logs_table.csv``, ``task_table.csv``, ``user_behavior/``.

    ``path`` may be the folder itself or a folder holding it as ``dataset/`` (the repository).
    """

    def __init__(self, path: str | os.PathLike):
        root = Path(path).expanduser()
        if not root.exists():
            raise UserError(f"no such folder: {root}")
        if not (root / QUERY_TABLE).exists() and (root / "dataset" / QUERY_TABLE).exists():
            root = root / "dataset"
        if not root.is_dir() or not (root / QUERY_TABLE).exists():
            raise UserError(f"{root} is not an IFLLM-layout folder: {QUERY_TABLE} is missing")
        if (root / SPREADSHEET_SAFE_FILE).exists():
            raise UserError(f"{root} was exported to be opened in a spreadsheet ({SPREADSHEET_SAFE_FILE}): text "
                            "beginning with = + - @ carries a leading ', so it is not the data as stored; export "
                            "again without --spreadsheet-safe to analyse it")
        self.root = root
        self.report = ReadReport()
        self._streams: dict[str, dict[str, pa.Table]] = {}

    # ---- tables
    def calibration_rounds(self) -> list[dict] | None:
        """The webcam calibration rounds of a site study's export (``calibration_table.csv``;
        None: the release and other folders have none)."""
        from .calibration_rounds import read_csv_rounds

        return read_csv_rounds(self.root)

    @cached_property
    def queries(self) -> pd.DataFrame:
        return read_query_table(self.root / QUERY_TABLE)

    @cached_property
    def task_table(self) -> pd.DataFrame:
        p = self.root / TASK_TABLE
        return read_task_table(p) if p.exists() else pd.DataFrame(columns=TASK_COLUMNS)

    @cached_property
    def record_info(self) -> pd.DataFrame:
        p = self.root / RECORD_TABLE
        return _read_table(p, "the IFLLM record table") if p.exists() else pd.DataFrame(columns=["user_id", "consent"])

    @cached_property
    def behavior_dirs(self) -> dict[str, Path]:
        """Task id → its trajectory folder."""
        base = self.root / BEHAVIOR_DIR
        out: dict[str, Path] = {}
        if not base.is_dir():
            return out
        for w in sorted(os.listdir(base)):
            wd = base / w
            if not wd.is_dir():
                continue
            for t in sorted(os.listdir(wd)):
                if t.isdigit() and (wd / t).is_dir():
                    out[task_key(w, t)] = wd / t
        return out

    # ---- records
    @cached_property
    def _ordered_queries(self) -> pd.DataFrame:
        q = self.queries.copy()
        q["_order"] = q["epoch_ms"].fillna(np.inf)
        q = q.sort_values(["user_id", "task_id", "_order", "query_ID"], kind="stable")
        q["turn_index"] = q.groupby(["user_id", "task_id"]).cumcount()
        return q.drop(columns="_order")

    def turns(self) -> list[schema.Turn]:
        """Every query as a :class:`gazepref.schema.Turn`, in task order."""
        out = []
        prev_context: dict[str, list[dict[str, str]]] = {}
        for r in self._ordered_queries.itertuples(index=False):
            tid = task_key(r.user_id, r.task_id)
            pairwise = bool(r.pairwise)
            responses = [schema.Response(0, str(r.llm_name_1), str(r.llm_response_1), _likert(r.likert_1))]
            if pairwise:
                responses.append(schema.Response(1, str(r.llm_name_2), str(r.llm_response_2), _likert(r.likert_2)))
            pref = None if pd.isna(r.preference) else float(r.preference)
            choice = better = None
            if pairwise and pref in (1.0, 2.0):
                choice = schema.LEFT if pref == 1.0 else schema.RIGHT
            elif not pairwise and pref in (0.0, 1.0):
                better = pref == 1.0
            adjusted = not pd.isna(r.adjustment) and int(r.adjustment) == 1
            prompt = "" if pd.isna(r.user_query) else str(r.user_query)
            context = prev_context.setdefault(tid, [])
            # our export's own columns where it has them; else what IFLLM's adjustment means
            modifiers = getattr(r, "modifiers", None)
            sent = getattr(r, "prompt_sent", None) or None
            if modifiers is None:
                modifiers = [BULLET_MODIFIER.strip()] if adjusted else []
                sent = sent or (prompt + BULLET_MODIFIER if adjusted else prompt)
            strength = getattr(r, "choice_strength", None)
            out.append(
                schema.Turn(
                    turn_id=str(r.query_ID), task_id=tid, participant_id=str(r.user_id), index=int(r.turn_index),
                    kind="pairwise" if pairwise else "pointwise", prompt=prompt, responses=responses,
                    prompt_sent=sent or prompt, modifiers=list(modifiers), context=list(context),
                    choice=choice, better_than_previous=better,
                    choice_strength=None if strength is None or pd.isna(strength) else int(strength),
                    epoch_ms=None if pd.isna(r.epoch_ms) else float(r.epoch_ms),
                    t_shown=_opt_float(getattr(r, "t_shown", None)),
                    t_decided=_opt_float(getattr(r, "t_decided", None)),
                    feedback_text=_plain(getattr(r, "comment", None)) or None,  # (an empty cell: none)
                )
            )
            # IFLLM shows the conversation so far; for pairwise turns the context holds the left answer.
            context.extend([{"role": "user", "content": prompt}, {"role": "assistant", "content": responses[0].text}])
        return out

    def tasks(self) -> list[schema.Task]:
        tt = self.task_table
        kinds = self._ordered_queries.groupby(["user_id", "task_id"])["pairwise"].any()
        keys = {(str(w), int(t)) for w, t in zip(tt["user_id"], tt["task_id"])}
        keys |= {(w, int(t)) for w, t in kinds.index}
        keys |= {split_task_key(k) for k in self.behavior_dirs}
        rows = {(str(r["user_id"]), int(r["task_id"])): r for r in tt.to_dict("records")}
        out = []
        for w, t in sorted(keys):
            r = rows.get((w, t), {})
            tid = task_key(w, t)
            if (w, t) in kinds.index:
                kind = "pairwise" if kinds[(w, t)] else "pointwise"
            else:
                d = self.behavior_dirs.get(tid)
                kind = "pairwise" if (d is not None and (d / "rel_gaze_one.csv").exists()) or t % 2 == 1 else "pointwise"
            answers = {k: _plain(r.get(k)) for k in TASK_ANSWER_COLUMNS if k in r}
            answers |= {k.removeprefix(QUESTION_PREFIX): v for k in r if k.startswith(QUESTION_PREFIX)
                        if (v := _plain(r[k])) is not None}  # a study's own questions (our export)
            accuracy = _plain(r.get("accuracy"))
            if accuracy is None and _plain(r.get("accuracy_px")) is not None:  # an earlier export of a failed calibration
                accuracy, answers["calibration_unit"] = _plain(r.get("accuracy_px")), "px"
            out.append(schema.Task(
                task_id=tid, participant_id=w, study_id="ifllm", kind=kind, topic=_plain(r.get("domain")),
                finished=_plain(r.get("finished")) is not None, feedback_text=_plain(r.get("feedback")),
                answers=answers, calibration_accuracy=accuracy, calibration=_exported_calibration(r),
            ))
        return out

    def participants(self) -> list[schema.Participant]:
        ids = set(self.queries["user_id"]) | set(self.task_table["user_id"].astype(str))
        ids |= set(self.record_info["user_id"].astype(str)) | {split_task_key(k)[0] for k in self.behavior_dirs}
        consent = dict(zip(self.record_info["user_id"].astype(str), self.record_info.get("consent", [])))
        return [schema.Participant(w, "ifllm", consented=bool(consent.get(w, 1)), platform="mturk") for w in sorted(ids)]

    def demographics(self) -> list[tuple[str, dict]]:
        """``(user_id, answers)`` of the consenting workers from the record table's demographics
        columns (all but :data:`RECORD_NOT_DEMOGRAPHICS`; blank answers left out). Never part of
        the behaviour exports (the IFLLM export's record table keeps ``user_id`` and ``consent``
        only): see :func:`gazepref.datasets.export.export_demographics`."""
        info = self.record_info
        cols = [c for c in info.columns if c not in RECORD_NOT_DEMOGRAPHICS]
        consented = {p.participant_id for p in self.participants() if p.consented}
        out = []
        for r in info.to_dict("records"):
            uid = str(r["user_id"])
            if uid not in consented:
                continue
            answers = {}
            for c in cols:
                v = _plain(r[c])
                if v is not None:
                    answers[c] = int(v) if isinstance(v, float) and v.is_integer() else v  # age 33.0 -> 33
            out.append((uid, answers))
        return out

    # ---- trajectories
    def read_folder(self, task_id: str) -> dict[str, pa.Table]:
        """Raw streams of one task folder: ``gaze``, ``mouse`` (abs; gaze de-duplicated) and
        ``hits`` (all rel_* files), each sorted by ``t``; malformed rows go to :attr:`report`."""
        d = self.behavior_dirs.get(task_id)
        if d is None:
            raise UserError(f"no trajectories for task {task_id!r}")
        out: dict[str, pa.Table] = {}
        for name, stream in (("abs_gaze.csv", "gaze"), ("abs_mouse.csv", "mouse")):
            if (d / name).exists():
                tb, bad = read_abs(d / name)
                self.report.skipped[name[:-4]] += bad
                if stream == "gaze":
                    tb = dedup_rows(tb)
                out[stream] = tb
        hits = []
        for name, (source, pos) in REL_FILES.items():
            if (d / name).exists():
                tb, bad = read_rel(d / name)
                self.report.skipped[name[:-4]] += bad
                n = tb.num_rows
                tb = tb.append_column("source", pa.array([source] * n, pa.string()))
                tb = tb.append_column("position", pa.array(np.full(n, pos, dtype=np.int8)))
                hits.append(schema.conform("hits", tb))
        if hits:
            out["hits"] = pa.concat_tables(hits)
        # a page reload restarts the page timer: later sessions go after the earlier ones, the
        # hits with them (before they are matched to the abs samples on t)
        basis = [out[s] for s in ("gaze", "mouse") if s in out] or [out[s] for s in ("hits",) if s in out]
        bounds, shifts = page_sessions(*basis)
        self.report.page_reloads += len(bounds)
        for stream, tb in out.items():
            tb = shift_sessions(tb, bounds, shifts).sort_by("t")
            out[stream] = tb if stream == "hits" else schema.conform(stream, tb)
        return out

    def streams(self, task_id: str, cache: bool = True) -> dict[str, pa.Table]:
        """Derived streams of one task (:func:`gazepref.datasets.derive.derive_streams`): a
        ``turn`` column on every stream (the turn on screen by the epoch clock, with the task's
        detected whole-hour offset; by ``t_shown`` on the task clock where our exporter wrote it;
        -1 before the first query) and the word under each gaze and
        mouse sample from the ``hits`` rows. Kept in memory for later calls unless ``cache`` is
        false (one pass over a whole release)."""
        if task_id not in self.behavior_dirs:
            if task_id in self._task_ids:
                return {}
            raise UserError(f"no task {task_id!r} in {self.root}")
        if task_id not in self._streams:
            raw = self.read_folder(task_id)
            turns = self.turns_by_task().get(task_id, [])
            # our exporter's t_shown: the samples' own (page/task) clock; the release: query
            # timestamps (server clock), with the folder's whole-hour offset
            clock = default_clock(turns)
            offset = 0 if clock == "t" else detect_hour_offset(raw.get("hits"), turns)
            out = derive_streams(raw, turns, clock=clock, offset_ms=offset * HOUR_MS)
            self._offsets[task_id] = offset
            if not cache:
                return out
            self._streams[task_id] = out
        return self._streams[task_id]

    @cached_property
    def _task_ids(self) -> set[str]:
        return {t.task_id for t in self.tasks()}

    @cached_property
    def _offsets(self) -> dict[str, int]:
        return {}

    def clock_offset_hours(self, task_id: str) -> int:
        """Whole hours added to the query timestamps to match the trajectories' epoch."""
        self.streams(task_id)
        return self._offsets[task_id]

    def turns_by_task(self) -> dict[str, list[schema.Turn]]:
        if not hasattr(self, "_turns_by_task"):
            by: dict[str, list[schema.Turn]] = {}
            for t in self.turns():
                by.setdefault(t.task_id, []).append(t)
            self._turns_by_task = by
        return self._turns_by_task

    # ---- summary
    def summary(self, jobs: int | None = None, progress: bool = False) -> dict[str, int]:
        """Counts over the whole release (reads every trajectory file once, in parallel), named as
        every recording's summary is (:func:`gazepref.datasets.recording.summarize`): the release's
        workers are ``participants``, its queries ``turns``, its ``user_behavior`` folders the tasks
        and participants ``_with_samples``; ``malformed_by_file`` keeps the release's file names."""
        q = self.queries
        pw = q["pairwise"]
        labelled = pw & q["preference"].isin([1.0, 2.0])
        workers = {p.participant_id for p in self.participants()}
        dirs = list(self.behavior_dirs.items())
        report = ReadReport()

        def count(item: tuple[str, Path]) -> tuple[int, int, int, int, int, Counter]:
            _, d = item
            c: Counter = Counter()
            g = m = mp = gp = 0
            abs_tables, rel_tables = [], []
            if (d / "abs_gaze.csv").exists():
                tb, bad = read_abs(d / "abs_gaze.csv")
                c["abs_gaze"] += bad
                tb = dedup_rows(tb)
                g, gp = tb.num_rows, gaze_positions(tb)
                abs_tables.append(tb)
            if (d / "abs_mouse.csv").exists():
                tb, bad = read_abs(d / "abs_mouse.csv")
                c["abs_mouse"] += bad
                m = tb.num_rows
                mp = int(pc.sum(pc.greater_equal(tb.column("x"), 0)).as_py() or 0)
                abs_tables.append(tb)
            for name in REL_FILES:
                if (d / name).exists():
                    tb, bad = read_rel(d / name)
                    c[name[:-4]] += bad
                    rel_tables.append(tb)
            reloads = len(page_sessions(*(abs_tables or rel_tables))[0])
            return g, m, mp, gp, reloads, c

        gaze = mouse = mouse_pos = gaze_pos = reloads = 0
        with ThreadPoolExecutor(max_workers=jobs or min(8, (os.cpu_count() or 2) * 2)) as ex:
            results = ex.map(count, dirs)
            if progress:
                from ..progress import progress as bar

                results = bar(results, total=len(dirs), desc="reading trajectories")
            for g, m, mp, gp, r, c in results:
                gaze, mouse, mouse_pos, reloads = gaze + g, mouse + m, mouse_pos + mp, reloads + r
                gaze_pos += gp
                report.skipped.update(c)
        return {
            "format": "ifllm",
            "participants": len(workers),
            "participants_with_turns": int(q["user_id"].nunique()),
            "participants_with_samples": len({k.split("/")[0] for k, _ in dirs}),
            "tasks": len(self.tasks()),
            "tasks_with_turns": int(q.groupby(["user_id", "task_id"]).ngroups),
            "tasks_with_samples": len(dirs),
            "turns": int(len(q)),
            "pairwise_turns": int(pw.sum()),
            "pairwise_turns_labelled": int(labelled.sum()),
            "pointwise_turns": int((~pw).sum()),
            "pointwise_turns_labelled": int((~pw & q["preference"].isin([0.0, 1.0])).sum()),
            "gaze_samples": gaze,
            "mouse_samples": mouse,
            "mouse_samples_with_position": mouse_pos,
            "gaze_samples_with_position": gaze_pos,
            "malformed_rows_skipped": report.total,
            "malformed_by_file": dict(sorted(report.skipped.items())),
            "page_reloads_fixed": reloads,
        }


# --------------------------------------------------------------------------- page reloads


def page_sessions(*tables: pa.Table, drop_ms: float = RELOAD_DROP_MS) -> tuple[np.ndarray, np.ndarray]:
    """Page sessions of one task folder's samples: IFLLM's page timer ``t`` restarts at 0 when
    the page is reloaded, while ``epoch_ms`` goes on. In epoch order, a reload is where ``t``
    drops by more than ``drop_ms`` while the epoch rises.

    Returns the sessions' epoch boundaries (midway between a session's last sample and the next
    one's first) and the shift to add to ``t`` in each session (0 for the first): the previous
    session's last (shifted) ``t`` plus the epoch gap from that sample to the new page's start
    (its first sample's epoch less its timer; never negative), so ``t`` runs on the folder's
    clock, matching the epoch across the reload."""
    t = np.concatenate([tb.column("t").to_numpy(zero_copy_only=False).astype(np.float64) for tb in tables]
                       ) if tables else np.zeros(0)
    e = np.concatenate([tb.column("epoch_ms").to_numpy(zero_copy_only=False).astype(np.float64)
                        for tb in tables]) if tables else np.zeros(0)
    ok = ~(np.isnan(t) | np.isnan(e))
    t, e = t[ok], e[ok]
    o = np.lexsort((t, e))
    t, e = t[o], e[o]
    starts = np.flatnonzero((np.diff(t) < -drop_ms) & (np.diff(e) > 0)) + 1
    shifts = [0.0]
    for i in starts:
        gap = max(e[i] - t[i] - e[i - 1], 0.0)
        shifts.append(t[i - 1] + shifts[-1] + gap)
    return (e[starts - 1] + e[starts]) / 2, np.array(shifts)


def shift_sessions(table: pa.Table, bounds: np.ndarray, shifts: np.ndarray) -> pa.Table:
    """``t`` of each sample plus the shift of its page session (by ``epoch_ms``, see
    :func:`page_sessions`)."""
    if not len(bounds) or table.num_rows == 0:
        return table
    e = table.column("epoch_ms").to_numpy(zero_copy_only=False)
    t = table.column("t").to_numpy(zero_copy_only=False) + shifts[np.searchsorted(bounds, e, side="right")]
    return table.set_column(table.schema.get_field_index("t"), "t", pa.array(t, table.schema.field("t").type))


# --------------------------------------------------------------------------- clock offset


def detect_hour_offset(hits: pa.Table | None, turns: list[schema.Turn], max_hours: int = 14,
                       max_samples: int = 600) -> int:
    """Whole-hour offset between query timestamps and trajectory epochs for one task folder.

    Ground truth comes from the text itself: an on-text sample's ``window`` (the characters
    around the caret) must occur in the response it is assigned to, near its ``char_index``.
    For each candidate offset, the samples (an even subsample of at most ``max_samples``) are
    assigned to turns and the matches counted; the most matches wins, ties go to the smallest
    |offset| (0 first). Samples before the first query (placeholder text) match no turn.
    """
    if hits is None or hits.num_rows == 0 or not turns:
        return 0
    h = hits.filter(pc.greater_equal(hits.column("char_index"), 0))
    if h.num_rows == 0:
        return 0
    step = max(1, h.num_rows // max_samples)
    epoch = h.column("epoch_ms").to_numpy()[::step]
    ci = h.column("char_index").to_numpy()[::step]
    posn = h.column("position").to_numpy()[::step]
    window = h.column("window").take(pa.array(np.arange(0, h.num_rows, step))).to_pylist()
    texts = [[t.responses[p].text if p < len(t.responses) else "" for p in (0, 1)] for t in turns]
    base = np.array([np.nan if t.epoch_ms is None else t.epoch_ms for t in turns])
    # match[i, j]: sample i's window occurs in turn j's response near its char_index
    match = np.zeros((len(ci), len(turns)), dtype=bool)
    for i, (w, c, p) in enumerate(zip(window, ci, posn)):
        w = (w or "").strip()
        if len(w) >= 4:
            match[i] = [window_near(tx[p], w, int(c)) for tx in texts]
    rows = np.arange(len(ci))
    best, best_score = 0, -1
    for off in sorted(range(-max_hours, max_hours + 1), key=lambda o: (abs(o), o)):
        idx = assign_turns(epoch, base + off * HOUR_MS)
        a = idx >= 0
        score = int(match[rows[a], idx[a]].sum())
        if score > best_score:
            best, best_score = off, score
    return best


# --------------------------------------------------------------------------- helpers


def _likert(v: Any) -> int | None:
    return None if v is None or pd.isna(v) else int(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def _exported_calibration(r: dict[str, Any]) -> dict[str, Any] | None:
    """The calibration in force our exporter wrote into a site study's task-table row
    (:data:`TASK_CALIBRATION_COLUMNS`), as ``schema.Task.calibration``; None for the release's rows."""
    vals = {k: _plain(r.get(k)) for k in TASK_CALIBRATION_COLUMNS}
    if all(v is None for v in vals.values()):
        return None
    passed = vals["calibration_passed"]
    return {"passed": None if passed is None else str(passed).lower() in ("true", "1", "1.0"),
            "accuracy_px": vals["accuracy_px"], "accuracy_deg": vals["accuracy_deg"],
            "precision_px": vals["precision_px"], "data_loss": vals["data_loss"],
            "attempts": _likert(vals["calibration_attempts"]),  # a count (a column with blanks reads as floats)
            "webgazer_score_pct": _plain(r.get("accuracy"))}


def _plain(v: Any) -> Any:
    """A JSON-friendly scalar: NaN → None, numpy → Python."""
    if v is None:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def open_release(path: str | os.PathLike) -> IFLLMRelease:
    return IFLLMRelease(path)
