"""The pandas implementation of ``text_mapping._map_by_boxes`` before it was rewritten on numpy
arrays, kept verbatim (as ``map_by_boxes_reference``) only to prove the new one gives the same
result (tests/datasets/test_text_mapping.py, benchmarks/text_mapping.py)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from gazepref.datasets.text_mapping import WordHits, _col


def map_by_boxes_reference(samples: Any, layout: Any, scroll: Any, max_dist_px: float, turn: int | None) -> WordHits:
    lay = layout.to_pandas() if isinstance(layout, pa.Table) else pd.DataFrame(layout)
    t = _col(samples, "t").astype(np.float64)
    x = _col(samples, "x").astype(np.float64)
    y = _col(samples, "y").astype(np.float64)
    n = len(t)
    pos_out = np.full(n, -1, dtype=np.int8)
    word_out = np.full(n, -1, dtype=np.int32)
    cs_out = np.full(n, -1, dtype=np.int32)
    ci_out = np.full(n, -1, dtype=np.int32)
    ce_out = np.full(n, -1, dtype=np.int32)
    rx_out = np.full(n, np.nan)
    ry_out = np.full(n, np.nan)
    if turn is not None and "turn" in lay.columns:
        lay = lay[lay["turn"].isna() | (lay["turn"] == turn)]
    lay = lay[lay["target"].astype(str).str.startswith("response:")]
    if lay.empty or n == 0:
        return WordHits(pos_out, word_out, cs_out, ci_out, rx_out, ry_out, char_end=ce_out)
    lay = lay.assign(position=lay["target"].str.split(":").str[1].astype(int))
    elems = lay[lay["kind"] == "element"].sort_values("t", kind="stable")
    words = lay[lay["kind"] == "word"]
    scr = None
    if scroll is not None:
        s = scroll.to_pandas() if isinstance(scroll, pa.Table) else pd.DataFrame(scroll)
        scr = {p: g.sort_values("t") for p, g in
               s[s["target"].astype(str).str.startswith("response:")]
               .assign(position=lambda d: d["target"].str.split(":").str[1].astype(int)).groupby("position")}
    for p, eg in elems.groupby("position"):
        et = eg["t"].to_numpy(np.float64)
        k = np.searchsorted(et, t, side="right") - 1  # latest element box at or before the sample
        has = k >= 0
        kk = np.maximum(k, 0)
        ex, ey = eg["x"].to_numpy(np.float64)[kk], eg["y"].to_numpy(np.float64)[kk]
        ew, eh = eg["w"].to_numpy(np.float64)[kk], eg["h"].to_numpy(np.float64)[kk]
        inside = has & (x >= ex) & (x < ex + ew) & (y >= ey) & (y < ey + eh) & (pos_out < 0)
        if not inside.any():
            continue
        pos_out[inside] = p
        rx, ry = x - ex, y - ey
        if scr is not None and p in scr:
            sg = scr[p]
            j = np.searchsorted(sg["t"].to_numpy(np.float64), t, side="right") - 1
            ok = j >= 0
            rx = rx + np.where(ok, sg["scroll_x"].to_numpy(np.float64)[np.maximum(j, 0)], 0.0)
            ry = ry + np.where(ok, sg["scroll_y"].to_numpy(np.float64)[np.maximum(j, 0)], 0.0)
        rx_out[inside], ry_out[inside] = rx[inside], ry[inside]
        wg = words[words["position"] == p]
        if wg.empty:
            continue
        # word boxes per snapshot time (a re-layout re-sends them)
        for snap_t, sw in wg.groupby("t"):
            later = wg["t"].unique()
            nxt = later[later > snap_t]
            t_end = nxt.min() if len(nxt) else np.inf
            sel = np.flatnonzero(inside & (t >= snap_t) & (t < t_end))
            if snap_t == wg["t"].min():  # samples before the first word snapshot use it too
                sel = np.union1d(sel, np.flatnonzero(inside & (t < snap_t)))
            if not len(sel):
                continue
            bx, by = sw["x"].to_numpy(np.float64), sw["y"].to_numpy(np.float64)
            bw, bh = sw["w"].to_numpy(np.float64), sw["h"].to_numpy(np.float64)
            for chunk in np.array_split(sel, max(1, len(sel) // 2048 + 1)):
                px, py = rx[chunk, None], ry[chunk, None]
                ddx = np.maximum(np.maximum(bx - px, px - (bx + bw)), 0)
                ddy = np.maximum(np.maximum(by - py, py - (by + bh)), 0)
                d = np.hypot(ddx, ddy)
                best = np.argmin(d, axis=1)
                ok = d[np.arange(len(chunk)), best] <= max_dist_px
                hit = chunk[ok]
                b = best[ok]
                start, end = sw["char_start"].to_numpy()[b], sw["char_end"].to_numpy()[b]
                word_out[hit] = sw["index"].to_numpy()[b]
                cs_out[hit] = start
                ce_out[hit] = end
                # the character under the sample: interpolated across the word box's width
                frac = np.clip((rx[hit] - bx[b]) / np.maximum(bw[b], 1e-6), 0, 0.999)
                ci_out[hit] = (start + np.floor(frac * np.maximum(end - start, 1))).astype(np.int32)
    return WordHits(pos_out, word_out, cs_out, ci_out, rx_out, ry_out, char_end=ce_out)
