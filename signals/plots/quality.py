"""Data quality per participant: gaze sample rate, gaps, calibration accuracy, face-found ratio."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ._common import DEFAULT_SIZE, new_figure, no_data, styled
from .summary import Summary

#: column → (title, reference line, reference label, good direction)
PANELS = {
    "sample_rate_hz": ("gaze sample rate (Hz)", 5.0, "5 Hz", "high"),
    "gap_share": ("time in gaps > 250 ms (%)", 20.0, "20 %", "low"),
    "calibration": ("calibration accuracy", None, None, None),
    "face_ratio": ("face found (% of gaze samples)", 90.0, "90 %", "high"),
}


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
        return no_data(fig, "no participants in the data")
    p = p.sort_values("participant_id").reset_index(drop=True)
    more = ""
    if len(p) > max_rows:
        more = f" (first {max_rows} of {len(p)} participants)"
        p = p.iloc[:max_rows]
    n = len(p)
    H = fig.bbox.height
    top, bottom = 1 - 64 / H, 50 / H
    axs = fig.subplots(1, 4, sharey=True, gridspec_kw=dict(left=0.17, right=0.98, bottom=bottom, top=top, wspace=0.12))
    y = np.arange(n)
    labels = [str(s) for s in p["participant_id"]]
    row_px = (top - bottom) * H / (n + 0.7)
    fs = float(np.clip(row_px * 0.62 * 72 / 100, 4, 9))
    unit = p["calibration_unit"].dropna().iloc[0] if p["calibration_unit"].notna().any() else ""
    flags = [quality_flags(row) for row in p.to_dict("records")]
    labels = [("⚠ " if f else "") + lab for f, lab in zip(flags, labels)]
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
        if col == "calibration" and unit == "%":
            ax.set_xlim(0, 100)
        for yi, vi in zip(y, v):
            if not np.isfinite(vi):
                ax.text(0, yi, " n/a", va="center", fontsize=fs, color="#777")
        if ref is not None:
            ax.axvline(ref, color="black", ls="--", lw=1)
            ax.text(ref, -0.9, f" {reflabel}", fontsize=8, va="bottom")
        ax.set_title(title, loc="left", fontsize=10)
        ax.grid(axis="x", color="#e3e3e3", lw=0.6)
        if col in ("gap_share", "face_ratio"):
            ax.set_xlim(0, 100)
    axs[0].set_yticks(y, labels, fontsize=fs)
    axs[0].set_ylim(n - 0.5, -1.2)
    fig.suptitle(f"Data quality per participant{more} — dark hatched bars miss the dashed threshold; "
                 "⚠ = participant has a flag",
                 x=0.01, y=1 - 10 / H, ha="left", va="top", fontsize=11)
    return fig
