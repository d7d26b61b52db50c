"""Analyst views (issue 8): every plot kind renders at the requested pixel size on the IFLLM
sample, as PNG and SVG, from the command line too."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from gazepref.cli import main
from gazepref.signals.plots import KINDS, save
from gazepref.signals.plots.plot_commands import make_plot
from gazepref.signals.plots.summary import collect

TASK = "worker_5a944891/163"  # pairwise, 7 turns, gaze and mouse
TURN = 3


@pytest.fixture(scope="module")
def sample_rec(ifllm_sample):
    from gazepref.datasets.recording import open_recording

    return open_recording(ifllm_sample)


@pytest.fixture(scope="module")
def sample_summary(sample_rec):
    return collect(sample_rec)


@pytest.mark.parametrize("kind", ["heatmap", "scanpath", "mouse", "timeline"])
def test_turn_views_have_the_requested_size(sample_rec, kind, tmp_path):
    fig = make_plot(kind, sample_rec, task=TASK, turn=TURN, size=(900, 640))
    out = save(fig, tmp_path / f"{kind}.png")
    img = imread(out)
    if kind in ("heatmap", "scanpath"):  # fitted to the text: the requested height is the most
        assert img.shape[1] == 900 and 320 <= img.shape[0] <= 640
    else:
        assert img.shape[:2] == (640, 900)
    assert img[..., :3].std() > 0.05  # not blank


@pytest.mark.parametrize("kind", ["attention", "features", "quality"])
def test_aggregate_views_have_the_requested_size(sample_summary, kind, tmp_path):
    from gazepref.signals.plots.attention import plot_attention
    from gazepref.signals.plots.features import plot_features
    from gazepref.signals.plots.quality import plot_quality

    fn = {"attention": plot_attention, "features": plot_features, "quality": plot_quality}[kind]
    out = save(fn(sample_summary, size=(1000, 560)), tmp_path / f"{kind}.png")
    assert imread(out).shape[:2] == (560, 1000)


def test_summary_covers_the_sample(sample_summary):
    s = sample_summary
    assert set(s.participants["participant_id"]) == {"worker_29e7a1a6", "worker_5a944891", "worker_a2b63b0c",
                                                     "worker_ac2b9070", "worker_f815af5e", "worker_f972316e"}
    r = s.responses
    lab = r[r["outcome"].notna()]
    # every labelled pairwise turn contributes one preferred and one not preferred response
    assert (lab["outcome"] == "preferred").sum() == (lab["outcome"] == "not preferred").sum() > 10
    assert (r["g_depth"].dropna() <= 1.0).all()
    q = s.participants.set_index("participant_id")
    assert q["sample_rate_hz"].between(3, 40).all()
    assert q["face_ratio"].between(0, 1).all()
    assert q.loc["worker_29e7a1a6", "calibration"] == 72.0


def test_cli_plot_png_and_svg(ifllm_sample, tmp_path):
    png, svg = tmp_path / "h.png", tmp_path / "s.svg"
    assert main(["plot", "heatmap", str(ifllm_sample), "--task", TASK, "--turn", str(TURN), "--size", "800x500",
                 "--out", str(png)]) == 0
    assert imread(png).shape[:2] == (500, 800)
    assert main(["plot", "scanpath", str(ifllm_sample), "-p", "worker_5a944891", "-t", "163", "-n", "3",
                 "--size", "600x400", "--out", str(svg)]) == 0
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and 'width="432pt"' in text  # 600 px at 100 dpi


@pytest.mark.parametrize("argv, task_id, turn", [
    (["heatmap"], "worker_29e7a1a6/155", 0),  # no --task: the first task with turns, named in the JSON
    (["timeline", "-p", "worker_5a944891", "-t", "163", "-n", "3"], TASK, TURN),
    (["attention", "-p", "worker_5a944891"], None, None),
])
def test_cli_plot_json_names_what_was_drawn(ifllm_sample, tmp_path, capsys, argv, task_id, turn):
    import json

    out = tmp_path / "v.png"
    assert main(["plot", argv[0], str(ifllm_sample), *argv[1:], "--out", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == {"kind": argv[0], "out": str(out), "task_id": task_id, "turn": turn}
    assert imread(out).shape[:2] == (800, 1200) or argv[0] == "heatmap"


def test_cli_aggregate_for_one_participant(ifllm_sample, tmp_path):
    out = tmp_path / "q.png"
    assert main(["plot", "quality", str(ifllm_sample), "--participant", "worker_29e7a1a6", "--out", str(out)]) == 0
    assert imread(out).shape[:2] == (800, 1200)


def test_kinds_are_the_issue_list():
    assert set(KINDS) == {"heatmap", "scanpath", "mouse", "timeline", "attention", "features", "quality"}


def test_mann_whitney_matches_the_textbook_value():
    from gazepref.signals.plots.features import mann_whitney_p

    # U = 0 for fully separated groups of 3: normal approximation with continuity correction
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.0809, abs=1e-4)
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(mann_whitney_p([4, 5, 6], [1, 2, 3]))


def test_gaze_on_the_page_text_is_not_drawn_on_the_answer(sample_rec):
    """Some IFLLM samples carry the window of other page text ("Satisfied", the instructions)
    with a small char_index: they are placed by their window, and dropped when it is not in the
    answer, in the turn views and the summary alike."""
    import numpy as np
    import pyarrow.compute as pc

    from gazepref.signals.plots._data import TurnView
    from gazepref.datasets.text_mapping import anchor_chars

    view = TurnView.load(sample_rec, None, "worker_a2b63b0c/285", 0)
    text = view.turn.responses[view.positions.index(1)].text
    h = view.stream("hits")
    h = h.filter(pc.and_(pc.equal(h.column("source"), "gaze"), pc.equal(h.column("position"), 1)))
    raw = h.column("char_index").to_numpy()
    fixed = anchor_chars(text, raw, h.column("window").to_numpy(zero_copy_only=False))
    assert (fixed != raw).sum() >= 100  # this turn has many such samples
    pts = view.points(1, "gaze")
    assert len(pts.t) == int(((fixed >= 0) & (fixed < len(text))).sum()) < int((raw >= 0).sum())
    assert np.isin(pts.char, fixed).all()


# --------------------------------------------------------------------------- readability (issue 17)


def test_wilcoxon_signed_rank_matches_the_textbook_value():
    from gazepref.signals.plots.features import wilcoxon_signed_rank_p

    # d = 1..10 all positive: W+ = 55, mean 27.5, var 96.25 -> z = (27.5 - 0.5) / 9.811 = 2.752
    assert wilcoxon_signed_rank_p(np.arange(1, 11)) == pytest.approx(0.00592, abs=1e-4)
    assert wilcoxon_signed_rank_p(-np.arange(1, 11)) == pytest.approx(wilcoxon_signed_rank_p(np.arange(1, 11)))
    assert np.isnan(wilcoxon_signed_rank_p([1, 2, 0, 0, 0, 0]))  # zeros dropped: too few pairs


def test_features_compare_paired_responses_as_pairs(sample_summary):
    """Pairwise turns: the p-value is the signed-rank test over each turn's (preferred, not
    preferred) pair; the title says so."""
    from gazepref.signals.plots.features import paired_differences, plot_features, wilcoxon_signed_rank_p

    fig = plot_features(sample_summary, size=(1200, 800))
    texts = [t.get_text() for t in fig.texts]
    assert any("Wilcoxon signed-rank" in t for t in texts) and not any("unpaired" in t for t in texts)
    r = sample_summary.responses
    groups = [r[r["outcome"] == "preferred"], r[r["outcome"] == "not preferred"]]
    d = paired_differences(groups, "n_chars", lambda v: v)
    assert 0 < len(d) <= len(groups[0])  # one difference per labelled turn
    p = wilcoxon_signed_rank_p(d)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert any(t.startswith("response length") and f"p = {p:.2g}" in t for t in titles), titles


def test_report_counts_agree_with_data_summary(sample_rec, sample_summary):
    s = sample_rec.summary()
    c = sample_summary.counts
    assert (c["participants"], c["tasks"], c["turns"], c["pairwise_turns_labelled"]) == (
        s["participants"], s["tasks"], s["turns"], s["pairwise_turns_labelled"])
    assert c["turns_with_samples"] <= c["turns"]


def test_scanpath_numbers_do_not_pile_up(ifllm_sample):
    """On the evidence turn (scanpath-clutter.png) only some fixations are numbered, the first and
    the last among them, and no two numbers overlap."""
    from gazepref.datasets.recording import open_recording

    fig = make_plot("scanpath", open_recording(ifllm_sample), task="worker_ac2b9070/108", turn=0, size=(1200, 800))
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text().isdigit()]
    numbers = sorted(int(t.get_text()) for t in labels)
    n_fix = len(ax.collections[0].get_offsets())
    assert 1 in numbers and n_fix in numbers and len(numbers) < n_fix / 3
    boxes = [t.get_window_extent() for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)


def test_heatmap_canvas_fits_the_text_and_scale_is_labelled(ifllm_sample):
    from matplotlib.image import imread

    from gazepref.datasets.recording import open_recording

    fig = make_plot("heatmap", open_recording(ifllm_sample), task="worker_ac2b9070/108", turn=0, size=(1200, 800))
    img = imread(__import__("io").BytesIO(__import__("gazepref.signals.plots", fromlist=["x"]).fig_to_png(fig)))
    assert img.shape[1] == 1200 and img.shape[0] < 600  # a wide, short answer: no empty lower half
    bb = fig.axes[0].patches[0].get_window_extent()  # the text box
    assert bb.y0 < 60  # its bottom edge is near the canvas's bottom
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any("power scale" in lab and "density^0.6" in lab for lab in labels)


def test_gaze_views_of_mouse_only_data_suggest_the_mouse_source():
    from gazepref import UserError
    from gazepref.signals.plots.synthetic import MemoryRecording, site_like

    rec = site_like()
    streams = {k: v for k, v in rec.streams("p_synth/7").items() if k != "gaze"}
    mouse_only = MemoryRecording(rec.participants(), rec.tasks(), rec.turns(), {"p_synth/7": streams})
    for kind in ("heatmap", "scanpath"):
        with pytest.raises(UserError, match="--source mouse"):
            make_plot(kind, mouse_only, task="p_synth/7", turn=0)
    assert make_plot("heatmap", mouse_only, task="p_synth/7", turn=0, source="mouse") is not None


def _pointwise_with_window():
    import pyarrow as pa
    import pyarrow.compute as pc

    from gazepref import schema
    from gazepref.signals.plots.synthetic import MemoryRecording, site_like

    rec = site_like()
    s = rec.streams("p_synth/7")
    lay = s["layout"].filter(pc.not_equal(s["layout"].column("target"), "response:1"))
    extra = [dict(t=0.0, target=tg, kind="element", index=-1, char_start=-1, char_end=-1, x=x, y=y, w=w, h=h, turn=0)
             for tg, x, y, w, h in (("window", 0.0, 0.0, 1366.0, 1000.0), ("prompt", 40.0, 100.0, 520.0, 60.0))]
    lay = pa.concat_tables([lay, schema.conform("layout", pa.Table.from_pylist(extra)).cast(lay.schema)])
    t0 = rec.turns()[0]
    turn = schema.Turn(t0.turn_id, t0.task_id, t0.participant_id, 0, "pointwise", t0.prompt, [t0.responses[0]],
                       epoch_ms=t0.epoch_ms, t_shown=0.0)
    task = schema.Task("p_synth/7", "p_synth", "synthetic", "pointwise")
    return MemoryRecording(rec.participants(), [task], [turn], {"p_synth/7": {**s, "layout": lay}})


def test_mouse_view_draws_the_window_behind_the_boxes():
    """The full-window box is an outline behind the prompt and response boxes (their fills stay
    visible), and a pointwise turn's answer is labelled "response"."""
    import io

    from matplotlib.colors import to_rgb

    from gazepref.signals.plots import fig_to_png

    fig = make_plot("mouse", _pointwise_with_window(), task="p_synth/7", turn=0, size=(1200, 900))
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("response") for t in texts) and not any("(left)" in t for t in texts)
    img = imread(io.BytesIO(fig_to_png(fig)))[..., :3]
    H = img.shape[0]
    for (x, y), colour in (((300.0, 150.0), "#f3f3f3"), ((500.0, 260.0), "#e9eef5")):  # prompt, response
        col, row = ax.transData.transform((x, y))
        assert np.allclose(img[int(H - row), int(col)], to_rgb(colour), atol=0.02), (x, y)


