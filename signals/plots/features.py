"""Distributions of per-response behaviour by outcome (preferred / not preferred; pointwise:
better / worse than the previous answer). The p-values compare the two responses of each pairwise
turn as pairs (Wilcoxon signed-rank: one person read both at once); pointwise answers rated
better or worse come from different turns (Mann–Whitney)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._common import DEFAULT_SIZE, NOT_PREFERRED, PREFERRED, NoData, new_figure, styled
from .summary import Summary

#: column → (label, transform)
FEATURES = {
    "g_text_ms": ("gaze dwell on the text (s)", lambda v: v / 1000),
    "g_depth": ("gaze depth (share of characters)", lambda v: np.clip(v, 0, 1)),
    "g_visits": ("gaze visits to the response", lambda v: v),
    "g_first_entry_ms": ("time to first gaze on it (s)", lambda v: v / 1000),
    "m_text_ms": ("pointer over the text (s)", lambda v: v / 1000),
    "n_chars": ("response length (characters)", lambda v: v),
}


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann–Whitney U test, normal approximation with tie correction (no scipy.stats
    import: it costs seconds)."""
    from math import erfc, sqrt

    a, b = np.asarray(a, float), np.asarray(b, float)
    n1, n2 = len(a), len(b)
    allv = np.concatenate([a, b])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    # average ranks of ties
    edges = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1], True])
    for lo, hi in zip(edges[:-1], edges[1:]):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2.0
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    t = np.diff(edges).astype(float)
    var = n1 * n2 / 12.0 * ((n + 1) - (t ** 3 - t).sum() / (n * (n - 1)))
    if var <= 0:
        return float("nan")
    z = (abs(u1 - n1 * n2 / 2.0) - 0.5) / sqrt(var)
    return float(erfc(max(z, 0.0) / sqrt(2.0)))


def wilcoxon_signed_rank_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank test of paired differences ``d`` (zero differences dropped,
    Wilcoxon's way), normal approximation with tie and continuity correction; NaN under 5 pairs."""
    from math import erfc, sqrt

    d = np.asarray(d, float)
    d = d[np.isfinite(d) & (d != 0)]
    n = len(d)
    if n < 5:
        return float("nan")
    a = np.abs(d)
    order = np.argsort(a, kind="mergesort")
    sv = a[order]
    ranks = np.empty(n)
    edges = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1], True])
    for lo, hi in zip(edges[:-1], edges[1:]):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2.0
    w_plus = ranks[d > 0].sum()
    t = np.diff(edges).astype(float)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - (t ** 3 - t).sum() / 48.0
    if var <= 0:
        return float("nan")
    z = (abs(w_plus - n * (n + 1) / 4.0) - 0.5) / sqrt(var)
    return float(erfc(max(z, 0.0) / sqrt(2.0)))


def paired_differences(groups: list[pd.DataFrame], col: str, fn) -> np.ndarray:
    """Per pairwise turn, preferred minus not preferred of ``col`` (after ``fn``): the two responses
    of a turn were seen by the same person at the same time, so they are compared as pairs."""
    key = ["task_id", "turn"]
    if not all(set(key) <= set(g.columns) and col in g for g in groups):
        return np.zeros(0)
    a, b = (g[key + [col]].drop_duplicates(key).set_index(key)[col].astype(float) for g in groups)
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    return fn(both["a"].to_numpy()) - fn(both["b"].to_numpy())


def _outcome_groups(r: pd.DataFrame) -> tuple[list[str], list[pd.DataFrame]]:
    pw = r[r["outcome"].notna()] if "outcome" in r else r.iloc[0:0]
    if len(pw):
        return ["preferred", "not preferred"], [pw[pw["outcome"] == "preferred"], pw[pw["outcome"] == "not preferred"]]
    pt = r[r["label_better_than_previous"].notna()] if "label_better_than_previous" in r else r.iloc[0:0]
    if len(pt):
        b = pt["label_better_than_previous"].astype(bool)
        return ["better than previous", "worse than previous"], [pt[b], pt[~b]]
    return [], []


