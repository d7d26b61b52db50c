"""The pointer's path over the page during one turn, with clicks, hovers and the response boxes."""
from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ... import UserError
from ._common import DEFAULT_SIZE, SEQ_CMAP, new_figure, styled
from ._data import TurnView, _np, open_data, turn_name
from .heatmap import turn_title


def page_boxes(view: TurnView) -> list[tuple[str, float, float, float, float, bool]]:
    """(label, x, y, w, h, estimated) of the page elements in viewport px: the recorded element
    boxes (latest snapshot of each target in the turn), or for IFLLM the response boxes estimated
    from samples inside them (absolute minus box-relative position)."""
    out = []
    lay = view.stream("layout")
    if lay is not None:
        el = lay.filter(pc.equal(lay.column("kind"), "element")).to_pandas()
        for target, g in el.groupby("target"):
            r = g.sort_values("t").iloc[-1]
            out.append((str(target), float(r["x"]), float(r["y"]), float(r["w"]), float(r["h"]), False))
        if out:
            return out
    hits = view.stream("hits")
    if hits is None:
        return out
    h = hits.filter(pc.greater_equal(hits.column("x"), 0)).to_pandas()
    for src in ("mouse", "gaze"):
        tb = view.stream(src)
        if tb is None:
            continue
        ab = tb.to_pandas()[["t", "x", "y"]]
        hs = h[h["source"] == src].merge(ab, on="t", suffixes=("_rel", "_abs"))
        if hs.empty:
            continue
        for p, g in hs.groupby("position"):
            if any(b[0] == f"response:{p}" for b in out):
                continue
            left = float(np.median(g["x_abs"] - g["x_rel"]))
            # y_rel includes the box's scroll: the unscrolled samples give the box's top
            top = float((g["y_abs"] - g["y_rel"]).quantile(0.98))
            w = float(max(g["x_rel"].quantile(0.98) + 10, 200))
            bottom = float(g["y_abs"].quantile(0.98) + 10)
            out.append((f"response:{int(p)}", left, top, w, max(bottom - top, 60.0), True))
    return out


_NAMES = {"response:0": "response 1 (left)", "response:1": "response 2 (right)", "prompt": "prompt"}


def box_name(target: str, pairwise: bool) -> str:
    """The label of a page box: a pointwise turn's single answer is "response", not "response 1 (left)"."""
    if not pairwise and target.startswith("response:"):
        return "response" if target == "response:0" else f"response {target.partition(':')[2]}"
    return _NAMES.get(target, target)


def _draw_boxes(ax, boxes, hover_n: dict[str, int], pairwise: bool) -> None:
    """The page boxes, largest first and below the smaller ones they contain (the full window is
    an outline behind everything, not a fill over the prompt, response and control boxes)."""
    for z, (label, bx, by, bw, bh, est) in enumerate(sorted(boxes, key=lambda b: -b[3] * b[4])):
        whole = label in ("window", "page", "document")
        is_resp = label.startswith("response:")
        ax.add_patch(Rectangle((bx, by), bw, bh, facecolor="none" if whole else ("#e9eef5" if is_resp else "#f3f3f3"),
                               edgecolor="#a0a0a0" if whole else "#7a8aa0", lw=1.0,
                               ls=":" if whole else ("--" if est else "-"), zorder=0.01 * z))
        ax.text(bx + 6, by + 6, box_name(label, pairwise) + (" (estimated)" if est else "")
                + (f" · hovered {hover_n[label]}×" if label in hover_n else ""), fontsize=9,
                va="top", color="#888" if whole else "#40536e", zorder=1 + 0.01 * z)


