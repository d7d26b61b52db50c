"""The response text as boxes on a page: reflowed from the text (IFLLM) or as recorded (our site).

A :class:`WordBoxes` holds one box per word (runs of non-space, the same words as
:func:`gazepref.datasets.text_mapping.text_units`) in px relative to the response's content box
(scroll included), so gaze positions in the same frame can be drawn over it.

* :func:`reflow` lays a text out greedily for a given width and a simple font metric (average
  character width and line height, line breaks kept). IFLLM never recorded its page geometry, so
  the width is estimated from the samples (:func:`estimate_width`); a sample's ``char_index`` is
  placed on the reflowed text with :func:`char_xy`.
* :func:`from_layout` takes the word boxes our site stored in the ``layout`` stream.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ...datasets.text_mapping import text_units

#: default font metric: 15 px DejaVu Sans (the font the words are drawn in), 1.5 line height
FONT_PX = 15.0
CHAR_W = 0.6  # em, for characters the font table lacks
LINE_H = 1.5
PAD_PX = 8.0
_ADV: dict[str, float] | None = None


def _advances() -> dict[str, float]:
    """Advance widths (em) of DejaVu Sans for Latin-1 characters."""
    global _ADV
    if _ADV is None:
        from matplotlib import font_manager, ft2font

        ft = ft2font.FT2Font(font_manager.findfont("DejaVu Sans"))
        ft.set_size(100, 72)
        adv = {}
        for code in [*range(32, 127), *range(160, 0x250)]:
            try:
                adv[chr(code)] = ft.load_char(code).linearHoriAdvance / 65536 / 100
            except Exception:  # noqa: BLE001 — a glyph the font lacks
                continue
        for ch in "\u2018\u2019\u201c\u201d\u2013\u2014\u2022\u2026":
            try:
                adv[ch] = ft.load_char(ord(ch)).linearHoriAdvance / 65536 / 100
            except Exception:  # noqa: BLE001
                pass
        _ADV = adv
    return _ADV


def text_width_em(s: str) -> float:
    adv = _advances()
    return sum(adv.get(c, CHAR_W) for c in s)


@dataclass
class WordBoxes:
    text: str
    char_start: np.ndarray  # int32
    char_end: np.ndarray  # int32
    x: np.ndarray  # float64 px, left, relative to the content box
    y: np.ndarray  # top
    w: np.ndarray
    h: np.ndarray
    width: float  # content width px
    height: float  # content height px
    font_px: float = FONT_PX
    reflowed: bool = True  # False: boxes as recorded by the site

    def __len__(self) -> int:
        return len(self.x)

    @property
    def words(self) -> list[str]:
        return [self.text[s:e] for s, e in zip(self.char_start.tolist(), self.char_end.tolist())]

    def word_of_char(self, char_index: np.ndarray) -> np.ndarray:
        """Box index per character offset (the word containing it, or the one before it for
        white space); -1 for offsets < 0 or past the text."""
        c = np.asarray(char_index, dtype=np.int64)
        if len(self) == 0:
            return np.full(len(c), -1, dtype=np.int64)
        k = np.searchsorted(self.char_start, c, side="right") - 1
        bad = (c < 0) | (c > len(self.text)) | (k < 0)
        return np.where(bad, -1, k)


def reflow(text: str, width_px: float = 700.0, font_px: float = FONT_PX, char_w: float = CHAR_W,
           line_h: float = LINE_H, pad_px: float = PAD_PX) -> WordBoxes:
    """Greedy line breaking of ``text`` into ``width_px`` (words never split unless longer than a
    line; explicit line breaks kept, blank lines as empty lines)."""
    u = text_units(text)
    cw = font_px * char_w
    lh = font_px * line_h
    n = u.n_words
    xs = np.zeros(n)
    ys = np.zeros(n)
    ws = np.array([text_width_em(text[a:b]) for a, b in zip(u.word_start.tolist(), u.word_end.tolist())],
                  dtype=np.float64) * font_px
    inner = max(width_px - 2 * pad_px, cw * 8)
    # line breaks in the white space before each word
    prev_end = np.r_[0, u.word_end[:-1]] if n else np.zeros(0, dtype=np.int64)
    x, line = 0.0, 0
    space = _advances()[" "] * font_px
    for i in range(n):
        gap = text[prev_end[i]:u.word_start[i]]
        nl = gap.count("\n")
        if nl and i > 0:
            line += min(nl, 2)
            x = 0.0
        elif i > 0:
            if x + space + ws[i] > inner:
                line += 1
                x = 0.0
            else:
                x += space
        xs[i] = x
        ys[i] = line * lh
        x += ws[i]
        if ws[i] > inner:  # an over-long word (URL): let it overflow its own line
            line += 1
            x = 0.0
            ys[i] = (line - 1) * lh
    n_lines = (int(ys.max() / lh) + 1) if n else 1
    height = n_lines * lh + 2 * pad_px
    return WordBoxes(text, u.word_start.astype(np.int32), u.word_end.astype(np.int32), xs + pad_px, ys + pad_px,
                     ws, np.full(n, lh), float(width_px), float(height), font_px, True)


def char_xy(boxes: WordBoxes, char_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position (centre of the character's cell) of each ``char_index`` on the boxes, and a mask
    of those that fall on the text."""
    c = np.asarray(char_index, dtype=np.int64)
    k = boxes.word_of_char(c)
    ok = k >= 0
    kk = np.maximum(k, 0)
    if len(boxes) == 0:
        return np.full(len(c), np.nan), np.full(len(c), np.nan), np.zeros(len(c), dtype=bool)
    start, end = boxes.char_start[kk], boxes.char_end[kk]
    nch = np.maximum(end - start, 1)
    frac = (np.clip(c - start, 0, nch - 1) + 0.5) / nch  # by character count within the word
    x = boxes.x[kk] + frac * boxes.w[kk]
    y = boxes.y[kk] + boxes.h[kk] / 2
    return np.where(ok, x, np.nan), np.where(ok, y, np.nan), ok


