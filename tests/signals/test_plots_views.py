"""Analyst views (issue 8): every plot kind renders at the requested pixel size on the IFLLM
sample, as PNG and SVG, from the command line too."""
from __future__ import annotations

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
