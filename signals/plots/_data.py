"""Picking a task and turn from a recording, and one turn's samples in the frames the plots use."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ... import UserError, schema
from .. import gaze_events
from .text_layout import WordBoxes, char_xy, estimate_width, from_layout, reflow


def open_data(source: Any):
    """A recording object as it is, or the source it names (a folder or a study slug):
    :func:`gazepref.datasets.sources.open_source`."""
    from ...datasets.sources import open_source

    return open_source(source)


def _examples(items: list[str], k: int = 5) -> str:
    shown = ", ".join(items[:k])
    return shown + (", ..." if len(items) > k else "")


def turns_by_task(rec) -> dict[str, list[schema.Turn]]:
    if hasattr(rec, "turns_by_task"):
        return rec.turns_by_task()
    from ...datasets.recording import turns_by_task as tbt

    return tbt(rec)


def resolve_task(rec, participant: str | None = None, task: str | None = None,
                 need_turns: bool = True) -> str:
    """The task id for ``--participant`` / ``--task`` (a task id, or a task number when the
    participant is given); without ``--task`` the participant's (or the data's) first task with
    turns in :func:`gazepref.datasets.recording.task_order_key` order (the same task for a
    recording and its exports). Unknown names raise :class:`UserError`."""
    from ...datasets.recording import task_order_key

    by_task = turns_by_task(rec)
    # one order for every reader (a Parquet export and its IFLLM export pick the same task)
    task_ids = sorted((t.task_id for t in rec.tasks()), key=task_order_key)
    if participant is not None:
        parts = sorted({t.participant_id for t in rec.tasks()} | {t.participant_id for ts in by_task.values() for t in ts})
        if participant not in parts:
            raise UserError(f"no participant {participant!r} in the data ({len(parts)} participants, e.g. "
                            f"{_examples(parts)})")
        task_ids = [t for t in task_ids if t.startswith(participant + "/")] or \
            sorted((tid for tid, ts in by_task.items() if ts and ts[0].participant_id == participant),
                   key=task_order_key)
    if task is not None:
        cands = [task] if task in task_ids else [t for t in task_ids if t.rpartition("/")[2] == str(task)]
        if participant is None and task not in task_ids:
            cands = []
        if not cands:
            numbered = [t for t in task_ids if t.rpartition("/")[2] == str(task)]
            if participant is None and numbered:  # `--task 155`: the help's "task number" form wants -p
                raise UserError(f"no task {task!r}: a task number needs --participant, or give the task id "
                                f"({_examples(numbered)})")
            scope = f" of participant {participant!r}" if participant else ""
            raise UserError(f"no task {task!r}{scope} (tasks: {_examples(task_ids) or 'none'})")
        tid = cands[0]
        if need_turns and not by_task.get(tid):
            raise UserError(f"task {tid!r} has no turns (queries)")
        return tid
    with_turns = [t for t in task_ids if by_task.get(t)]
    if not with_turns:
        scope = f"participant {participant!r}" if participant else "the data"
        raise UserError(f"{scope} has no task with turns")
    return with_turns[0]


def turn_name(turn: schema.Turn) -> str:
    """How figures and messages name a turn: counted from 1 (``turn 1`` is ``--turn 0``, the
    stored index 0), as the dashboard's pages do, with the 0-based index beside it."""
    return f"turn {turn.index + 1} (index {turn.index})"


def resolve_turn(rec, task_id: str, turn: int | None) -> schema.Turn:
    turns = turns_by_task(rec).get(task_id, [])
    if not turns:
        raise UserError(f"task {task_id!r} has no turns")
    if turn is None:
        return turns[0]
    for t in turns:
        if t.index == turn:
            return t
    raise UserError(f"task {task_id!r} has no turn {turn} (0-based --turn: 0..{len(turns) - 1})")


