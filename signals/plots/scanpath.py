"""Fixations numbered over the response text (pairwise turns side by side)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .. import gaze_events
from ._common import DEFAULT_SIZE, SEQ_CMAP, fit_text, new_figure, styled
from ._data import TurnView, _np, open_data, require_gaze
from .heatmap import footnote, text_panels, turn_title
from .text_layout import draw_text


@dataclass
class TextFixations:
    """Fixations of a turn placed on the text: order, response position, content px, duration."""

    onset: np.ndarray
    duration: np.ndarray
    position: np.ndarray  # -1: not on a response text
    x: np.ndarray
    y: np.ndarray
    char: np.ndarray

    def __len__(self) -> int:
        return len(self.onset)


def text_fixations(view: TurnView) -> TextFixations:
    """The turn's fixations exactly as the feature table has them (:meth:`TurnView.fixations`:
    cleaned gaze, the region rule, I-DT), so a plot's counts are the table's (``g_fix_all_n``
    for the turn, ``g_fix_n`` per response). A fixation's ``position`` is its region when that is a
    response (-1: the prompt); it is drawn where the median of its samples on that response's text
    lies (NaN, not drawn, when none of its samples is on the text)."""
    fix, g = view.fixations()
    n = len(fix)
    pos = np.where(np.isin(fix.region, view.positions), fix.region, -1).astype(np.int64)
    fxx, fxy, fch = np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1)
    if n:
        fid = gaze_events.fixation_of_sample(gaze_events.Fixations(fix.start, fix.end, fix.onset, fix.offset,
                                                                   fix.dur, fix.x, fix.y), len(g))
        for p in view.positions:
            tp = view.points(p, "gaze")
            if not len(tp):
                continue
            # the fixation's cleaned samples on this response, found among the text points by time
            s = np.flatnonzero((fid >= 0) & (g.region == p))
            s = s[pos[fid[s]] == p]
            j = np.searchsorted(tp.t, g.t[s])
            jj = np.minimum(j, len(tp) - 1)
            hit = (j < len(tp)) & (tp.t[jj] == g.t[s])
            if not hit.any():
                continue
            med = pd.DataFrame({"f": fid[s][hit], "x": tp.x[jj[hit]], "y": tp.y[jj[hit]],
                                "c": tp.char[jj[hit]]}).groupby("f").median()
            f = med.index.to_numpy()
            fxx[f], fxy[f] = med["x"].to_numpy(), med["y"].to_numpy()
            fch[f] = med["c"].to_numpy().astype(np.int64)
    return TextFixations(fix.onset, fix.dur, pos, fxx, fxy, fch)


def labelled_fixations(x_px: np.ndarray, y_px: np.ndarray, duration: np.ndarray, order: np.ndarray,
                       n_total: int, min_gap_px: float = 20.0, long_quantile: float = 0.75) -> list[int]:
    """Which fixations of a panel get their number: the first and the last of the turn, then the
    longest (at or above the ``long_quantile`` of durations) in order of duration, skipping any
    within ``min_gap_px`` display px of a number already placed, so numbers never pile up."""
    n = len(x_px)
    if n == 0:
        return []
    cut = float(np.quantile(duration, long_quantile)) if n > 4 else 0.0
    ends = [j for j in range(n) if order[j] in (1, n_total)]
    rest = [j for j in np.argsort(-duration, kind="stable").tolist() if duration[j] >= cut and j not in ends]
    placed: list[int] = []
    for j in ends + rest:
        if all(np.hypot(x_px[j] - x_px[i], y_px[j] - y_px[i]) >= min_gap_px for i in placed):
            placed.append(j)
    return placed


@styled
def plot_scanpath(data, participant: str | None = None, task: str | None = None, turn: int | None = None,
                  size: tuple[int, int] = DEFAULT_SIZE, view: TurnView | None = None,
                  max_fixations: int = 80, fit: bool = True) -> Figure:
    """The feature table's fixations (:func:`text_fixations`) over the text (the first
    ``max_fixations`` placed on the text), coloured by their
    order in time, circle area ∝ duration. Numbers only where they help: the first and the last
    fixation and the long ones (:func:`labelled_fixations`), never on top of each other. With
    ``fit`` the figure's height shrinks to the text (``size`` is then the largest size)."""
    rec = open_data(data) if view is None else view.rec
    view = view or TurnView.load(rec, participant, task, turn)
    require_gaze(view)
    fx = text_fixations(view)
    resp = np.flatnonzero(fx.position >= 0)  # the table's g_fix_n, over the responses
    on_all = resp[np.isfinite(fx.x[resp])]  # ... of which placed on the text
    on = on_all[:max_fixations]
    n_switch = int(np.sum(np.diff(fx.position[resp]) != 0)) if len(resp) > 1 else 0
    fig = new_figure(size)
    # the caption sits on its own line(s) above the footnote (bottom right), so they never overlap
    W = fig.bbox.width
    caption = fig.text(0, 0, f"{len(fx)} fixations (I-DT on cleaned gaze, as the feature table), "
                       f"{len(resp)} on the responses"
                       + (f" ({len(on)} drawn)" if len(on) < len(resp) else "")
                       + (f", {n_switch} switches" if len(view.positions) > 1 else "")
                       + "; colour: order in time; area ∝ duration; numbered: first, last and long fixations",
                       fontsize=8, color="#444", ha="left", va="bottom")
    fit_text(caption, W - 32, fig.canvas.get_renderer(), min_fontsize=8)
    caption_px = caption.get_window_extent(fig.canvas.get_renderer()).height
    panels = text_panels(fig, view, turn_title(view), right_px=90, fit=fit, bottom_px=int(np.ceil(caption_px)) + 24)
    W, H = fig.bbox.width, fig.bbox.height  # (fitted to the text)
    caption.set_position((16 / W, 18 / H))
    order = np.full(len(fx), -1)
    order[on] = np.arange(1, len(on) + 1)  # numbered in time over both responses
    norm = Normalize(1, max(2, len(on)))
    cmap = colormaps[SEQ_CMAP]
    for pn in panels:
        draw_text(pn.ax, pn.boxes, pn.scale, color="#6a6a6a")
        m = on[fx.position[on] == pn.position]
        if len(m):
            xs, ys = fx.x[m], fx.y[m]
            pn.ax.plot(xs, ys, "-", color="#333", lw=0.7, alpha=0.35, zorder=4)
            r_px = np.clip(np.sqrt(fx.duration[m]) * 0.55, 6, 16)  # display px
            pn.ax.scatter(xs, ys, s=(r_px * 2) ** 2 * 0.55, c=order[m], cmap=cmap, norm=norm, alpha=0.75,
                          edgecolors="black", linewidths=0.6, zorder=5)
            for j in labelled_fixations(xs * pn.scale, ys * pn.scale, fx.duration[m], order[m], len(on)):
                k = order[m][j]
                lum = np.dot(cmap(norm(k))[:3], [0.299, 0.587, 0.114])
                pn.ax.text(xs[j], ys[j], str(k), ha="center", va="center", fontsize=8, zorder=6,
                           color="black" if lum > 0.5 else "white", fontweight="bold")
        mine = fx.position == pn.position
        n_all = int(mine.sum())
        pn.note(f"{n_all} fixations · {float(fx.duration[mine].sum()) / 1000:.1f} s "
                "fixating the response" + (f" · {len(m)} drawn" if len(m) < n_all else ""))
    footnote(fig, panels)
    cax = fig.add_axes([(W - 70) / W, 0.15, 14 / W, 0.6])
    from matplotlib.cm import ScalarMappable

    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    cb.set_label("fixation order")
    return fig
