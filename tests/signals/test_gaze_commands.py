"""``gazepref gaze track`` / ``gaze evaluate`` end to end, and re-estimating stored gaze.

The evaluate manifest is synthetic: the astronaut photo moved and scaled per on-screen target,
so the features vary with the target through face position and size (not through the eyes).
It tests the plumbing (manifest, per-person leave-one-session-out, output), not gaze accuracy.
"""
from __future__ import annotations

import csv
import json
import re

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from gazepref import cli, store
from gazepref.schema import GazeFlag
from gazepref.signals.calibration import GazeCalibration
from gazepref.signals.gaze_batch import (PICTURE_FLAGS, evaluate_manifest, image_features, protocol_splits,
                                         read_manifest, rows_to_table)
from gazepref.signals.gaze_session import UNUSABLE
from gazepref.signals.gaze_recalibrate import reestimate, reestimate_participant
from gazepref.signals.face_mesh import FaceMeshRunner
from gazepref.signals.synthetic_face import look
from gazepref.signals.webcam import GazeTracker

TARGETS = [(x, y) for y in (100, 350, 600, 850) for x in (100, 550, 1000, 1450)]  # 16-point grid


def run_cli(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def manifest_files(tmp_path_factory, face_frame):
    """Two people (the astronaut, mirrored), three sessions each at a different place, size and
    brightness, one image per target of a 16-point grid with the eyes turned to the target
    (``synthetic_face.look``)."""
    root = tmp_path_factory.mktemp("manifest")
    (root / "img").mkdir()
    rows = []
    with FaceMeshRunner(static_image_mode=True) as mesh:
        for person, mirror in (("p1", False), ("p2", True)):
            for session, (dx, scale, light) in enumerate(((0, 1.25, 1.0), (25, 1.15, 0.85), (-25, 1.35, 1.1))):
                face = face_frame(scale=scale, dx=dx, size=(640, 480), brightness=light, mirror=mirror)
                pts = mesh.process(cv2.cvtColor(face, cv2.COLOR_BGR2RGB))[0]
                for i, (x, y) in enumerate(TARGETS):
                    name = f"img/{person}_s{session}_{i:02d}.jpg"
                    cv2.imwrite(str(root / name), look(face, pts, (x, y)))
                    rows.append({"image": name, "x": x, "y": y, "person": person, "session": f"s{session}"})
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "x", "y", "person", "session"])
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def remembering_tracker():
    """A :class:`GazeTracker` that remembers each still picture's row by the picture's pixels,
    shared by this module's evaluate tests: they run the same 96 pictures through Face Mesh many
    times over. In static-image mode a picture's row is its own (no tracking, the head pose
    solved afresh) but for the blink flag's relative threshold, which follows the earlier
    pictures' eye openness (no picture here blinks). ``test_evaluate_one_round`` checks a
    command's figure against the rows of a plain tracker."""
    import hashlib

    memo = {}  # (static mode, shape, pixels' SHA-1, t) -> (row, pictures the small-face search found)

    class RememberingTracker(GazeTracker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._remembered_small_faces = 0

        def process_image(self, image, t=float("nan")):
            key = (self._static, image.shape, hashlib.sha1(np.ascontiguousarray(image)).hexdigest(), repr(float(t)))
            if key in memo:
                row, small = memo[key]
                self._remembered_small_faces += small
            else:
                before = super().small_faces_found
                row = super().process_image(image, t)
                memo[key] = row, super().small_faces_found - before
            return dict(row)

        @property
        def small_faces_found(self):
            return super().small_faces_found + self._remembered_small_faces

    return RememberingTracker


@pytest.fixture
def manifest(manifest_files, remembering_tracker, monkeypatch):
    """The manifest; Face Mesh's rows of its pictures remembered across the module's tests
    (:func:`remembering_tracker`)."""
    import gazepref.signals.gaze_batch as gaze_batch

    monkeypatch.setattr(gaze_batch, "GazeTracker", remembering_tracker)
    return manifest_files


def test_track_video_json_and_features(face_video, tmp_path, capsys):
    out = tmp_path / "features.parquet"
    rc, stdout, _ = run_cli(capsys, "gaze", "track", str(face_video), "--json", "--out", str(out))
    assert rc == 0
    result = json.loads(stdout)
    assert result["frames"] == 45
    assert result["face_found_ratio"] >= 0.95
    assert 0 < result["ms_per_frame"] < 1000
    assert (result["width"], result["height"]) == (320, 240)
    table = pq.read_table(out)
    assert table.num_rows == 45
    assert {"t", "x", "y", "confidence", "flags", "eye_l_iris_u", "head_yaw", "face_size"} <= set(table.column_names)
    t = table.column("t").to_numpy()
    assert np.all(np.diff(t) > 0) and t[1] == pytest.approx(1000 / 15)


def test_track_errors(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "gaze", "track", str(tmp_path / "missing.avi"), "--json")
    assert rc == 2 and "no such file" in err
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video")
    rc, _, err = run_cli(capsys, "gaze", "track", str(bad))
    assert rc == 2 and "bad.avi" in err
    for command in ("track", "evaluate"):
        rc, _, err = run_cli(capsys, "gaze", command, str(tmp_path))
        assert rc == 2 and "is a folder" in err


def test_track_checks_the_out_folder_first(face_video, tmp_path, capsys):
    """--out in a folder that does not exist: said plainly, before the video is processed (it was
    pyarrow's 'Failed to open local file' after every frame had been run)."""
    rc, out, err = run_cli(capsys, "gaze", "track", str(face_video), "--out", str(tmp_path / "nope" / "f.parquet"))
    assert rc == 2 and err.strip() == f"gazepref: error: no such folder for --out: {tmp_path / 'nope'}"


def test_track_never_writes_over_a_file_unasked_nor_over_its_video(face_video, tmp_path, capsys, monkeypatch):
    """--out naming an existing file is refused (it was replaced silently, the video itself
    included: a 54 KB Parquet file where the recording was), before any frame is processed;
    ``--overwrite`` replaces a file, never the video; a folder is said to be one; a name not ending
    in .parquet is refused (a Parquet file was written under it)."""
    import gazepref.signals.gaze_batch as gaze_batch

    video = tmp_path / "copy.y4m"
    video.write_bytes(face_video.read_bytes())
    old = tmp_path / "earlier.parquet"
    old.write_bytes(b"an earlier run")
    processed = []
    real = gaze_batch.track_video
    monkeypatch.setattr(gaze_batch, "track_video", lambda *a, **k: processed.append(a) or real(*a, **k))
    for out, extra, says in ((video, (), "is the video itself"), (video, ("--overwrite",), "is the video itself"),
                             (old, (), "exists (use --overwrite to replace it)"), (tmp_path, (), "is a folder"),
                             # Parquet under another name (a .csv that was Parquet inside)
                             (tmp_path / "track.csv", (), "--out must end in .parquet")):
        rc, _, err = run_cli(capsys, "gaze", "track", str(video), "--out", str(out), *extra)
        assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not processed and video.read_bytes() == face_video.read_bytes() and old.read_bytes() == b"an earlier run"
    assert not (tmp_path / "track.csv").exists()
    rc, _, _ = run_cli(capsys, "gaze", "track", str(video), "--out", str(old), "--overwrite")
    assert rc == 0 and pq.read_table(old).num_rows == 45


def test_evaluate_manifest(manifest, capsys):
    rc, stdout, _ = run_cli(capsys, "gaze", "evaluate", str(manifest), "--json")
    assert rc == 0
    result = json.loads(stdout)
    assert result["n"] == 96 and result["people"] == 2
    assert set(result["per_person"]) == {"p1", "p2"}
    assert result["face_found_ratio"] >= 0.95
    for p in result["per_person"].values():
        assert p["n"] == 48 and p["sessions"] == 3
        # each held-out session once; the person's figure is the mean over all 48 predictions
        assert [h["session"] for h in p["held_out"]] == ["s0", "s1", "s2"]
        assert [h["n_predicted"] for h in p["held_out"]] == [16, 16, 16]
        assert p["error_px"] == pytest.approx(np.mean([h["error_px"] for h in p["held_out"]]))
        assert 0.9 <= p["usable_ratio"] <= p["face_found_ratio"]
        # eye span ~0.13-0.17 of the picture's width at the fixture's face scales 1.15-1.35
        assert 0.1 < p["face_size_median"] < 0.2
        assert p["small_face_ratio"] == 0  # every face large enough for the mesh's own detector
        assert p["image_sizes"] == {"640x480": 48} and p["unreadable_images"] == 0
        # the mean is the guess only where no face was found (every face gives a line of sight)
        assert p["guessed_ratio"] == pytest.approx(1 - p["face_found_ratio"])
        assert p["fallback_ratio"] == 0
        # the fixture's pictures are sharp and lit (0.85-1.1 of the photo's light): no picture flag
        assert {k: v for k, v in p["picture"].items() if k.endswith("_ratio")} == {
            f"{name}_ratio": 0.0 for name, _ in PICTURE_FLAGS}
        assert p["picture"]["sharpness_median"] > 0.015 and 60 < p["picture"]["brightness_median"] < 250
    assert result["images_in_several_sessions"] == 0
    for p in result["per_person"].values():  # one image per dot: its error is its dot's bias, no spread
        assert p["bias_px"] == pytest.approx(p["error_px"]) and p["spread_px"] is None
        assert 0 < p["session_offset_px"] < p["error_px"] and 0 < p["error_without_offset_px"]
    assert result["mean_spread_px"] is None
    assert result["mean_fallback_ratio"] == 0
    assert result["mean_guessed_ratio"] == pytest.approx(
        np.mean([p["guessed_ratio"] for p in result["per_person"].values()]))
    assert result["mean_session_offset_px"] == pytest.approx(
        np.mean([p["session_offset_px"] for p in result["per_person"].values()]))
    assert result["mean_error_px"] == pytest.approx(np.mean([p["error_px"] for p in result["per_person"].values()]))
    # The mean guess is ~600 px off on this grid; features that follow the target must beat it.
    guess = np.mean([np.hypot(x - 775, y - 475) for x, y in TARGETS])
    assert result["mean_error_px"] < 0.5 * guess
    # --model auto compares the other models on the same images by default
    assert set(result["compared"]) == {"sight", "one-stage", "blend"}
    for k, c in result["compared"].items():
        errs = [p["compared"][k] for p in result["per_person"].values()]
        assert c["mean_error_px"] == pytest.approx(np.mean(errs))
        mains = [p["error_px"] for p in result["per_person"].values()]
        assert c["people_better_than_main"] == sum(e < m for e, m in zip(errs, mains))
    rc, stdout, _ = run_cli(capsys, "gaze", "evaluate", str(manifest))
    assert rc == 0 and "s2 predicted:" in stdout and "    image sizes: 640x480 (48)\n" in stdout
    # the summary as people read it: px to 0.1 px (it printed 143.81209097754925)
    assert re.search(rf"^mean_error_px +{result['mean_error_px']:.1f}\n", stdout, re.M), stdout[:400]
    p1 = result["per_person"]["p1"]
    assert (f"    per dot and session: bias {p1['bias_px']:.1f} px, spread - (one image a dot); per session: "
            f"offset {p1['session_offset_px']:.1f} px, error without it {p1['error_without_offset_px']:.1f} px\n") in stdout
    blend = result["compared"]["blend"]
    beats = blend["people_better_than_main"]
    assert f"blend {blend['mean_error_px']:.1f} px (beats auto for {beats} of 2 people)" in stdout
    p1 = result["per_person"]["p1"]["compared"]
    line = f"    compared: sight {p1['sight']:.1f} px, one-stage {p1['one-stage']:.1f} px, blend {p1['blend']:.1f} px"
    assert line + "\n" in stdout


def subset(manifest, name: str, keep):
    """A manifest of the rows of ``manifest`` whose (image, x, y, person, session) ``keep`` accepts."""
    lines = manifest.read_text().splitlines()
    path = manifest.parent / name
    path.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if keep(*ln.split(","))]) + "\n")
    return path


