"""Aggregate attention: where in the responses gaze dwelt (by sentence position), and how far
people read, for preferred vs not preferred responses."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ._common import DEFAULT_SIZE, NOT_PREFERRED, PREFERRED, NoData, new_figure, styled
from .summary import N_BINS, N_SENT, Summary

_STYLE = {"preferred": dict(color=PREFERRED, ls="-", marker="o", hatch=None),
          "not preferred": dict(color=NOT_PREFERRED, ls="--", marker="s", hatch="//")}


def _mean_se(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.sum(np.isfinite(v), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(np.isfinite(v), v, 0).sum(axis=0)
        m = np.where(n > 0, s / np.maximum(n, 1), np.nan)
        dev = np.where(np.isfinite(v), (v - m) ** 2, 0).sum(axis=0)
        sd = np.sqrt(dev / np.maximum(n - 1, 1))
        se = np.where(n > 1, sd / np.sqrt(np.maximum(n, 1)), 0.0)
    return m, se


@styled
def plot_attention(summary: Summary, size: tuple[int, int] = DEFAULT_SIZE) -> Figure:
    fig = new_figure(size)
    r = summary.responses
    if r.empty or "outcome" not in r:
        raise NoData("attention: no responses in the data; nothing to draw")
    lab = r[r["outcome"].notna() & (r["g_text_ms"] > 0)]
    if lab.empty:
        raise NoData("attention: no labelled pairwise responses with gaze on the text (it compares the preferred "
                     "and the not preferred answer of pairwise turns); nothing to draw")
    axs = fig.subplots(1, 3, gridspec_kw=dict(left=0.06, right=0.98, bottom=68 / fig.bbox.height,
                                                    top=0.86, wspace=0.28))  # two-line x labels: px
    rel_cols = [f"g_sentpos_{i}" for i in range(N_BINS)]
    abs_cols = [f"g_sent_{i}" for i in range(N_SENT)]
    xs_rel = (np.arange(N_BINS) + 0.5) / N_BINS * 100
    for o in ("preferred", "not preferred"):
        d = lab[lab["outcome"] == o]
        st = _STYLE[o]
        if d.empty:
            continue
        v = d[rel_cols].to_numpy(float) / 1000
        m, se = _mean_se(v)
        axs[0].errorbar(xs_rel, m, yerr=se, color=st["color"], ls=st["ls"], marker=st["marker"], capsize=3,
                        label=f"{o} (n={len(d)})")
        # per sentence index, only responses long enough to have that sentence
        va = d[abs_cols[:-1]].to_numpy(float) / 1000  # the last bin pools the rest: not drawn
        ns = d["n_sentences"].to_numpy()
        va[np.arange(N_SENT - 1)[None, :] >= ns[:, None]] = np.nan
        m, se = _mean_se(va)
        axs[1].errorbar(np.arange(1, N_SENT), m, yerr=se, color=st["color"], ls=st["ls"], marker=st["marker"],
                        capsize=3, label=o)
        # how far people read: share of responses whose gaze reached each depth
        dep = np.clip(d["g_depth"].fillna(0).to_numpy(float), 0, 1)
        grid = np.linspace(0, 1, 51)
        axs[2].plot(grid * 100, [(dep >= g).mean() * 100 for g in grid], color=st["color"], ls=st["ls"], lw=2,
                    label=f"{o} (median {np.median(dep):.0%})")
    axs[0].set_xlabel("sentence position in the response\n(% of its sentences)")
    axs[0].set_ylabel("mean gaze dwell per response (s)")
    axs[0].set_title("dwell by relative sentence position", loc="left")
    axs[0].set_xlim(0, 100)
    axs[0].set_ylim(bottom=0)
    axs[1].set_xlabel("sentence number")
    axs[1].set_ylabel("mean gaze dwell on the sentence (s)")
    axs[1].set_title("dwell by sentence (responses that have it)", loc="left")
    axs[1].set_ylim(bottom=0)
    axs[1].set_xticks(range(1, N_SENT, 2))
    axs[2].set_xlabel("depth in the response\n(% of characters)")
    axs[2].set_ylabel("responses read at least that far (%)")
    axs[2].set_title("how far gaze reached", loc="left")
    axs[2].set_ylim(0, 102)
    for ax in axs:
        ax.grid(color="#e3e3e3", lw=0.6)
        ax.legend(frameon=False, fontsize=9)
    n_turns = lab[["task_id", "turn"]].drop_duplicates().shape[0]
    n_part = lab["participant_id"].nunique()
    fig.suptitle(f"Attention in labelled pairwise turns: preferred vs not preferred response "
                 f"({n_turns} turns, {n_part} participants; error bars ± 1 SE)", x=0.01, ha="left", fontsize=12)
    return fig
