"""Tracker rows -> the gaze chunk the site stores (signals/gaze_batch.py ``rows_to_chunk_batch``,
``rows_to_table``): the same Arrow table, stored and read back, as the general path
(``pa.Table.from_pylist`` -> ``schema.conform`` -> ``store.make_chunk``) for the same rows.
(The quick path reading each row's values at once was also checked byte for byte against the
key-by-key implementation it replaced: identical chunk bytes.)"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from gazepref import store
from gazepref.schema import GazeFlag, conform
from gazepref.signals.gaze_batch import rows_to_chunk_batch, rows_to_table
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