def task_streams(rec, task_id: str, turns: list[schema.Turn] | None = None) -> dict[str, pa.Table]:
    """``rec.streams(task_id)``, derived (:func:`gazepref.datasets.derive.derive_streams`: a
    ``turn`` column on every stream, the word columns on gaze and mouse); a recording that hands
    out raw streams (an in-memory one) is derived here."""
    from ...datasets.derive import derive_streams

    streams = rec.streams(task_id, cache=False)
    turns = turns if turns is not None else turns_by_task(rec).get(task_id, [])
    return derive_streams(streams, turns)


def _np(tb: pa.Table, name: str, dtype=np.float64) -> np.ndarray:
    return tb.column(name).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _durations(t: np.ndarray) -> np.ndarray:
    seg = gaze_events.segments(t)
    return gaze_events.sample_durations(t, seg)


@dataclass
class TextPoints:
    """Samples of one source placed on one response's text (content px)."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray  # ms each sample stands for
    char: np.ndarray  # char index, -1 unknown

    def __len__(self) -> int:
        return len(self.t)


@dataclass
class TurnView:
    """One turn of one task with its streams, and the geometry of its responses."""

    rec: Any
    task_id: str
    turn: schema.Turn
    streams: dict[str, pa.Table]
    n_turns: int = 1
    next_turn_t: float | None = None
    _boxes: dict[int, WordBoxes] = field(default_factory=dict)

    @classmethod
    def load(cls, rec, participant=None, task=None, turn=None) -> "TurnView":
        tid = resolve_task(rec, participant, task)
        tr = resolve_turn(rec, tid, turn)
        turns = turns_by_task(rec)[tid]
        streams = task_streams(rec, tid, turns)
        own = {}
        for name, tb in streams.items():
            if "turn" in tb.column_names:
                tb = tb.filter(pc.equal(tb.column("turn"), tr.index))
            own[name] = tb
        return cls(rec, tid, tr, own, len(turns))

    # ---- what kind of recording
    @cached_property
    def has_layout_words(self) -> bool:
        lay = self.streams.get("layout")
        return lay is not None and lay.num_rows > 0 and bool(pc.any(pc.equal(lay.column("kind"), "word")).as_py())

    @property
    def positions(self) -> list[int]:
        return [r.position for r in self.turn.responses]

    def stream(self, name: str) -> pa.Table | None:
        tb = self.streams.get(name)
        return tb if tb is not None and tb.num_rows else None

    @cached_property
    def t_range(self) -> tuple[float, float]:
        ts = [(_np(tb, "t").min(), _np(tb, "t").max()) for n, tb in self.streams.items()
              if n in ("gaze", "mouse", "hits") and tb.num_rows]
        if not ts:
            t0 = self.turn.t_shown or 0.0
            return t0, t0 + 1.0
        t0 = min(a for a, _ in ts)
        if self.turn.t_shown is not None:
            t0 = min(t0, self.turn.t_shown)
        return float(t0), float(max(b for _, b in ts))

    # ---- geometry
    def boxes(self, position: int, width_px: float | None = None) -> WordBoxes:
        if position in self._boxes:
            return self._boxes[position]
        text = self.turn.responses[self.positions.index(position)].text
        b = None
        if self.has_layout_words:
            b = from_layout(self.streams["layout"], position, text, self.turn.index)
        if b is None:
            if width_px is None:
                # IFLLM's boxes share one width: estimated from both sources over the whole task
                whole = task_streams(self.rec, self.task_id)
                rx = [_np(whole[s], "rel_x") for s in ("gaze", "mouse") if s in whole and "rel_x" in whole[s].column_names]
                width_px = estimate_width(np.concatenate(rx) if rx else np.zeros(0))
            b = reflow(text, width_px)
        self._boxes[position] = b
        return b

    # ---- samples on the text
    def points(self, position: int, source: str = "gaze") -> TextPoints:
        """Samples of ``source`` on response ``position``'s text, in its content px: the derived
        word columns (box-relative x/y, the character under the sample); where the word boxes
        are reflowed (IFLLM: no layout), placed by their character instead."""
        e = np.zeros(0)
        empty = TextPoints(e, e, e, e, e.astype(np.int64))
        tb = self.stream(source)
        if tb is None or "position" not in tb.column_names:
            return empty
        b = self.boxes(position)
        tb = tb.sort_by("t")
        on = _np(tb, "position", np.int64) == position
        t, ci = _np(tb, "t")[on], _np(tb, "char_index", np.int64)[on]
        dur = _durations(_np(tb, "t"))[on]
        if b.reflowed:
            x, y, ok = char_xy(b, ci)
        else:
            x, y = _np(tb, "rel_x")[on], _np(tb, "rel_y")[on]
            ok = np.isfinite(x) & np.isfinite(y)
        return TextPoints(t[ok], x[ok], y[ok], dur[ok], ci[ok])

    # ---- the feature table's samples and fixations
    @cached_property
    def task_data(self):
        """The task as the feature table reads it (:func:`gazepref.signals.task_data.from_recording`:
        the region rule, the decision cut-off, cleaned gaze)."""
        from ..task_data import from_recording

        task = next((t for t in self.rec.tasks() if t.task_id == self.task_id), None)
        if task is None:  # turns without a task row: the task as the turns name it
            task = schema.Task(task_id=self.task_id, participant_id=self.turn.participant_id, study_id="",
                               kind=self.turn.kind)
        return from_recording(self.rec, task)

    @cached_property
    def turn_k(self) -> int:
        """The turn's place in the task's turn list: the feature table's ``turn`` column."""
        turns = turns_by_task(self.rec)[self.task_id]
        return next(k for k, t in enumerate(turns) if t.index == self.turn.index)

    def fixations(self):
        """The turn's fixations exactly as the feature table has them
        (:func:`gazepref.signals.reading.fixations` of the task's cleaned gaze, cut to the turn), and
        the cleaned gaze frame their ``start``/``end`` index into."""
        from .. import reading

        g = self.task_data.gaze
        fix = reading.fixations(g)
        return fix.subset(fix.turn == self.turn_k), g

    def n_gaze_on_text(self) -> int:
        return sum(int((self.points(p, "gaze").char >= 0).sum()) for p in self.positions)


