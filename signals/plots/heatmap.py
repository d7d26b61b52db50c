"""Gaze density over the response text as it was on screen (pairwise turns side by side)."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ... import UserError
from ._common import DEFAULT_SIZE, HEAT_CMAP, fit_text, new_figure, styled
from ._data import TurnView, open_data, require_gaze, response_label, turn_name
from .text_layout import WordBoxes, draw_text

CELL_PX = 4.0


@dataclass
class TextPanel:
    ax: object
    boxes: WordBoxes
    scale: float  # display px per content px
    position: int
    fig: Figure = None
    left_px: float = 0.0
    top_px: float = 0.0  # top of the panel header, figure px from the bottom
    width_px: float = 0.0

    def note(self, text: str) -> None:
        """A second header line under the response label (statistics)."""
        W, H = self.fig.bbox.width, self.fig.bbox.height
        t = self.fig.text(self.left_px / W, (self.top_px - 20) / H, text, fontsize=9, color="#333",
                          ha="left", va="top")
        fit_text(t, self.width_px, self.fig.canvas.get_renderer(), min_fontsize=7, overflow="shorten")


def turn_title(view: TurnView) -> str:
    t = view.turn
    prompt = " ".join(t.prompt.split())
    prompt = textwrap.shorten(prompt, 110, placeholder=" …") if prompt else "(no prompt text)"
    return f"{view.task_id} · turn {t.index + 1} ({t.kind}) · “{prompt}”"


def text_panels(fig: Figure, view: TurnView, title: str, top_px: int = 64, bottom_px: int = 20,
                side_px: int = 16, gap_px: int = 24, right_px: int = 0, max_scale: float = 1.6,
                fit: bool = True, min_height_px: int = 320) -> list[TextPanel]:
    """One axes per response, laid out side by side; each maps content px to display px at one
    uniform scale (text and gaze positions keep their proportions). With ``fit`` the figure's
    height shrinks to the text (never below ``min_height_px``): its size's height is a maximum."""
    W, H = fig.bbox.width, fig.bbox.height
    n = len(view.positions)
    head = 42  # panel header: label + statistics
    pw = (W - 2 * side_px - right_px - gap_px * (n - 1)) / n
    ph = H - top_px - bottom_px - head
    boxes = [view.boxes(p) for p in view.positions]
    # one scale for all panels, so side-by-side responses are comparable
    scale = min(max_scale, *[min((pw - 4) / b.width, (ph - 4) / max(b.height, 1.0)) for b in boxes])
    if fit:
        # the canvas fitted to the content: a wide, short text leaves no empty half below it
        need = max(b.height for b in boxes) * scale + 12
        if need < ph:
            H = max(float(min_height_px), H - (ph - need))
            fig.set_size_inches(W / fig.dpi, H / fig.dpi)
            ph = H - top_px - bottom_px - head
    heading = fig.suptitle(title, x=side_px / W, y=1 - 8 / H, ha="left", va="top", fontsize=11)
    fit_text(heading, W - 2 * side_px, fig.canvas.get_renderer(), min_fontsize=9, overflow="shorten")
    out = []
    for i, (p, b) in enumerate(zip(view.positions, boxes)):
        left = side_px + i * (pw + gap_px)
        ax = fig.add_axes([left / W, bottom_px / H, pw / W, ph / H])
        ax.set_xlim(0, pw / scale)
        ax.set_ylim(ph / scale, 0)
        ax.set_axis_off()
        ax.add_patch(Rectangle((0, 0), b.width, b.height, facecolor="white", edgecolor="#888", lw=0.8, zorder=0,
                               clip_on=False))
        label = response_label(view.turn, p)
        top = bottom_px + ph + head
        t = fig.text(left / W, top / H, label, fontsize=11, ha="left", va="top",
                     fontweight="bold" if "PREFERRED" in label else "normal")
        fit_text(t, pw, fig.canvas.get_renderer(), min_fontsize=8, overflow="shorten")
        out.append(TextPanel(ax, b, scale, p, fig, left, top, pw))
    fig.patch.set_facecolor("#f4f4f4")
    return out


def footnote(fig: Figure, panels: list[TextPanel]) -> None:
    if panels and panels[0].boxes.reflowed:
        msg = "text reflowed at the estimated box width; samples placed by char_index"
    else:
        msg = "word boxes as recorded by the site (layout stream)"
    fig.text(0.995, 0.005, msg, ha="right", va="bottom", fontsize=8, color="#666")


