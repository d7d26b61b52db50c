"""Pointer measures: mousetrap-style trajectory measures per turn, scroll measures per response,
selection and copy counts.

Trajectory measures (after mousetrap, Kieslich & Henninger 2017), on the turn's pointer samples
that feed features (inside the response boxes or above them; the answer controls below are never
part of a trajectory, see :mod:`gazepref.signals.regions`), in viewport px, not time-normalised:

* dist_px: total path length; MAD: the largest perpendicular deviation from the straight line
  between the first and the last point (signed: positive to the right of the direction of travel);
  AUC: signed area between the path and that line (shoelace, px²);
* x_flips / y_flips: reversals of the direction of movement on each axis;
* vel_max (px/s) and acc_max (px/s²) over consecutive samples within a segment;
* idle_ms: time the pointer did not move; idle_max_ms the longest such stretch;
* hover_resp_ms / hover_prompt_ms: time over the responses / above them.

Scroll (IFLLM has no scroll stream): a response box's top edge seen from its in-box samples
(``y - rel_y``, page and box scroll included) moves when the page or the box scrolls; depth is how
far the content went up from its first position, back-scrolls count moves the other way (> 1 px).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import regions
from .task_data import SampleFrame

NAN = float("nan")


def trajectory_measures(f: SampleFrame, prefix: str = "m_") -> dict[str, float]:
    """Mousetrap measures of one turn's pointer frame."""
    keys = ("dist_px", "mad_px", "auc_px2", "x_flips", "y_flips", "vel_max", "acc_max", "idle_ms",
            "idle_max_ms", "move_ms", "hover_resp_ms", "hover_prompt_ms")
    out = {prefix + k: NAN for k in keys}
    n = len(f)
    out[prefix + "hover_resp_ms"] = float(f.dur[f.region <= regions.RESP_1].sum()) if n else 0.0
    out[prefix + "hover_prompt_ms"] = float(f.dur[f.region == regions.PROMPT].sum()) if n else 0.0
    if n < 2:
        return out
    x, y, t, seg = f.x.astype(np.float64), f.y.astype(np.float64), f.t, f.segment
    same = seg[1:] == seg[:-1]
    dx, dy, dt = np.diff(x), np.diff(y), np.diff(t)
    step = np.hypot(dx, dy)
    out[prefix + "dist_px"] = float(step[same].sum())
    # deviation from the direct path first → last point
    ax, ay = x[-1] - x[0], y[-1] - y[0]
    L = np.hypot(ax, ay)
    if L > 0:
        dev = ((x - x[0]) * ay - (y - y[0]) * ax) / L  # cross product: signed distance
        k = int(np.argmax(np.abs(dev)))
        out[prefix + "mad_px"] = float(dev[k])
    else:
        out[prefix + "mad_px"] = float(np.hypot(x - x[0], y - y[0]).max())
    # signed area between the path and the closing straight line (shoelace over the closed polygon)
    out[prefix + "auc_px2"] = float(0.5 * (np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]) + x[-1] * y[0] - x[0] * y[-1]))
    for axis, dv in (("x", dx), ("y", dy)):
        sgn = np.sign(dv[same & (dv != 0)])
        out[f"{prefix}{axis}_flips"] = float(np.count_nonzero(sgn[1:] != sgn[:-1])) if len(sgn) > 1 else 0.0
    ok = same & (dt > 0)
    v = np.where(ok, step / np.where(dt > 0, dt, 1) * 1000.0, np.nan)
    out[prefix + "vel_max"] = float(np.nanmax(v)) if np.isfinite(v).any() else NAN
    if len(v) > 1:
        ok2 = ok[1:] & ok[:-1]
        tm = (t[1:] + t[:-1]) / 2
        dtm = np.diff(tm)
        acc = np.where(ok2 & (dtm > 0), np.abs(np.diff(v)) / np.where(dtm > 0, dtm, 1) * 1000.0, np.nan)
        out[prefix + "acc_max"] = float(np.nanmax(acc)) if np.isfinite(acc).any() else NAN
    still = np.r_[False, same & (step == 0)]
    out[prefix + "idle_ms"] = float(f.dur[still].sum())
    out[prefix + "move_ms"] = float(f.dur[~still].sum())
    if still.any():
        brk = np.r_[True, still[1:] != still[:-1]]
        run = np.cumsum(brk) - 1
        rs = np.bincount(run, weights=np.where(still, f.dur, 0.0))
        out[prefix + "idle_max_ms"] = float(rs.max())
    else:
        out[prefix + "idle_max_ms"] = 0.0
    return out


def scroll_measures(obs_t: np.ndarray, obs_top: np.ndarray, span_ms: float, prefix: str = "sc_") -> dict[str, float]:
    """Scroll measures from a time series of a box's top edge (viewport px), in time order."""
    if len(obs_t) == 0:
        return {prefix + k: NAN for k in ("depth_px", "dist_px", "back_n", "speed_px_s")}
    top = np.round(obs_top)  # sub-pixel jitter of the estimate is not scrolling
    d = np.diff(top)
    d = d[np.abs(d) > 1.0]
    dist = float(np.abs(d).sum())
    return {
        prefix + "depth_px": float(max(0.0, top[0] - top.min())),
        prefix + "dist_px": dist,
        prefix + "back_n": float((d > 0).sum()),
        prefix + "speed_px_s": dist / (span_ms / 1000.0) if span_ms > 0 else NAN,
    }


def scroll_from_stream(scroll: pa.Table | None, target: str, t0: float, t1: float, prefix: str = "sc_") -> dict[str, float] | None:
    """Scroll measures from a recorded scroll stream (our site), for one target between t0 and t1."""
    if scroll is None or scroll.num_rows == 0:
        return None
    df = scroll.to_pandas()
    df = df[(df["target"] == target) & (df["t"] >= t0) & (df["t"] <= t1)].sort_values("t")
    if df.empty:
        return None
    # scroll_y grows when scrolling down: the content's top edge is -scroll_y
    return scroll_measures(df["t"].to_numpy(float), -df["scroll_y"].to_numpy(float), t1 - t0, prefix)


def selection_counts(events: pa.Table | None, turn: int, position: int, t_max: float | None) -> dict[str, float]:
    """Selections and copies of text in a response (events stream of our site; NaN when absent)."""
    if events is None or events.num_rows == 0:
        return {"m_select_n": NAN, "m_copy_n": NAN}
    df = events.to_pandas()
    if "turn" in df.columns:
        df = df[df["turn"] == turn]
    if t_max is not None:
        df = df[df["t"] < t_max]
    df = df[df["target"] == f"response:{position}"]
    return {"m_select_n": float((df["type"] == "select").sum()), "m_copy_n": float((df["type"] == "copy").sum())}