def require_gaze(view: TurnView) -> None:
    """Raise :class:`UserError` when the turn has no gaze on the response text, with a hint at the
    mouse views when it has mouse samples (a mouse-only recording)."""
    hint = (" (it has mouse samples: the mouse view, or the heatmap with --source mouse)"
            if view.stream("mouse") is not None else "")
    if view.stream("gaze") is None and view.stream("hits") is None:
        raise UserError(f"{turn_name(view.turn)} of task {view.task_id!r} has no gaze samples{hint}")
    if sum(len(view.points(p, "gaze")) for p in view.positions) == 0:
        raise UserError(f"{turn_name(view.turn)} of task {view.task_id!r} has no gaze samples on the "
                        f"response text{hint}")


def outcome(turn: schema.Turn, position: int) -> str | None:
    """'preferred' / 'not preferred' for a labelled pairwise turn, else None."""
    if not turn.pairwise or turn.choice is None:
        return None
    return "preferred" if turn.choice == position else "not preferred"


def response_label(turn: schema.Turn, position: int) -> str:
    name = ("Response 1 (left)" if position == 0 else "Response 2 (right)") if turn.pairwise else "Response"
    r = turn.responses[[x.position for x in turn.responses].index(position)]
    bits = [name]
    o = outcome(turn, position)
    if o == "preferred":
        bits.append("PREFERRED")
    elif o == "not preferred":
        bits.append("not preferred")
    if r.likert is not None:
        bits.append(f"Likert {r.likert}")
    if not turn.pairwise and turn.better_than_previous is not None:
        bits.append("better than previous" if turn.better_than_previous else "worse than previous")
    return " · ".join(bits)
