"""Tracker rows -> the gaze chunk the site stores (signals/gaze_batch.py ``rows_to_chunk_batch``,
``rows_to_table``): the same Arrow table, stored and read back, as the general path
(``pa.Table.from_pylist`` -> ``schema.conform`` -> ``store.make_chunk``) for the same rows.
(The quick path reading each row's values at once was also checked byte for byte against the
key-by-key implementation it replaced: identical chunk bytes.) Also the single-session folds of
``gaze evaluate`` (``protocol_splits``)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from gazepref import UserError, store
from gazepref.schema import GazeFlag, conform
from gazepref.signals.calibration import GazeCalibration
from gazepref.signals.gaze_batch import (person_errors, protocol_splits, read_manifest, rows_to_chunk_batch,
                                         rows_to_table, split_predictions)
from gazepref.signals.synthetic_face import moving_face
from gazepref.signals.webcam import GazeTracker


@pytest.fixture(scope="module")
def tracker_rows() -> list[dict[str, float]]:
    """Rows of the astronaut's moving face, with a black picture (no face) in the middle."""
    with GazeTracker() as tracker:
        rows = [tracker.process_image(moving_face(i, 12), 66.7 * i) for i in range(12)]
        rows.insert(5, tracker.process_image(np.zeros((240, 320, 3), np.uint8), 333.0))
    assert rows[5]["flags"] & GazeFlag.NO_FACE and not rows[0]["flags"] & GazeFlag.NO_FACE
    return rows


def reference_table(rows: list[dict]) -> pa.Table:
    """The general path: NaN -> null, pyarrow's own inference, then the stream's schema."""
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    return conform("gaze", pa.Table.from_pylist(clean))


def stored(batch_or_table) -> tuple[pa.Table, tuple]:
    """The table a chunk row holds (decoded as the exports read it) and its bookkeeping (the
    raw size depends on how Arrow lays out the buffers, e.g. slices of one array)."""
    if isinstance(batch_or_table, pa.RecordBatch):
        c = store.chunk_from_batch(1, "gaze", 0, batch_or_table, clock_origin_epoch_ms=0.0)
    else:
        c = store.make_chunk(1, "gaze", 0, batch_or_table, clock_origin_epoch_ms=0.0)
    return store.decode_chunk("gaze", c.columns, c.raw_size, c.data), (c.columns, c.t_start, c.t_end, c.n)


def variants(rows):
    """The tracker's rows; with drift columns (the site's click correction); one row's keys in
    another order (the key-by-key path); a None value; a single row."""
    drift = [dict(r, drift_x=4.0, drift_y=-2.5) for r in rows]
    shuffled = [dict(r) for r in rows]
    shuffled[3] = dict(reversed(list(shuffled[3].items())))
    with_none = [dict(r) for r in rows]
    with_none[2]["head_yaw"] = None
    return {"tracker": rows, "drift": drift, "reordered": shuffled, "none": with_none, "one": rows[:1]}


@pytest.mark.parametrize("name", ["tracker", "drift", "reordered", "none", "one"])
def test_chunk_equals_the_general_path(tracker_rows, name):
    rows = variants(tracker_rows)[name]
    ref = reference_table(rows)
    assert rows_to_table(rows).equals(ref)
    (got, meta), (want, want_meta) = stored(rows_to_chunk_batch(rows)), stored(ref)
    assert got.equals(want) and meta == want_meta


def test_all_null_optional_columns_left_out_required_kept(tracker_rows):
    batch = rows_to_chunk_batch(tracker_rows)
    names = batch.schema.names
    assert "x" in names and "y" in names  # required: kept although null before calibration
    assert batch.column(names.index("x")).null_count == len(tracker_rows)
    assert "epoch_ms" not in names and "drift_x" not in names
    assert batch.column(names.index("flags")).to_pylist() == [int(r["flags"]) for r in tracker_rows]


# ---------------------------------------------------------------------- one session: folds of targets