def density(boxes: WordBoxes, x: np.ndarray, y: np.ndarray, w: np.ndarray,
            sigma_px: tuple[float, float] = (18.0, 12.0)) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Gaussian-smoothed weighted histogram over the content box: (grid, extent)."""
    from scipy.ndimage import gaussian_filter

    nx = max(1, int(np.ceil(boxes.width / CELL_PX)))
    ny = max(1, int(np.ceil(boxes.height / CELL_PX)))
    grid = np.zeros((ny, nx))
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.any():
        ix = np.clip((x[ok] / CELL_PX).astype(int), 0, nx - 1)
        iy = np.clip((y[ok] / CELL_PX).astype(int), 0, ny - 1)
        np.add.at(grid, (iy, ix), w[ok])
        grid = gaussian_filter(grid, (sigma_px[1] / CELL_PX, sigma_px[0] / CELL_PX), mode="constant")
    return grid, (0.0, nx * CELL_PX, ny * CELL_PX, 0.0)


GAMMA = 0.6  # colour ∝ density^0.6: weaker spots stay visible beside one strong one


def heat_rgba(grid: np.ndarray, vmax: float, cmap: str = HEAT_CMAP) -> np.ndarray:
    from matplotlib import colormaps

    z = np.clip(grid / vmax, 0, 1) ** GAMMA if vmax > 0 else np.zeros_like(grid)
    rgba = colormaps[cmap](z)
    rgba[..., 3] = np.clip(z * 1.6, 0, 0.85)  # faint where little was looked at; text stays readable
    return rgba


@styled
def plot_heatmap(data, participant: str | None = None, task: str | None = None, turn: int | None = None,
                 size: tuple[int, int] = DEFAULT_SIZE, source: str = "gaze", show_text: bool = True,
                 view: TurnView | None = None, fit: bool = True) -> Figure:
    """Gaze (or ``source='mouse'``) density over each response of a turn; with ``fit`` the
    figure's height shrinks to the text (``size`` is then the largest size)."""
    rec = open_data(data) if view is None else view.rec
    view = view or TurnView.load(rec, participant, task, turn)
    if source == "gaze":
        require_gaze(view)
    elif view.stream(source) is None:
        other = "gaze" if source == "mouse" and view.stream("gaze") is not None else None
        raise UserError(f"{turn_name(view.turn)} of task {view.task_id!r} has no {source} samples"
                        + (f" (it has {other} samples: --source {other})" if other else ""))
    fig = new_figure(size)
    panels = text_panels(fig, view, turn_title(view), right_px=116, fit=fit)
    grids, pts = [], []
    for pn in panels:
        tp = view.points(pn.position, source)
        g, ext = density(pn.boxes, tp.x, tp.y, tp.weight / 1000.0)
        grids.append((g, ext))
        pts.append(tp)
    vmax = max((g.max() for g, _ in grids), default=0.0)
    for pn, (g, ext), tp in zip(panels, grids, pts):
        pn.ax.imshow(heat_rgba(g, vmax), extent=ext, interpolation="bilinear", zorder=1, aspect="auto")
        if show_text:
            draw_text(pn.ax, pn.boxes, pn.scale)
        dwell = float(tp.weight.sum()) / 1000.0
        n_chars = len(pn.boxes.text)
        # (IFLLM's caret after the last character is char_index == len(text): still the end of the text)
        reach = min((float(tp.char.max()) + 1) / n_chars, 1.0) if len(tp) and n_chars else 0.0
        pn.note(f"{source} on text {dwell:.1f} s · {len(tp)} samples · furthest character at {reach:.0%}")
    footnote(fig, panels)
    # colour bar
    W = fig.bbox.width
    cax = fig.add_axes([(W - 104) / W, 0.15, 14 / W, 0.6])
    from matplotlib.cm import ScalarMappable

    from matplotlib.colors import PowerNorm

    sm = ScalarMappable(norm=PowerNorm(GAMMA, 0, 1), cmap=HEAT_CMAP)
    cb = fig.colorbar(sm, cax=cax)
    cb.set_ticks([0, 0.05, 0.2, 0.5, 1.0])
    # the scale is not linear: say so where it is read
    cb.set_label(f"relative {source} density (max = 1)\npower scale: colour ∝ density^{GAMMA:g}", fontsize=9,
                 labelpad=4)
    return fig