def estimate_width(rel_x: np.ndarray, default: float = 700.0) -> float:
    """Response box width from box-relative sample x positions (98th percentile, 320–1000 px)."""
    x = np.asarray(rel_x, dtype=np.float64)
    x = x[np.isfinite(x) & (x >= 0)]
    if len(x) < 20:
        return default
    return float(np.clip(np.percentile(x, 98) + 10, 320, 1000))


def from_layout(layout: pa.Table | pd.DataFrame, position: int, text: str, turn: int | None = None,
                at_t: float | None = None) -> WordBoxes | None:
    """Word boxes of response ``position`` from a ``layout`` stream (the latest snapshot at or
    before ``at_t``, else the last one; rows of ``turn`` when the stream has a turn column);
    None when the stream holds no word boxes for it."""
    lay = layout.to_pandas() if isinstance(layout, pa.Table) else pd.DataFrame(layout)
    if lay.empty:
        return None
    m = (lay["kind"] == "word") & (lay["target"].astype(str) == f"response:{position}")
    if turn is not None and "turn" in lay.columns:
        m &= lay["turn"].isna() | (lay["turn"] == turn)
    words = lay[m]
    if words.empty:
        return None
    snaps = np.sort(words["t"].unique())
    snap = snaps[-1]
    if at_t is not None and (snaps <= at_t).any():
        snap = snaps[snaps <= at_t][-1]
    w = words[words["t"] == snap].sort_values("index")
    x, y = w["x"].to_numpy(np.float64), w["y"].to_numpy(np.float64)
    ww, hh = w["w"].to_numpy(np.float64), w["h"].to_numpy(np.float64)
    el = lay[(lay["kind"] == "element") & (lay["target"].astype(str) == f"response:{position}")]
    if turn is not None and "turn" in el.columns:
        el = el[el["turn"].isna() | (el["turn"] == turn)]
    width = float(max(np.nanmax(x + ww) + PAD_PX, el["w"].max() if len(el) else 0))
    height = float(np.nanmax(y + hh) + PAD_PX)
    font = float(np.median(hh) / LINE_H) if len(hh) else FONT_PX
    return WordBoxes(text, w["char_start"].to_numpy(np.int32), w["char_end"].to_numpy(np.int32), x, y, ww, hh,
                     width, height, font, False)


