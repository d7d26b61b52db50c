"""The one interface every data source offers, and opening a source by its path.

A :class:`Recording` is anything with ``participants()``, ``tasks()``, ``turns()`` and
``streams(task_id)`` in the recording schema: the IFLLM release
(:class:`gazepref.datasets.ifllm.IFLLMRelease`), a gazepref Parquet export
(:class:`ParquetRecording`) and a study in the site's database
(:class:`gazepref.datasets.store_recording.StoreRecording`). Exporters and feature extractors take
any of them. Commands open what the user names with :func:`gazepref.datasets.sources.open_source`
(a folder through :func:`open_recording`, or a study slug).
"""
from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import UserError, schema
from .derive import derive_streams

PARQUET_FORMAT = "gazepref-parquet"
PARQUET_VERSION = 1


@runtime_checkable
class Recording(Protocol):
    def participants(self) -> list[schema.Participant]: ...

    def tasks(self) -> list[schema.Task]: ...

    def turns(self) -> list[schema.Turn]: ...

    def streams(self, task_id: str, cache: bool = True) -> dict[str, pa.Table]:
        """Arrow tables by stream name, derived (:func:`gazepref.datasets.derive.derive_streams`):
        each with a ``turn`` column (-1 before the first turn), gaze and mouse with the word under
        each sample. ``cache=False``: don't keep them in memory (one pass over a whole recording)."""
        ...

    def turns_by_task(self) -> dict[str, list[schema.Turn]]: ...


def turns_by_task(rec: Recording) -> dict[str, list[schema.Turn]]:
    by: dict[str, list[schema.Turn]] = {}
    for t in rec.turns():
        by.setdefault(t.task_id, []).append(t)
    for v in by.values():
        v.sort(key=lambda t: t.index)
    return by


def task_order_key(task_id: str) -> tuple:
    """A task's place in the one order every reader shares, whatever order its tasks come in:
    by participant (the part before the last ``/``), then by task, a task number as a number
    (``w/9`` before ``w/10``). The IFLLM reader's own order; a Parquet export or a study keeps its
    tasks in the order they were stored (a study: participants by sign-up), so code that picks
    "the first task" sorts by this key, and an export and its IFLLM export pick the same one."""
    participant, _, task = task_id.rpartition("/")
    return (participant, 0, int(task), "") if task.isdigit() else (participant, 1, 0, task)


def gaze_positions(table: pa.Table) -> int:
    """How many of the gaze rows of ``table`` have a position (finite ``x`` and ``y``)."""
    if not {"x", "y"} <= set(table.column_names):
        return 0
    x, y = (table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in ("x", "y"))
    return int((np.isfinite(x) & np.isfinite(y)).sum())


def summarize(rec: Recording) -> dict[str, Any]:
    """The ``gazepref data summary`` counts for any recording: the keys of the IFLLM reader's
    summary (:meth:`gazepref.datasets.ifllm.IFLLMRelease.summary`) but its file-level ones
    (``malformed_by_file``, ``page_reloads_fixed``), so a script reads a study, its Parquet export
    and an IFLLM folder alike. A task or participant "with samples" has gaze or mouse samples; a
    mouse sample "with position" has ``x >= 0`` (IFLLM writes -1 before the first move), a gaze
    sample finite ``x`` and ``y`` (a study's rows without a face or of a failed calibration have none)."""
    turns = rec.turns()
    tasks = rec.tasks()
    pairwise = [t for t in turns if t.pairwise]
    gaze = mouse = mouse_pos = gaze_pos = 0
    tasks_with_samples, participants_with_samples = 0, set()
    for task in tasks:
        s = rec.streams(task.task_id)
        g = s["gaze"].num_rows if "gaze" in s else 0
        m = s["mouse"].num_rows if "mouse" in s else 0
        if m and "x" in s["mouse"].column_names:
            mouse_pos += int(pc.sum(pc.greater_equal(s["mouse"].column("x"), 0)).as_py() or 0)
        if g:
            gaze_pos += gaze_positions(s["gaze"])
        if g or m:
            tasks_with_samples += 1
            participants_with_samples.add(task.participant_id)
        gaze, mouse = gaze + g, mouse + m
    return {
        "participants": len(rec.participants()),
        "participants_with_turns": len({t.participant_id for t in turns}),
        "participants_with_samples": len(participants_with_samples),
        "tasks": len(tasks),
        "tasks_with_turns": len({t.task_id for t in turns}),
        "tasks_with_samples": tasks_with_samples,
        "turns": len(turns),
        "pairwise_turns": len(pairwise),
        "pairwise_turns_labelled": sum(t.choice is not None for t in pairwise),
        "pointwise_turns": len(turns) - len(pairwise),
        "pointwise_turns_labelled": sum(t.better_than_previous is not None for t in turns if not t.pairwise),
        "gaze_samples": gaze,
        "mouse_samples": mouse,
        "mouse_samples_with_position": mouse_pos,
        "gaze_samples_with_position": gaze_pos,
        "malformed_rows_skipped": 0,
    }


# --------------------------------------------------------------------------- Parquet export


