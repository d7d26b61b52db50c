"""Shared figure helpers: exact pixel sizes, Agg canvas, saving, readable defaults."""
from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ... import UserError  # noqa: E402

DPI = 100
DEFAULT_SIZE = (1200, 800)

#: plot kinds of ``gazepref plot``
KINDS = ("heatmap", "scanpath", "mouse", "timeline", "attention", "features", "quality")

#: colour maps whose lightness is monotone (they survive greyscale printing)
SEQ_CMAP = "viridis"
HEAT_CMAP = "YlOrRd"
#: two outcome colours that differ in lightness too (dark blue / light orange), plus hatch/linestyle
PREFERRED = "#1b4f8a"
NOT_PREFERRED = "#f0a04b"

RC = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",
    "savefig.dpi": DPI,
}


def new_figure(size: tuple[int, int] = DEFAULT_SIZE) -> Figure:
    """A figure of exactly ``size`` pixels (at :data:`DPI`) on an Agg canvas."""
    w, h = (int(size[0]), int(size[1]))
    if w < 200 or h < 150 or w > 8000 or h > 8000:
        raise UserError(f"image size {w}x{h} px is out of range (200x150 .. 8000x8000)")
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def apply_style(ax) -> None:
    for k in ("top", "right"):
        ax.spines[k].set_visible(False)


def plain_text(fig: Figure) -> Figure:
    """Draw every text of ``fig`` literally: no mathtext (``$...$``), no TeX. Plots show
    participants' prompts and responses, and ``what about $\\frac{a}{$`` must not be parsed
    (matplotlib would fail to draw it). Tick labels and axis offsets keep their formatters'
    mathtext. Called by :func:`save` and :func:`fig_to_png`."""
    from matplotlib.text import Text

    formatted = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            formatted.add(id(axis.offsetText))
            for tick in [*axis.majorTicks, *axis.minorTicks]:
                formatted.update((id(tick.label1), id(tick.label2)))
    for text in fig.findobj(Text):
        if id(text) not in formatted:
            text.set_parse_math(False)
            text.set_usetex(False)
    return fig


def check_out(path: str | os.PathLike) -> tuple[Path, str]:
    """``(path, format)`` of a figure's ``--out``: a one-line error for a suffix other than .png /
    .svg or a folder that does not exist (checked before any drawing too)."""
    p = Path(path)
    fmt = p.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise UserError(f"--out must end in .png or .svg, not {p.name!r}")
    if p.parent and not p.parent.exists():
        raise UserError(f"no such folder for --out: {p.parent}")
    return p, fmt


def save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG or SVG (by the file suffix), exactly its pixel size."""
    p, fmt = check_out(path)
    with matplotlib.rc_context(RC):
        plain_text(fig).savefig(p, format=fmt, dpi=DPI)
    return p


def fig_to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        plain_text(fig).savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def parse_size(s: str | None, default: tuple[int, int] = DEFAULT_SIZE) -> tuple[int, int]:
    if not s:
        return default
    try:
        w, h = s.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise UserError(f"--size must look like 1200x800, not {s!r}") from None


def fit_text(text, max_px: float, renderer, min_fontsize: float = 6.0, overflow: str = "wrap") -> None:
    """Make the artist ``text`` at most ``max_px`` display px wide: shrink its font down to
    ``min_fontsize``, then wrap it at spaces (``overflow='wrap'``) or shorten its end with "…"
    (``'shorten'``, for one-line headings)."""
    import textwrap

    def width() -> float:
        return text.get_window_extent(renderer).width

    while width() > max_px and text.get_fontsize() > min_fontsize:
        text.set_fontsize(max(min_fontsize, text.get_fontsize() - 0.5))
    s = text.get_text()
    n = len(s)
    while width() > max_px and n > 8:
        n = int(n * 0.9)
        text.set_text("\n".join(textwrap.wrap(s, n)) if overflow == "wrap"
                      else textwrap.shorten(s, n, placeholder=" …"))


class NoData(UserError):
    """An aggregate view with nothing to draw (e.g. ``attention`` over pointwise turns only): the
    ``plot`` command prints the one line and writes no file (exit 2); the report puts the line in
    place of the picture, the dashboard draws it as a message."""


def no_data(fig: Figure, message: str) -> Figure:
    ax = fig.add_subplot(111)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#444")
    return fig


def styled(fn):
    """Run a plotting function under the package's readable rc defaults."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with matplotlib.rc_context(RC):
            return fn(*args, **kwargs)

    return wrapped
