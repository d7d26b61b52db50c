"""Data quality per participant: gaze sample rate, gaps, calibration accuracy, face-found ratio."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._common import DEFAULT_SIZE, NoData, fit_text, new_figure, styled
from .summary import Summary

#: column → (title, reference line, reference label, good direction)
PANELS = {
    "sample_rate_hz": ("gaze sample rate (Hz)", 5.0, "5 Hz", "high"),
    "gap_share": ("time in gaps > 250 ms (%)", 20.0, "20 %", "low"),
    "calibration": ("calibration accuracy", None, None, None),
    "face_ratio": ("face found (% of samples)", 90.0, "90 %", "high"),
}

#: row labels longer than this show their first :data:`LABEL_CHARS` characters and "…" (the
#: dashboard's study page shows a pseudonym's first 12 characters too)
MAX_LABEL_CHARS = 16
LABEL_CHARS = 12


def short_label(s: str) -> str:
    return s if len(s) <= MAX_LABEL_CHARS else s[:LABEL_CHARS] + "…"


def quality_flags(row) -> list[str]:
    out = []
    if np.isfinite(row.get("gap_share", np.nan)) and row["gap_share"] > 0.2:
        out.append("gaps")
    if np.isfinite(row.get("face_ratio", np.nan)) and row["face_ratio"] < 0.9:
        out.append("face lost")
    if np.isfinite(row.get("sample_rate_hz", np.nan)) and row["sample_rate_hz"] < 5:
        out.append("low rate")
    cal = row.get("calibration")
    if cal is not None and np.isfinite(cal):
        if row.get("calibration_unit") == "%" and cal < 70:
            out.append("calibration")
        if row.get("calibration_unit") == "px" and cal > 200:
            out.append("calibration")
    if row.get("gaze_samples", 0) == 0:
        out.append("no gaze")
    return out


@styled
def plot_quality(summary: Summary, size: tuple[int, int] = DEFAULT_SIZE, max_rows: int = 60) -> Figure:
    fig = new_figure(size)
    p = summary.participants
    if p.empty:
        raise NoData("quality: no participants in the data; nothing to draw")
    p = p.sort_values("participant_id").reset_index(drop=True)
    more = ""
    if len(p) > max_rows:
        more = f" (first {max_rows} of {len(p)} participants)"
        p = p.iloc[:max_rows]
    n = len(p)
    W, H = fig.bbox.width, fig.bbox.height
    r = fig.canvas.get_renderer()
    y = np.arange(n)
    row_px = (H - 64 - 50) / (n + 0.7)
    fs = float(np.clip(row_px * 0.62 * 72 / 100, 4, 9))
    # a unit and a threshold only where some participant has a calibration value
    has_cal = bool(np.isfinite(p["calibration"].astype(float)).any())
    unit = p["calibration_unit"].dropna().iloc[0] if has_cal and p["calibration_unit"].notna().any() else ""
    flags = [quality_flags(row) for row in p.to_dict("records")]
    labels = [("⚠ " if f else "") + short_label(str(s)) for f, s in zip(flags, p["participant_id"])]
    # the heading first: its (possibly wrapped) height sets the panels' top
    head = fig.suptitle(f"Data quality per participant{more} — dark hatched bars miss the dashed threshold; "
                        "⚠ = participant has a flag", x=8 / W, y=1 - 8 / H, ha="left", va="top", fontsize=11)
    fit_text(head, W - 16, r, min_fontsize=7)
    head_px = head.get_window_extent(r).height
    # the row labels' width sets the left margin (measured, so long pseudonyms are not cut off)
    probe = fig.text(0, 0, "", fontsize=fs)
    label_px = 0.0
    for lab in labels:
        probe.set_text(lab)
        label_px = max(label_px, probe.get_window_extent(r).width)
    probe.remove()
    left_px = min(label_px + 14, 0.4 * W)
    top_px = 8 + head_px + 34  # heading, then room for the panel titles
    gap_px = 34  # between panels: one panel's last x tick label and the next one's first
    panel_px = (W - left_px - 14 - 3 * gap_px) / 4
    axs = fig.subplots(1, 4, sharey=True, gridspec_kw=dict(left=left_px / W, right=1 - 14 / W, bottom=50 / H,
                                                          top=1 - top_px / H, wspace=gap_px / panel_px))
    titles = []
    for ax, (col, (title, ref, reflabel, good)) in zip(axs, PANELS.items()):
        v = p[col].astype(float).to_numpy()
        if col in ("gap_share", "face_ratio"):
            v = v * 100
        if col == "calibration":
            title = f"calibration accuracy ({unit})" if unit else title
            ref = 70.0 if unit == "%" else 200.0 if unit == "px" else None
            reflabel = "min 70 %" if unit == "%" else ("200 px" if ref else None)
        shown = np.nan_to_num(v, nan=0)
        bad = np.zeros(n, dtype=bool)
        if ref is not None:
            worse_low = not (col == "gap_share" or (col == "calibration" and unit == "px"))
            with np.errstate(invalid="ignore"):
                bad = (v < ref) if worse_low else (v > ref)
            bad &= np.isfinite(v)
        for yi, si, b in zip(y, shown, bad):
            ax.barh(yi, si, color="#b2182b" if b else "#9fb6d6", edgecolor="black" if b else "none",
                    hatch="///" if b else None, height=0.7, lw=0.6)
        if (col == "calibration" and unit == "%") or col in ("gap_share", "face_ratio"):
            ax.set_xlim(0, 100)
            ax.set_xticks([0, 50, 100])
        else:  # open-ended: room past the threshold and the longest bar
            ax.set_xlim(0, 1.12 * max(ref or 0.0, float(np.nanmax(shown)) if n else 0.0, 1e-9))
            ax.xaxis.set_major_locator(MaxNLocator(3))
        if col == "calibration" and not has_cal:  # one line for the panel, no unit, no threshold
            ax.set_xticks([])
            ax.text(0.5, 0.5, "no calibration data", transform=ax.transAxes, ha="center", va="center",
                    fontsize=9, color="#555")
        else:
            for yi, vi in zip(y, v):
                if not np.isfinite(vi):
                    ax.text(0, yi, " n/a", va="center", fontsize=fs, color="#777")
        titles.append(ax.set_title(title, loc="left", fontsize=10))
        ax.grid(axis="x", color="#e3e3e3", lw=0.6)
        if ref is not None:
            ax.axvline(ref, color="black", ls="--", lw=1)
            t = ax.text(ref, -0.9, f" {reflabel}", fontsize=8, va="bottom", clip_on=False)
            if t.get_window_extent(r).x1 > ax.get_window_extent(r).x1:  # no room right of the line
                t.set_text(f"{reflabel} ")
                t.set_ha("right")
    axs[0].set_yticks(y, labels, fontsize=fs)
    axs[0].set_ylim(n - 0.5, -1.2)
    for ax, title in zip(axs, titles):  # titles wider than their panel shrink, then wrap
        fit_text(title, ax.get_window_extent(r).width, r, min_fontsize=7)
        ax.tick_params(axis="x", labelsize=9)
    return fig