def _json_col(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def turns_frame(turns: list[schema.Turn]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(turns, responses) as flat frames; list/dict fields as JSON strings."""
    rows, resp = [], []
    for t in turns:
        d = t.to_dict()
        for r in d.pop("responses"):
            resp.append({"turn_id": t.turn_id, **r})
        d["modifiers"] = _json_col(d["modifiers"])
        d["context"] = _json_col(d["context"])
        rows.append(d)
    turn_cols = [f for f in schema.Turn.__dataclass_fields__ if f != "responses"]
    return (pd.DataFrame(rows, columns=turn_cols),
            pd.DataFrame(resp, columns=["turn_id", "position", "model", "text", "likert"]))


def read_json_manifest(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The JSON object in the folder ``path``'s ``manifest.json`` (a saved export, model, ...).

    Raises
    ------
    UserError
        when the file is missing (``PATH is not a WHAT``), is not JSON, or holds no JSON object.
    """
    root = Path(path)
    mpath = root / "manifest.json"
    if not mpath.exists():
        raise UserError(f"{root} is not a {what}: manifest.json is missing")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError) as e:  # (JSONDecodeError is a ValueError)
        raise UserError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{mpath}: not a {what} manifest (a JSON object)")
    return manifest


class ParquetRecording:
    """A folder written by :func:`gazepref.datasets.export.export_parquet`."""

    def __init__(self, path: str | os.PathLike):
        self.root = Path(path)
        self.manifest = read_json_manifest(self.root, "gazepref Parquet export")
        mpath = self.root / "manifest.json"
        if self.manifest.get("format") != PARQUET_FORMAT:
            raise UserError(f"{mpath}: unknown format {self.manifest.get('format')!r}")
        self._streams: dict[str, pa.Table] = {}

    def _frame(self, name: str) -> pd.DataFrame:
        return pq.read_table(self.root / f"{name}.parquet").to_pandas()

    def calibration_rounds(self) -> list[dict] | None:
        """The webcam calibration rounds the export holds (``calibrations.parquet``; None: none)."""
        from .calibration_rounds import read_parquet_rounds

        return read_parquet_rounds(self.root)

    def participants(self) -> list[schema.Participant]:
        df = self._frame("participants")
        return [schema.Participant(**{k: _py(v) for k, v in r.items()}) for r in df.to_dict("records")]

    def tasks(self) -> list[schema.Task]:
        df = self._frame("tasks")
        out = []
        for r in df.to_dict("records"):
            r = {k: _py(v) for k, v in r.items()}
            r["answers"] = json.loads(r["answers"]) if r.get("answers") else {}
            # the webcam calibration in force (JSON, as the exporter writes it; None: none)
            r["calibration"] = json.loads(r["calibration"]) if isinstance(r.get("calibration"), str) else None
            r["finished"] = bool(r.get("finished"))
            out.append(schema.Task(**r))
        return out

    @cached_property
    def _turns(self) -> list[schema.Turn]:
        tdf, rdf = self._frame("turns"), self._frame("responses")
        resp: dict[str, list[schema.Response]] = {}
        for r in rdf.to_dict("records"):
            resp.setdefault(str(r["turn_id"]), []).append(schema.Response(
                int(r["position"]), str(r["model"]), str(r["text"]), _py(r["likert"]) and int(r["likert"])))
        out = []
        for r in tdf.to_dict("records"):
            r = {k: _py(v) for k, v in r.items()}
            r["modifiers"] = json.loads(r["modifiers"] or "[]")
            r["context"] = json.loads(r["context"] or "[]")
            for k in ("index", "choice", "choice_strength"):
                if r.get(k) is not None:
                    r[k] = int(r[k])
            if r.get("better_than_previous") is not None:
                r["better_than_previous"] = bool(r["better_than_previous"])
            r["turn_id"] = str(r["turn_id"])
            out.append(schema.Turn(responses=sorted(resp.get(r["turn_id"], []), key=lambda x: x.position), **r))
        return out

    def turns(self) -> list[schema.Turn]:
        return list(self._turns)

    def turns_by_task(self) -> dict[str, list[schema.Turn]]:
        return turns_by_task(self)

    def _stream_table(self, name: str) -> pa.Table | None:
        if name not in self._streams:
            p = self.root / "streams" / f"{name}.parquet"
            listed = (self.manifest.get("samples") or {}).get(name)
            if not p.exists() and isinstance(listed, int) and listed > 0:  # a partial copy of the export
                raise UserError(f"{p} is missing: the export's manifest.json lists {listed} {name} rows "
                                f"(copy the whole export folder)")
            self._streams[name] = pq.read_table(p) if p.exists() else None
        return self._streams[name]

    def streams(self, task_id: str, cache: bool = True) -> dict[str, pa.Table]:
        """The task's streams, derived (:func:`gazepref.datasets.derive.derive_streams`): a
        ``turn`` the export kept (the source reader's) stays; words come from the layout (a site
        study) or the ``hits`` rows (IFLLM data)."""
        raw = {}
        for name in schema.STREAMS:
            tb = self._stream_table(name)
            if tb is None:
                continue
            sel = tb.filter(pc.equal(tb.column("task_id"), task_id))
            if sel.num_rows:
                raw[name] = sel.drop_columns(["task_id"])
        return derive_streams(raw, self.turns_by_task().get(task_id, []))

    def summary(self, progress: bool = False) -> dict[str, Any]:
        s = summarize(self)
        s["malformed_rows_skipped"] = int(self.manifest.get("malformed_rows_skipped", 0))
        return {"format": PARQUET_FORMAT, **s}


def _py(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def open_recording(path: str | os.PathLike) -> Any:
    """Open an IFLLM-layout folder or a gazepref Parquet export by looking at what it holds."""
    from .ifllm import QUERY_TABLE, IFLLMRelease

    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"no such file or folder: {p}")
    if (p / "manifest.json").exists():
        return ParquetRecording(p)
    if (p / QUERY_TABLE).exists() or (p / "dataset" / QUERY_TABLE).exists():
        return IFLLMRelease(p)
    raise UserError(
        f"{p}: not a recording folder (expected an IFLLM layout with {QUERY_TABLE}, "
        "or a gazepref export with manifest.json)"
    )
