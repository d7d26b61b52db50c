"""The heatmap's hottest region lies over the words the synthetic fixations were put on, for the
IFLLM form (char_index, reflowed text) and for our site's form (recorded word boxes)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.image import imread

from gazepref.signals.plots import fig_to_png
from gazepref.signals.plots._data import TurnView
from gazepref.signals.plots.heatmap import plot_heatmap
from gazepref.signals.plots.synthetic import TEXT_L, TEXT_R, ifllm_like, site_like, word_span
from gazepref.signals.plots.text_layout import char_xy, reflow

SIZE = (1000, 640)


def _render(rec, **kw):
    fig = plot_heatmap(rec, size=SIZE, show_text=False, **kw)
    img = imread(io.BytesIO(fig_to_png(fig)))[..., :3]
    return fig, img


def _word_rect_px(fig, panel: int, boxes, word_index: int):
    """Pixel rectangle (col0, row0, col1, row1) of a word box in the PNG."""
    ax = fig.axes[panel]
    (x0, y0), (x1, y1) = ax.transData.transform([(boxes.x[word_index], boxes.y[word_index]),
                                                 (boxes.x[word_index] + boxes.w[word_index],
                                                  boxes.y[word_index] + boxes.h[word_index])])
    H = fig.bbox.height
    return min(x0, x1), H - max(y0, y1), max(x0, x1), H - min(y0, y1)


def _heat(img):
    # YlOrRd over white: heat darkens the blue channel first; no text drawn
    return 1.0 - img[..., 2]


def _hottest_in_panel(fig, img, panel):
    """Centre (col, row) of the hottest region of a panel: the pixels within 5 % of its maximum
    heat (the colour saturates at the top, so the single hottest pixel is not well defined)."""
    ax = fig.axes[panel]
    bb = ax.get_window_extent()
    H = img.shape[0]
    r0, r1 = int(H - bb.y1), int(H - bb.y0)
    c0, c1 = int(bb.x0), int(bb.x1)
    sub = _heat(img)[r0:r1, c0:c1]
    rows, cols = np.nonzero(sub >= sub.max() * 0.95)
    return int(round(cols.mean())) + c0, int(round(rows.mean())) + r0


@pytest.mark.parametrize("make", [ifllm_like, site_like], ids=["ifllm", "site"])
def test_hottest_region_is_on_the_fixated_words(make):
    rec = make()
    fig, img = _render(rec)
    assert img.shape[1] == SIZE[0] and img.shape[0] <= SIZE[1]  # the height is fitted to the text
    view = TurnView.load(rec)
    for panel, (pos, word, text) in enumerate([(0, "elephant", TEXT_L), (1, "giraffe", TEXT_R)]):
        boxes = view.boxes(pos)
        k = int(boxes.word_of_char(np.array([word_span(text, word)[0]]))[0])
        assert boxes.words[k] == word
        c0, r0, c1, r1 = _word_rect_px(fig, panel, boxes, k)
        col, row = _hottest_in_panel(fig, img, panel)
        tol = 4
        assert c0 - tol <= col <= c1 + tol and r0 - tol <= row <= r1 + tol, (word, (col, row), (c0, r0, c1, r1))
        # and the heat over the word is far above the panel's median heat
        heat = _heat(img)
        inside = heat[int(r0):int(r1) + 1, int(c0):int(c1) + 1].mean()
        assert inside > 0.3
        bb = fig.axes[panel].get_window_extent()
        H = img.shape[0]
        assert np.median(heat[int(H - bb.y1):int(H - bb.y0), int(bb.x0):int(bb.x1)]) < 0.05


def test_moving_the_fixations_moves_the_hot_spot():
    a = ifllm_like(targets=((0, "elephant"), (1, "giraffe")))
    b = ifllm_like(targets=((0, "grass."), (1, "savanna."))) if False else ifllm_like(targets=((0, "quick"), (1, "neck.")))
    fa, ia = _render(a)
    fb, ib = _render(b)
    assert _hottest_in_panel(fa, ia, 0) != _hottest_in_panel(fb, ib, 0)
    view = TurnView.load(b)
    boxes = view.boxes(0)
    k = int(boxes.word_of_char(np.array([TEXT_L.index("quick")]))[0])
    c0, r0, c1, r1 = _word_rect_px(fb, 0, boxes, k)
    col, row = _hottest_in_panel(fb, ib, 0)
    assert c0 - 4 <= col <= c1 + 4 and r0 - 4 <= row <= r1 + 4


def test_reflow_keeps_words_inside_the_width_and_in_order():
    b = reflow(TEXT_L + "\n\nNew paragraph here.", 300.0)
    assert (b.x + b.w <= 300.0 - 8 + 1e-6).all()
    order = np.lexsort((b.x, b.y))
    assert (order == np.arange(len(b))).all()  # reading order = text order
    # the explicit paragraph break starts a new line, one blank line below
    k = b.words.index("New")
    assert b.x[k] == pytest.approx(8.0) and b.y[k] - b.y[k - 1] == pytest.approx(2 * b.h[0])
    x, y, ok = char_xy(b, np.array([TEXT_L.index("elephant") + 2, -1, 10_000]))
    assert ok.tolist() == [True, False, False]
    kk = b.words.index("elephant")
    assert b.x[kk] <= x[0] <= b.x[kk] + b.w[kk] and b.y[kk] <= y[0] <= b.y[kk] + b.h[kk]


def test_reading_depth_note_stays_within_the_text(ifllm_sample):
    """IFLLM records the caret *after* the last character as ``char_index == len(text)`` (the left
    response of worker_29e7a1a6/155 turn 0); the note must not claim the gaze went past the end
    (it said 102 %), in line with the feature table's ``g_depth`` (at most 1)."""
    import re

    fig = plot_heatmap(str(ifllm_sample), task="worker_29e7a1a6/155", turn=0, size=SIZE, show_text=False)
    reach = [int(m) for t in fig.findobj(lambda a: hasattr(a, "get_text"))
             for m in re.findall(r"furthest character at (\d+)%", t.get_text())]
    assert len(reach) == 2 and max(reach) == 100