_UNHINTED = None  # the class of _unhinted_text_class (matplotlib is imported only when drawing)


def _unhinted_text_class():
    """A :class:`matplotlib.text.Text` measured and drawn without font hinting, so each glyph
    advances as the font defines it, as :func:`reflow` laid the words out. Hinted (matplotlib's
    default) at the small sizes of a response box, lines ran up to ~4 % wider than their boxes (past
    the box's right edge) or ~6 % narrower, off the characters the samples are placed on."""
    global _UNHINTED
    if _UNHINTED is None:
        import matplotlib
        from matplotlib.text import Text

        class UnhintedText(Text):
            def draw(self, renderer):
                with matplotlib.rc_context({"text.hinting": "no_hinting"}):
                    return super().draw(renderer)

            def get_window_extent(self, renderer=None, dpi=None):
                with matplotlib.rc_context({"text.hinting": "no_hinting"}):
                    return super().get_window_extent(renderer, dpi)

        _UNHINTED = UnhintedText
    return _UNHINTED


def _line_text(ax, x: float, y: float, s: str, **kw):
    """``ax.text`` with an unhinted :class:`~matplotlib.text.Text` (see :func:`_unhinted_text_class`)."""
    t = _unhinted_text_class()(x, y, text=s, transform=ax.transData, **kw)
    t.set_clip_path(ax.patch)
    ax._add_text(t)
    return t


def draw_text(ax, boxes: WordBoxes, scale: float, color: str = "#1a1a1a", max_words: int = 6000) -> None:
    """Draw the words at their boxes. ``scale``: display px per content px (for the font size)."""
    from ._common import DPI

    size_pt = boxes.font_px * scale * 72.0 / DPI
    if size_pt < 2.0 or len(boxes) == 0:
        # too small to read: draw the word boxes as grey bars instead
        from matplotlib.collections import PolyCollection

        verts = [[(x, y + h * 0.25), (x + w, y + h * 0.25), (x + w, y + h * 0.75), (x, y + h * 0.75)]
                 for x, y, w, h in zip(boxes.x, boxes.y, boxes.w, boxes.h)]
        ax.add_collection(PolyCollection(verts, facecolors="#9a9a9a", edgecolors="none", zorder=3))
        return
    if boxes.reflowed:
        # one text artist per line (the reflow used the font's own advances and one space)
        words = boxes.words
        line_keys = np.round(boxes.y, 3)
        starts = np.flatnonzero(np.r_[True, line_keys[1:] != line_keys[:-1]])
        ends = np.r_[starts[1:], len(boxes)]
        for a, b in zip(starts.tolist(), ends.tolist()):
            _line_text(ax, boxes.x[a], boxes.y[a] + boxes.h[a] / 2, " ".join(words[a:b]), fontsize=size_pt,
                       color=color, va="center_baseline", ha="left", family="DejaVu Sans", zorder=3, clip_on=True)
        return
    # recorded boxes: the page's font is not the one drawn here, so a word DejaVu Sans sets wider
    # than its box is drawn smaller to fit it (it ran into the next word: "movementsleep")
    for i, word in enumerate(boxes.words[:max_words]):
        laid = text_width_em(word) * boxes.font_px
        fit = min(1.0, float(boxes.w[i]) / laid) if laid > 0 and boxes.w[i] > 0 else 1.0
        _line_text(ax, boxes.x[i], boxes.y[i] + boxes.h[i] / 2, word, fontsize=size_pt * fit, color=color,
                   va="center_baseline", ha="left", family="DejaVu Sans", zorder=3, clip_on=True,
                   fontweight="normal")
