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


def text_fixations(view: TurnView, **idt) -> TextFixations:
    """I-DT fixations of the turn's gaze (viewport px), each put on the response text where most of
    its on-text samples lie (median of their text positions)."""
    pts = {p: view.points(p, "gaze") for p in view.positions}
    gz = view.stream("gaze")
    if gz is not None:
        t, x, y = _np(gz, "t"), _np(gz, "x"), _np(gz, "y")
        o = np.argsort(t, kind="stable")
        t, x, y = t[o], x[o], y[o]
        ok = np.isfinite(x) & np.isfinite(y) & (x > -50) & (y > -50)
        keep = np.flatnonzero(ok)
        keep = keep[np.r_[True, np.diff(t[keep]) > 0]] if len(keep) else keep
        t, x, y = t[keep], x[keep], y[keep]
        seg = gaze_events.segments(t)
        fx = gaze_events.detect_fixations_idt(t, x, y, seg, **idt)
        n = len(fx)
        pos = np.full(n, -1)
        fxx, fxy, fch = np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1)
        best = np.zeros(n, dtype=np.int64)  # on-text samples behind the chosen position
        for p, tp in pts.items():
            if not len(tp):
                continue
            # samples of each fixation that lie on this response's text
            j = np.searchsorted(t, tp.t)
            jj = np.minimum(j, len(t) - 1)
            match = (j < len(t)) & (t[jj] == tp.t)
            fid = gaze_events.fixation_of_sample(fx, len(t))[jj]
            fid = np.where(match, fid, -1)
            ok = fid >= 0
            if not ok.any():
                continue
            g = pd.DataFrame({"f": fid[ok], "x": tp.x[ok], "y": tp.y[ok], "c": tp.char[ok]}).groupby("f")
            med = g.median()
            cnt = g.size()
            f = med.index.to_numpy()
            better = cnt.to_numpy() > best[f]
            f = f[better]
            best[f] = cnt.to_numpy()[better]
            pos[f] = p
            fxx[f] = med["x"].to_numpy()[better]
            fxy[f] = med["y"].to_numpy()[better]
            fch[f] = med["c"].to_numpy()[better].astype(np.int64)
        return TextFixations(fx.onset, fx.duration, pos, fxx, fxy, fch)
    # no viewport gaze (hits only): fixations on each response's text coordinates
    parts = []
    for p, tp in pts.items():
        if len(tp) < 2:
            continue
        o = np.argsort(tp.t)
        fx = gaze_events.detect_fixations_idt(tp.t[o], tp.x[o], tp.y[o], gaze_events.segments(tp.t[o]), **idt)
        parts.append((fx.onset, fx.duration, np.full(len(fx), p), fx.x, fx.y, np.full(len(fx), -1)))
    if not parts:
        e = np.zeros(0)
        return TextFixations(e, e, e.astype(int), e, e, e.astype(int))
    cols = [np.concatenate(c) for c in zip(*parts)]
    o = np.argsort(cols[0])
    return TextFixations(*[c[o] for c in cols])


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
    """I-DT fixations over the text (the first ``max_fixations`` on the text), coloured by their
    order in time, circle area ∝ duration. Numbers only where they help: the first and the last
    fixation and the long ones (:func:`labelled_fixations`), never on top of each other. With
    ``fit`` the figure's height shrinks to the text (``size`` is then the largest size)."""
    rec = open_data(data) if view is None else view.rec
    view = view or TurnView.load(rec, participant, task, turn)
    require_gaze(view)
    fx = text_fixations(view)
    on_all = np.flatnonzero(fx.position >= 0)
    on = on_all[:max_fixations]
    n_switch = int(np.sum(np.diff(fx.position[on_all]) != 0)) if len(on_all) > 1 else 0
    fig = new_figure(size)
    # the caption sits on its own line(s) above the footnote (bottom right), so they never overlap
    W = fig.bbox.width
    caption = fig.text(0, 0, f"{len(fx)} fixations (I-DT), {len(on_all)} on the text"
                       + (f" (first {len(on)} drawn)" if len(on) < len(on_all) else "")
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
        n_all = int(np.sum(fx.position[on_all] == pn.position))
        pn.note(f"{n_all} fixations · {float(fx.duration[on_all][fx.position[on_all] == pn.position].sum()) / 1000:.1f} s "
                "fixating the text" + (f" · {len(m)} drawn" if len(m) < n_all else ""))
    footnote(fig, panels)
    cax = fig.add_axes([(W - 70) / W, 0.15, 14 / W, 0.6])
    from matplotlib.cm import ScalarMappable

    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    cb.set_label("fixation order")
    return fig
