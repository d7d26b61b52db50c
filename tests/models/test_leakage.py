"""Off-limits inputs stay out of the default features: Likert ratings, pointer/gaze positions
outside the response boxes (the rating / choice controls sit below them), later turns."""
import numpy as np
import pandas as pd

from gazepref.models import comparisons as comp
from gazepref.models import evaluation as ev
from gazepref.models.implicit_features import implicit_columns, turn_features


def _hits(n=200, outside_y=-1.0):
    t = np.arange(n) * 74.0
    rows = []
    for source in ("gaze", "mouse"):
        for i, ti in enumerate(t):
            pos = int(i % 7 < 4)  # more time on the right box
            inside = i % 5 != 0
            for p in (0, 1):
                on = inside and p == pos
                rows.append({"t": ti, "source": source, "position": p, "x": 50.0 if on else -1.0,
                             "y": 80.0 if on else outside_y, "char_index": (i * 3) % 300 if on else -1,
                             "camera_ok": 1})
    return pd.DataFrame(rows)


def test_positions_outside_the_boxes_do_not_change_pairwise_features():
    """Samples outside the response boxes (e.g. on the Left | Right buttons below them) carry no
    position into the features: only in-box samples are read."""
    a = turn_features(_hits(), (300, 300))
    b = turn_features(_hits(outside_y=900.0), (300, 300))  # "on the controls"
    assert a == b
    assert a["gaze_d_share"] < 0  # more dwell on the right → left-minus-right negative
    assert not [k for k in a if "last" in k]


def test_default_columns_hold_no_likert_or_task_aggregates(ifllm_sample):
    d = ev.load_data(ifllm_sample, cache=False)
    cols = implicit_columns(d.X, ("gaze", "mouse"), symmetric=True)
    assert cols and not [c for c in d.X.columns if "likert" in c.lower() or (c.startswith(("task_", "label_")) and c != "task_id")]
    assert not [c for c in cols if c.startswith(("hist_", "tf_")) or "last" in c]
    # Likert only ever appears as the ordinal model's *targets*
    assert "likert" in d.ratings.columns
    # label orientation on real data: y = 1 ⇔ choice LEFT
    from gazepref.datasets.recording import open_recording

    turns = {t.turn_id: t for t in open_recording(ifllm_sample).turns()}
    for tid, y in zip(d.X["turn_id"], d.y):
        assert (turns[tid].choice == 0) == (y == 1)


def test_features_of_a_turn_ignore_later_turns(ifllm_sample):
    from gazepref.datasets.recording import open_recording
    from gazepref.models.implicit_features import hits_features

    rec = open_recording(ifllm_sample)
    X = comp.comparison_frame(rec)
    task = X["task_id"].value_counts().index[0]
    rows = X[X["task_id"] == task].sort_values("index")
    full = hits_features(rec, rows)
    # drop the hits of the later turns: the first turn's features stay the same
    first = rows.iloc[[0]]

    class Cut:
        def streams(self, tid, cache=True):
            s = dict(rec.streams(tid))
            h = s["hits"]
            import pyarrow.compute as pc

            s["hits"] = h.filter(pc.less_equal(h.column("turn"), int(first["index"].iloc[0])))
            return s

    cut = hits_features(Cut(), first)
    pd.testing.assert_frame_equal(full.loc[first.index, cut.columns], cut, check_dtype=False)