def test_evaluate_compares_the_models_on_one_face_mesh_pass(manifest, monkeypatch):
    """The compared errors are what evaluating each model alone gives (the same features and
    splits), though Face Mesh ran once per person."""
    import gazepref.signals.gaze_batch as gaze_batch

    # 2 people x 2 sessions x 8 targets: small and quick, yet each model fits (models counts)
    path = subset(manifest, "two_sessions.csv", lambda image, x, y, person, session:
                  session in ("s0", "s1") and int(image[-6:-4]) % 2 == 0)
    calls = []

    def counting(paths, progress=None, groups=None):
        calls.append(len(list(paths)))
        return image_features(paths, progress, groups)

    monkeypatch.setattr(gaze_batch, "image_features", counting)
    result = evaluate_manifest(path)
    assert calls == [16, 16]  # once per person
    assert set(result["compared"]) == {"sight", "one-stage", "blend"}
    assert len({c["mean_error_px"] for c in result["compared"].values()}) == 3
    for k in result["compared"]:
        alone = evaluate_manifest(path, kind=k)  # another model: not compared by default
        assert "compared" not in alone and "compared" not in alone["per_person"]["p1"]
        assert {p["models"][k] for p in alone["per_person"].values()} == {2}  # fitted, not the mean guess
        assert result["compared"][k]["mean_error_px"] == pytest.approx(alone["mean_error_px"], rel=0, abs=1e-9)
        for person, p in alone["per_person"].items():
            assert result["per_person"][person]["compared"][k] == pytest.approx(p["error_px"], rel=0, abs=1e-9)
            assert result["per_person"][person]["compared_models"][k] == p["models"]  # what was fitted for it
        assert result["compared"][k]["models"] == {k: 4}
    assert len(calls) == 2 + 2 * 3


def test_evaluate_takes_the_rows_from_where_it_is_told(manifest):
    """``features``: the tracker rows of another landmark source (benchmarks/page_accuracy.py: the
    page's face mesh in Chromium) go through the same protocols: the rows it gives are the ones
    scored (here the server's rows with the irises moved: another figure), once per person."""
    from gazepref.signals.gaze_batch import evaluate_manifest, image_features

    path = subset(manifest, "two_sessions_b.csv", lambda image, x, y, person, session:
                  session in ("s0", "s1") and int(image[-6:-4]) % 2 == 0)
    calls = []

    def shifted(paths, progress=None, groups=None):
        frame, bad = image_features(paths, progress, groups)
        calls.append(len(frame))
        rng = np.random.default_rng(len(calls))
        for c in [c for c in frame.columns if "iris_u" in c]:
            frame[c] = frame[c] + rng.normal(0, 0.2, len(frame))  # an eye tracker far noisier
        return frame, bad

    plain = evaluate_manifest(path, compare=False)
    other = evaluate_manifest(path, compare=False, features=shifted)
    assert calls == [16, 16]
    assert other["n"] == plain["n"] and other["mean_error_px"] != pytest.approx(plain["mean_error_px"], abs=1.0)


def test_a_compared_kind_fitted_as_another_says_so():
    """A compared kind whose calibrations were fitted as another (a round mostly without a line of
    sight gets the one-stage model) is printed with what was fitted, not as if it were itself."""
    from gazepref.signals.gaze_commands import _fitted_as

    assert _fitted_as("sight", {"models": {"one-stage": 3, "sight": 1}}) == "; fitted as one-stage 3 of 4"
    assert _fitted_as("sight", {"models": {"sight": 4}}) == "" and _fitted_as("blend", {"models": {}}) == ""
    assert _fitted_as("auto", {"models": {"one-stage": 2, "blend": 2}}) == ""


class FailsAtX101(GazeCalibration):
    """A calibration whose fit raises on rows with a target at x = 101 (one person's): what a
    numerical failure on one person's real pictures would do."""

    def fit(self, X, y, groups=None):
        if (np.asarray(y, dtype=np.float64)[:, 0] == 101).any():
            raise RuntimeError("SVD did not\nconverge")
        return super().fit(X, y, groups)


@pytest.mark.parametrize("protocol", ["leave-session-out", "one-round"])
def test_a_person_whose_evaluation_fails_costs_only_that_person(manifest, protocol, monkeypatch, capsys):
    """One person's evaluation raising (here the fit) gives that person no figure and a one-line
    reason, warned on stderr; the others are scored as alone, in the JSON and the text. Before,
    the exception ended the whole run and every figure was lost."""
    import gazepref.signals.gaze_batch as gaze_batch

    lines = manifest.read_text().splitlines()
    path = manifest.parent / f"fails_{protocol}.csv"
    keep = [ln for ln in lines[1:] if ln.split(",")[4] in ("s0", "s1") and int(ln.split(",")[0][-6:-4]) % 2 == 0]
    rows = [ln.replace(",100,", ",101,") if ",p2," in ln else ln for ln in keep]
    path.write_text("\n".join([lines[0]] + rows) + "\n")
    warnings = []
    result = evaluate_manifest(path, make_model=lambda: FailsAtX101(fill_missing=True, kind="blend"),
                               protocol=protocol, compare=False, warn=warnings.append)
    p1, p2 = result["per_person"]["p1"], result["per_person"]["p2"]
    alone = evaluate_manifest(subset(path, "p1_only.csv", lambda *row: row[3] == "p1"), protocol=protocol,
                              make_model=lambda: FailsAtX101(fill_missing=True, kind="blend"), compare=False)
    assert p1["error_px"] == pytest.approx(alone["per_person"]["p1"]["error_px"], rel=0, abs=1e-9)
    assert p1["reason"] is None and p2["error_px"] is None and p2["n"] == 16
    assert p2["reason"] == "evaluation failed (RuntimeError: SVD did not converge)"
    assert set(p2) == set(p1), "every person has the same keys (None, [] where nothing was measured)"
    assert result["people_without_prediction"] == ["p2"] and result["mean_error_px"] == p1["error_px"]
    assert warnings == ["person p2: evaluation failed (RuntimeError: SVD did not converge)"]
    # the command: every kind fitted fails on p2; rc 0, p1 scored, p2's reason in the JSON and the text
    monkeypatch.setattr(gaze_batch, "_make_kind", lambda kind: lambda: FailsAtX101(fill_missing=True, kind=kind))
    rc, stdout, err = run_cli(capsys, "gaze", "evaluate", str(path), "--protocol", protocol, "--json")
    assert rc == 0 and "warning: person p2: evaluation failed (RuntimeError: SVD did not converge)" in err
    result = json.loads(stdout)
    assert result["per_person"]["p2"]["compared"] == {"sight": None, "one-stage": None, "blend": None}
    assert all(e is not None for e in result["per_person"]["p1"]["compared"].values())
    rc, stdout, _ = run_cli(capsys, "gaze", "evaluate", str(path), "--protocol", protocol, "--no-compare")
    assert rc == 0 and "    no figure: evaluation failed (RuntimeError: SVD did not converge)" in stdout


