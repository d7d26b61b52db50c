"""Tracker rows -> the gaze chunk the site stores (signals/gaze_batch.py ``rows_to_chunk_batch``,
``rows_to_table``): the same Arrow table, stored and read back, as the general path
(``pa.Table.from_pylist`` -> ``schema.conform`` -> ``store.make_chunk``) for the same rows.
(The quick path reading each row's values at once was also checked byte for byte against the
key-by-key implementation it replaced: identical chunk bytes.) Also the single-session folds of
``gaze evaluate`` (``protocol_splits``), and how it reads its manifest (``read_manifest``) and
images (``read_image``) as other people's files come: spreadsheet CSV dialects, Windows paths,
rotated, grey, CMYK, 16-bit and alpha pictures, missing files."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from gazepref import UserError, store
from gazepref.schema import GazeFlag, conform
from gazepref.signals.calibration import GazeCalibration
from gazepref.signals.gaze_batch import (person_errors, protocol_splits, read_image, read_manifest,
                                         rows_to_chunk_batch, rows_to_table, split_predictions)
from gazepref.signals.synthetic_face import face_frame, moving_face
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


MANIFEST_ROWS = [("a.jpg", 10.0, 20.0, "Zoë", "s1"), ("b.jpg", 550.5, -20.0, "Zoë", "s2")]


def manifest_text(header, sep=",", decimal="."):
    """``MANIFEST_ROWS`` as CSV text under ``header`` (names in that order, each row's values
    placed by name; unknown names get "extra")."""
    names = [h.strip().lower() for h in header]
    lines = [sep.join(header)]
    for image, x, y, person, session in MANIFEST_ROWS:
        value = {"image": image, "x": str(x).replace(".", decimal), "y": str(y).replace(".", decimal),
                 "person": person, "session": session}
        lines.append(sep.join(value.get(n, "extra") for n in names))
    return "\n".join(lines) + "\n"


CANONICAL = ("image", "x", "y", "person", "session")


@pytest.mark.parametrize("text, encoding", [
    pytest.param(manifest_text(CANONICAL), "utf-8", id="canonical"),
    pytest.param(manifest_text(("Session", "Person", "Image", "Y", "X")), "utf-8", id="other-case-and-order"),
    pytest.param(manifest_text((" IMAGE ", "X", "y", "note", "Person", "SESSION")), "utf-8", id="extra-column"),
    pytest.param(manifest_text(CANONICAL, ";", ","), "utf-8", id="semicolon-decimal-comma"),
    pytest.param(manifest_text(CANONICAL, "\t"), "utf-8", id="tab"),
    pytest.param(manifest_text(CANONICAL), "utf-8-sig", id="byte-order-mark"),
    pytest.param(manifest_text(CANONICAL), "cp1252", id="windows-1252"),
    pytest.param(manifest_text(CANONICAL).replace("\n", "\r\n") + "\r\n", "utf-8", id="crlf-blank-line"),
    pytest.param('"image","x","y","person","session"\n"a.jpg","10","20","Zoë","s1"\n'
                 '"b.jpg","550.5","-20","Zoë","s2"\n', "utf-8", id="quoted"),
])
def test_a_manifest_in_a_spreadsheets_csv_dialect_reads_the_same(tmp_path, text, encoding):
    """Column names in any case and order (others ignored), ``;`` or tab separators (with
    decimal commas), a byte-order mark or Windows-1252 (Excel's "CSV"): the same manifest. Before,
    all but the first, the byte-order mark and the blank line were refused or misread."""
    path = tmp_path / "m.csv"
    path.write_bytes(text.encode(encoding))
    frame = read_manifest(path)
    assert list(frame.columns) == list(CANONICAL)
    assert frame["image"].tolist() == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]
    assert frame[["x", "y"]].to_numpy().tolist() == [[10, 20], [550.5, -20]]
    assert frame["person"].tolist() == ["Zoë", "Zoë"] and frame["session"].tolist() == ["s1", "s2"]


@pytest.mark.parametrize("text, message", [
    ('[{"image": "a.jpg", "x": 1, "y": 2, "person": "p", "session": "s"}]', "looks like JSON"),
    ("image;x;y;person\na.jpg;1;2;p\n", r"lacks column\(s\) session .*header line has image, x, y, person"),
    ("image,Image,x,y,person,session\na.jpg,b.jpg,1,2,p,s\n", r"column\(s\) image appear more than once"),
    ("image,x,y,person,session\na.jpg,1,2,p\n", r"empty session on line\(s\) 2"),
    ("image,x,y,person,session\n", "no rows"),
])
def test_a_manifest_it_cannot_read_is_a_one_line_error(tmp_path, text, message):
    path = tmp_path / "m.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as caught:
        read_manifest(path)
    assert "\n" not in str(caught.value)


def test_manifest_image_paths_written_on_windows_or_from_home(tmp_path, monkeypatch):
    """``sub\\a.jpg`` (a manifest written on Windows) names ``sub/a.jpg`` where no file is named so
    as written; ``~/...`` is the home folder. Both were read as file names and every such image
    was unreadable."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpg").write_bytes(b"x")
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "data" / "m.csv"
    path.parent.mkdir()
    path.write_text("image,x,y,person,session\n..\\sub\\a.jpg,1,2,p,s\n~/sub/a.jpg,1,2,p,s\n")
    images = read_manifest(path)["image"].tolist()
    assert [Path(p).resolve() for p in images] == [tmp_path / "sub" / "a.jpg"] * 2


