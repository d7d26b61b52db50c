"""Offline runs of the webcam pipeline: a video file (``gaze track``) and a manifest of
calibration images with known targets (``gaze evaluate``)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from .. import UserError
from ..schema import GazeFlag
from .calibration import GazeCalibration
from .gaze_session import UNUSABLE
from .webcam import GazeTracker

MANIFEST_COLUMNS = ("image", "x", "y", "person", "session")


def rows_to_table(rows: list[dict[str, float]]):
    """Tracker rows as a ``gaze`` stream Arrow table (schema-conformed), built column by column
    (a pandas round trip costs ~20 ms for a few rows of ~150 columns; this ~1 ms)."""
    import pyarrow as pa

    from ..schema import conform

    names = list(dict.fromkeys(k for r in rows for k in r))
    arrays = []
    for c in names:
        values = [r.get(c) for r in rows]
        if c == "flags":
            arrays.append(pa.array([int(v or 0) for v in values], pa.int32()))
        else:
            arrays.append(pa.array(values, pa.float64() if c == "t" else pa.float32(), from_pandas=True))
    return conform("gaze", pa.table(arrays, names=names))


def track_video(path: str | Path, out: str | Path | None = None, *,
                progress: Callable[[Iterable, int | None], Iterable] | None = None) -> dict[str, Any]:
    """Run the pipeline over every frame of a video; optionally write the rows as Parquet."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise UserError(f"{path}: not a video OpenCV can read")
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    rows: list[dict[str, float]] = []
    busy = 0.0

    def frames():
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame

    try:
        with GazeTracker() as tracker:
            it = frames() if progress is None else progress(frames(), total)
            for i, frame in enumerate(it):
                t = i * 1000.0 / fps if fps > 0 else float(i)
                start = time.perf_counter()
                rows.append(tracker.process_image(frame, t))
                busy += time.perf_counter() - start
    finally:
        cap.release()
    if not rows:
        raise UserError(f"{path}: no frames could be read")
    found = sum(1 for r in rows if not int(r["flags"]) & GazeFlag.NO_FACE)
    result: dict[str, Any] = {
        "frames": len(rows),
        "face_found_ratio": found / len(rows),
        "ms_per_frame": 1000.0 * busy / len(rows),
        "width": size[0],
        "height": size[1],
        "fps": fps,
    }
    if out is not None:
        import pyarrow.parquet as pq

        pq.write_table(rows_to_table(rows), str(out))
        result["out"] = str(out)
    return result


def read_manifest(path: str | Path) -> pd.DataFrame:
    """The manifest (image, x, y, person, session) with image paths made absolute."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    try:
        frame = pd.read_csv(path, dtype={"image": str, "person": str, "session": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path}: not a readable CSV ({e})") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: manifest lacks column(s) {', '.join(missing)} "
                        f"(needs {', '.join(MANIFEST_COLUMNS)})")
    if frame.empty:
        raise UserError(f"{path}: manifest has no rows")
    frame = frame.copy()
    frame["image"] = [str(p if Path(p).is_absolute() else path.parent / p) for p in frame["image"]]
    for c in ("x", "y"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce")
    if frame[["x", "y"]].isna().any().any():
        raise UserError(f"{path}: x and y must be numbers on every row")
    return frame


def image_features(paths: Iterable[str], progress: Callable | None = None) -> pd.DataFrame:
    """Tracker rows for still images (one tracker, re-detecting the face in every image)."""
    import cv2

    rows = []
    paths = list(paths)
    with GazeTracker(static_image_mode=True) as tracker:
        for p in (paths if progress is None else progress(paths, len(paths))):
            image = cv2.imread(p, cv2.IMREAD_COLOR)
            if image is None:
                if not Path(p).is_file():
                    raise FileNotFoundError(2, "no such file", p)
                raise UserError(f"{p}: not an image OpenCV can read")
            rows.append(tracker.process_image(image))
    return pd.DataFrame(rows)


def _held_out_predictions(features: pd.DataFrame, targets: np.ndarray, sessions: np.ndarray,
                          make_model: Callable[[], GazeCalibration]) -> np.ndarray:
    """Predictions for every row, each from a model calibrated without the row's session.

    With a single session, its rows are split into 4 folds instead.
    """
    pred = np.full_like(targets, np.nan, dtype=np.float64)
    unique = pd.unique(sessions)
    if len(unique) >= 2:
        splits = [(sessions != s, sessions == s) for s in unique]
        inner_groups: np.ndarray | None = sessions
    else:
        n = len(targets)
        folds = KFold(min(4, n), shuffle=True, random_state=0).split(np.zeros(n)) if n >= 2 else []
        splits = [(np.isin(np.arange(n), train), np.isin(np.arange(n), test)) for train, test in folds]
        inner_groups = None
    # Blinks and missing faces do not show where the eyes point: leave them out of calibration.
    usable = (features["flags"].to_numpy(dtype=np.int64) & UNUSABLE) == 0
    for train, test in splits:
        fit_rows = train & usable
        model = make_model()
        try:
            model.fit(features[fit_rows], targets[fit_rows],
                      groups=None if inner_groups is None else inner_groups[fit_rows])
        except ValueError:  # too few usable calibration samples: guess the calibration targets' mean
            pred[test] = targets[train].mean(axis=0)
            continue
        pred[test] = model.predict(features[test])
    return pred


def evaluate_manifest(path: str | Path, progress: Callable | None = None,
                      make_model: Callable[[], GazeCalibration] | None = None) -> dict[str, Any]:
    """Per person, calibrate on the other sessions and predict each held-out session."""
    manifest = read_manifest(path)
    make_model = make_model or (lambda: GazeCalibration(fill_missing=True))
    per_person: dict[str, dict[str, Any]] = {}
    found_total = 0
    for person, rows in manifest.groupby("person", sort=True):
        features = image_features(rows["image"], progress).reset_index(drop=True)
        targets = rows[["x", "y"]].to_numpy(dtype=np.float64)
        sessions = rows["session"].to_numpy()
        pred = _held_out_predictions(features, targets, sessions, make_model)
        err = np.linalg.norm(pred - targets, axis=1)
        found = int(((features["flags"].astype(int) & GazeFlag.NO_FACE) == 0).sum())
        found_total += found
        per_person[str(person)] = {
            "error_px": float(np.nanmean(err)),
            "median_error_px": float(np.nanmedian(err)),
            "n": len(rows),
            "sessions": int(len(pd.unique(sessions))),
            "face_found_ratio": found / len(rows),
        }
    errors = [p["error_px"] for p in per_person.values()]
    return {
        "mean_error_px": float(np.mean(errors)),
        "per_person": per_person,
        "face_found_ratio": found_total / len(manifest),
        "n": int(len(manifest)),
        "people": len(per_person),
    }
