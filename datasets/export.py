"""Write any :class:`~gazepref.datasets.recording.Recording` to Parquet or to the IFLLM layout.

The IFLLM layout lets tools written for the public IFLLM release read our studies:
``query_logs_table.csv``, ``task_table.csv``, ``record_info_table.csv`` and
``user_behavior/<worker>/<task>/{abs_gaze,abs_mouse,rel_*}.csv`` (no header). Our exports write
each gaze row once (IFLLM doubled them in pairwise folders; readers drop doubles anyway). The query
table gets two columns the release lacks, ``t_shown`` and ``t_decided`` (the trajectories' page
timer, ms; empty where unknown), so samples after a decision are still cut when it is read back,
and ``comment``, the participant's comment on the turn. The task table's ``finished`` is the time
the task was finished (UTC, as in the release); the answers to a study's own pre- and post-task
questions (ids the release has no column for) follow the release's columns as ``question_ID``.
Site studies also carry their webcam calibrations: Parquet ``calibrations.parquet`` (every
calibration, validation and outcome round: attempts, accuracy px and degrees, precision, data loss
per point) and ``tasks.parquet`` ``calibration`` / ``calibration_accuracy`` (px); the IFLLM
layout's task table ``accuracy`` gets WebGazer's score (%, what the release holds) and, after
the release's columns, ``accuracy_px``, ``accuracy_deg``, ``precision_px``, ``data_loss``,
``calibration_attempts`` and ``calibration_passed``, plus ``calibration_table.csv`` (the rounds).

Participant ids are the site's pseudonyms. Demographics are written only on request
(:func:`export_demographics`, ``gazepref data export --demographics``): a separate
``demographics.csv`` with a ``DEMOGRAPHICS_README.txt`` saying they may identify people.

Every CSV holds the participants' and the models' text exactly as stored: the research data
(pandas reads it back as it was; the ``rel_*`` files' ``char_index`` counts characters of the
stored answers; the IFLLM layout is an interchange format). A spreadsheet, though, takes a cell
that begins with ``=``, ``+``, ``-`` or ``@`` for a formula (CSV or formula injection): with
``spreadsheet_safe`` (``--spreadsheet-safe``, the dashboard's "safe to open in a spreadsheet")
such text cells get a leading ``'`` (:func:`spreadsheet_text`, OWASP's advice), the export says
so in ``SPREADSHEET_SAFE.txt`` and the IFLLM reader refuses it (its text is no longer exact).
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import UserError, schema
from . import ifllm
from .calibration_rounds import CALIBRATION_TABLE  # the IFLLM-layout export's table of webcam calibration rounds
from .derive import rel_rows, strip_derived
from .recording import PARQUET_FORMAT, PARQUET_VERSION, Recording, turns_frame


def _prepare_out(out: str | os.PathLike, overwrite: bool) -> Path:
    from ..files import check_out_folder

    out = check_out_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _with_epoch(table: pa.Table, anchor: float | None) -> pa.Table:
    """Fill missing ``epoch_ms`` from the task's clock anchor."""
    if "epoch_ms" not in table.column_names or anchor is None:
        return table
    e = table.column("epoch_ms")
    if e.null_count == 0:
        return table
    filled = pc.coalesce(e, pc.add(table.column("t"), anchor))
    return table.set_column(table.schema.get_field_index("epoch_ms"), "epoch_ms", filled)


# --------------------------------------------------------------------------- Parquet