@styled
def plot_mouse(data, participant: str | None = None, task: str | None = None, turn: int | None = None,
               size: tuple[int, int] = DEFAULT_SIZE, view: TurnView | None = None) -> Figure:
    rec = open_data(data) if view is None else view.rec
    view = view or TurnView.load(rec, participant, task, turn)
    mz = view.stream("mouse")
    if mz is None:
        raise UserError(f"{turn_name(view.turn)} of task {view.task_id!r} has no mouse samples")
    t, x, y = _np(mz, "t"), _np(mz, "x"), _np(mz, "y")
    o = np.argsort(t, kind="stable")
    t, x, y = t[o], x[o], y[o]
    ok = (x >= 0) & (y >= 0) & np.isfinite(x) & np.isfinite(y)
    t, x, y = t[ok], x[ok], y[ok]
    if len(t) == 0:
        raise UserError(f"{turn_name(view.turn)} of task {view.task_id!r}: the pointer never moved")
    t0 = view.t_range[0]
    ts = (t - t0) / 1000.0
    fig = new_figure(size)
    ax = fig.add_axes([0.07, 0.12, 0.76, 0.78])
    boxes = page_boxes(view)
    ev = view.stream("events")
    hover_n: dict[str, int] = {}
    if ev is not None:
        ed = ev.to_pandas()
        for tgt, n_h in ed.loc[ed["type"] == "hover_enter", "target"].value_counts().items():
            hover_n[str(tgt)] = int(n_h)
    _draw_boxes(ax, boxes, hover_n, view.turn.pairwise)
    norm = Normalize(0, max(ts.max(), 1e-3))
    if len(t) > 1:
        seg = np.stack([np.c_[x[:-1], y[:-1]], np.c_[x[1:], y[1:]]], axis=1)
        lc = LineCollection(seg, cmap=SEQ_CMAP, norm=norm, linewidths=1.6, zorder=3)
        lc.set_array(ts[:-1])
        ax.add_collection(lc)
    ax.scatter(x, y, c=ts, cmap=SEQ_CMAP, norm=norm, s=6, zorder=4)
    ax.plot(x[0], y[0], marker="o", ms=10, mfc="white", mec="black", zorder=6, ls="none", label="start")
    ax.plot(x[-1], y[-1], marker="s", ms=9, mfc="black", mec="black", zorder=6, ls="none", label="end")
    n_click = n_hover = 0
    ex_pts: list[tuple[float, float]] = []
    if ev is not None:
        e = ev.to_pandas()
        e = e[e["x"].notna() & e["y"].notna()] if "x" in e else e.iloc[0:0]
        cl = e[e["type"].isin(["click", "choose"])]
        hv = e[e["type"] == "hover_enter"]
        n_click, n_hover = len(cl), len(hv)
        ex_pts += list(zip(cl["x"].astype(float), cl["y"].astype(float)))
        ex_pts += list(zip(hv["x"].astype(float), hv["y"].astype(float)))
        if n_click:
            ax.scatter(cl["x"], cl["y"], marker="X", s=110, c="#d62728", edgecolors="black", zorder=7,
                       label=f"click ({n_click})")
        if n_hover:
            ax.scatter(hv["x"], hv["y"], marker="D", s=40, facecolors="none", edgecolors="#9467bd",
                       linewidths=1.4, zorder=6, label=f"hover start ({n_hover})")
    elif mz is not None and "buttons" in mz.column_names:
        b = _np(mz, "buttons")[o][ok]
        down = np.flatnonzero((np.nan_to_num(b) > 0) & (np.r_[0, np.nan_to_num(b[:-1])] == 0))
        if len(down):
            n_click = len(down)
            ax.scatter(x[down], y[down], marker="X", s=110, c="#d62728", edgecolors="black", zorder=7,
                       label=f"button press ({n_click})")
    xs = [x.max()] + [bx + bw for _, bx, _, bw, _, _ in boxes] + [p[0] for p in ex_pts]
    ys = [y.max()] + [by + bh for _, _, by, _, bh, _ in boxes] + [p[1] for p in ex_pts]
    ax.set_xlim(min(0, x.min()) - 10, max(xs) * 1.04)
    ax.set_ylim(max(ys) * 1.04, min(0, y.min()) - 10)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x (CSS px, viewport)")
    ax.set_ylabel("y (CSS px, viewport)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 0.25), frameon=False)
    dist = float(np.hypot(np.diff(x), np.diff(y)).sum())
    ax.set_title(f"pointer path: {len(t)} samples over {ts.max():.1f} s, {dist / 1000:.1f} k px travelled",
                 loc="left", fontsize=10)
    fig.suptitle(turn_title(view), x=0.01, ha="left", fontsize=11)
    cax = fig.add_axes([0.87, 0.45, 0.015, 0.42])
    from matplotlib.cm import ScalarMappable

    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=SEQ_CMAP), cax=cax)
    cb.set_label("time in the turn (s)")
    if view.turn.pairwise:
        fig.text(0.01, 0.005, "The choice controls sit below the responses; pointer positions there reveal "
                 "the explicit choice.", fontsize=8, color="#666")
    return fig