def test_a_person_none_of_whose_images_could_be_read_has_no_figure(manifest, tmp_path, capsys):
    """A person whose pictures are all missing (a wrong folder) has no figure and says why, rather
    than entering the mean with every picture guessed as the targets' mean (~600 px on a laptop;
    before, 538 px here). The others are scored; stderr names the first unreadable path."""
    lines = manifest.read_text().splitlines()
    keep = [ln for ln in lines[1:] if ln.split(",")[4] in ("s0", "s1") and int(ln.split(",")[0][-6:-4]) % 2 == 0]
    rows = [f"{(manifest.parent if ',p2,' in ln else tmp_path / 'elsewhere') / ln.split(',', 1)[0]},"
            f"{ln.split(',', 1)[1]}" for ln in keep]
    path = tmp_path / "wrong_folder.csv"
    path.write_text("\n".join([lines[0]] + rows) + "\n")
    rc, stdout, err = run_cli(capsys, "gaze", "evaluate", str(path), "--json")
    assert rc == 0 and "warning: 16 of the 32 images could not be read" in err and "elsewhere" in err
    result = json.loads(stdout)
    p1, p2 = result["per_person"]["p1"], result["per_person"]["p2"]
    assert p1["error_px"] is None and p1["reason"] == "none of its 16 images could be read"
    assert p1["unreadable_images"] == 16 and p1["compared"] == {"sight": None, "one-stage": None, "blend": None}
    assert set(p1) == set(p2) and p1["held_out"] == [] and p1["guessed_ratio"] is None
    assert result["people_without_prediction"] == ["p1"] and result["mean_error_px"] == p2["error_px"]
    assert result["compared"]["blend"]["mean_error_px"] == p2["compared"]["blend"]


def test_a_manifest_none_of_whose_images_is_there_is_refused_before_face_mesh(manifest, tmp_path, capsys,
                                                                               monkeypatch):
    """Every image missing (the manifest moved without its pictures): one line and exit 2 before
    any person's Face Mesh starts (it came after a tracker a person, each printing its log lines)."""
    import gazepref.signals.gaze_batch as gaze_batch

    lines = manifest.read_text().splitlines()
    path = tmp_path / "moved.csv"
    path.write_text("\n".join(lines[:5]) + "\n")
    monkeypatch.setattr(gaze_batch, "GazeTracker", lambda *a, **k: pytest.fail("Face Mesh started"))
    rc, stdout, err = run_cli(capsys, "gaze", "evaluate", str(path), "--json")
    assert rc == 2 and not stdout and len(err.strip().splitlines()) == 1
    assert "none of its 4 images is there" in err and str(tmp_path) in err


def test_evaluate_single_session_falls_back_to_folds(manifest, tmp_path):
    lines = manifest.read_text().splitlines()
    one = [lines[0]] + [ln for ln in lines[1:] if ",p1,s0" in ln]
    path = manifest.parent / "one_session.csv"
    path.write_text("\n".join(one) + "\n")
    result = evaluate_manifest(path, compare=False)
    assert result["n"] == 16 and np.isfinite(result["mean_error_px"])
    # a model of one's own compared when asked: against all three built-in ones, in folds too
    own = evaluate_manifest(path, make_model=lambda: GazeCalibration(fill_missing=True, kind="blend"), compare=True)
    assert own["model"] is None and set(own["compared"]) == {"sight", "one-stage", "blend"}
    assert all(np.isfinite(c["mean_error_px"]) for c in own["compared"].values())
    assert own["per_person"]["p1"]["compared"]["blend"] == pytest.approx(own["per_person"]["p1"]["error_px"], abs=1e-9)
    assert own["compared"]["blend"]["people_better_than_main"] == 0


def test_evaluate_survives_sessions_without_faces(manifest, tmp_path):
    lines = manifest.read_text().splitlines()
    black = tmp_path / "black.jpg"
    cv2.imwrite(str(black), np.zeros((480, 640, 3), np.uint8))
    rows = [lines[0]]
    for ln in lines[1:]:
        image, rest = ln.split(",", 1)
        if ",p1," not in ln:
            continue
        rows.append(f"{black if ',s2' in rest else manifest.parent / image},{rest}")
    path = tmp_path / "dark_session.csv"
    path.write_text("\n".join(rows) + "\n")
    result = evaluate_manifest(path)
    assert result["face_found_ratio"] == pytest.approx(2 / 3)
    assert np.isfinite(result["mean_error_px"])


@pytest.mark.parametrize("protocol", ["one-round", "leave-session-out"])
def test_protocol_splits_bookkeeping(protocol):
    """Which rows calibrate and which are predicted, per protocol."""
    sessions = np.array(["a", "a", "b", "c", "b", "c", "c"])
    splits = protocol_splits(sessions, protocol)
    assert [name for name, _, _ in splits] == ["a", "b", "c"]
    for name, calibrate, predict in splits:
        assert not (calibrate & predict).any() and (calibrate | predict).all()
        one = sessions == name
        if protocol == "one-round":  # one session calibrates, all the others are predicted
            np.testing.assert_array_equal(calibrate, one)
        else:  # all the other sessions calibrate, this one is predicted
            np.testing.assert_array_equal(predict, one)
    # each row is predicted once leaving its session out, (sessions - 1) times with one round
    times = np.sum([predict for _, _, predict in splits], axis=0)
    assert (times == (2 if protocol == "one-round" else 1)).all()


def test_protocol_splits_single_session_and_unknown():
    assert protocol_splits(np.array(["s"] * 6), "one-round") == []  # nothing left to predict
    folds = protocol_splits(np.array(["s"] * 8), "leave-session-out")
    assert len(folds) == 4 and (np.sum([p for _, _, p in folds], axis=0) == 1).all()
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_splits(np.array(["a", "b"]), "two-rounds")


def test_evaluate_one_round(manifest, capsys, monkeypatch):
    """Per person, each session calibrates alone and predicts the other two; the person's error
    is the mean over the three rounds, and a round's figure is what fitting that session's
    usable images and predicting the others gives."""
    rc, stdout, _ = run_cli(capsys, "gaze", "evaluate", str(manifest), "--protocol", "one-round", "--json",
                            "--no-compare")
    assert rc == 0
    result = json.loads(stdout)
    assert result["protocol"] == "one-round" and result["people"] == 2 and result["n"] == 96
    assert "compared" not in result and "compared" not in result["per_person"]["p1"]
    for p in result["per_person"].values():
        assert [r["session"] for r in p["rounds"]] == ["s0", "s1", "s2"]
        assert all(r["n_predicted"] == 32 for r in p["rounds"])
        assert p["error_px"] == pytest.approx(np.mean([r["error_px"] for r in p["rounds"]]))
    assert result["mean_error_px"] == pytest.approx(np.mean([p["error_px"] for p in result["per_person"].values()]))
    guess = np.mean([np.hypot(x - 775, y - 475) for x, y in TARGETS])
    assert result["mean_error_px"] < 0.7 * guess

    rc, stdout, _ = run_cli(capsys, "gaze", "evaluate", str(manifest), "--protocol", "one-round", "--no-compare")
    assert rc == 0 and "calibrated on s1:" in stdout and "one-round" in stdout
    assert "compared" not in stdout
    assert "held_out" not in result["per_person"]["p1"]

    import gazepref.signals.gaze_batch as gaze_batch

    monkeypatch.setattr(gaze_batch, "GazeTracker", GazeTracker)  # Face Mesh afresh, nothing remembered
    rows = read_manifest(manifest)
    rows = rows[rows["person"] == "p1"].reset_index(drop=True)
    features, _ = image_features(rows["image"])
    targets = rows[["x", "y"]].to_numpy(float)
    s0 = (rows["session"] == "s0").to_numpy()
    fit = s0 & ((features["flags"].to_numpy(int) & UNUSABLE) == 0)
    model = GazeCalibration(fill_missing=True).fit(features[fit], targets[fit])
    err = np.linalg.norm(model.predict(features[~s0]) - targets[~s0], axis=1).mean()
    assert result["per_person"]["p1"]["rounds"][0]["error_px"] == pytest.approx(err)


