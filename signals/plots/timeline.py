"""Which response, and where in it, over the time of one turn; the decision marked."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ... import UserError
from ._common import DEFAULT_SIZE, NOT_PREFERRED, PREFERRED, new_figure, styled
from ._data import TurnView, _np, open_data, outcome, turn_name
from .heatmap import turn_title

_BAND = 1.0
_GAP = 0.35


@styled
def plot_timeline(data, participant: str | None = None, task: str | None = None, turn: int | None = None,
                  size: tuple[int, int] = DEFAULT_SIZE, view: TurnView | None = None) -> Figure:
    rec = open_data(data) if view is None else view.rec
    view = view or TurnView.load(rec, participant, task, turn)
    if view.stream("gaze") is None and view.stream("mouse") is None and view.stream("hits") is None:
        raise UserError(f"{turn_name(view.turn)} of task {view.task_id!r} has no gaze or mouse samples")
    t0, t1 = view.t_range
    fig = new_figure(size)
    ax = fig.add_axes([0.17, 0.1, 0.72, 0.76])
    positions = view.positions
    names = {0: "Response 1 (left)", 1: "Response 2 (right)"} if view.turn.pairwise else {0: "Response"}
    bases = {p: i * (_BAND + _GAP) for i, p in enumerate(positions)}
    other_y = len(positions) * (_BAND + _GAP) + 0.1
    yt, yl = [], []
    for p in positions:
        b = bases[p]
        o = outcome(view.turn, p)
        col = PREFERRED if o == "preferred" else NOT_PREFERRED if o == "not preferred" else "#888"
        ax.axhspan(b, b + _BAND, color=col, alpha=0.10, lw=0)
        n = len(view.turn.responses[positions.index(p)].text)
        yt += [b, b + _BAND / 2, b + _BAND]
        yl += [f"{names[p]}\nstart", "middle", f"end ({n} chars)"]
        if o:
            ax.text(1.0, b + _BAND / 2, f" {o}", transform=ax.get_yaxis_transform(), va="center", fontsize=9,
                    color=col if o == "preferred" else "#a0602a", fontweight="bold" if o == "preferred" else None)
    yt.append(other_y)
    yl.append("not on the text")
    handles = []
    for src, marker, color, ms, off in (("gaze", "o", "#1f3b70", 16, 0.0), ("mouse", "+", "#c2410c", 30, 0.0)):
        on_t = []
        for p in positions:
            tp = view.points(p, src)
            if not len(tp):
                continue
            n = max(len(view.turn.responses[positions.index(p)].text), 1)
            f = np.clip(tp.char / n, 0, 1)
            h = ax.scatter((tp.t - t0) / 1000, bases[p] + f * _BAND + off, s=ms, marker=marker, c=color,
                           alpha=0.7, linewidths=1.0 if marker == "+" else 0, label=src)
            on_t.append(tp.t)
            if src not in [x.get_label() for x in handles]:
                handles.append(h)
        tb = view.stream(src)
        if tb is not None:
            t = _np(tb, "t")
            ok = np.isfinite(_np(tb, "x")) & (_np(tb, "x") >= 0)
            t = t[ok]
            if on_t:
                t = t[~np.isin(t, np.concatenate(on_t))]
            if len(t):
                jit = other_y + (0.12 if src == "mouse" else -0.12)
                h = ax.scatter((t - t0) / 1000, np.full(len(t), jit), s=ms * 0.6, marker=marker, c=color,
                               alpha=0.35, linewidths=1.0 if marker == "+" else 0, label=src)
                if src not in [x.get_label() for x in handles]:
                    handles.append(h)
    # the decision
    tr = view.turn
    dec_label = None
    if tr.t_decided is not None:
        ax.axvline((tr.t_decided - t0) / 1000, color="black", lw=2, ls="-")
        dec_label = "decision submitted"
        xdec = (tr.t_decided - t0) / 1000
    else:
        xdec = (t1 - t0) / 1000
        ax.axvline(xdec, color="black", lw=1.5, ls="--")
        dec_label = "last sample of the turn (the choice was submitted by then)"
    ev = view.stream("events")
    if ev is not None:
        e = ev.to_pandas()
        for typ, mk in (("choose", "v"), ("rate", "^"), ("submit", "s")):
            m = e["type"] == typ
            if m.any():
                handles.append(ax.scatter((e.loc[m, "t"] - t0) / 1000, np.full(int(m.sum()), -0.2), marker=mk,
                                          s=60, c="black", label=typ, clip_on=False))
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="black", lw=1.8, ls="-" if tr.t_decided is not None else "--",
                          label=dec_label))
    ax.set_yticks(yt, yl)
    ax.set_ylim(other_y + 0.35, -0.35)
    ax.set_xlim(0, max(xdec, (t1 - t0) / 1000) * 1.02 + 0.1)
    ax.set_xlabel("time since the turn's first sample (s)")
    ax.grid(axis="x", color="#ddd", lw=0.6)
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4, frameon=False, fontsize=9)
    fig.suptitle(turn_title(view), x=0.01, ha="left", fontsize=11)
    return fig