def _visible_texts(fig):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and t.figure is fig]


@pytest.mark.parametrize("size", [(1000, 320), (1200, 800), (700, 300)])
def test_quality_texts_fit_the_figure_for_long_pseudonyms(sample_summary, size):
    """The site's pseudonyms are 32 hex characters: the row labels, panel titles, threshold labels
    and the heading all lie inside the figure, and no two of them overlap."""
    from dataclasses import replace

    from gazepref.signals.plots.quality import plot_quality

    p = sample_summary.participants.copy()
    p["participant_id"] = [f"{i:x}" * 32 for i in range(10, 10 + len(p))]
    p["calibration"], p["calibration_unit"] = 80.0, "px"  # the site's unit: px, threshold 200 px
    fig = plot_quality(replace(sample_summary, participants=p), size=size)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    texts = _visible_texts(fig)
    assert any("200" in t.get_text() for t in texts)
    boxes = []
    for t in texts:
        bb = t.get_window_extent(r)
        assert bb.x0 >= -0.5 and bb.y0 >= -0.5 and bb.x1 <= W + 0.5 and bb.y1 <= H + 0.5, t.get_text()
        boxes.append((t.get_text(), bb))
    for i, (a, ba) in enumerate(boxes):
        for b, bb in boxes[i + 1:]:
            assert not ba.overlaps(bb), (a, b)