@styled
def plot_features(summary: Summary, size: tuple[int, int] = DEFAULT_SIZE, features: dict | None = None) -> Figure:
    fig = new_figure(size)
    r = summary.responses
    if r.empty:
        raise NoData("features: no responses in the data; nothing to draw")
    names, groups = _outcome_groups(r)
    if not names:
        raise NoData("features: no labelled responses (pairwise choice or better/worse) in the data; nothing to draw")
    feats = features or FEATURES
    n = len(feats)
    ncol = 3
    nrow = int(np.ceil(n / ncol))
    H = fig.bbox.height
    # room above the panels for the three-line heading and the panels' two-line titles (px)
    axs = np.atleast_1d(fig.subplots(nrow, ncol, gridspec_kw=dict(left=0.06, right=0.98, bottom=0.08,
                                                                   top=1 - 105 / H,
                                                                   wspace=0.3, hspace=0.45))).ravel()
    colors = [PREFERRED, NOT_PREFERRED]
    paired = names[0] == "preferred"  # pairwise: the two responses of each turn are a pair
    for ax, (col, (label, fn)) in zip(axs, feats.items()):
        data = [fn(g[col].astype(float).to_numpy()) if col in g else np.zeros(0) for g in groups]
        data = [d[np.isfinite(d)] for d in data]
        pos = [1, 2]
        ok = [len(d) > 0 for d in data]
        if any(ok):
            bp = ax.boxplot([d if len(d) else [np.nan] for d in data], positions=pos, widths=0.55,
                            patch_artist=True, showfliers=False, medianprops=dict(color="black", lw=2.0),
                            zorder=3)
            for patch, c, h in zip(bp["boxes"], colors, (None, "//")):
                patch.set_facecolor(c)
                patch.set_alpha(0.55)
                if h:
                    patch.set_hatch(h)
            rng = np.random.default_rng(0)
            for p, d, c in zip(pos, data, colors):
                if len(d):
                    ax.scatter(p + rng.uniform(-0.3, 0.3, len(d)), d, s=5, color=c,
                               alpha=0.5 if len(d) < 100 else 0.22, linewidths=0, zorder=1)
            if paired:  # both responses of a turn: paired
                diff = paired_differences(groups, col, fn)
                pval = wilcoxon_signed_rank_p(diff)
                if np.isfinite(pval):
                    label = f"{label}\np = {pval:.2g} ({np.sum(np.isfinite(diff) & (diff != 0))} pairs)"
            elif all(ok) and len(data[0]) > 2 and len(data[1]) > 2:
                pval = mann_whitney_p(data[0], data[1])
                if np.isfinite(pval):
                    label = f"{label}\np = {pval:.2g}"
            both = np.concatenate([d for d in data if len(d)])
            hi = float(np.percentile(both, 98)) if len(both) else 1.0
            if col != "g_depth" and len(both) and both.max() > hi * 1.3 and hi > 0:
                ax.set_ylim(min(0.0, float(both.min())), hi * 1.15)  # long tails: clip the axis
                ax.text(0.99, 0.99, "axis cut at the 98th percentile", transform=ax.transAxes, ha="right",
                        va="top", fontsize=7, color="#666")
        ax.set_xticks(pos, [f"{nm}\n(n={len(d)})" for nm, d in zip(names, data)], fontsize=9)
        ax.set_title(label, loc="left", fontsize=10)
        ax.grid(axis="y", color="#e3e3e3", lw=0.6)
    for ax in axs[n:]:
        ax.axis("off")
    # three short lines: as one line the heading ran past the right edge of the default canvas
    fig.suptitle("Per-response behaviour by outcome\nbox: quartiles, line: median, whiskers: 1.5 IQR, "
                 "dots: responses\n" + ("p: Wilcoxon signed-rank over the turns' response pairs" if paired
                                        else "p: Mann–Whitney (different turns, unpaired)"),
                 x=0.01, y=1 - 6 / H, ha="left", va="top", fontsize=11)
    return fig
