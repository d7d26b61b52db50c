"""Pairwise behaviour: how attention was split between the left (0) and right (1) response of one
turn, from the gaze fixation sequence and the pointer samples.

* share_l: dwell (gaze samples / pointer samples) on the left response over both responses;
* switches: changes of side in the sequence of response fixations (pointer: response samples),
  ignoring time spent elsewhere (prompt);
* first_side / last_side: 0 left, 1 right (NaN: never on a response) — the last side is the
  one looked at (pointed at) last before the turn ended, i.e. before the choice; the answer
  controls below the responses are never counted (see :mod:`gazepref.signals.regions`);
* last_visit_ms: length of that final visit; returns: visits to a side already visited.
"""
from __future__ import annotations

import numpy as np

NAN = float("nan")


def side_sequence_measures(side: np.ndarray, dur: np.ndarray, prefix: str) -> dict[str, float]:
    """``side``: per event (fixation or sample) in time order, 0/1 on a response, other values
    elsewhere; ``dur`` its duration."""
    on = (side == 0) | (side == 1)
    dl = float(dur[side == 0].sum())
    dr = float(dur[side == 1].sum())
    out = {
        f"{prefix}share_l": dl / (dl + dr) if dl + dr > 0 else NAN,
        f"{prefix}l_ms": dl,
        f"{prefix}r_ms": dr,
    }
    s = side[on]
    d = dur[on]
    if len(s) == 0:
        out.update({f"{prefix}switches": 0.0, f"{prefix}first_side": NAN, f"{prefix}last_side": NAN,
                    f"{prefix}last_visit_ms": NAN, f"{prefix}returns": 0.0, f"{prefix}last_share_l": NAN})
        return out
    brk = np.r_[True, s[1:] != s[:-1]]
    visit = np.cumsum(brk) - 1
    vside = s[brk]
    vdur = np.bincount(visit, weights=d)
    out[f"{prefix}switches"] = float(len(vside) - 1)
    out[f"{prefix}first_side"] = float(vside[0])
    out[f"{prefix}last_side"] = float(vside[-1])
    out[f"{prefix}last_visit_ms"] = float(vdur[-1])
    out[f"{prefix}returns"] = float(len(vside) - len(np.unique(vside)))
    # share of the left side over the last third of response time (late attention)
    cum = np.cumsum(d)
    late = cum > cum[-1] * (2 / 3)
    ll, lr = d[late & (s == 0)].sum(), d[late & (s == 1)].sum()
    out[f"{prefix}last_share_l"] = float(ll / (ll + lr)) if ll + lr > 0 else NAN
    return out