@pytest.mark.parametrize("suffix, convert, tolerance", [
    pytest.param("jpg", lambda im, p: im.save(p, quality=95), 4, id="jpeg"),
    pytest.param("jpg", lambda im, p: exif_rotated(im).save(p, quality=95, exif=orientation(6)), 4, id="exif-rotated"),
    pytest.param("jpg", lambda im, p: im.convert("L").save(p, quality=95), 30, id="grey"),
    pytest.param("png", lambda im, p: im.convert("RGBA").save(p), 0, id="rgba-png"),
    pytest.param("jpg", lambda im, p: im.convert("CMYK").save(p, quality=95), 6, id="cmyk-jpeg"),
    pytest.param("png", lambda im, p: im.convert("P").save(p), 30, id="palette-png"),
    pytest.param("png", lambda im, p: cv2.imwrite(str(p), np.asarray(im)[:, :, ::-1].astype(np.uint16) * 257), 0,
                 id="16-bit-png"),
])
def test_a_picture_reads_upright_as_bgr(tmp_path, suffix, convert, tolerance):
    """Any picture a webcam tool or a phone saves reads as the upright BGR uint8 picture: a
    JPEG whose EXIF says "rotate 90 deg" (the pixels stored sideways), grey, palette, CMYK,
    16-bit and alpha pictures; mean absolute difference in grey levels (grey and palette lose
    colour)."""
    from PIL import Image

    picture = face_frame(size=(64, 48))
    path = tmp_path / f"p.{suffix}"
    convert(Image.fromarray(np.ascontiguousarray(picture[:, :, ::-1])), path)
    image = read_image(str(path))
    assert image.shape == picture.shape and image.dtype == np.uint8
    assert np.abs(image.astype(int) - picture.astype(int)).mean() <= max(tolerance, 0.5)


def exif_rotated(image):
    """``image`` stored turned 90 deg anticlockwise, as a camera held sideways stores it."""
    from PIL import Image

    return image.transpose(Image.Transpose.ROTATE_90)


def orientation(value: int):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = value  # Orientation; 6: turn 90 deg clockwise to show
    return exif


@pytest.mark.parametrize("make", ["missing", "folder", "empty", "text", "truncated-header"])
def test_an_unreadable_picture_is_none_without_a_log_line(tmp_path, capfd, make):
    """A missing file, a folder, an empty or non-picture file: None, and nothing on stderr (OpenCV
    logged a warning line per missing file: a thousand of them in a run with a wrong folder)."""
    path = tmp_path / "x.jpg"
    if make == "folder":
        path.mkdir()
    elif make == "empty":
        path.write_bytes(b"")
    elif make == "text":
        path.write_text("not a picture")
    elif make == "truncated-header":
        path.write_bytes(cv2.imencode(".jpg", face_frame(size=(64, 48)))[1].tobytes()[:100])
    assert read_image(str(path)) is None
    assert capfd.readouterr().err == ""


def offset_predictions(offsets: dict[str, tuple[float, float]]):
    """Two sessions of two dots with two images each, predicted at the dot plus the session's
    offset plus (3, 4) px on one image and minus it on the other: (targets, sessions, splits of
    both protocols' shape, i.e. (name, predicted mask, predictions, kind))."""
    dots = np.array([(100.0, 100.0), (900.0, 500.0)])
    targets = np.repeat(np.tile(dots, (2, 1)), 2, axis=0)  # s0: dot 0 twice, dot 1 twice; s1 the same
    sessions = np.repeat(["s0", "s1"], 4)
    noise = np.tile([(3.0, 4.0), (-3.0, -4.0)], (4, 1))
    pred = targets + noise + np.array([offsets[s] for s in sessions])
    splits = [(s, sessions == s, pred[sessions == s], "sight") for s in ("s0", "s1")]
    return targets, sessions, splits


@pytest.mark.parametrize("protocol", ["leave-session-out", "one-round"])
def test_error_parts_separate_bias_spread_and_session_offset(protocol):
    """Each image 5 px off its dot's mean prediction, each dot's mean off by the session's offset
    (50 px in s0, 0 in s1): the bias is the offset, the spread the images' scatter (two images:
    deviations of 5 px from their mean estimate an rms of sqrt(2) x 5 about the true one), and
    once each session's offset is taken away only the 5 px remain."""
    targets, sessions, splits = offset_predictions({"s0": (30.0, 40.0), "s1": (0.0, 0.0)})
    out = person_errors(targets, splits, protocol, sessions)
    assert out["error_px"] == pytest.approx((np.mean([np.hypot(33, 44), np.hypot(27, 36)]) + 5) / 2)
    assert out["bias_px"] == pytest.approx((50 + 0) / 2)
    assert out["spread_px"] == pytest.approx(5 * np.sqrt(2))
    assert out["session_offset_px"] == pytest.approx(25.0)
    assert out["error_without_offset_px"] == pytest.approx(5.0)
    assert "bias_px" not in person_errors(targets, splits, protocol)  # without sessions: not split