def picture_manifest(folder, entries):
    """A manifest (``folder``/m.csv) of ``entries``: (file name, BGR picture, x, y, person,
    session), each picture written beside it."""
    rows = []
    for name, picture, x, y, person, session in entries:
        cv2.imwrite(str(folder / name), picture)
        rows.append(f"{name},{x},{y},{person},{session}")
    path = folder / "m.csv"
    path.write_text("image,x,y,person,session\n" + "\n".join(rows) + "\n")
    return path


def test_evaluate_counts_the_faces_only_the_small_face_search_found(tmp_path, face_frame, capsys):
    """A person whose second session is a 1280 x 720 picture with the face small and to one side
    (eye span ~0.04 of the width: the mesh's own detector misses it): found, and counted as found
    by the small-face search, in the JSON and the text."""
    manifest = picture_manifest(tmp_path, (
        (f"{session}_{i}.png", picture, x, y, "p", session)
        for i, (x, y) in enumerate(TARGETS[:4])
        for session, picture in (("s0", face_frame(scale=1.2, size=(640, 480))),
                                 ("s1", face_frame(scale=0.4, dx=250 + i, size=(1280, 720))))))
    rc, stdout, _ = run_cli(capsys, "gaze", "evaluate", str(manifest), "--json", "--no-compare")
    assert rc == 0
    p = json.loads(stdout)["per_person"]["p"]
    assert p["face_found_ratio"] == 1.0 and p["small_face_ratio"] == 0.5
    rc, stdout, _ = run_cli(capsys, "gaze", "evaluate", str(manifest), "--no-compare")
    assert rc == 0 and "faces found 100% (by the small-face search 50%)" in stdout


def test_evaluate_says_how_the_pictures_were_taken(tmp_path, face_frame, capsys):
    """Per person and over everyone, ``picture``: the faces' median brightness and sharpness and the
    share of pictures with a face that each picture flag marks. A person with a sharp, well-lit
    session and a dim one (a tenth of the light: TOO_DARK), another with a sharp session and a
    motion-blurred one (a 15 px horizontal smear: BLUR) get those shares, in the JSON and the text."""
    smear = np.full((1, 15), 1 / 15, np.float32)
    sessions = {"dim": lambda f: np.clip(f.astype(np.float32) * 0.1, 0, 255).astype(np.uint8),
                "blurred": lambda f: cv2.filter2D(f, -1, smear)}
    manifest = picture_manifest(tmp_path, (
        (f"{person}_{session}_{i}.png", picture if session == "s0" else condition(picture), x, y, person, session)
        for person, condition in sessions.items()
        for i, (x, y) in enumerate(TARGETS[:4])
        for session, picture in (("s0", face_frame(scale=1.2, dx=i, size=(640, 480))),
                                 ("s1", face_frame(scale=1.2, dx=i, size=(640, 480))))))
    rc, stdout, _ = run_cli(capsys, "gaze", "evaluate", str(manifest), "--json", "--no-compare")
    assert rc == 0
    result = json.loads(stdout)
    dim, blurred = result["per_person"]["dim"]["picture"], result["per_person"]["blurred"]["picture"]
    assert result["per_person"]["dim"]["face_found_ratio"] == 1.0
    assert (dim["too_dark_ratio"], dim["blur_ratio"], dim["overexposed_ratio"]) == (0.5, 0.0, 0.0)
    assert (blurred["too_dark_ratio"], blurred["blur_ratio"], blurred["overexposed_ratio"]) == (0.0, 0.5, 0.0)
    assert blurred["sharpness_median"] < dim["sharpness_median"]
    assert 20 < dim["brightness_median"] < blurred["brightness_median"]  # half the pictures a tenth as bright
    everyone = result["picture"]
    assert (everyone["too_dark_ratio"], everyone["blur_ratio"]) == (0.25, 0.25)
    rc, stdout, _ = run_cli(capsys, "gaze", "evaluate", str(manifest), "--no-compare")
    assert rc == 0
    assert (f"    picture: face brightness {dim['brightness_median']:.0f} (too dark 50%), "
            f"sharpness {dim['sharpness_median']:.3f} (blurred 0%), over-exposed 0%") in stdout
    assert "(blurred 50%)" in stdout and "(too dark 25%)" in stdout


def test_evaluate_one_round_single_session_has_no_prediction(manifest, capsys):
    lines = manifest.read_text().splitlines()
    one = [lines[0]] + [ln for ln in lines[1:] if ",p1,s0" in ln]
    path = manifest.parent / "one_session_one_round.csv"
    path.write_text("\n".join(one) + "\n")
    result = evaluate_manifest(path, protocol="one-round")
    assert result["people_without_prediction"] == ["p1"] and result["mean_error_px"] is None
    reason = result["per_person"]["p1"]["reason"]
    assert reason.startswith("one session: one-round needs two or more")
    rc, stdout, err = run_cli(capsys, "gaze", "evaluate", str(path), "--protocol", "one-round", "--json")
    assert rc == 0 and json.loads(stdout)["mean_error_px"] is None  # said, not only in the JSON
    assert err.strip().splitlines()[-1] == f"warning: no person got a figure ({reason})"
    # beside a person with two sessions: that one is scored, the reason is in the text
    two = one + [ln for ln in lines[1:] if ",p2,s0" in ln or ",p2,s1" in ln]
    path.with_name("one_and_two_sessions.csv").write_text("\n".join(two) + "\n")
    rc, stdout, _ = run_cli(capsys, "gaze", "evaluate", str(path.with_name("one_and_two_sessions.csv")),
                            "--protocol", "one-round", "--no-compare")
    assert rc == 0 and f"    no figure: {reason}" in stdout and "p2: no prediction" not in stdout
    assert "  p2: " in stdout and "calibrated on s1:" in stdout
    assert result["per_person"]["p1"]["compared"] == {"sight": None, "one-stage": None, "blend": None}
    assert result["compared"]["sight"] == {"mean_error_px": None, "models": {}, "people_better_than_main": 0}
    # not compared: when told, with another model or with one's own unless asked
    assert "compared" not in evaluate_manifest(path, protocol="one-round", compare=False)
    assert "compared" not in evaluate_manifest(path, protocol="one-round", kind="sight")
    assert "compared" not in evaluate_manifest(path, protocol="one-round", make_model=GazeCalibration)
    # another model compared when asked: against the other two
    sight = evaluate_manifest(path, protocol="one-round", kind="sight", compare=True)
    assert sight["per_person"]["p1"]["compared"] == {"one-stage": None, "blend": None}


