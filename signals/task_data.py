"""One task's samples in the form the feature code works on, built from a data source.

A :class:`SampleFrame` holds one source (gaze or mouse) of one task: samples of turns ≥ 0 only,
sorted by (turn, t), each with its response ``pos``, ``char`` / ``word`` / ``sent`` on the text,
the response boxes' top edge and the region code of :mod:`gazepref.signals.regions`.
Gaze is cleaned (:func:`gazepref.signals.gaze_events.clean_gaze`) before it gets here.

The turn and the word under each sample are the recording's derived columns
(:func:`gazepref.datasets.derive.derive_streams`); nothing here maps samples again. Adapters differ
only in the response boxes' geometry: :func:`from_ifllm` (IFLLM data: box tops from the in-box
samples) and :func:`from_streams` (our site's streams: box tops from the layout's element boxes).
Both end in :func:`assemble`, which applies the region rule and the decision cut-off
(:mod:`gazepref.signals.regions`) before any cleaning. :func:`from_recording` picks the adapter
for a task of any :class:`gazepref.datasets.recording.Recording`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema
from . import gaze_events, regions
from ..datasets.derive import derive_streams
from ..datasets.text_mapping import TextUnits, text_units


@dataclass
class SampleFrame:
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    turn: np.ndarray  # int32
    pos: np.ndarray  # int8, -1 outside the response boxes
    char: np.ndarray  # int32, the character under the sample (derived ``char_index``), -1 not on text
    word: np.ndarray  # int32
    sent: np.ndarray  # int32
    top: np.ndarray  # float64, boxes' top edge at the sample (NaN unknown)
    region: np.ndarray  # int8
    dur: np.ndarray  # ms each sample stands for
    segment: np.ndarray  # int64
    camera_ok: np.ndarray | None = None  # int8: 1 face well placed, 0 not, -1 unknown (gaze only)

    def __len__(self) -> int:
        return len(self.t)

    def subset(self, m: np.ndarray) -> "SampleFrame":
        return SampleFrame(**{k: (None if v is None else v[m]) for k, v in self.__dict__.items()})

    @classmethod
    def empty(cls) -> "SampleFrame":
        f = np.zeros(0)
        i = np.zeros(0, dtype=np.int32)
        return cls(f, f, f, i, i.astype(np.int8), i, i, i, f, i.astype(np.int8), f, i.astype(np.int64))


@dataclass
class TaskData:
    task_id: str
    participant_id: str
    turns: list[schema.Turn]
    gaze: SampleFrame
    mouse: SampleFrame
    units: dict[tuple[int, int], TextUnits]  # (turn index, position) → words/sentences
    events: pa.Table | None = None  # our site: select/copy/... events with a 'turn' column
    scroll: pa.Table | None = None
    task_info: dict[str, Any] = field(default_factory=dict)
    box_obs: dict[str, np.ndarray] = field(default_factory=dict)  # t, turn, pos, top of the boxes seen  # task-level constants (task_* columns)
    n_gaze_raw: int = 0
    #: of them, the rows with a position (a failed calibration's rows have none: x/y NaN)
    n_gaze_positions: int = 0
    n_mouse_raw: int = 0
    clean_counts: dict[str, int] = field(default_factory=dict)
    #: per source, the samples as recorded (before cleaning) of the turns, before each turn's
    #: decision: arrays ``t, turn, pos, char`` (+ ``window``, ``camera_ok`` where known), for the
    #: in-box family (:mod:`gazepref.signals.inbox`), which reads only their in-box positions
    box_samples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _col(tb: pa.Table, name: str, dtype=np.float64) -> np.ndarray:
    return tb.column(name).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _derived(tb: pa.Table | None, source: str) -> dict[str, np.ndarray]:
    """One source's arrays for :func:`assemble` from a derived stream
    (:func:`gazepref.datasets.derive.derive_streams`), sorted by ``t``."""
    if tb is None or tb.num_rows == 0:
        return {k: np.zeros(0) for k in ("t", "x", "y", "turn", "pos", "char", "word", "rel_y")}
    tb = tb.sort_by("t")
    out = dict(t=_col(tb, "t"), x=_col(tb, "x"), y=_col(tb, "y"), turn=_col(tb, "turn", np.int32),
               pos=_col(tb, "position", np.int8), char=_col(tb, "char_index", np.int32),
               word=_col(tb, "word", np.int32), rel_y=_col(tb, "rel_y"))
    if source == "gaze" and "camera_ok" in tb.column_names:
        out["camera_ok"] = _col(tb, "camera_ok", np.int8)
    return out


def task_info(task: schema.Task) -> dict[str, Any]:
    """The task-level facts the ``task_*`` features read: the webcam calibration in force
    (``calibration``, a site study's outcome, or None) and the task's ``calibration_accuracy`` with
    its unit (``"px"``, or None: IFLLM's WebGazer %)."""
    return {"calibration_accuracy": task.calibration_accuracy, "calibration": task.calibration,
            "calibration_unit": (task.answers or {}).get("calibration_unit")}


def from_ifllm(rel, task_id: str, task: schema.Task | None = None, *, cache: bool = False,
               streams: dict[str, pa.Table] | None = None) -> TaskData:
    """A task recorded the IFLLM way (``hits`` with ``char_index``, no layout): from an
    :class:`gazepref.datasets.ifllm.IFLLMRelease` or a Parquet export of one (its derived streams,
    or raw ``streams`` given here, which are derived first). The response boxes' top edges come
    from the in-box samples (absolute less box-relative y). The reader keeps the task's streams in
    memory only if ``cache``."""
    turns = rel.turns_by_task().get(task_id, [])
    if streams is None:
        streams = rel.streams(task_id, cache=cache)
    streams = derive_streams(streams, turns)
    units = {(k, p): text_units(r.text) for k, tr in enumerate(turns) for p, r in enumerate(tr.responses)}
    raw = {source: _derived(streams.get(source), source) for source in ("gaze", "mouse")}
    # box-top observations from both sources (samples inside a box: y - rel_y is the box's top)
    obs = [(r["t"][r["pos"] >= 0], r["turn"][r["pos"] >= 0], (r["y"] - r["rel_y"])[r["pos"] >= 0],
            r["pos"][r["pos"] >= 0]) for r in raw.values() if len(r["t"])]
    tinfo = task_info(task) if task is not None else {}
    pid = turns[0].participant_id if turns else task_id.split("/")[0]
    return assemble(task_id, pid, turns, units, raw, obs, task_info=tinfo)


def assemble(task_id: str, participant_id: str, turns: list[schema.Turn], units: dict, raw: dict[str, dict],
             obs: list[tuple], *, task_info: dict | None = None, events: pa.Table | None = None,
             scroll: pa.Table | None = None) -> TaskData:
    """The source-independent part: regions, the leakage cuts, cleaning, ordering, words.

    ``raw[source]``: arrays ``t, x, y, turn, pos, char, word`` per sample (the derived word
    columns, :mod:`gazepref.datasets.derive`), optionally ``camera_ok``; ``obs``: (t, turn, top, pos) arrays of response-box top edges seen."""
    n_turns = len(turns)
    obs_t = np.concatenate([o[0] for o in obs]) if obs else np.zeros(0)
    obs_turn = np.concatenate([o[1] for o in obs]).astype(np.int32) if obs else np.zeros(0, np.int32)
    obs_top = np.concatenate([o[2] for o in obs]) if obs else np.zeros(0)
    obs_pos = np.concatenate([o[3] for o in obs]).astype(np.int8) if obs else np.zeros(0, np.int8)
    if any(tr.t_decided is not None for tr in turns):  # no geometry from after a decision either
        dec = np.array([np.inf if tr.t_decided is None else tr.t_decided for tr in turns] + [np.inf])
        ok = obs_t < dec[np.clip(obs_turn, 0, len(turns))]
        obs_t, obs_turn, obs_top, obs_pos = obs_t[ok], obs_turn[ok], obs_top[ok], obs_pos[ok]
    o = np.argsort(obs_t, kind="stable")
    box_obs = dict(t=obs_t[o], turn=obs_turn[o], top=obs_top[o], pos=obs_pos[o])

    # region per raw sample; region 3 (beside/below the boxes: the answer controls) never goes on
    for r in raw.values():
        if len(r["t"]):
            turn = np.where(r["turn"] >= 0, r["turn"], -1).astype(np.int32)
            top = regions.box_top_at(r["t"], turn, obs_t, obs_turn, obs_top)
            r["top"] = top
            r["region"] = regions.regions(r["y"], r["pos"], top)

    frames: dict[str, SampleFrame] = {}
    counts: dict[str, int] = {}
    box_samples = {source: _box_samples(r, turns) for source, r in raw.items()}
    m_raw = raw["mouse"]
    for source, r in raw.items():
        if len(r["t"]) == 0:
            frames[source] = SampleFrame.empty()
            continue
        keep = (r["turn"] >= 0) & (r["turn"] < n_turns)
        # decision cut-off where known (our site); IFLLM turns have none
        for k, tr in enumerate(turns):
            if tr.t_decided is not None:
                keep &= ~((r["turn"] == k) & (r["t"] >= tr.t_decided))
        counts[f"{source}_in_turns"] = int(keep.sum())
        keep &= r["region"] != regions.EXCLUDED
        counts[f"{source}_allowed_region"] = int(keep.sum())
        # a dropped sample (excluded region, after the decision) always ends a segment, so no
        # sample's duration stretches over excluded time
        grp = r["turn"].astype(np.int64) * (1 << 32) + np.cumsum(~keep)
        if source == "gaze":
            # viewport estimate from the pointer seen so far (mouse shares gaze time stamps; only
            # allowed-region pointer positions)
            bounds = None
            if len(m_raw["t"]):
                ok = (m_raw["x"] >= 0) & (m_raw["region"] != regions.EXCLUDED)
                mx = np.maximum.accumulate(np.where(ok, m_raw["x"], 0))
                my = np.maximum.accumulate(np.where(ok, m_raw["y"], 0))
                j = np.clip(np.searchsorted(m_raw["t"], r["t"], side="right") - 1, 0, len(mx) - 1)
                w = np.where(mx[j] > 0, mx[j] * 1.25 + 100, np.inf)
                h = np.where(my[j] > 0, my[j] * 1.25 + 100, np.inf)
                bounds = (w, h)
            cg = gaze_events.clean_gaze(r["t"], r["x"], r["y"], group=grp, bounds=bounds, valid=keep)
            idx = cg.index
            t, x, y = cg.t, cg.x, cg.y
            counts.update(gaze_duplicates=cg.n_duplicates, gaze_offscreen=cg.n_offscreen,
                          gaze_spikes=cg.n_spikes, gaze_kept=len(idx))
        else:
            keep &= (r["x"] >= 0) & (r["y"] >= 0)  # -1,-1 before the first move
            idx = np.flatnonzero(keep)
            idx = idx[np.argsort(r["t"][idx], kind="stable")]
            t, x, y = r["t"][idx], r["x"][idx], r["y"][idx]
            counts["mouse_kept"] = len(idx)
        turn = r["turn"][idx].astype(np.int32)
        # (turn, t) order
        o = np.lexsort((t, turn))
        idx, t, x, y, turn = idx[o], t[o], x[o], y[o], turn[o]
        seg = gaze_events.segments(t, grp[idx])
        dur = gaze_events.sample_durations(t, seg)
        pos, char = r["pos"][idx], r["char"][idx]
        word = r["word"][idx].astype(np.int32)
        sent = _sentences(turn, pos, word, units)
        cam = r["camera_ok"][idx] if "camera_ok" in r else None
        frames[source] = SampleFrame(t, x, y, turn, pos, char, word, sent, r["top"][idx], r["region"][idx], dur, seg,
                                     cam)

    return TaskData(task_id, participant_id, turns, frames["gaze"], frames["mouse"], units,
                    events=events, scroll=scroll, task_info=task_info or {}, box_obs=box_obs,
                    n_gaze_raw=len(raw["gaze"]["t"]), n_mouse_raw=len(raw["mouse"]["t"]), clean_counts=counts,
                    n_gaze_positions=int((np.isfinite(raw["gaze"]["x"]) & np.isfinite(raw["gaze"]["y"])).sum()),
                    box_samples=box_samples)


def _box_samples(r: dict[str, np.ndarray], turns: list[schema.Turn]) -> dict[str, np.ndarray]:
    """The raw samples of the turns, none at or after a turn's decision (the in-box family's input);
    ``positioned``: whether a sample has a position (a gaze row of a failed calibration or without
    a face has none: it counts for the camera's state, never as a look anywhere)."""
    if len(r["t"]) == 0:
        return {k: np.zeros(0) for k in ("t", "turn", "pos", "char")} | {"positioned": np.zeros(0, bool)}
    keep = (r["turn"] >= 0) & (r["turn"] < len(turns))
    for k, tr in enumerate(turns):
        if tr.t_decided is not None:
            keep &= ~((r["turn"] == k) & (r["t"] >= tr.t_decided))
    out = {k: r[k][keep] for k in ("t", "turn", "pos", "char", "window", "camera_ok") if k in r}
    out["positioned"] = (np.isfinite(r["x"]) & np.isfinite(r["y"]))[keep]
    return out


def _sentences(turn: np.ndarray, pos: np.ndarray, word: np.ndarray, units: dict) -> np.ndarray:
    sent = np.full(len(word), -1, dtype=np.int32)
    for (k, p), u in units.items():
        m = (turn == k) & (pos == p) & (word >= 0) & (word < u.n_words)
        if m.any():
            sent[m] = u.word_sentence[word[m]]
    return sent


def from_streams(task_id: str, participant_id: str, turns: list[schema.Turn], streams: dict[str, pa.Table],
                 task_info: dict | None = None) -> TaskData:
    """A task recorded by our own site (streams as in :data:`gazepref.schema.STREAMS`: ``gaze``,
    ``mouse``, ``layout``, optional ``scroll`` and ``events``), derived
    (:func:`gazepref.datasets.derive.derive_streams`; raw streams are derived here): the turn and
    the word under each sample come from the derive step. The response elements' top edges in the
    layout are the box geometry of the region rule."""
    streams = derive_streams(streams, turns)
    units = {(k, p): text_units(r.text) for k, tr in enumerate(turns) for p, r in enumerate(tr.responses)}
    layout = streams.get("layout")
    raw = {source: _derived(streams.get(source), source) for source in ("gaze", "mouse")}
    obs = []
    if layout is not None and layout.num_rows:
        el = layout.filter(pc.and_(pc.equal(layout.column("kind"), "element"),
                                   pc.starts_with(layout.column("target"), "response:")))
        if el.num_rows:
            epos = np.array([int(v.split(":")[1]) for v in el.column("target").to_pylist()], dtype=np.int8)
            obs.append((_col(el, "t"), _col(el, "turn", np.int32), _col(el, "y"), epos))
    return assemble(task_id, participant_id, turns, units, raw, obs, task_info=task_info,
                    events=streams.get("events"), scroll=streams.get("scroll"))


def from_recording(rec, task: schema.Task) -> TaskData:
    """A task of any recording: IFLLM-style data (``hits``, no ``layout``) through
    :func:`from_ifllm`, our site's streams through :func:`from_streams`."""
    from ..datasets.ifllm import IFLLMRelease

    if isinstance(rec, IFLLMRelease):
        return from_ifllm(rec, task.task_id, task)
    streams = rec.streams(task.task_id)
    if "hits" in streams and "layout" not in streams:  # a Parquet export of IFLLM data
        return from_ifllm(rec, task.task_id, task, streams=streams)
    turns = rec.turns_by_task().get(task.task_id, [])
    return from_streams(task.task_id, task.participant_id, turns, streams, task_info=task_info(task))