@pytest.mark.parametrize("size", [(900, 560), (1200, 800), (640, 480)])
def test_scanpath_caption_and_footnote_do_not_overlap(sample_rec, size):
    """The caption (what colour, area and numbers mean) and the layout footnote both sit at the
    bottom: each lies inside the figure and no figure-level text overlaps another."""
    fig = make_plot("scanpath", sample_rec, task=TASK, turn=TURN, size=size)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    texts = [t for t in fig.texts if t.get_text().strip()]
    assert any("numbered" in t.get_text() for t in texts) and any(
        k in t.get_text() for t in texts for k in ("word boxes", "reflowed"))
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in texts]
    for s, bb in boxes:
        assert bb.x0 >= -0.5 and bb.y0 >= -0.5 and bb.x1 <= W + 0.5 and bb.y1 <= H + 0.5, s
    for i, (a, ba) in enumerate(boxes):
        for b, bb in boxes[i + 1:]:
            assert not ba.overlaps(bb), (a, b)


@pytest.mark.parametrize("kind", ["heatmap", "scanpath", "mouse", "timeline"])
def test_turn_headings_count_turns_from_1(sample_rec, kind):
    """``--turn 3`` (0-based, as documented) is the task's fourth turn: its figure heading says
    "turn 4", as the dashboard's participant page does."""
    fig = make_plot(kind, sample_rec, task=TASK, turn=TURN, size=(1200, 800))
    heads = [t.get_text() for t in fig.texts if f"{TASK} · turn" in t.get_text()]
    heads += [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center") if "turn" in ax.get_title(loc)]
    assert heads and all(f"turn {TURN + 1} " in h and f"turn {TURN} " not in h for h in heads), heads


def _heading_texts(fig):
    """The figure's own words: headings, panel titles, axis labels, legends and notes (not tick
    labels, which matplotlib keeps, undrawn, outside the axes' limits)."""
    texts = [t for t in fig.texts]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("size", [(1200, 800), (1200, 720), (1200, 520), (1000, 640)])
@pytest.mark.parametrize("kind", ["attention", "features", "quality"])
def test_aggregate_view_headings_fit_the_figure(sample_summary, kind, size):
    """Every heading, panel title (with its p-value) and label of an aggregate view lies inside the
    figure at the default size and at the report's sizes: the features view's one-line heading and
    its last column's titles ran past the right edge of the default 1200 px canvas."""
    from gazepref.signals.plots.attention import plot_attention
    from gazepref.signals.plots.features import plot_features
    from gazepref.signals.plots.quality import plot_quality

    fn = {"attention": plot_attention, "features": plot_features, "quality": plot_quality}[kind]
    fig = fn(sample_summary, size=size)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    texts = _heading_texts(fig)
    assert len(texts) > 3
    for t in texts:
        bb = t.get_window_extent(r)
        assert bb.x0 >= -0.5 and bb.y0 >= -0.5 and bb.x1 <= W + 0.5 and bb.y1 <= H + 0.5, t.get_text()
    heads = [t for t in fig.texts if t.get_text().strip()]
    titles = [t for ax in fig.axes for t in (ax.title, ax._left_title) if t.get_text().strip()]
    for h in heads:  # the heading does not run into the panels' titles
        for t in titles:
            assert not h.get_window_extent(r).overlaps(t.get_window_extent(r)), (h.get_text(), t.get_text())