def export_parquet(rec: Recording, out: str | os.PathLike, overwrite: bool = False,
                   progress: bool = False) -> dict[str, Any]:
    """Write ``participants``, ``tasks``, ``turns``, ``responses`` and ``streams/<name>``
    Parquet files plus ``manifest.json``; returns the manifest."""
    out = _prepare_out(out, overwrite)
    participants = rec.participants()
    tasks = rec.tasks()
    turns = rec.turns()
    pd.DataFrame([asdict(p) for p in participants],
                 columns=list(schema.Participant.__dataclass_fields__)).to_parquet(out / "participants.parquet")
    tdf = pd.DataFrame([asdict(t) for t in tasks], columns=list(schema.Task.__dataclass_fields__))
    tdf["answers"] = tdf["answers"].map(lambda a: json.dumps(a, ensure_ascii=False, default=str))
    tdf["calibration"] = tdf["calibration"].map(lambda c: None if c is None else json.dumps(c, default=str))
    tdf.to_parquet(out / "tasks.parquet")
    calibrations = _calibration_rounds(rec)
    if calibrations is not None:
        calibrations.to_parquet(out / "calibrations.parquet")
    turn_df, resp_df = turns_frame(turns)
    turn_df.to_parquet(out / "turns.parquet")
    resp_df.to_parquet(out / "responses.parquet")

    (out / "streams").mkdir(exist_ok=True)
    files = _StreamFiles(out / "streams")
    counts: dict[str, int] = {}
    items = tasks
    if progress:
        from ..progress import progress as bar

        items = bar(tasks, total=len(tasks), desc="exporting streams")
    try:
        for task in items:
            for name, table in rec.streams(task.task_id).items():
                table = strip_derived(name, table)  # words are derived again when read back
                table = _with_epoch(table, task.clock_anchor_epoch_ms)  # as the IFLLM layout has it
                extra_turn = "turn" in table.column_names and "turn" not in schema.STREAMS[name].names
                turn = table.column("turn") if extra_turn else None
                table = schema.conform(name, table.drop_columns(["turn"]) if turn is not None else table)
                if turn is not None:  # the turn on screen, derived by the source reader (kept: IFLLM's
                    table = table.append_column("turn", turn.cast(pa.int32()))  # needs its clock offset)
                table = table.append_column("task_id", pa.array([task.task_id] * table.num_rows, pa.string()))
                files.write(name, table)
                counts[name] = counts.get(name, 0) + table.num_rows
        files.finish()
    finally:
        files.close()
    report = getattr(rec, "report", None)
    manifest = {
        "format": PARQUET_FORMAT,
        "version": PARQUET_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "participants": len(participants),
        "tasks": len(tasks),
        "turns": len(turns),
        "samples": counts,
        "malformed_rows_skipped": report.total if report is not None else 0,
    }
    if calibrations is not None:
        manifest["calibration_rounds"] = len(calibrations)
    if getattr(rec, "gaze_from", None):  # the gaze of a gaze recalibrate folder (data export --gaze)
        manifest["gaze_from"] = rec.gaze_from
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _to_schema(table: pa.Table, target: pa.Schema) -> pa.Table:
    """``table`` with ``target``'s columns, in its order and types (null where it lacks one)."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
            for f in target]
    return pa.Table.from_arrays(cols, schema=target)


class _StreamFiles:
    """One Parquet file a stream (``<folder>/<stream>.parquet``), its tasks' tables written as they
    come. Tasks of one stream may hold different columns (stored chunks leave out the optional
    columns that are all null: a task whose pictures never showed a face has no ``eye_*``; a
    study that turned the click corrections on later): a table lacking a column of the file gets
    nulls there; one bringing a column the file lacks turns the stream to parts (the file so far
    the first), which :meth:`finish` writes into one file of the columns of them all. Nothing is
    dropped, and the usual case (every task alike) is written once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.schemas: dict[str, pa.Schema] = {}
        self.parts: dict[str, list[Path]] = {}

    def _part(self, name: str) -> Path:
        parts = self.folder / ".parts"
        parts.mkdir(exist_ok=True)
        return parts / f"{name}.{len(self.parts[name]):06d}.parquet"

    def write(self, name: str, table: pa.Table) -> None:
        if name not in self.schemas:  # the stream's first table: its file
            self.schemas[name] = table.schema
            self.writers[name] = pq.ParquetWriter(self.folder / f"{name}.parquet", table.schema, compression="zstd")
            self.writers[name].write_table(table)
            return
        if name not in self.parts:
            schema_ = self.schemas[name]
            if all(schema_.get_field_index(c) >= 0 for c in table.column_names):  # no new column
                self.writers[name].write_table(table if table.schema == schema_ else _to_schema(table, schema_))
                return
            self.writers.pop(name).close()  # a new column: the file so far is the first part
            self.parts[name] = []
            first = self._part(name)
            (self.folder / f"{name}.parquet").rename(first)
            self.parts[name].append(first)
        path = self._part(name)
        pq.write_table(table, path, compression="lz4")
        self.parts[name].append(path)
        self.schemas[name] = pa.unify_schemas([self.schemas[name], table.schema], promote_options="permissive")

    def finish(self) -> None:
        """Close the files; a stream in parts is written whole, in the columns of all its parts
        (``turn`` and ``task_id`` last, as in the others)."""
        for w in self.writers.values():
            w.close()
        self.writers.clear()
        for name, parts in self.parts.items():
            union = self.schemas[name]
            last = [f for f in union if f.name in ("turn", "task_id")]
            union = pa.schema([f for f in union if f.name not in ("turn", "task_id")] + last)
            with pq.ParquetWriter(self.folder / f"{name}.parquet", union, compression="zstd") as w:
                for path in parts:
                    w.write_table(_to_schema(pq.read_table(path), union))
                    path.unlink()
        self.parts.clear()
        self.close()

    def close(self) -> None:
        """Close what is open and remove the parts (also after a failure)."""
        import shutil

        for w in self.writers.values():
            w.close()
        self.writers.clear()
        shutil.rmtree(self.folder / ".parts", ignore_errors=True)


