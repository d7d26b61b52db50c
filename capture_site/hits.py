"""The word under a pointer or gaze sample of our site, from the recorded layout stream.

Thin adapters over :mod:`gazepref.datasets.text_mapping` (one box-mapping implementation for the
whole project): :func:`word_at` answers for one sample (used by tests and the dashboard);
:func:`hits_frame` turns a whole mouse or gaze stream into the ``hits`` stream (IFLLM's rel_*
files), which the IFLLM-layout export writes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..datasets.text_mapping import hits_stream, map_to_words


@dataclass(frozen=True)
class WordHit:
    target: str  # 'response:0' | 'response:1'
    turn: int | None
    index: int  # word index within the response
    char_start: int
    char_end: int
    rel_x: float  # sample relative to the response element, scroll included
    rel_y: float


def _latest_row(rows: pd.DataFrame, t: float) -> pd.DataFrame:
    before = rows[rows["t"] <= t]
    return before[before["t"] == before["t"].max()] if len(before) else before


def word_at(layout: pd.DataFrame, scroll: pd.DataFrame | None, t: float, x: float, y: float) -> WordHit | None:
    """The word under viewport point ``(x, y)`` at task time ``t``, or None."""
    wh = map_to_words({"t": [t], "x": [x], "y": [y]}, layout, scroll=scroll)
    if wh.word[0] < 0:
        return None
    target = f"response:{int(wh.position[0])}"
    mine = layout[layout["target"] == target]
    el = _latest_row(mine[mine["kind"] == "element"], t).iloc[-1]
    words = mine[mine["kind"] == "word"]
    snap = _latest_row(words, t)
    if snap.empty:  # samples before the first word snapshot use it (as map_to_words does)
        snap = words[words["t"] == words["t"].min()]
    w = snap[snap["index"] == wh.word[0]].iloc[0]
    turn = None if "turn" not in el or pd.isna(el["turn"]) else int(el["turn"])
    return WordHit(target, turn, int(w["index"]), int(w["char_start"]), int(w["char_end"]),
                   float(wh.rel_x[0]), float(wh.rel_y[0]))


def hits_frame(samples: pd.DataFrame, layout: pd.DataFrame, scroll: pd.DataFrame | None,
               texts: dict[tuple[int, int], str], source: str = "mouse") -> pd.DataFrame:
    """The ``hits`` stream for ``samples`` (t, x, y, optional turn); without a ``turn`` column a
    sample's turn is that of the latest response element box in the layout."""
    if "turn" not in samples.columns and "turn" in layout.columns:
        el = layout[(layout["kind"] == "element") & layout["target"].astype(str).str.startswith("response:")]
        el = el.dropna(subset=["turn"]).sort_values("t", kind="stable")
        k = np.searchsorted(el["t"].to_numpy(np.float64), samples["t"].to_numpy(np.float64), side="right") - 1
        turn = np.where(k >= 0, el["turn"].to_numpy()[np.maximum(k, 0)] if len(el) else -1, -1)
        samples = samples.assign(turn=turn.astype(np.int64))
    return hits_stream(samples, layout, texts, scroll=scroll, source=source)
