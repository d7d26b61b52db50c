"""A tiny in-memory recording with known geometry, for tests and demos of the views.

:func:`ifllm_like` gives one pairwise turn in the IFLLM form (``hits`` with ``char_index``, no
layout); :func:`site_like` one in our site's form (``layout`` word boxes, viewport gaze). In both,
gaze dwells in fixations on the words given.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ... import schema
from .text_layout import reflow

TEXT_L = ("The quick brown fox jumps over the lazy dog. " * 3 + "An elephant walks slowly through the tall grass. "
          + "Birds sing at dawn and the river runs on. " * 3)
TEXT_R = ("Short answer: a giraffe has a very long neck. " + "It eats leaves from tall trees in the savanna. " * 4)


class MemoryRecording:
    """The :class:`gazepref.datasets.recording.Recording` protocol over Python objects."""

    def __init__(self, participants, tasks, turns, streams):
        self._p, self._t, self._turns, self._s = participants, tasks, turns, streams

    def participants(self):
        return list(self._p)

    def tasks(self):
        return list(self._t)

    def turns(self):
        return list(self._turns)

    def turns_by_task(self):
        from ...datasets.recording import turns_by_task

        return turns_by_task(self)

    def streams(self, task_id, cache: bool = True):
        if task_id not in {t.task_id for t in self._t}:
            from ... import UserError

            raise UserError(f"no task {task_id!r}")
        return dict(self._s.get(task_id, {}))


def _turns(task_id: str, pid: str, with_second: bool = True) -> list[schema.Turn]:
    turns = [schema.Turn("q1", task_id, pid, 0, "pairwise", "Tell me about animals",
                         [schema.Response(0, "model-a", TEXT_L, 4), schema.Response(1, "model-b", TEXT_R, 3)],
                         choice=schema.LEFT, epoch_ms=1.7e12, t_shown=0.0)]
    if with_second:  # a turn nobody looked at (no samples)
        turns.append(schema.Turn("q2", task_id, pid, 1, "pairwise", "And plants?",
                                 [schema.Response(0, "model-a", "Plants grow.", 3),
                                  schema.Response(1, "model-b", "Plants need light.", 4)],
                                 choice=schema.RIGHT, epoch_ms=1.7e12 + 1e6, t_shown=1e6))
    return turns


def word_span(text: str, word: str) -> tuple[int, int]:
    i = text.index(word)
    return i, i + len(word)


def fixation_plan(targets: list[tuple[int, str]], texts: list[str], n_per_fix: int = 12, rng=None):
    """(position, char_index) samples: ``n_per_fix`` per target word, spread over its characters."""
    rng = rng or np.random.default_rng(0)
    out = []
    for pos, word in targets:
        a, b = word_span(texts[pos], word)
        out += [(pos, int(c)) for c in rng.integers(a, b, n_per_fix)]
    return out


def ifllm_like(targets=((0, "elephant"), (1, "giraffe")), n_per_fix: int = 12) -> MemoryRecording:
    pid, tid = "worker_synth", "worker_synth/1"
    turns = _turns(tid, pid)
    texts = [TEXT_L, TEXT_R]
    plan = fixation_plan(list(targets), texts, n_per_fix)
    # fixations several times over (a little noise elsewhere on response 0's first words)
    plan = plan * 3 + [(0, 1), (0, 5)]
    n = len(plan)
    t = 1000.0 + np.arange(n) * 75.0
    pos = np.array([p for p, _ in plan], dtype=np.int8)
    ci = np.array([c for _, c in plan], dtype=np.int32)
    gx = np.where(pos == 0, 300.0, 900.0) + (ci % 60) * 7.0
    gy = 400.0 + (ci // 60) * 22.0
    gaze = schema.conform("gaze", pa.table({"t": t, "x": gx, "y": gy, "epoch_ms": 1.7e12 + t}))
    gaze = gaze.append_column("turn", pa.array(np.zeros(n, dtype=np.int32)))
    mouse = schema.conform("mouse", pa.table({"t": t, "x": gx + 20, "y": gy + 30, "epoch_ms": 1.7e12 + t}))
    mouse = mouse.append_column("turn", pa.array(np.zeros(n, dtype=np.int32)))
    hits = schema.conform("hits", pa.table({
        "t": t, "source": ["gaze"] * n, "position": pos, "x": (ci % 60) * 7.0, "y": (ci // 60) * 22.0,
        "char_index": ci, "window": [""] * n, "camera_ok": np.ones(n, dtype=np.int8), "epoch_ms": 1.7e12 + t}))
    hits = hits.append_column("turn", pa.array(np.zeros(n, dtype=np.int32)))
    task = schema.Task(tid, pid, "synthetic", "pairwise", calibration_accuracy=80.0)
    task2 = schema.Task("worker_synth/2", pid, "synthetic", "pairwise")  # no turns, no samples
    return MemoryRecording([schema.Participant(pid, "synthetic")], [task, task2], turns,
                           {tid: {"gaze": gaze, "mouse": mouse, "hits": hits}})


def site_like(targets=((0, "elephant"), (1, "giraffe")), n_per_fix: int = 12, width: float = 520.0) -> MemoryRecording:
    """Our site's form: word boxes from a reflow stored in the ``layout`` stream, response elements
    at known viewport positions, gaze in viewport px on the target words' boxes."""
    pid, tid = "p_synth", "p_synth/7"
    turns = _turns(tid, pid)
    texts = [TEXT_L, TEXT_R]
    origin = {0: (40.0, 200.0), 1: (620.0, 200.0)}
    rows = []
    for pos, text in enumerate(texts):
        b = reflow(text, width)
        ox, oy = origin[pos]
        rows.append(dict(t=0.0, target=f"response:{pos}", kind="element", index=-1, char_start=-1, char_end=-1,
                         x=ox, y=oy, w=width, h=b.height, turn=0))
        for i in range(len(b)):
            rows.append(dict(t=0.0, target=f"response:{pos}", kind="word", index=i, char_start=int(b.char_start[i]),
                             char_end=int(b.char_end[i]), x=b.x[i], y=b.y[i], w=b.w[i], h=b.h[i], turn=0))
    layout = schema.conform("layout", pa.Table.from_pylist(rows))
    rng = np.random.default_rng(1)
    xs, ys = [], []
    boxes = {p: reflow(texts[p], width) for p in (0, 1)}
    for rep in range(3):
        for pos, word in targets:
            b = boxes[pos]
            a, _ = word_span(texts[pos], word)
            k = int(np.searchsorted(b.char_start, a, side="right") - 1)
            ox, oy = origin[pos]
            cx, cy = ox + b.x[k] + b.w[k] / 2, oy + b.y[k] + b.h[k] / 2
            xs += list(cx + rng.normal(0, b.w[k] / 6, n_per_fix))
            ys += list(cy + rng.normal(0, 2.0, n_per_fix))
    n = len(xs)
    t = 500.0 + np.arange(n) * 33.0
    gaze = schema.conform("gaze", pa.table({"t": t, "x": np.array(xs), "y": np.array(ys),
                                            "confidence": np.full(n, 0.9)}))
    gaze = gaze.append_column("turn", pa.array(np.zeros(n, dtype=np.int32)))
    mouse = schema.conform("mouse", pa.table({"t": t, "x": np.array(xs) + 15, "y": np.array(ys) + 40}))
    mouse = mouse.append_column("turn", pa.array(np.zeros(n, dtype=np.int32)))
    events = schema.conform("events", pa.table({
        "t": [t[0] + 5, t[-1] + 100], "type": ["hover_enter", "click"], "target": ["response:1", "choice:left"],
        "x": pa.array([None, 300.0], pa.float32()), "y": pa.array([None, 900.0], pa.float32())}))
    events = events.append_column("turn", pa.array([0, 0], pa.int32()))
    task = schema.Task(tid, pid, "synthetic", "pairwise", calibration_accuracy=85.0,
                       answers={"calibration_unit": "px"})
    turns[0].t_decided = float(t[-1] + 100)
    return MemoryRecording([schema.Participant(pid, "synthetic")], [task], turns,
                           {tid: {"gaze": gaze, "mouse": mouse, "layout": layout, "events": events}})
