"""The word under one pointer or gaze sample of our site, from the recorded layout stream.

A thin adapter over :mod:`gazepref.datasets.text_mapping` (one box-mapping implementation for the
whole project) for a single sample; whole streams get their words once, when a recording is
read (:func:`gazepref.datasets.derive.derive_streams`).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..datasets.text_mapping import map_to_words


@dataclass(frozen=True)
class WordHit:
    target: str  # 'response:0' | 'response:1'
    turn: int | None
    index: int  # word index within the response
    char_start: int
    char_end: int
    rel_x: float  # sample relative to the response element, scroll included
    rel_y: float


def word_at(layout: pd.DataFrame, scroll: pd.DataFrame | None, t: float, x: float, y: float) -> WordHit | None:
    """The word under viewport point ``(x, y)`` at task time ``t``, or None; ``turn`` is the turn
    of the response element box the point is in (its latest snapshot at or before ``t``)."""
    wh = map_to_words({"t": [t], "x": [x], "y": [y]}, layout, scroll=scroll)
    if wh.word[0] < 0:
        return None
    target = f"response:{int(wh.position[0])}"
    el = layout[(layout["target"] == target) & (layout["kind"] == "element") & (layout["t"] <= t)]
    el = el[el["t"] == el["t"].max()].iloc[-1]
    turn = None if "turn" not in el or pd.isna(el["turn"]) else int(el["turn"])
    return WordHit(target, turn, int(wh.word[0]), int(wh.char_start[0]), int(wh.char_end[0]),
                   float(wh.rel_x[0]), float(wh.rel_y[0]))
