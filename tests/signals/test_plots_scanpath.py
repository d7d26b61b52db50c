"""The scanpath draws the feature table's fixations: the same cleaning, region rule and I-DT
(:func:`gazepref.signals.reading.fixations`), so the counts a plot shows are the table's."""
from __future__ import annotations

import numpy as np
import pytest

from gazepref.signals import features
from gazepref.signals.plots._data import TurnView
from gazepref.signals.plots.plot_commands import make_plot
from gazepref.signals.plots.scanpath import text_fixations
from gazepref.signals.plots.synthetic import ifllm_like, site_like


@pytest.fixture(scope="module")
def sample_rec(ifllm_sample):
    from gazepref.datasets.recording import open_recording

    return open_recording(ifllm_sample)


def _table_turn(rec, task_id: str, k: int):
    r = features.build(rec, task_ids=[task_id]).responses
    return r[r["turn"] == k].set_index("position")


def _k(rec, view: TurnView) -> int:
    """The turn's place in its task (the table's ``turn`` column)."""
    return [t.index for t in rec.turns_by_task()[view.task_id]].index(view.turn.index)


def _check_against_table(rec, view: TurnView) -> None:
    fx = text_fixations(view)
    rows = _table_turn(rec, view.task_id, _k(rec, view))
    assert len(fx) == rows["g_fix_all_n"].iloc[0]
    for p in view.positions:
        mine = fx.position == p
        assert mine.sum() == rows.loc[p, "g_fix_n"], p
        assert fx.duration[mine].sum() == pytest.approx(rows.loc[p, "g_fix_ms"], abs=1e-6)
        # what the plot draws: every response fixation with on-text samples has a place on the text
        placed = mine & np.isfinite(fx.x)
        assert np.isfinite(fx.y[placed]).all()
        assert (fx.char[placed] >= 0).all()


@pytest.mark.parametrize(("task_id", "turn"), [
    ("worker_29e7a1a6/155", 0),  # the walk-through's turn: 63 (raw I-DT) vs 57 (table) on the left answer
    ("worker_5a944891/163", 3),
    ("worker_ac2b9070/108", 0),
])
def test_scanpath_fixations_are_the_feature_tables(sample_rec, task_id, turn):
    view = TurnView.load(sample_rec, task=task_id, turn=turn)
    _check_against_table(sample_rec, view)
    fig = make_plot("scanpath", sample_rec, task=task_id, turn=turn, size=(1200, 800))
    texts = " ".join(t.get_text() for t in fig.texts) + " ".join(
        t.get_text() for ax in fig.axes for t in ax.texts)
    rows = _table_turn(sample_rec, task_id, _k(sample_rec, view))
    assert f"{int(rows['g_fix_all_n'].iloc[0])} fixations (I-DT" in texts
    for p in view.positions:
        assert f"{int(rows.loc[p, 'g_fix_n'])} fixations · " in texts


@pytest.mark.parametrize("make", [ifllm_like, site_like])
def test_scanpath_fixations_are_the_feature_tables_on_both_layouts(make):
    rec = make()
    task_id = rec.tasks()[0].task_id
    view = TurnView.load(rec, task=task_id, turn=0)
    _check_against_table(rec, view)
    assert np.isfinite(text_fixations(view).x).any()
