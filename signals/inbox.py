"""The in-box family of the comparison table: how each source (gaze, pointer) divided the turn
between the two response boxes, from the samples **inside a response box** only.

These are the measures the reward models read by default (columns ``gaze_*`` / ``mouse_*`` of
``comparisons.parquet``, documented in :mod:`gazepref.signals.feature_reference`). They are
computed on the task's samples as recorded (before gaze cleaning, which the reading measures need
but which would change the dwell of a sample), within the leakage cuts of
:mod:`gazepref.signals.regions`: only the turn's own samples, none at or after its decision, and
no position outside the boxes (the rating / choice controls sit below them). No "last side looked
at" measure is computed: the pointer's final in-box position on its way down to the *Left | Right*
buttons would give the click away.

Per source and response, within the turn: dwell (ms, each sample standing for the time to the next
sample of the source, in the box or not, capped at :data:`MAX_DT_MS`), dwell on text, text coverage
(share of :data:`BLOCK`-character blocks visited), reading depth (90th percentile of the visited
character offset / length), visits and which box was entered first. Pairwise columns
(``<source>_d_<measure>``) are *left minus right* (or a centred left share), so swapping the sides
negates them; ``<source>_s_<measure>`` columns are symmetric context (amount of data, turn time).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

SOURCES = ("gaze", "mouse")
MAX_DT_MS = 500.0
BLOCK = 20


def side_measures(t: np.ndarray, pos: np.ndarray, char: np.ndarray, lens: tuple[int, int]) -> dict[str, float]:
    """The measures of one source in one turn. ``t``: sorted unique sample times; ``pos`` the box of
    each sample (0 / 1, -1 none); ``char`` the character under it (-1 not on text); ``lens`` the two
    responses' lengths in characters."""
    out: dict[str, float] = {}
    if len(t) == 0:
        return out
    dt = np.minimum(np.diff(t, append=t[-1]), MAX_DT_MS)
    dwell = [float(dt[pos == p].sum()) for p in (0, 1)]
    ontext = [float(dt[(pos == p) & (char >= 0)].sum()) for p in (0, 1)]
    cov, depth = [], []
    for p in (0, 1):
        c = char[(pos == p) & (char >= 0)]
        L = max(1, lens[p])
        nblocks = max(1, int(np.ceil(L / BLOCK)))
        cov.append(len(np.unique(np.minimum(c, L - 1) // BLOCK)) / nblocks if len(c) else 0.0)
        depth.append(float(np.percentile(np.minimum(c, L), 90)) / L if len(c) else 0.0)
    s = pos[pos >= 0]
    if len(s):
        vs = s[np.r_[True, s[1:] != s[:-1]]]
        visits = [float((vs == p).sum()) for p in (0, 1)]
        first = 1.0 if vs[0] == 0 else -1.0
    else:
        visits, first = [0.0, 0.0], 0.0
    tot = dwell[0] + dwell[1]
    out["d_share"] = dwell[0] / tot - 0.5 if tot > 0 else 0.0
    out["d_log_dwell"] = np.log1p(dwell[0] / 1000) - np.log1p(dwell[1] / 1000)
    out["d_log_ontext"] = np.log1p(ontext[0] / 1000) - np.log1p(ontext[1] / 1000)
    out["d_coverage"] = cov[0] - cov[1]
    out["d_depth"] = depth[0] - depth[1]
    out["d_visits"] = np.log1p(visits[0]) - np.log1p(visits[1])
    out["d_first"] = first
    # dwell per expected reading effort: ms per character, log
    out["d_log_ms_per_char"] = np.log1p(ontext[0] / max(1, lens[0])) - np.log1p(ontext[1] / max(1, lens[1]))
    out["s_log_total_s"] = np.log1p(tot / 1000)
    out["s_switches"] = np.log1p(max(0.0, sum(visits) - 1))
    return out


def source_measures(t: np.ndarray, pos: np.ndarray, char: np.ndarray, texts: tuple[str, str],
                    window: np.ndarray | None = None, camera_ok: np.ndarray | None = None,
                    source: str = "gaze") -> dict[str, float]:
    """``<source>_*`` columns of one turn from the source's samples in it (any order; several
    samples at one time count once, the first in-box one giving the box). With a text ``window``
    per sample, each in-box ``char`` is first checked against its window
    (:func:`gazepref.datasets.text_mapping.anchor_positions`). ``camera_ok`` (gaze): 1 face well
    placed, 0 not, -1 unknown per sample."""
    t = np.asarray(t, dtype=np.float64)
    if len(t) == 0:
        return {}
    pos = np.asarray(pos, dtype=np.int64)
    char = np.asarray(char, dtype=np.int64)
    inside = np.flatnonzero(pos >= 0)
    inside = inside[np.argsort(t[inside], kind="stable")]
    _, first = np.unique(t[inside], return_index=True)  # one box per sample time: the first
    inside = inside[first]
    allt = np.unique(t)
    j = np.searchsorted(allt, t[inside])
    p = np.full(len(allt), -1, dtype=np.int64)
    c = np.full(len(allt), -1, dtype=np.int64)
    p[j] = pos[inside]
    c[j] = char[inside]
    if window is not None:
        from ..datasets.text_mapping import anchor_positions

        c[j] = anchor_positions(texts, pos[inside], char[inside], np.asarray(window, dtype=object)[inside])
    m = side_measures(allt, p, c, (len(texts[0]), len(texts[1])))
    if source == "gaze":
        cam = np.asarray(camera_ok) if camera_ok is not None else np.full(len(t), -1)
        m["s_camera_ok"] = float((cam == 1).mean())
    return {f"{source}_{k}": v for k, v in m.items()}


def turn_measures(samples: Mapping[str, Mapping[str, np.ndarray]], turn: int, texts: tuple[str, str]
                  ) -> dict[str, float]:
    """Every ``gaze_*`` / ``mouse_*`` column of turn ``turn``. ``samples[source]``: arrays ``t``,
    ``turn``, ``pos``, ``char`` and optionally ``window``, ``camera_ok`` per sample
    (:attr:`gazepref.signals.task_data.TaskData.box_samples`). A source without samples in the turn
    has no measures (missing), and ``<source>_s_present`` 0, also where none of its samples has a
    position (``positioned`` where given: a failed calibration's gaze rows, x/y NaN, as an
    IFLLM-layout export, which leaves such rows out, reads it). Where some have, the others are
    time outside the answers (a picture without a face) and count in ``s_camera_ok``."""
    out: dict[str, float] = {}
    for source in SOURCES:
        s = samples.get(source)
        m = s["turn"] == turn if s is not None and len(s["t"]) else None
        if m is None or not m.any() or ("positioned" in s and not s["positioned"][m].any()):
            out[f"{source}_s_present"] = 0.0
            continue
        win, cam = s.get("window"), s.get("camera_ok")
        out.update(source_measures(s["t"][m], s["pos"][m], s["char"][m], texts,
                                   None if win is None else win[m], None if cam is None else cam[m], source))
        out[f"{source}_s_present"] = 1.0
    return out


def columns(table_columns) -> list[str]:
    """The in-box family's columns among ``table_columns``."""
    return [c for c in table_columns if c.partition("_")[0] in SOURCES and c.partition("_")[2][:2] in ("d_", "s_")]