def test_evaluate_manifest_errors(manifest, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("image,x,y\na.jpg,1,2\n")
    rc, _, err = run_cli(capsys, "gaze", "evaluate", str(bad), "--json")
    assert rc == 2 and "person, session" in err
    missing_img = tmp_path / "missing.csv"
    missing_img.write_text("image,x,y,person,session\nnope.jpg,1,2,a,s\n")
    rc, _, err = run_cli(capsys, "gaze", "evaluate", str(missing_img))
    assert rc == 2 and "nope.jpg" in err


def test_evaluate_manifest_quirks(manifest, tmp_path, monkeypatch, capsys):
    """Spaces in the header, paths relative to the working directory, an unreadable image, a
    person with a single image (nobody to calibrate on): the run completes and says so; an empty
    session cell is a one-line error."""
    lines = manifest.read_text().splitlines()
    p1 = [ln for ln in lines[1:] if ",p1," in ln]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    rows = [", ".join(lines[0].split(","))]  # "image, x, y, person, session"
    rows += [f"{manifest.parent / ln.split(',', 1)[0]},{ln.split(',', 1)[1]}" for ln in p1[1:]]
    rows.append(f"broken.jpg,{p1[0].split(',', 1)[1]}")  # relative to the working directory
    rows.append(f"{manifest.parent / p1[0].split(',', 1)[0]},100,100,solo,s0")
    path = tmp_path / "sub" / "quirks.csv"
    path.parent.mkdir()
    path.write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = run_cli(capsys, "gaze", "evaluate", str(path), "--json")
    assert rc == 0
    result = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert result["n"] == 49 and result["unreadable_images"] == 1
    # per person too: a wrong path costs that person a mean guess per image, and says so
    assert result["per_person"]["p1"]["unreadable_images"] == 1
    assert result["per_person"]["p1"]["image_sizes"] == {"640x480": 47}
    assert result["images_in_several_sessions"] == 0
    assert result["people_without_prediction"] == ["solo"] and result["per_person"]["solo"]["error_px"] is None
    assert result["per_person"]["solo"]["reason"] == "one image: nothing to calibrate on"
    assert set(result["per_person"]["solo"]) == set(result["per_person"]["p1"])
    assert result["per_person"]["p1"]["reason"] is None and result["duplicate_rows"] == 0
    # the unreadable file named on stderr (the first), never in the JSON: paths may name people
    assert "warning: 1 of the 49 images could not be read" in err and "broken.jpg" in err
    assert "broken.jpg" not in stdout
    assert result["mean_error_px"] == pytest.approx(result["per_person"]["p1"]["error_px"])
    # an image listed in two sessions of one person calibrates the prediction of itself: counted, warned
    twice = rows + [f"{manifest.parent / p1[1].split(',', 1)[0]},{p1[1].split(',', 1)[1].replace(',s0', ',s9')}"]
    twice.append(rows[3])  # and a row repeated as it is: counted, warned
    path.write_text("\n".join(twice) + "\n")
    rc, stdout, err = run_cli(capsys, "gaze", "evaluate", str(path), "--json", "--no-compare")
    assert rc == 0 and json.loads(stdout)["images_in_several_sessions"] == 1
    assert "1 image(s) are listed under two or more sessions" in err
    assert json.loads(stdout)["duplicate_rows"] == 1 and "warning: 1 row(s) repeat an image" in err
    rows[-1] = rows[-1].replace(",solo,s0", ",solo,")
    path.write_text("\n".join(rows) + "\n")
    rc, _, err = run_cli(capsys, "gaze", "evaluate", str(path))
    assert rc == 2 and "empty session on line(s) 50" in err


# ---------------------------------------------------------------------- stored gaze


def test_reestimate_stored_gaze(face_frame, tmp_path, capsys, monkeypatch):
    """Gaze stored with an online calibration is re-mapped with the participant's stored model."""
    with GazeTracker(static_image_mode=True) as tracker:
        rows = [tracker.process_image(face_frame(dx=dx, dy=dy), t=float(i))
                for i, (dx, dy) in enumerate((dx, dy) for dx in (-30, 0, 30) for dy in (-15, 0, 15))]
        online = GazeCalibration().fit(rows, [(800 + 10 * r["face_x"], 450) for r in rows])
        tracker.calibration = online
        rows = [tracker.process_image(face_frame(dx=dx, dy=dy), t=float(i))
                for i, (dx, dy) in enumerate((dx, dy) for dx in (-30, 0, 30) for dy in (-15, 0, 15))]
        rows.append(tracker.process_image(np.zeros((240, 320, 3), np.uint8), t=99.0))
    targets = np.array([(800 + 20 * dx, 450 + 20 * dy) for dx in (-30, 0, 30) for dy in (-15, 0, 15)], float)
    better = GazeCalibration().fit(rows[:-1], targets)
    table = rows_to_table(rows)
    assert table.column("x").null_count == 1  # the frame without a face

    engine = store.make_engine(store.sqlite_url(tmp_path / "db.sqlite"))
    Session = store.init_db(engine)
    with Session() as db:
        study = store.Study(slug="s", name="S", salt="x")
        part = store.Participant(study=study, pseudonym="p", consent=True)
        task = store.Task(participant=part, kind="pairwise", clock_anchor_epoch_ms=0.0)
        db.add_all([study, part, task])
        db.flush()
        db.add(store.make_chunk(task.id, "gaze", 0, table, clock_origin_epoch_ms=0.0))
        db.add(store.Calibration(participant_id=part.id, kind="calibration", model=better.to_bytes(),
                                 result={"cv_error_px": better.cv_error_px_}))
        db.commit()
        results = list(reestimate_participant(db, part))
    assert len(results) == 1
    _, new, used = results[0]
    assert new.num_rows == 10
    xy = np.column_stack([new.column("x").to_numpy(zero_copy_only=False), new.column("y").to_numpy(zero_copy_only=False)])
    np.testing.assert_allclose(xy[:-1], better.predict(rows[:-1]), rtol=1e-5, atol=0.01)
    flags = new.column("flags").to_numpy()
    assert not (flags[:-1] & GazeFlag.UNCALIBRATED).any()
    assert flags[-1] & GazeFlag.UNCALIBRATED and flags[-1] & GazeFlag.NO_FACE and np.isnan(xy[-1]).all()
    np.testing.assert_allclose(table.column("x").to_numpy(zero_copy_only=False)[:-1],
                               online.predict(rows[:-1])[:, 0], rtol=1e-5, err_msg="input unchanged")

    url = store.sqlite_url(tmp_path / "db.sqlite")
    rc, stdout, _ = run_cli(capsys, "gaze", "recalibrate", "s", "--db", url, "--out", str(tmp_path / "re"), "--json")
    assert rc == 0
    summary = json.loads(stdout)
    assert summary["participants"] == 1 and summary["tasks"] == 1 and summary["gaze_samples"] == 10
    assert summary["participants_without_calibration"] == 0
    (written,) = (tmp_path / "re").rglob("*.parquet")
    np.testing.assert_allclose(pq.read_table(written).column("x").to_numpy(zero_copy_only=False)[:-1], xy[:-1, 0])
    rc, _, err = run_cli(capsys, "gaze", "recalibrate", "nope", "--db", url, "--out", str(tmp_path / "x"))
    assert rc == 2 and "no study 'nope'" in err
    rc, _, err = run_cli(capsys, "gaze", "recalibrate", "s", "--db", store.sqlite_url(tmp_path / "missing.db"),
                         "--out", str(tmp_path / "x"))
    assert rc == 2 and "no database at" in err and not (tmp_path / "missing.db").exists()
    # without --db: the database the site uses, $GAZEPREF_DATABASE_URL (or a SQLite file given as --db)
    monkeypatch.setenv("GAZEPREF_DATABASE_URL", url)
    rc, stdout, _ = run_cli(capsys, "gaze", "recalibrate", "s", "--out", str(tmp_path / "env"), "--json")
    assert rc == 0 and json.loads(stdout)["gaze_samples"] == 10
    monkeypatch.delenv("GAZEPREF_DATABASE_URL")
    rc, stdout, _ = run_cli(capsys, "gaze", "recalibrate", "s", "--db", str(tmp_path / "db.sqlite"),
                            "--out", str(tmp_path / "file"), "--json")
    assert rc == 0 and json.loads(stdout)["gaze_samples"] == 10


def test_recalibrated_gaze_joins_the_exports_and_feature_tables(tmp_path, capsys):
    """``gaze recalibrate`` names each task by the ids ``data export`` and ``features`` use
    (``participant_id`` the pseudonym, ``task_id`` the exported task id), in its files' columns, their
    paths and its manifest, never by database ids; its gaze rows join the exported gaze rows."""
    import pandas as pd

    from gazepref.datasets.store_recording import StoreRecording

    rng = np.random.default_rng(2)
    rows = [{"t": float(i), "eye_l_iris_u": u, "eye_l_iris_v": v, "x": 0.0, "y": 0.0, "flags": 0}
            for i, (u, v) in enumerate(rng.normal(0, 0.1, (12, 2)))]
    model = GazeCalibration(use_appearance=False).fit(
        rows, [(800 + 2000 * r["eye_l_iris_u"], 450 + 1000 * r["eye_l_iris_v"]) for r in rows])
    url = store.sqlite_url(tmp_path / "db.sqlite")
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        study = store.Study(slug="s", name="S", salt="x")
        db.add(study)
        for name, n_tasks in (("a1b2", 2), ("c3d4", 1)):
            part = store.Participant(study=study, pseudonym=name, consent=True)
            db.add(part)
            db.flush()
            db.add(store.Calibration(participant_id=part.id, kind="calibration", model=model.to_bytes()))
            for k in range(n_tasks):
                task = store.Task(participant=part, index=k, kind="pairwise", clock_anchor_epoch_ms=0.0)
                db.add(task)
                db.flush()
                db.add(store.make_chunk(task.id, "gaze", 0, rows_to_table(rows), clock_origin_epoch_ms=0.0))
        db.commit()
        rec = StoreRecording(db, study)
        want = {(t.participant_id, t.task_id) for t in rec.tasks()}
        db_ids = {(p.id, t.id) for p in study.participants for t in p.tasks}
    assert len(want) == 3

    out = tmp_path / "re"
    rc, stdout, _ = run_cli(capsys, "gaze", "recalibrate", "s", "--db", url, "--out", str(out), "--json")
    assert rc == 0
    summary = json.loads(stdout)
    assert (summary["participants"], summary["tasks"], summary["gaze_samples"]) == (2, 3, 36)
    assert "samples" not in summary and "skipped_uncalibrated" not in summary
    files = sorted(out.rglob("*.parquet"))
    got = set()
    for f in files:
        table = pq.read_table(f)
        ids = set(zip(table.column("participant_id").to_pylist(), table.column("task_id").to_pylist()))
        assert len(ids) == 1 and table.num_rows == 12
        (pid, tid), = ids
        assert f.relative_to(out).as_posix() == f"{tid}_gaze.parquet"  # the path names the exported task
        got |= ids
    assert got == want
    for pid, tid in db_ids:  # no database ids in the file names
        assert not any(f.name == f"p{pid}_t{tid}_gaze.parquet" for f in files)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {(r["participant_id"], r["task_id"]) for r in manifest["files"]} == want
    assert {r["file"] for r in manifest["files"]} == {f.relative_to(out).as_posix() for f in files}
    assert sum(r["gaze_samples"] for r in manifest["files"]) == 36
    assert "data export" in manifest["ids"] and "features" in manifest["ids"]
    assert summary["manifest"] == str(out / "manifest.json")

    # joins the Parquet export's gaze stream on task_id (and its tasks on participant_id, task_id)
    exp = tmp_path / "export"
    rc, _, _ = run_cli(capsys, "data", "export", "s", "--db", url, "--to", "parquet", "--out", str(exp), "--json")
    assert rc == 0
    tasks = pd.read_parquet(exp / "tasks.parquet")
    assert set(zip(tasks["participant_id"], tasks["task_id"])) == want
    exported = pd.read_parquet(exp / "streams" / "gaze.parquet")
    re_gaze = pd.concat([pd.read_parquet(f) for f in files])
    joined = re_gaze.merge(exported[["task_id", "t"]], on=["task_id", "t"])
    assert len(joined) == len(re_gaze) == len(exported) == 36


def test_recalibrate_maps_each_task_with_the_calibration_it_was_recorded_under(tmp_path, capsys):
    """With recalibration steps (``recalibrate_every``) a participant has several calibration
    outcomes, and the site scores each task page with the one in force when it started (the
    tasks' ``calibration`` of the exports); re-mapping without --model uses that one per task,
    not the last one for all, and --model one for all. A task recorded under a failed outcome stays
    without an estimate, as stored, unless --include-failed (then its best attempt re-maps it);
    the manifest says which calibration made each file; --out is refused when it holds anything,
    unless --overwrite, and is written whole."""
    import datetime as dt

    rng = np.random.default_rng(1)
    rows = [{"t": float(i), "eye_l_iris_u": u, "eye_l_iris_v": v, "x": 0.0, "y": 0.0, "flags": 0}
            for i, (u, v) in enumerate(rng.normal(0, 0.1, (20, 2)))]
    models = [GazeCalibration(use_appearance=False).fit(
        rows, [(800 + a * r["eye_l_iris_u"] + b, 450 + 1000 * r["eye_l_iris_v"]) for r in rows])
        for a, b in ((2000, 0.0), (1500, 120.0), (2500, -90.0))]
    table = rows_to_table(rows)
    t0 = dt.datetime(2026, 1, 1, 12, 0)
    url = store.sqlite_url(tmp_path / "db.sqlite")
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        study = store.Study(slug="s", name="S", salt="x")
        part = store.Participant(study=study, pseudonym="p", consent=True)
        db.add_all([study, part])
        db.flush()
        tasks = []
        # outcome 1 (model 0), task 0, outcome 2 (model 1), task 1, failed outcome 3 (best attempt:
        # model 2), task 2
        for k in range(3):
            attempt = store.Calibration(participant_id=part.id, kind="calibration", model=models[k].to_bytes(),
                                        created_at=t0 + dt.timedelta(minutes=10 * k))
            db.add(attempt)
            db.flush()
            failed = k == 2
            db.add(store.Calibration(participant_id=part.id, kind="outcome",
                                     model=None if failed else models[k].to_bytes(),
                                     result={"selected": attempt.id, "passed": not failed},
                                     created_at=t0 + dt.timedelta(minutes=10 * k, seconds=30)))
            task = store.Task(participant=part, index=k, kind="pairwise", clock_anchor_epoch_ms=0.0,
                              started_at=t0 + dt.timedelta(minutes=10 * k + 1))
            db.add(task)
            db.flush()
            db.add(store.make_chunk(task.id, "gaze", 0, table, clock_origin_epoch_ms=0.0))
            tasks.append(task.id)
        db.commit()
        by_task = {task.id: (new, used) for task, new, used in reestimate_participant(db, part, include_failed=True)}
        assert sorted(by_task) == tasks
        for k, tid in enumerate(tasks):
            np.testing.assert_allclose(by_task[tid][0].column("x").to_numpy(), models[k].predict(rows)[:, 0],
                                       rtol=1e-5, err_msg=f"task {k}")
        assert [by_task[t][1].failed for t in tasks] == [False, False, True]
        one = {task.id: new for task, new, _ in reestimate_participant(db, part, models[0], include_failed=True)}
        for tid in tasks:
            np.testing.assert_allclose(one[tid].column("x").to_numpy(), models[0].predict(rows)[:, 0], rtol=1e-5)
        # by default the failed step's task stays as the site stored it: no estimate
        plain = {task.id: new for task, new, _ in reestimate_participant(db, part)}
        failed = plain[tasks[2]]
        assert failed.column("x").null_count == failed.num_rows and set(failed.column("confidence").to_pylist()) == {0.0}
        assert all(f & GazeFlag.UNCALIBRATED for f in failed.column("flags").to_pylist())
        np.testing.assert_allclose(plain[tasks[0]].column("x").to_numpy(), models[0].predict(rows)[:, 0], rtol=1e-5)
    out = tmp_path / "re"
    rc, stdout, _ = run_cli(capsys, "gaze", "recalibrate", "s", "--db", url, "--out", str(out), "--json")
    summary = json.loads(stdout)
    assert rc == 0 and summary["tasks"] == 3 and summary["tasks_under_failed_calibration"] == 1
    assert summary["estimated"] == 2 * len(rows) and summary["model"] == "per task"
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(f["calibration_failed"], f["estimated"]) for f in manifest["files"]] == [(False, 20), (False, 20), (True, 0)]
    with Session() as db:
        outcomes = [c.id for c in db.scalars(select(store.Calibration).where(store.Calibration.kind == "outcome")
                                              .order_by(store.Calibration.id))]
        attempts = [c.id for c in db.scalars(select(store.Calibration).where(store.Calibration.kind == "calibration")
                                              .order_by(store.Calibration.id))]
    assert [f["calibration_id"] for f in manifest["files"]] == [outcomes[0], outcomes[1], attempts[2]]
    # the folder holds a run: another is refused unless --overwrite, which replaces it whole, and
    # only a folder this command wrote (never one holding anything else: a database, an export)
    rc, _, err = run_cli(capsys, "gaze", "recalibrate", "s", "--db", url, "--out", str(out), "--include-failed")
    assert rc == 2 and "not empty (use --overwrite)" in err
    (out / "db.sqlite").write_text("not ours")
    for asked in ((), ("--overwrite",)):  # (without: not told to use --overwrite, which would not help)
        rc, _, err = run_cli(capsys, "gaze", "recalibrate", "s", "--db", url, "--out", str(out), *asked)
        assert rc == 2 and "is not a folder gaze recalibrate wrote (it holds 'db.sqlite')" in err
    assert (out / "db.sqlite").exists() and (out / "manifest.json").exists()
    (out / "db.sqlite").unlink()
    rc, _, err = run_cli(capsys, "gaze", "recalibrate", "s", "--db", url, "--out", str(tmp_path), "--overwrite")
    assert rc == 2 and "not a folder gaze recalibrate wrote" in err and (tmp_path / "db.sqlite").exists()
    model_file = tmp_path / "m.json"
    model_file.write_bytes(models[1].to_bytes())
    before = (out / "manifest.json").read_text()
    rc, stdout, _ = run_cli(capsys, "gaze", "recalibrate", "s", "--db", url, "--out", str(out), "--include-failed",
                            "--overwrite", "--json", "--model", str(model_file))
    assert rc == 0 and (out / "manifest.json").read_text() != before and not list(tmp_path.glob(".re.*"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["file"] == "m.json" and len(manifest["model"]["sha256"]) == 64
    assert manifest["include_failed"] and [f["calibration_failed"] for f in manifest["files"]] == [False, False, True]
    for tid in tasks:
        written = pq.read_table(out / "p" / f"{tid}_gaze.parquet")  # task id p/<tid>
        np.testing.assert_allclose(written.column("x").to_numpy(), models[1].predict(rows)[:, 0], rtol=1e-5)
    # an export with that gaze instead of the database's, for features and plots, and saying so
    exp = tmp_path / "exp"
    rc, _, err = run_cli(capsys, "data", "export", "s", "--db", url, "--gaze", str(out), "--out", str(exp), "--json")
    assert rc == 0, err
    gaze = pq.read_table(exp / "streams" / "gaze.parquet").to_pandas().sort_values(["task_id", "t"], kind="stable")
    assert len(gaze) == 3 * len(rows)
    np.testing.assert_allclose(gaze["x"].to_numpy(), np.tile(models[1].predict(rows)[:, 0], 3), rtol=1e-5)
    gaze_from = json.loads((exp / "manifest.json").read_text())["gaze_from"]
    assert gaze_from["model"]["file"] == "m.json" and gaze_from["folder"] == str(out.resolve())  # (not as typed)
    manifest = json.loads((out / "manifest.json").read_text())
    for changed, says in ((manifest | {"study": "other"}, "of study 'other', not 's'"),
                          ({k: v for k, v in manifest.items() if k != "include_failed"}, "run gaze recalibrate again"),
                          (manifest | {"files": manifest["files"][:2]}, f"has no gaze of task p/{tasks[2]}")):
        (out / "manifest.json").write_text(json.dumps(changed))
        rc, _, err = run_cli(capsys, "data", "export", "s", "--db", url, "--gaze", str(out), "--out", str(tmp_path / "x"))
        assert rc == 2 and says in err and not (tmp_path / "x").exists(), err  # refused before writing
    (out / "manifest.json").write_text(json.dumps(manifest))
    # a task's file that does not hold its stored samples (rows stored after the recalibration), or
    # is gone: found part way through the export, which leaves no half-written folder (it read as a
    # recording, a task short) and, with --overwrite, the earlier export as it was (it was deleted)
    last = out / "p" / f"{tasks[2]}_gaze.parquet"
    whole = pq.read_table(last)
    exported = {f.relative_to(exp): f.read_bytes() for f in exp.rglob("*") if f.is_file()}
    for broken, says in ((lambda: pq.write_table(whole.slice(0, whole.num_rows - 5), last), "does not hold task"),
                         (last.unlink, "but it is missing: run gaze recalibrate again")):
        broken()
        for target, asked in ((tmp_path / "x", ()), (exp, ("--overwrite",))):
            rc, _, err = run_cli(capsys, "data", "export", "s", "--db", url, "--gaze", str(out), "--out", str(target),
                                 *asked)
            assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*")) and not list(tmp_path.glob(".exp.*"))
        assert {f.relative_to(exp): f.read_bytes() for f in exp.rglob("*") if f.is_file()} == exported
    pq.write_table(whole, last)
    # the clicks replayed: every task's table has the correction columns, those left without an
    # estimate (the failed step, by default) too, so the export takes them together
    rc, _, err = run_cli(capsys, "gaze", "recalibrate", "s", "--db", url, "--out", str(out), "--overwrite",
                         "--interactions")
    assert rc == 0, err
    manifest = json.loads((out / "manifest.json").read_text())  # each task's clicks, what became of them
    assert all(pq.read_table(out / f["interactions_file"]).num_rows == f["interactions"] for f in manifest["files"])
    assert manifest["interactions_used"] == sum(f["interactions_used"] for f in manifest["files"])
    assert manifest["site_corrected"] is True  # the study's default: continuous calibration
    rc, _, err = run_cli(capsys, "data", "export", "s", "--db", url, "--gaze", str(out), "--out", str(exp),
                         "--overwrite", "--json")
    assert rc == 0, err
    gaze = pq.read_table(exp / "streams" / "gaze.parquet").to_pandas()
    assert gaze["drift_x"].notna().all() and gaze["x"].isna().sum() == len(rows)  # the failed step's task
    assert json.loads((exp / "manifest.json").read_text())["gaze_from"]["corrector"] == "interaction-calibration"


@pytest.mark.parametrize("gaze, corrected, corrector", [
    ({}, True, "interaction-calibration"),
    ({"drift_correction": True}, True, "drift-correction"),
    ({"drift_correction": True, "interaction_calibration": True}, True, "interaction-calibration"),
    ({"interaction_calibration": False}, False, "interaction-calibration"),
    ({"interaction_calibration": False, "drift_correction": False}, False, "interaction-calibration"),
])
def test_recalibrate_says_whether_the_site_corrected_the_gaze_with_clicks(gaze, corrected, corrector):
    """``--interactions`` replays with the study's corrector; a study whose site corrected nothing
    is replayed with continuous calibration, and ``site_corrected`` says the site did not."""
    from gazepref.signals.gaze_recalibrate import corrector_name, study_corrected, study_corrector

    config = {"gaze": gaze}
    assert study_corrected(config) is corrected
    assert corrector_name(study_corrector(config)) == corrector


def test_reestimate_leaves_out_the_site_drift_correction():
    """Rows corrected by the site's click drift correction carry drift_x/drift_y; re-estimating
    from the features gives the uncorrected model estimate, without those columns."""
    rng = np.random.default_rng(0)
    rows = [{"t": float(i), "eye_l_iris_u": u, "eye_l_iris_v": v, "x": 0.0, "y": 0.0, "flags": 0}
            for i, (u, v) in enumerate(rng.normal(0, 0.1, (20, 2)))]
    targets = [(800 + 2000 * r["eye_l_iris_u"], 450 + 1000 * r["eye_l_iris_v"]) for r in rows]
    model = GazeCalibration(use_appearance=False).fit(rows, targets)
    raw = model.predict(rows)
    stored = [dict(r, x=x + 40.0, y=y - 25.0, drift_x=40.0, drift_y=-25.0) for r, (x, y) in zip(rows, raw)]
    table = rows_to_table(stored)
    assert "drift_x" in table.column_names
    np.testing.assert_allclose(table.column("x").to_numpy() - table.column("drift_x").to_numpy(), raw[:, 0], rtol=1e-5)
    new = reestimate(table, model)
    assert "drift_x" not in new.column_names and "drift_y" not in new.column_names
    np.testing.assert_allclose(new.column("x").to_numpy(), raw[:, 0], rtol=1e-5)


def test_reestimate_gives_rows_stored_without_an_estimate_their_confidence():
    """After a failed calibration the site stores the features with x/y NaN and confidence 0 (no
    estimate, no confidence in it). Re-estimated, a row's confidence is its picture's, as the
    tracker gives it (blink, head turn); so ``--interactions`` can weigh the clicks by it (with 0
    it took none)."""
    from gazepref.signals.gaze_recalibrate import replay_interactions

    rng = np.random.default_rng(1)
    uv = rng.normal(0, 0.1, (40, 2))
    uv[14:21] = uv[13]  # a fixation before the click
    rows = [{"t": 100.0 * i, "eye_l_iris_u": u, "eye_l_iris_v": v, "head_yaw": 0.0, "head_pitch": 5.0}
            for i, (u, v) in enumerate(uv)]
    model = GazeCalibration(use_appearance=False).fit(rows, [(800 + 2000 * u, 450 + 1000 * v) for u, v in uv])
    failed = int(GazeFlag.UNCALIBRATED | GazeFlag.CALIBRATION_FAILED)
    stored = [dict(r, x=np.nan, y=np.nan, confidence=0.0, flags=failed) for r in rows]
    stored[3]["flags"] |= int(GazeFlag.BLINK)
    stored[4]["head_yaw"] = -40.0  # 15 deg past 25: x (1 - 15 / 30)
    stored[5]["eye_l_iris_u"] = np.nan  # no features: no estimate
    new = reestimate(rows_to_table(stored), model)
    conf, flags = new.column("confidence").to_pylist(), new.column("flags").to_pylist()
    assert conf[:3] == [1.0] * 3 and conf[3] == pytest.approx(0.2) and conf[4] == pytest.approx(0.5)
    assert conf[5] == 0.0 and flags[5] & GazeFlag.UNCALIBRATED and not flags[0] & GazeFlag.UNCALIBRATED
    assert all(f & GazeFlag.CALIBRATION_FAILED for f in flags), "where the rows come from stays said"
    # a click at 2.05 s, 60 px right of where the re-estimated gaze was: later rows move by it
    x0 = float(new.column("x")[19].as_py())
    y0 = float(new.column("y")[19].as_py())
    events = pa.table({"t": [2050.0], "type": ["click"], "target": ["composer"], "x": [x0 + 60.0], "y": [y0]})
    replayed = replay_interactions(new, events)
    t, used = replayed.column("t").to_numpy(), replayed.column("drift_clicks").to_numpy()
    assert (used[t < 2050] == 0).all() and (used[t > 2050] == 1).all()
    np.testing.assert_allclose(replayed.column("drift_x").to_numpy()[t > 2050], 60.0, atol=1.0)


def test_the_replay_says_what_became_of_each_click():
    """``replay_interactions(..., log=[])``: every click and caret row of the task, in time order,
    with the gaze it paired with and what became of it (the provenance ``gaze recalibrate
    --interactions`` writes beside each task's gaze)."""
    from gazepref.signals.gaze_recalibrate import replay_interactions

    t = np.arange(0.0, 4000.0, 100.0)
    gaze = pa.table({"t": t, "x": np.full(len(t), 800.0), "y": np.full(len(t), 450.0),
                     "flags": np.zeros(len(t), np.int32), "confidence": np.full(len(t), 0.9)})
    events = pa.table({
        "t": [1000.0, 1500.0, 1600.0, 1700.0, 1800.0, 2000.0, 2500.0, 9000.0, 3000.0],
        "type": ["click", "click", "click", "click", "click", "click", "caret", "click", "scroll"],
        "target": ["composer", "controls", "other-window", "composer", "composer", "window", "composer", "window",
                   "window"],
        "x": [860.0, 100.0, 500.0, None, 1e9, 1460.0, 862.0, 900.0, None],
        "y": [450.0, 100.0, 500.0, None, 1e9, 450.0, 452.0, 450.0, None]})
    log: list[dict] = []
    replayed = replay_interactions(gaze, events, log=log)
    assert [(r["t"], r["outcome"]) for r in log] == [
        (1000.0, "used"), (1500.0, "excluded: rating or choice controls"),
        (1600.0, "excluded: a window not recording"), (1700.0, "no position"), (1800.0, "off the screen"),
        (2000.0, "ignored: far from the gaze"), (2500.0, "used"), (9000.0, "after the last gaze sample")]
    assert (log[0]["gaze_x"], log[0]["gaze_y"], log[0]["quality"]) == (800.0, 450.0, pytest.approx(0.9))
    assert replayed.column("drift_clicks").to_numpy()[-1] == 2
    assert replay_interactions(gaze, events).equals(replayed)  # the log changes nothing
    # the participant moved: three clicks at places apart, each 400 px right of the gaze before
    # it (the estimate followed them), agree, and the correction restarts from them; the two
    # ignored before the third are used after all
    looked = np.select([t < 2050, t < 2550], [800.0, 1100.0], 500.0)
    gaze_moving = gaze.set_column(1, "x", pa.array(looked))
    moved = pa.table({"t": [1000.0, 2000.0, 2500.0, 3000.0], "type": ["click"] * 4, "target": ["composer"] * 4,
                      "x": [860.0, 1200.0, 1500.0, 900.0], "y": [450.0, 450.0, 452.0, 449.0]})
    log = []
    replayed = replay_interactions(gaze_moving, moved, log=log)
    assert [r["outcome"] for r in log] == ["used", "used (restart)", "used (restart)", "restart (3 agreeing)"]
    used = sum(r["outcome"].startswith(("used", "restart")) for r in log)
    assert used == replayed.column("drift_clicks").to_numpy()[-1] == 4
    # three clicks on one spot a second or more apart, the gaze staying where it was (the message
    # box clicked while reading the answer): no move shown, ignored; within a second of the one
    # before, a click is the same look
    log = []
    spot = moved.set_column(0, "t", pa.array([1000.0, 2000.0, 3000.0, 3900.0]))
    replay_interactions(gaze, spot.set_column(3, "x", pa.array([860.0, 1200.0, 1205.0, 1198.0])), log=log)
    assert [r["outcome"] for r in log] == ["used"] + ["ignored: far from the gaze"] * 2 \
        + ["ignored: repeats the one before it"]


def test_reestimate_needs_the_model_features():
    model = GazeCalibration().fit([{"eye_l_iris_u": v, "head_yaw": v * v} for v in np.linspace(0, 1, 8)],
                                  np.c_[np.arange(8), np.arange(8)])
    with pytest.raises(ValueError, match="lacks the model's feature columns"):
        reestimate(pa.table({"t": [0.0], "x": [0.0], "y": [0.0]}), model)


@pytest.mark.parametrize("participants", [0, 2])
def test_recalibrate_a_study_without_webcam_gaze_is_an_error(tmp_path, capsys, participants):
    """A study without webcam calibrations (``[study] webcam = "off"``, as the simulator's) or without
    participants has nothing to re-estimate: one line on stderr, exit 2, no output folder (it printed
    a summary of zeros and made the folder)."""
    url = store.sqlite_url(tmp_path / "db.sqlite")
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        study = store.Study(slug="s", name="S", salt="x", config={"study": {"slug": "s", "webcam": "off"}})
        db.add(study)
        for i in range(participants):
            part = store.Participant(study=study, pseudonym=f"p{i}", consent=True)
            db.add_all([part, store.Task(participant=part, kind="pairwise", clock_anchor_epoch_ms=0.0)])
        db.commit()
    rc, out, err = run_cli(capsys, "gaze", "recalibrate", "s", "--db", url, "--out", str(tmp_path / "re"), "--json")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert ("no consenting participants" if not participants else "no webcam calibration") in err
    assert not (tmp_path / "re").exists()
    # a folder where the slug goes (an export, the IFLLM release): said so, not "no study '/...'"
    rc, out, err = run_cli(capsys, "gaze", "recalibrate", str(tmp_path), "--db", url, "--out", str(tmp_path / "re"))
    assert rc == 2 and "is a path: gaze recalibrate takes the slug of a study" in err, err


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_recalibrate_takes_the_consenting_participants_only_and_counts_the_others(request, backend, tmp_path,
                                                                                   capsys):
    """``gaze recalibrate`` reads the participants ``data export`` does (the one filter,
    :func:`gazepref.store.consenting`): one whose consent is no longer given (withdrew, data
    deleted, declined: their row stays with consent False) is never re-mapped, even where stored
    gaze and a calibration of theirs are still in the database; they are counted, never named."""
    import uuid

    rng = np.random.default_rng(3)
    rows = [{"t": float(i), "eye_l_iris_u": u, "eye_l_iris_v": v, "x": 0.0, "y": 0.0, "flags": 0}
            for i, (u, v) in enumerate(rng.normal(0, 0.1, (8, 2)))]
    model = GazeCalibration(use_appearance=False).fit(
        rows, [(800 + 2000 * r["eye_l_iris_u"], 450 + 1000 * r["eye_l_iris_v"]) for r in rows])
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else store.sqlite_url(tmp_path / "db.sqlite")
    slug = f"s-{uuid.uuid4().hex[:8]}"  # PostgreSQL: one database for the session's tests
    engine = store.make_engine(url)
    Session = store.init_db(engine)
    with Session() as db:
        study = store.Study(slug=slug, name="S", salt="x")
        db.add(study)
        for name, consent in (("in", True), ("out", False), ("declined", False), ("not-asked", None)):
            part = store.Participant(study=study, pseudonym=f"{name}-{slug}", consent=consent)
            db.add(part)
            db.flush()
            if name in ("in", "out"):  # "out": data left of someone whose consent is gone
                db.add(store.Calibration(participant_id=part.id, kind="calibration", model=model.to_bytes()))
                task = store.Task(participant=part, index=0, kind="pairwise", clock_anchor_epoch_ms=0.0)
                db.add(task)
                db.flush()
                db.add(store.make_chunk(task.id, "gaze", 0, rows_to_table(rows), clock_origin_epoch_ms=0.0))
        db.commit()
    engine.dispose()
    out = tmp_path / "re"
    rc, stdout, _ = run_cli(capsys, "gaze", "recalibrate", slug, "--db", url, "--out", str(out), "--json")
    assert rc == 0
    summary = json.loads(stdout)
    assert (summary["participants"], summary["tasks"], summary["gaze_samples"]) == (1, 1, 8)
    assert summary["participants_without_consent"] == 3
    assert [p.name for p in out.iterdir() if p.is_dir()] == [f"in-{slug}"]
    manifest = (out / "manifest.json").read_text()
    assert json.loads(manifest)["participants_without_consent"] == 3 and "out-" not in manifest
    # the same participants as the export
    rc, stdout, _ = run_cli(capsys, "data", "summary", slug, "--db", url, "--json")
    assert rc == 0 and json.loads(stdout)["participants"] == 1
    assert json.loads(stdout)["participants_without_consent"] == 3
    if backend == "postgresql":  # each command gave its connection back: no transaction of theirs holds a table
        # (`data summary` left its session open until collected: a later DROP TABLE of another test
        # on this shared database waited for it for good, and a CI run hung)
        from sqlalchemy import text

        engine = store.make_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SET lock_timeout = '10s'"))  # (other tests' short transactions may hold one)
            conn.execute(text("LOCK TABLE participants IN ACCESS EXCLUSIVE MODE"))
            conn.rollback()
        engine.dispose()
    # nobody consenting: nothing to re-estimate, said with the count
    engine = store.make_engine(url)
    with store.init_db(engine)() as db:
        db.get(store.Participant, db.scalar(store.select(store.Participant.id).where(
            store.Participant.pseudonym == f"in-{slug}"))).consent = False
        db.commit()
    engine.dispose()
    rc, _, err = run_cli(capsys, "gaze", "recalibrate", slug, "--db", url, "--out", str(tmp_path / "none"))
    assert rc == 2 and "no consenting participants (4 left out" in err and not (tmp_path / "none").exists()