def _calibration_rounds(rec: Recording) -> pd.DataFrame | None:
    """The webcam calibration rounds of a recording that has them (site studies), else None."""
    rounds = getattr(rec, "calibration_rounds", None)
    rows = rounds() if rounds is not None else None
    if rows is None:  # (an export without them: a release, a mouse-only study's Parquet)
        return None
    from .calibration_rounds import CALIBRATION_COLUMNS

    df = pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)
    for c in ("step", "attempt", "attempts", "n_targets", "frames", "usable_frames_min", "starved_targets"):
        df[c] = df[c].astype("Int64")
    for c in ("accuracy_px", "accuracy_deg", "precision_px", "data_loss", "in_roi", "webgazer_score_pct",
              "distance_cm", "px_per_cm", "viewport_w", "viewport_h", "cv_error_px"):
        df[c] = df[c].astype("float64")
    df["passed"] = df["passed"].astype("boolean")
    # UTC and marked so: Parquet timestamp[us, tz=UTC]; the CSV writer gives ISO 8601 with +00:00
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True).astype("datetime64[us, UTC]")
    return df


def _iso_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its tz-aware columns as ISO 8601 strings ending in ``+00:00`` (CSV)."""
    out = frame.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype):
            out[c] = [None if pd.isna(v) else v.tz_convert("UTC").isoformat() for v in out[c]]
    return out


#: columns the IFLLM task table gets after the release's (site studies): the calibration in force
#: for the task; ``accuracy`` itself holds WebGazer's score (%), as the release does
TASK_CALIBRATION_COLUMNS = ifllm.TASK_CALIBRATION_COLUMNS


def _task_accuracy(t: schema.Task) -> dict[str, Any]:
    """The IFLLM task-table calibration fields of ``t``."""
    cal = t.calibration
    if cal is None:  # a release-sourced task: its accuracy (%) as it came
        px = t.calibration_accuracy if t.answers.get("calibration_unit") == "px" else None
        return {"accuracy": None if px is not None else t.calibration_accuracy, "accuracy_px": px}
    return {"accuracy": cal.get("webgazer_score_pct"), "accuracy_px": cal.get("accuracy_px"),
            "accuracy_deg": cal.get("accuracy_deg"), "precision_px": cal.get("precision_px"),
            "data_loss": cal.get("data_loss"), "calibration_attempts": cal.get("attempts"),
            "calibration_passed": cal.get("passed")}


# --------------------------------------------------------------------------- IFLLM layout


def _ifllm_ids(tasks: list[schema.Task]) -> dict[str, tuple[str, int]]:
    """(worker, integer task id) per task: kept when already ``worker/123``, else numbered."""
    ids: dict[str, tuple[str, int]] = {}
    used: set[tuple[str, int]] = set()
    pending = []
    for t in tasks:
        m = re.fullmatch(r"(.+)/(\d+)", t.task_id)
        if m and (m.group(1), int(m.group(2))) not in used:
            ids[t.task_id] = (m.group(1), int(m.group(2)))
            used.add(ids[t.task_id])
        else:
            pending.append(t)
    for t in pending:
        n = 1
        while (t.participant_id, n) in used:
            n += 1
        ids[t.task_id] = (t.participant_id, n)
        used.add(ids[t.task_id])
    return ids


#: Unix ms the exporters write as whole numbers and dates (year 1970 .. ~5138, as the site accepts)
EPOCH_MS_RANGE = (0.0, 1e14)


def _epoch_ok(values: pd.Series) -> np.ndarray:
    """Which ``epoch_ms`` values are missing or usable (finite, within :data:`EPOCH_MS_RANGE`)."""
    v = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return np.isnan(v) | ((v >= EPOCH_MS_RANGE[0]) & (v <= EPOCH_MS_RANGE[1]))


def _timestamp(epoch_ms: float | None) -> str:
    if epoch_ms is None or not (isinstance(epoch_ms, (int, float)) and EPOCH_MS_RANGE[0] <= epoch_ms <= EPOCH_MS_RANGE[1]):
        return ""  # missing, or a stored value no date can show (counted in the report)
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _preference(t: schema.Turn) -> float:
    if t.pairwise:
        return {schema.LEFT: 1.0, schema.RIGHT: 2.0}.get(t.choice, np.nan)
    return np.nan if t.better_than_previous is None else float(t.better_than_previous)


def _finished(t: schema.Task) -> str | None:
    """The task table's ``finished``: the time (``YYYY-mm-dd HH:MM:SS``, UTC) when the source has it;
    a finished task without one gets ``finished`` (IFLLM leaves unfinished tasks empty)."""
    v = t.answers.get("finished")
    if v is not None and str(v).strip():
        return str(v)
    return "finished" if t.finished else None


# --------------------------------------------------------------------------- CSV files

#: first characters that make a spreadsheet (Excel, LibreOffice Calc, Google Sheets) take a CSV
#: cell for a formula: OWASP's "CSV Injection" list (= + - @ tab CR) and NUL (OWASP ASVS 1.2.10)
FORMULA_TRIGGERS = frozenset("=+-@\t\r\0")

SPREADSHEET_NOTE = """This export was written to be opened in a spreadsheet (--spreadsheet-safe / "safe to open
in a spreadsheet"): every text cell of its CSV files that began with =, +, -, @, a tab, a
carriage return or NUL (also after leading blanks) has a ' put in front, so that Excel,
LibreOffice Calc and Google Sheets show it as text instead of running it as a formula (a
participant could have typed one). The text is therefore no longer exactly what was stored:
for analysis (pandas, gazepref) export again without that option. Numbers are unchanged.
"""


def spreadsheet_text(value: Any) -> Any:
    """``value`` as a spreadsheet shows it as text: a string that begins with a formula trigger
    (:data:`FORMULA_TRIGGERS`, also after leading white space) gets a leading ``'``, which the
    spreadsheet takes as "text" (OWASP's advice against CSV injection; the ``csv`` writer quotes
    the cell as it needs). Anything else is returned as it is."""
    if isinstance(value, str) and value and (value[0] in FORMULA_TRIGGERS or value.lstrip()[:1] in FORMULA_TRIGGERS):
        return "'" + value
    return value


def _to_csv(frame: pd.DataFrame, path: Path, spreadsheet_safe: bool = False, **kw: Any) -> None:
    """Write ``frame`` (pandas ``to_csv`` with ``kw``); ``spreadsheet_safe``: its text cells through
    :func:`spreadsheet_text` (columns of numbers are written as they are)."""
    if spreadsheet_safe:
        frame = frame.copy()
        for c in frame.columns:
            if frame[c].dtype == object or isinstance(frame[c].dtype, pd.StringDtype):
                frame[c] = frame[c].map(spreadsheet_text, na_action="ignore")
    frame.to_csv(path, **kw)


def _write_rows(path: Path, frame: pd.DataFrame, spreadsheet_safe: bool = False) -> None:
    _to_csv(frame, path, spreadsheet_safe, header=False, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")


def export_ifllm(rec: Recording, out: str | os.PathLike, overwrite: bool = False,
                 progress: bool = False, spreadsheet_safe: bool = False) -> dict[str, Any]:
    """Write the IFLLM release layout; returns counts of what was written. ``spreadsheet_safe``:
    text cells that a spreadsheet would run as formulas get a leading ``'`` (:func:`spreadsheet_text`;
    the caller writes the note, :func:`export_recording`)."""
    out = _prepare_out(out, overwrite)
    tasks = rec.tasks()
    turns = rec.turns()
    ids = _ifllm_ids(tasks)
    task_by_id = {t.task_id: t for t in tasks}

    rows = []
    for n, t in enumerate(turns, start=1):
        worker, task = ids.get(t.task_id, (t.participant_id, 0))
        r1 = t.responses[0]
        r2 = t.responses[1] if len(t.responses) > 1 else None
        rows.append({
            "query_ID": int(t.turn_id) if str(t.turn_id).isdigit() else n,
            "user_id": worker, "task_id": task, "user_query": t.prompt,
            "llm_response_1": r1.text, "llm_response_2": r2.text if r2 else None,
            "llm_name_1": r1.model, "llm_name_2": r2.model if r2 else None,
            "likert_1": r1.likert, "likert_2": r2.likert if r2 else None,
            "preference": _preference(t), "adjustment": int(bool(t.modifiers)),
            "query_timestamp": _timestamp(t.epoch_ms),
            "t_shown": t.t_shown, "t_decided": t.t_decided, "comment": t.feedback_text,
            "modifiers": json.dumps(list(t.modifiers)), "prompt_sent": t.prompt_sent,
            "choice_strength": t.choice_strength,
        })
    qdf = pd.DataFrame(rows, columns=ifllm.QUERY_COLUMNS + ifllm.QUERY_CLOCK_COLUMNS + ifllm.QUERY_COMMENT_COLUMNS
                       + ifllm.QUERY_TURN_COLUMNS)
    for c in ("likert_1", "likert_2", "preference", *ifllm.QUERY_CLOCK_COLUMNS):
        qdf[c] = qdf[c].astype("float64")
    qdf["choice_strength"] = qdf["choice_strength"].astype("Int64")
    _to_csv(qdf, out / ifllm.QUERY_TABLE, spreadsheet_safe, index=False)

    trows = []
    for t in tasks:
        worker, task = ids[t.task_id]
        a = t.answers
        trows.append({"user_id": worker, "task_id": task, "copy_sentence": a.get("copy_sentence"),
                      "summary": a.get("summary"), "feedback": t.feedback_text,
                      "understand_before": a.get("understand_before"), "understand_after": a.get("understand_after"),
                      "query_copy": a.get("query_copy"), "llm_response_copy": a.get("llm_response_copy"),
                      "finished": _finished(t), "domain": t.topic, **_task_accuracy(t)})
    # a study's own questions (ids the release has no column for) as question_ID columns
    own = {"feedback", *ifllm.TASK_ANSWER_COLUMNS, *schema.TASK_ANSWER_ENTRIES}
    questions = list(dict.fromkeys(ifllm.QUESTION_PREFIX + k for t in tasks for k in t.answers if k not in own))
    for t, row in zip(tasks, trows):
        row |= {ifllm.QUESTION_PREFIX + k: v for k, v in t.answers.items() if k not in own}
    # a webcam study's columns, also where no task has a calibration (every participant so far
    # skipped the camera or had none): its exports keep one layout as participants come
    participants = rec.participants()
    site = any(t.calibration is not None for t in tasks) or any(p.webcam is not None for p in participants)
    columns = ifllm.TASK_COLUMNS + questions + (TASK_CALIBRATION_COLUMNS if site else [])
    tdf = pd.DataFrame(trows, columns=columns)
    if site:
        tdf["calibration_attempts"] = tdf["calibration_attempts"].astype("Int64")
    for c in questions + ["understand_before", "understand_after"]:  # a 1-5 answer stays "4", not
        key = c.removeprefix(ifllm.QUESTION_PREFIX)  # "4.0", where another task has none
        given = [t.answers[key] for t in tasks if t.answers.get(key) is not None]
        if given and all(isinstance(v, int) and not isinstance(v, bool) for v in given):
            tdf[c] = tdf[c].astype("Int64")
    _to_csv(tdf, out / ifllm.TASK_TABLE, spreadsheet_safe, index=False)
    calibrations = _calibration_rounds(rec)
    if calibrations is not None:
        _to_csv(_iso_utc(calibrations), out / CALIBRATION_TABLE, spreadsheet_safe, index=False)
    _to_csv(pd.DataFrame([{"user_id": p.participant_id, "consent": int(p.consented)} for p in participants],
                         columns=["user_id", "consent"]), out / ifllm.RECORD_TABLE, spreadsheet_safe, index=False)

    samples = {"gaze": 0, "mouse": 0, "hits": 0}
    # stored values no file of the layout can hold are skipped and counted, never an error
    skipped = {"rows_epoch_out_of_range": 0, "rows_without_position": 0, "gaze_rows_click_correction": 0,
               "turn_timestamps_out_of_range": sum(1 for t in turns if t.epoch_ms is not None and not _timestamp(t.epoch_ms))}
    items = tasks
    if progress:
        from ..progress import progress as bar

        items = bar(tasks, total=len(tasks), desc="exporting trajectories")
    by_task = rec.turns_by_task()
    for task in items:
        streams = rec.streams(task.task_id)
        if not any(k in streams for k in ("gaze", "mouse", "hits")):
            continue
        worker, tnum = ids[task.task_id]
        d = out / ifllm.BEHAVIOR_DIR / worker / str(tnum)
        d.mkdir(parents=True, exist_ok=True)
        anchor = task_by_id[task.task_id].clock_anchor_epoch_ms
        for name in ("gaze", "mouse"):
            if name in streams:
                tb = _with_epoch(streams[name], anchor)
                frame = tb.select(["x", "y", "t", "epoch_ms"]).to_pandas()
                ok = _epoch_ok(frame["epoch_ms"])
                skipped["rows_epoch_out_of_range"] += int((~ok).sum())
                # a sample without a position (a gaze row in a blink, an uncalibrated one): a line
                # ",,t,epoch" would read back as malformed, so it is left out and counted
                placed = np.isfinite(frame["x"].to_numpy(np.float64)) & np.isfinite(frame["y"].to_numpy(np.float64))
                skipped["rows_without_position"] += int((ok & ~placed).sum())
                if name == "gaze" and "drift_clicks" in tb.column_names:
                    # x, y are written as corrected from the clicks; the correction itself (drift_x,
                    # drift_y, drift_clicks: the tracker's estimate is x - drift_x) has no column
                    clicks = tb.column("drift_clicks").to_numpy(zero_copy_only=False)
                    skipped["gaze_rows_click_correction"] += int((ok & placed & (np.nan_to_num(clicks) > 0)).sum())
                frame = frame[ok & placed]
                frame["epoch_ms"] = frame["epoch_ms"].round().astype("Int64")
                _write_rows(d / f"abs_{name}.csv", frame, spreadsheet_safe)
                samples[name] += len(frame)
        hits = rel_rows(streams, by_task.get(task.task_id, []))  # IFLLM's own, or from the word columns
        if hits is not None:
            samples["hits"] += _write_hits(d, _with_epoch(hits, anchor), task.kind, skipped, spreadsheet_safe)
    out_manifest = {"format": "ifllm", "turns": len(turns), "tasks": len(tasks), "samples": samples,
                    "skipped": skipped}
    if getattr(rec, "gaze_from", None):  # the layout has no manifest: said in a file of its own
        out_manifest["gaze_from"] = rec.gaze_from
        (out / GAZE_FROM_FILE).write_text(json.dumps(rec.gaze_from, indent=2) + "\n", encoding="utf-8")
    return out_manifest


#: (IFLLM layout) where the gaze came from when it is not the database's (``data export --gaze``)
GAZE_FROM_FILE = "gaze_from.json"


def _write_hits(d: Path, hits: pa.Table, kind: str, skipped: dict[str, int], spreadsheet_safe: bool = False) -> int:
    df = hits.to_pandas()
    ok = _epoch_ok(df["epoch_ms"])
    skipped["rows_epoch_out_of_range"] += int((~ok).sum())
    df = df[ok]
    names = {("gaze", 0): "rel_gaze", ("mouse", 0): "rel_mouse"} if kind == "pointwise" else {
        ("gaze", 0): "rel_gaze_one", ("gaze", 1): "rel_gaze_two",
        ("mouse", 0): "rel_mouse_left", ("mouse", 1): "rel_mouse_right"}
    n = 0
    for (source, pos), fname in names.items():
        part = df[(df["source"] == source) & (df["position"] == pos)]
        if part.empty:
            continue
        ci = part["char_index"].astype("Int64")
        frame = pd.DataFrame({
            "x": part["x"], "y": part["y"], "window": part["window"].fillna(""),
            "char_index": ci.where(ci >= 0).astype("string").fillna(""), "t": part["t"],
        })
        if (part["camera_ok"].fillna(-1) >= 0).any():
            frame["camera_ok"] = part["camera_ok"].fillna(-1).astype(int)
        frame["epoch_ms"] = part["epoch_ms"].round().astype("Int64")
        _write_rows(d / f"{fname}.csv", frame, spreadsheet_safe)
        n += len(part)
    return n


# --------------------------------------------------------------------------- demographics (on request)

#: the formats of :func:`export_recording`
FORMATS = ("parquet", "ifllm")


def export_recording(rec: Recording, out: str | os.PathLike, fmt: str = "parquet", demographics: bool = False,
                     overwrite: bool = False, progress: bool = False, spreadsheet_safe: bool = False) -> dict[str, Any]:
    """Export ``rec`` as ``gazepref data export`` and the dashboard's export do: ``fmt``
    (:func:`export_parquet` or :func:`export_ifllm`) into ``out``; with ``demographics``, the
    answers apart (:func:`export_demographics`; ``UserError`` for a recording that holds none);
    a study's kept webcam frames (``frames/``, for a recording with ``export_frames``: a study
    in the site's database); and, where the format skipped stored values it cannot hold, their
    counts in ``skipped.json``. ``spreadsheet_safe``: the CSV files' text cells that a spreadsheet
    would run as formulas get a leading ``'`` (:func:`spreadsheet_text`; the Parquet files are
    data, never changed), noted in ``SPREADSHEET_SAFE.txt`` and the manifest; the default
    writes the text exactly. Returns the exporter's manifest with ``demographics`` and
    ``frames`` (counts) added where written."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if demographics and not hasattr(rec, "demographics"):  # a gazepref Parquet export
        raise UserError(f"--demographics: {getattr(rec, 'root', 'the recording')} holds no demographics answers "
                        "(a Parquet export never does; they were written apart, to its demographics.csv, if asked "
                        "for); export from the study in the site's database (SLUG) or from the IFLLM release instead")
    import shutil

    from ..files import check_out_folder

    # --overwrite replaces only an earlier export (its mark), and all of it: a file the new one
    # does not write (demographics.csv asked for before, a deleted participant's frames) does not
    # stay. The export is written into a new folder beside ``out`` first and moved in once whole:
    # an export that fails part way (a recalibrated gaze file that does not hold a task's samples,
    # a full disk) leaves ``out`` as it was, never a half-written folder that reads as a recording
    # nor, with --overwrite, the earlier export deleted. The folder itself stays (its
    # permissions, a mount point); its contents are replaced.
    import tempfile

    out = check_out_folder(out, overwrite, _an_export, "data export").resolve()
    root = getattr(rec, "root", None)
    if overwrite and root is not None and out.is_dir() and _overlaps(Path(root).resolve(), out):
        raise UserError(f"{out} holds the recording being exported: export into another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError:  # a folder beside which this user cannot write (a mount point's): inside it
        out.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".gazepref-export.", suffix=".partial", dir=out))
    try:
        (tmp / EXPORT_MARK).write_text(json.dumps({"format": fmt}) + "\n", encoding="utf-8")
        manifest = _export_into(rec, tmp, fmt, demographics, progress, spreadsheet_safe)
        if out.is_dir():
            for child in out.iterdir():
                if child == tmp:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        out.mkdir(exist_ok=True)
        for child in tmp.iterdir():  # (a rename on one file system; copied onto a mount point)
            shutil.move(str(child), str(out / child.name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


#: the mark an export leaves in its folder (``data export --overwrite`` replaces only a folder
#: holding it, or a Parquet export's manifest: an IFLLM release, a feature table's folder with the
#: same file names are never taken for an earlier export); left out of the dashboard's zip
EXPORT_MARK = ".gazepref-export"


def _an_export(folder: Path) -> bool:
    """Whether ``folder`` is an export this module wrote: its :data:`EXPORT_MARK`, or (an export
    made before the mark) a Parquet export's ``manifest.json``."""
    if (folder / EXPORT_MARK).is_file():
        return True
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("format") == PARQUET_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _export_into(rec: Recording, out: Path, fmt: str, demographics: bool, progress: bool,
                 spreadsheet_safe: bool) -> dict[str, Any]:
    """:func:`export_recording` into the empty folder ``out`` (its mark aside)."""
    if fmt == "parquet":
        manifest = export_parquet(rec, out, overwrite=True, progress=progress)
    else:
        manifest = export_ifllm(rec, out, overwrite=True, progress=progress, spreadsheet_safe=spreadsheet_safe)
    if demographics:
        n = sum(1 for p in rec.participants() if p.consented)
        manifest = {**manifest, "demographics": export_demographics(rec.demographics(), out, n_participants=n,
                                                                    spreadsheet_safe=spreadsheet_safe)}
    note = Path(out) / ifllm.SPREADSHEET_SAFE_FILE
    if spreadsheet_safe:
        note.write_text(SPREADSHEET_NOTE, encoding="utf-8")
        manifest = {**manifest, "spreadsheet_safe": True}
    if hasattr(rec, "export_frames"):
        frames = rec.export_frames(out)
        if frames:
            manifest = {**manifest, "frames": frames}
    if any((manifest.get("skipped") or {}).values()):
        (Path(out) / "skipped.json").write_text(json.dumps(manifest["skipped"], indent=2))
    return manifest


DEMOGRAPHICS_FILE = "demographics.csv"
DEMOGRAPHICS_NOTE = """demographics.csv: the participants' answers to the demographics questions, one row per
participant (pseudonym), written only because the export was asked for them.

These answers may identify people, above all combined with each other, with the behaviour data
or with what the crowd platform knows (age, gender, country, ...). Keep this file apart from the
behaviour data, share it only as your ethics approval and consent form allow, and delete it when
it is no longer needed.
"""


DEMOGRAPHICS_NONE = """Nobody answered the demographics questions{among}, so this export has no
demographics.csv (it was asked for: "include the demographics answers" / --demographics).
"""


def export_demographics(rows: list[tuple[str, dict[str, Any]]], out: str | os.PathLike,
                        n_participants: int | None = None, spreadsheet_safe: bool = False) -> int:
    """Write ``demographics.csv`` (``participant_id`` and one column per question, in the order first
    seen) and ``DEMOGRAPHICS_README.txt`` into the existing folder ``out``; ``rows`` are
    ``(pseudonym, answers)``. Returns the number of participants written. With no answers there is
    no ``demographics.csv`` and the README says that nobody answered (among ``n_participants``
    consenting participants, when given), so an export that asked for them says why they are missing.
    ``spreadsheet_safe``: answers a spreadsheet would run as formulas get a leading ``'``
    (:func:`spreadsheet_text`)."""
    out = Path(out)
    rows = [(pid, a) for pid, a in rows if a]
    if not rows:
        among = "" if n_participants is None else f" (among {n_participants} consenting participants)"
        (out / "DEMOGRAPHICS_README.txt").write_text(DEMOGRAPHICS_NONE.format(among=among), encoding="utf-8")
        return 0
    cols: list[str] = []
    for _, a in rows:
        cols += [k for k in a if k not in cols]
    frame = pd.DataFrame([{"participant_id": pid, **{k: (json.dumps(v, ensure_ascii=False)
                                                          if isinstance(v, (list, dict)) else v)
                                                      for k, v in a.items()}} for pid, a in rows],
                         columns=["participant_id", *cols])
    _to_csv(frame, out / DEMOGRAPHICS_FILE, spreadsheet_safe, index=False)
    (out / "DEMOGRAPHICS_README.txt").write_text(DEMOGRAPHICS_NOTE, encoding="utf-8")
    return len(rows)