def test_error_parts_weigh_rounds_equally_and_skip_missing_predictions():
    """One-round: each calibrating session's parts count the same, whatever it predicted; rows
    without a prediction (NaN) count in no part; nothing predicted gives None."""
    targets, sessions, splits = offset_predictions({"s0": (30.0, 40.0), "s1": (0.0, 0.0)})
    name, mask, pred, kind = splits[1]
    pred = pred.copy()
    pred[:2] = np.nan  # s1 keeps only dot 1's two images
    out = person_errors(targets, [splits[0], (name, mask, pred, kind)], "one-round", sessions)
    assert out["bias_px"] == pytest.approx(25.0) and out["session_offset_px"] == pytest.approx(25.0)
    pooled = person_errors(targets, [splits[0], (name, mask, pred, kind)], "leave-session-out", sessions)
    assert pooled["bias_px"] == pytest.approx(50 * 4 / 6)  # 4 rows at 50 px, 2 at 0
    empty = [(n, m, np.full_like(p, np.nan), k) for n, m, p, k in splits]
    assert person_errors(targets, empty, "one-round", sessions)["bias_px"] is None


def test_predictions_guessed_as_the_targets_mean_are_counted():
    """A row missing a feature the model needs, and every row of a split whose calibration has
    too few usable rows, is predicted as the targets' mean: ``split_predictions`` marks them and
    ``person_errors`` gives their share (each such guess costs ~600 px on a laptop screen)."""
    rng = np.random.default_rng(1)
    (x0, y0), (x1, y1) = dot_round(rng), dot_round(rng)
    x, y = pd.concat([x0, x1], ignore_index=True), np.vstack([y0, y1])
    sessions = np.repeat(["s0", "s1"], len(y0))
    x.loc[[50, 51, 60], "eye_r_iris_u"] = np.nan  # rows 2, 3 and 12 of s1: a feature missing
    make = lambda: GazeCalibration(fill_missing=True)  # noqa: E731
    splits = split_predictions(x, y, sessions, make, "leave-session-out")
    guessed = {s.name: s.guessed for s in splits}
    assert guessed["s0"].sum() == 0 and np.flatnonzero(guessed["s1"]).tolist() == [2, 3, 12]
    s1 = splits[1][2]
    assert np.ptp(s1[guessed["s1"]], axis=0).max() == 0 and np.ptp(s1[~guessed["s1"]], axis=0).min() > 100
    assert person_errors(y, splits, "leave-session-out")["guessed_ratio"] == pytest.approx(3 / 96)
    x.loc[sessions == "s0", "flags"] = int(GazeFlag.NO_FACE)  # s1's calibration: nothing usable
    splits = split_predictions(x, y, sessions, make, "one-round")
    assert [(s.name, s.kind, int(s.guessed.sum())) for s in splits] == [("s0", None, 48),
                                                                               ("s1", "one-stage", 0)]
    assert person_errors(y, splits, "one-round")["guessed_ratio"] == pytest.approx(0.5)
    assert person_errors(y, [s[:4] for s in splits], "one-round")["guessed_ratio"] is None
    assert person_errors(y, splits, "one-round")["fallback_ratio"] == 0  # no sight point to lose


@pytest.mark.parametrize("protocol", ["leave-session-out", "one-round"])
def test_predictions_without_a_line_of_sight_are_the_fallbacks(protocol):
    """A face whose line of sight could not be found is predicted by the sight model's or the
    blend's one-stage fallback: counted in ``fallback_ratio``, not in ``guessed_ratio``."""
    from gazepref.signals.synthetic_gaze import people

    x, y, sessions = people(1, 3, seed=4)[0]
    x = x.copy()
    lost = np.zeros(len(x), bool)
    lost[np.flatnonzero(sessions == sessions[-1])[:6]] = True  # 6 of the last sitting's rows
    x.loc[lost, "sight_y_cm"] = np.nan
    splits = split_predictions(x, y, sessions, lambda: GazeCalibration(fill_missing=True), protocol)
    fallback = np.zeros(len(x), int)
    for s in splits:
        assert not s.guessed.any()
        fallback[s.predicted] += s.fallback
    predicted = np.sum([s.predicted for s in splits], axis=0)
    assert (fallback == lost * predicted).all()
    out = person_errors(y, splits, protocol)
    assert out["guessed_ratio"] == 0
    assert out["fallback_ratio"] == pytest.approx((lost * predicted).sum() / predicted.sum())