@pytest.mark.parametrize("kind", ["heatmap", "scanpath"])
@pytest.mark.parametrize("task, turn", [("worker_f972316e/183", 2), ("worker_5a944891/163", 3),
                                        ("worker_a2b63b0c/283", 0)])
def test_reflowed_text_is_drawn_as_laid_out(ifllm_sample, kind, task, turn):
    """IFLLM text is reflowed to the box with the font's own advances. Drawn hinted (matplotlib's
    default) at a response box's small size, a line came out up to ~4 % wider (up to ~25 px past the
    box's right edge) or ~6 % narrower than laid out, off the characters the samples sit on. Every
    drawn line is as wide as its layout (within 2 px and 0.5 %) and ends inside its box."""
    from matplotlib.patches import Rectangle

    from gazepref.signals.plots.plot_commands import make_plot
    from gazepref.signals.plots.text_layout import FONT_PX, text_width_em

    fig = make_plot(kind, ifllm_sample, task=task, turn=turn)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    n_lines = 0
    for ax in fig.axes:
        boxes = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_x() == 0 and p.get_y() == 0]
        if not boxes or not ax.texts:
            continue
        right = boxes[0].get_width()  # the response box, in content px
        inv = ax.transData.inverted()
        for t in ax.texts:
            if t.get_horizontalalignment() != "left":  # the scanpath's fixation numbers
                continue
            bb = t.get_window_extent(r)
            (x0, _), (x1, _) = inv.transform([(bb.x0, 0), (bb.x1, 0)])
            laid = text_width_em(t.get_text()) * FONT_PX
            assert abs(x1 - x0 - laid) <= 0.005 * laid + 2, t.get_text()  # content px
            assert x1 <= right + 0.5, (t.get_text(), x1 - right)
            n_lines += 1
    assert n_lines > 10


@pytest.fixture(scope="module")
def simulated_study(tmp_path_factory):
    """A one-turn study recorded through the site by its simulator (word boxes in the layout
    stream, measured for the page's font, not for the font the plots draw in)."""
    from gazepref.cli import main

    out = tmp_path_factory.mktemp("sim") / "sim"
    assert main(["study", "simulate", "--participants", "1", "--tasks", "1", "--turns", "1", "--effect", "0.8",
                 "--seed", "3", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("kind", ["heatmap", "scanpath"])
def test_recorded_words_are_drawn_inside_their_boxes(simulated_study, kind):
    """Site recordings draw each word at its recorded box; a word the plot's font sets wider than
    its box ran into the next one ("movementsleep", "Whenash" on a simulated study). Every drawn
    word ends inside its box."""
    from gazepref.datasets.sources import open_source
    from gazepref.signals.plots.plot_commands import make_plot

    rec = open_source(simulated_study)
    task = rec.turns()[0].task_id
    fig = make_plot(kind, rec, task=task, turn=0)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    view = TurnView.load(rec, task=task, turn=0)
    n_words = 0
    for ax, pos in zip([ax for ax in fig.axes if ax.texts], view.positions):
        b = view.boxes(pos)
        right = {(round(float(x), 3), round(float(y + h / 2), 3)): float(x + w)
                 for x, y, w, h in zip(b.x, b.y, b.w, b.h)}
        inv = ax.transData.inverted()
        for t in ax.texts:
            if t.get_horizontalalignment() != "left":  # the scanpath's fixation numbers
                continue
            x, y = t.get_position()
            x1 = inv.transform((t.get_window_extent(r).x1, 0))[0]
            assert x1 <= right[(round(x, 3), round(y, 3))] + 0.5, t.get_text()
            n_words += 1
    assert n_words > 100
