"""Off-limits inputs stay out of the reward models' features: Likert ratings, pointer/gaze
positions outside the response boxes (the rating / choice controls sit below them), later turns,
and every column :func:`gazepref.signals.features.off_limits` names."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from gazepref.models import comparisons as comp
from gazepref.models import evaluation as ev
from gazepref.models.implicit_features import implicit_columns, select
from gazepref.signals import features as sf
from gazepref.signals.task_data import from_ifllm


def _task(rec):
    """A task of the sample with several labelled pairwise turns and trajectories."""
    X = comp.comparison_frame(rec)
    counts = X[X["task_id"].isin(list(rec.behavior_dirs))]["task_id"].value_counts()
    return counts.index[0], X


def _comparisons(rec, task_id, streams):
    return pd.DataFrame(sf.compute_task(from_ifllm(rec, task_id, streams=streams), sentences=False)[1])


def test_positions_outside_the_boxes_do_not_change_the_models_features(ifllm_sample):
    """Every sample outside the response boxes moved onto the controls below them (a pointer on the
    Left | Right buttons): none of the in-box family's columns (the models' default) changes. (The
    other families drop samples on the controls before anything is measured:
    ``tests/signals/test_features.py::test_choice_region_does_not_leak``.)"""
    from gazepref.datasets.recording import open_recording

    rec = open_recording(ifllm_sample)
    tid, X = _task(rec)
    s = dict(rec.streams(tid))
    moved = dict(s)
    for source in ("gaze", "mouse"):
        h = s["hits"].filter(pc.and_(pc.equal(s["hits"].column("source"), source),
                                     pc.greater_equal(s["hits"].column("x"), 0)))
        tb = s[source]
        out = ~np.isin(tb.column("t").to_numpy(), h.column("t").to_numpy())
        y = np.where(out, 5000.0, tb.column("y").to_numpy())
        moved[source] = tb.set_column(tb.schema.get_field_index("y"), "y", pa.array(y, tb.schema.field("y").type))
    a, b = _comparisons(rec, tid, s), _comparisons(rec, tid, moved)
    rows = X[X["task_id"] == tid]
    fa, fb = select(a, rows, "inbox"), select(b, rows, "inbox")
    cols = implicit_columns(fa, ("gaze", "mouse"), symmetric=True)
    assert [c for c in cols if c.startswith("gaze_d_")] and [c for c in cols if c.startswith("mouse_d_")]
    pd.testing.assert_frame_equal(fa[cols], fb[cols])
    assert not np.allclose(a["g_prompt_ms"], b["g_prompt_ms"])  # the move did move samples


def test_default_columns_hold_no_likert_or_task_aggregates(ifllm_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path))
    d = ev.load_data(ifllm_sample, cache=False, features="both")
    cols = implicit_columns(d.X, ("gaze", "mouse"), symmetric=True)
    assert cols and not [c for c in d.X.columns if "likert" in c.lower() or (c.startswith(("task_", "label_")) and c != "task_id")]
    assert not [c for c in cols if c.startswith(("hist_", "tf_")) or sf.off_limits(c)]
    assert not [c for c in d.X.columns if sf.off_limits(c) and c not in sf.META_COLUMNS]
    assert not [c for c in cols if "last_side" in c or "last_visit" in c or "last_share_l" in c]
    # Likert only ever appears as the ordinal model's *targets*
    assert "likert" in d.ratings.columns
    # label orientation on real data: y = 1 ⇔ choice LEFT
    from gazepref.datasets.recording import open_recording

    turns = {t.turn_id: t for t in open_recording(ifllm_sample).turns()}
    for tid, y in zip(d.X["turn_id"], d.y):
        assert (turns[tid].choice == 0) == (y == 1)


@pytest.mark.parametrize("column,off", [("label_choice", True), ("task_n_turns", True), ("post_fb_nof", True),
                                        ("g_last_side", True), ("m_last_visit_ms", True), ("g_last_share_l", True),
                                        ("turn_id", True), ("g_sent_last_share", False), ("gaze_d_share", False),
                                        ("d_g_dwell_ms", False)])
def test_one_list_of_what_is_off_limits(column, off):
    assert sf.off_limits(column) is off
    assert (column in sf.default_feature_columns(pd.DataFrame(columns=[column]))) is not off


def test_features_of_a_turn_ignore_later_turns(ifllm_sample):
    """The samples of the later turns deleted: the first turn's features stay the same."""
    from gazepref.datasets.recording import open_recording

    rec = open_recording(ifllm_sample)
    tid, X = _task(rec)
    s = dict(rec.streams(tid))
    first = int(X[X["task_id"] == tid]["index"].min())
    cut = {k: (v.filter(pc.less_equal(v.column("turn"), first)) if "turn" in v.column_names else v)
           for k, v in s.items()}
    assert cut["gaze"].num_rows < s["gaze"].num_rows
    full, part = _comparisons(rec, tid, s), _comparisons(rec, tid, cut)
    full = full[full["turn"] == first].reset_index(drop=True)
    part = part[part["turn"] == first].reset_index(drop=True)
    cols = sf.default_feature_columns(full)
    assert [c for c in cols if c.startswith("gaze_d_")]
    pd.testing.assert_frame_equal(full[cols], part[cols], check_dtype=False)
