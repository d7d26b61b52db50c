"""Per-sample screen regions, and the rule that keeps the explicit choice out of the features.

Every gaze/pointer sample of a turn gets a region code:

====  ==========  =======================================================================
code  name        meaning
====  ==========  =======================================================================
0     RESP_0      inside response box 0 (left / only response)
1     RESP_1      inside response box 1 (right)
2     PROMPT      outside the response boxes and *above* their top edge: the user's prompt
                  and the earlier conversation
3     EXCLUDED    everything else: beside or below the response boxes, or where the boxes'
                  position is unknown
====  ==========  =======================================================================

**Leakage rule.** Below the responses sit the answer controls ("Which response did you like
better? Left | Right", the Likert scales, the next-message box). Where the pointer or gaze goes
there reveals the explicit choice (a click on *Left* is a pointer at the left button). IFLLM never
recorded where those controls are (no layout, no viewport size), only where the response boxes are
(a sample inside a box has box-relative coordinates, so ``y - rel_y`` is the box's top edge at that
moment, page and box scroll included). So the rule is conservative: **only samples inside a
response box, or above the top edge of the response boxes, feed the default features**; anything
level with or below the boxes but outside them (controls, margins, the gap between the boxes) is
region 3 and dropped. The top edge at a sample's time is the latest box-top observation of the
same turn (either source), or the turn's first one before that; a turn without any in-box sample
has no known geometry and all its outside samples are region 3.
Samples at or after the turn's decision (``Turn.t_decided``, where the recorder has it) are dropped too
(IFLLM has no decision time; a turn's samples end when the next query starts).

For our own site, the layout stream gives the boxes directly; the same codes apply.
"""
from __future__ import annotations

import numpy as np

RESP_0, RESP_1, PROMPT, EXCLUDED = 0, 1, 2, 3
N_REGIONS = 4


def box_top_at(t: np.ndarray, turn: np.ndarray, obs_t: np.ndarray, obs_turn: np.ndarray,
               obs_top: np.ndarray) -> np.ndarray:
    """Top edge of the response boxes at each sample: the latest observation of the same turn at or
    before the sample, else the turn's first observation; NaN when the turn has none."""
    t = np.asarray(t, dtype=np.float64)
    out = np.full(len(t), np.nan)
    if len(obs_t) == 0 or len(t) == 0:
        return out
    o = np.lexsort((obs_t, obs_turn))
    ot, oturn, otop = obs_t[o], obs_turn[o], obs_top[o]
    # search within the turn: key = (turn, t) → combine into one sortable float key
    span = max(float(np.nanmax(np.abs(ot))), float(np.nanmax(np.abs(t)))) * 2 + 1.0
    okey = oturn.astype(np.float64) * span + ot
    skey = turn.astype(np.float64) * span + t
    j = np.searchsorted(okey, skey, side="right") - 1
    same = (j >= 0) & (oturn[np.maximum(j, 0)] == turn)
    out[same] = otop[j[same]]
    # before the turn's first observation: the first one of the turn
    first_idx = np.searchsorted(okey, turn.astype(np.float64) * span - span / 2, side="left")
    fi = np.minimum(first_idx, len(ot) - 1)
    has = (~same) & (first_idx < len(ot)) & (oturn[fi] == turn)
    out[has] = otop[fi[has]]
    return out


def regions(y: np.ndarray, pos: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Region code per sample (see the module doc)."""
    r = np.full(len(y), EXCLUDED, dtype=np.int8)
    r[pos == 0] = RESP_0
    r[pos == 1] = RESP_1
    with np.errstate(invalid="ignore"):
        above = (pos < 0) & np.isfinite(top) & (y < top)
    r[above] = PROMPT
    return r