def dot_round(rng, fixation_px=100.0, n_per_point=3, noise=0.003):
    """One 16-point round, ``n_per_point`` images per dot sharing that dot's fixation error (where
    the person looked: the target plus ``fixation_px`` noise) and its patch pixels (posture and
    light of that moment, unrelated to the dot's place); iris features linear in where they looked."""
    grid = np.array([(x, y) for y in np.linspace(100, 800, 4) for x in np.linspace(100, 1500, 4)])
    looked = grid + rng.normal(0, fixation_px, grid.shape)
    dot = np.repeat(np.arange(len(grid)), n_per_point)
    n = len(dot)
    f = {"flags": np.zeros(n, np.int64)}
    for eye in ("l", "r"):
        f[f"eye_{eye}_iris_u"] = (looked[dot, 0] - 800) / 8000 + rng.normal(0, noise, n)
        f[f"eye_{eye}_iris_lid"] = 0.5 + (looked[dot, 1] - 450) / 3000 + rng.normal(0, noise, n)
        f[f"eye_{eye}_open"] = 0.3 - (looked[dot, 1] - 450) / 9000 + rng.normal(0, 0.01, n)
    pixels = rng.uniform(0, 1, (len(grid), 60))[dot] + rng.normal(0, 0.01, (n, 60))
    f |= {f"eye_l_patch_{i:03d}": pixels[:, i] for i in range(60)}
    return pd.DataFrame(f), grid[dot].astype(np.float64)


def test_one_session_folds_keep_a_targets_images_together():
    sessions = np.array(["s"] * 12)
    targets = np.repeat([[0, 0], [1, 0], [0, 1], [1, 1], [2, 2], [3, 3]], 2, axis=0).astype(float)
    folds = protocol_splits(sessions, "leave-session-out", targets)
    assert len(folds) == 4 and (np.sum([p for _, _, p in folds], axis=0) == 1).all()
    for _, calibrate, predict in folds:
        assert not (calibrate & predict).any() and (calibrate | predict).all()
        held = {tuple(t) for t in targets[predict]}
        assert held and not held & {tuple(t) for t in targets[calibrate]}
    # one target only: folds of rows, as without targets
    assert len(protocol_splits(sessions, "leave-session-out", np.zeros((12, 2)))) == 4


@pytest.mark.parametrize("seed", [0, 2])
def test_a_single_session_estimate_is_that_of_a_new_round(seed):
    """A person with one session: the folds' error is what the calibration fitted on that session
    makes of a new round, not less (folds of images let a dot's other images, with its fixation
    error and its look, calibrate: measured ~65 and ~53 px against ~128 and ~134 px)."""
    rng = np.random.default_rng(seed)
    x, y = dot_round(rng)
    sessions = np.array(["s"] * len(y))
    make = lambda: GazeCalibration(fill_missing=True)  # noqa: E731
    estimate = person_errors(y, split_predictions(x, y, sessions, make, "leave-session-out"),
                             "leave-session-out")["error_px"]
    model = make().fit(x.drop(columns="flags"), y)
    fresh = np.mean([np.linalg.norm(model.predict(fx) - fy, axis=1).mean()
                     for fx, fy in (dot_round(rng) for _ in range(3))])
    assert 0.75 < estimate / fresh < 1.5


@pytest.mark.parametrize("bad", ["inf", "-inf", "abc", ""])
def test_a_manifest_target_must_be_a_finite_number(tmp_path, bad):
    """An "inf" target used to pass and its row then dropped out of the error without a word."""
    path = tmp_path / "m.csv"
    path.write_text(f"image,x,y,person,session\na.jpg,10,20,p,s\nb.jpg,{bad},20,p,s\nc.jpg,5,6,p,s\n")
    with pytest.raises(UserError, match=r"finite numbers on every row \(not on line\(s\) 3\)"):
        read_manifest(path)
    path.write_text("image,x,y,person,session\na.jpg,10,20,p,s\nb.jpg, 1e3 ,-20.5,p,s\n")
    assert read_manifest(path)[["x", "y"]].to_numpy().tolist() == [[10, 20], [1000, -20.5]]
