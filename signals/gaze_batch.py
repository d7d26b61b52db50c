"""Offline runs of the webcam pipeline: a video file (``gaze track``) and a manifest of
calibration images with known targets (``gaze evaluate``)."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold
from threadpoolctl import threadpool_limits

from .. import UserError
from ..store import required_columns
from ..schema import GazeFlag
from .calibration import KINDS, GazeCalibration
from .gaze_session import UNUSABLE
from .webcam import GazeTracker

MANIFEST_COLUMNS = ("image", "x", "y", "person", "session")
_REQUIRED = required_columns("gaze")


def rows_to_table(rows: list[dict[str, float]]):
    """Tracker rows as a ``gaze`` stream Arrow table, schema-conformed (``conform("gaze", t)``
    returns it unchanged). Missing keys, NaN and None become nulls.

    Built from one float32 matrix in a column layout worked out once per key set: ~0.3 ms for a
    few rows of ~150 columns (column by column ~1.6 ms, a pandas round trip ~20 ms).
    """
    import pyarrow as pa

    _, fields, arrays, _ = _columns(rows)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def rows_to_chunk_batch(rows: list[dict[str, float]]):
    """The record batch ``store.encode_chunk`` would store for ``rows_to_table(rows)``: the
    conformed columns without the all-null optional ones (for ``store.chunk_from_batch``)."""
    import pyarrow as pa

    keys, fields, arrays, all_null = _columns(rows)
    keep = tuple(i for i, f in enumerate(fields) if not all_null[i] or f.name in _REQUIRED)
    return pa.RecordBatch.from_arrays([arrays[i] for i in keep], schema=_schema(keys, keep))


def _columns(rows: list[dict[str, float]]):
    """(keys, fields, arrays, all-null flags) of the conformed gaze table of ``rows``.

    Rows that all have the same keys in the same order (a tracker's rows) are read with one
    ``dict.values()`` per row into a float64 matrix (no lookup per key and row); other rows,
    or values that are not numbers (None), key by key."""
    import pyarrow as pa

    keys = tuple(rows[0]) if rows else ()
    same = all(tuple(r) == keys for r in rows[1:])
    if not same:
        keys = tuple(dict.fromkeys(k for r in rows for k in r))
    fields, sources, floats = _gaze_layout(keys)
    n, nan = len(rows), float("nan")
    values = None
    if n and same:
        try:
            values = np.array([list(r.values()) for r in rows], dtype=np.float64)
        except (TypeError, ValueError):  # None, a string: key by key below
            values = None
    if values is not None:
        matrix = values[:, _positions(keys, tuple(floats))].astype(np.float32)
    else:
        matrix = np.array([[r.get(k, nan) for k in floats] for r in rows], dtype=np.float32).reshape(n, len(floats))
    flat = pa.array(matrix.T.ravel(), from_pandas=True)  # column after column; NaN -> null
    nulls = np.isnan(matrix).all(axis=0) if n else np.ones(len(floats), bool)
    arrays, all_null = [], []
    for field, src in zip(fields, sources):
        if src is None:
            arrays.append(pa.nulls(n, field.type))
            all_null.append(True)
            continue
        j = floats.get(src)
        if j is not None:
            arrays.append(flat.slice(j * n, n))
            all_null.append(bool(nulls[j]))
            continue
        if src == "flags":
            arr = pa.array([int(r.get("flags") or 0) for r in rows], pa.int32())
        else:  # t, epoch_ms (float64)
            arr = pa.array([r.get(src) for r in rows], field.type, from_pandas=True)
        arrays.append(arr)
        all_null.append(arr.null_count == n)
    return keys, fields, arrays, all_null


@lru_cache(maxsize=64)
def _schema(keys: tuple[str, ...], keep: tuple[int, ...]):
    """The Arrow schema of the fields ``keep`` of :func:`_gaze_layout` ``(keys)`` (built once)."""
    import pyarrow as pa

    fields = _gaze_layout(keys)[0]
    return pa.schema([fields[i] for i in keep])


@lru_cache(maxsize=8)
def _positions(keys: tuple[str, ...], wanted: tuple[str, ...]) -> np.ndarray:
    """Where each of ``wanted`` is in ``keys``."""
    where = {k: i for i, k in enumerate(keys)}
    return np.array([where[k] for k in wanted], dtype=np.intp)


@lru_cache(maxsize=8)
def _gaze_layout(keys: tuple[str, ...]):
    """(conformed fields, source key or None per field, {float32 key: matrix column}) for rows
    with ``keys``; raises ValueError as ``conform`` does (no ``t``, a column the stream does not
    allow)."""
    import pyarrow as pa

    from ..schema import STREAMS, conform

    spec = {c.name: c.type for c in STREAMS["gaze"].columns}
    types = {k: pa.int32() if k == "flags" else spec.get(k, pa.float32()) for k in keys}
    schema = conform("gaze", pa.schema([pa.field(k, types[k]) for k in keys]).empty_table()).schema
    fields = list(schema)
    sources = tuple(f.name if f.name in types else None for f in fields)
    floats = [k for k, f in zip(sources, fields) if k is not None and f.type == pa.float32()]
    return fields, sources, {k: i for i, k in enumerate(floats)}


def track_video(path: str | Path, out: str | Path | None = None, *,
                progress: Callable[[Iterable, int | None], Iterable] | None = None) -> dict[str, Any]:
    """Run the pipeline over every frame of a video; optionally write the rows as Parquet."""
    import cv2

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the file")
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


#: separators a manifest may use (spreadsheets in many locales save ";" or tabs as "CSV")
_SEPARATORS = (",", ";", "\t")


def _manifest_text(path: Path) -> str:
    """The manifest's text: UTF-8 (a byte-order mark dropped), else Windows-1252 (a spreadsheet's
    "CSV" on Windows), else Latin-1 (which decodes any bytes)."""
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")


def _header_columns(header: str, sep: str) -> list[str]:
    """The column names of a header line split at ``sep``: stripped of spaces and quotes, lower case."""
    return [c.strip().strip('"').strip("'").strip().lower() for c in header.split(sep)]


def _printable(text: str, limit: int = 40) -> str:
    """``text`` for a one-line message: control and other unprintable characters as ``?``, at
    most ``limit`` characters (a binary file read as a manifest has no header to echo)."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in text)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def read_manifest(path: str | Path) -> pd.DataFrame:
    """The manifest (image, x, y, person, session) with image paths made absolute.

    A CSV file with a header line: the five columns in any order and case (others are ignored),
    separated by commas, semicolons or tabs (the first whose header names all five; with ``;`` or
    a tab, ``x`` and ``y`` may have decimal commas), UTF-8 (with or without a byte-order mark) or
    Windows-1252. Image paths (:func:`_image_path`): absolute, ``~/...``, or relative to the
    manifest's folder (else to the working directory where the file is found there only); ``\\``
    is read as ``/`` where the path as written is no file. Raises :class:`UserError` (one line)
    for anything else."""
    import io

    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the file")
    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    text = _manifest_text(path)
    if text.lstrip()[:1] in ("[", "{"):
        raise UserError(f"{path}: looks like JSON; the manifest is a CSV file with a header line "
                        f"{','.join(MANIFEST_COLUMNS)}")
    header = next((line for line in text.splitlines() if line.strip()), "")
    sep = next((s for s in _SEPARATORS if set(MANIFEST_COLUMNS) <= set(_header_columns(header, s))), None)
    if sep is None:
        found = max((_header_columns(header, s) for s in _SEPARATORS), key=len)
        missing = [c for c in MANIFEST_COLUMNS if c not in found]
        shown = ", ".join(_printable(c) for c in found[:8] if c) or "none"
        raise UserError(f"{path}: manifest lacks column(s) {', '.join(missing)} "
                        f"(needs {', '.join(MANIFEST_COLUMNS)}; its header line has {shown})")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                            skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path}: not a readable CSV ({' '.join(str(e).split())})") from None
    named = _header_columns(header, sep)
    twice = sorted(c for c in MANIFEST_COLUMNS if named.count(c) > 1)
    if twice:
        raise UserError(f"{path}: column(s) {', '.join(twice)} appear more than once in the header line")
    frame.columns = [str(c).strip().strip('"').strip("'").strip().lower() for c in frame.columns]
    frame = frame[list(MANIFEST_COLUMNS)].fillna("")  # a short line's missing cells: empty
    if frame.empty:
        raise UserError(f"{path}: manifest has no rows")
    frame = frame.copy()
    for c in ("image", "person", "session"):
        empty = frame[c].str.strip() == ""
        if empty.any():
            rows = ", ".join(str(i + 2) for i in np.flatnonzero(empty)[:5])  # line numbers, header = 1
            raise UserError(f"{path}: empty {c} on line(s) {rows}")
        frame[c] = frame[c].str.strip()
    frame["image"] = [_image_path(p, path.parent) for p in frame["image"]]
    for c in ("x", "y"):
        values = frame[c].str.strip()
        if sep != ",":  # "550,5": a decimal comma where the separator is not the comma
            values = values.str.replace(",", ".", regex=False)
        frame[c] = pd.to_numeric(values, errors="coerce")
    bad = ~np.isfinite(frame[["x", "y"]].to_numpy(np.float64)).all(axis=1)  # not a number, or "inf"
    if bad.any():
        rows = ", ".join(str(i + 2) for i in np.flatnonzero(bad)[:5])
        raise UserError(f"{path}: x and y must be finite numbers on every row (not on line(s) {rows})")
    return frame.reset_index(drop=True)


def _image_path(p: str, base: Path) -> str:
    """An image path of the manifest: absolute (``~`` expanded), or relative to the manifest's
    folder (else to the working directory, where such a path exists). A path with ``\\`` that is
    no file as written is read with ``/`` (a manifest written on Windows)."""
    try:
        if "\\" in p and not _image_path_exists(p, base):
            p = p.replace("\\", "/")
        q = Path(p).expanduser()
        if q.is_absolute() or (base / q).exists() or not q.exists():
            return str(q if q.is_absolute() else base / q)
        return str(q.resolve())
    except (OSError, RuntimeError):  # a name too long, a home folder unknown: unreadable later, counted
        return str(base / p)


def _image_path_exists(p: str, base: Path) -> bool:
    """Whether the manifest's image path ``p`` names a file as written (absolute, or relative to
    ``base`` or the working directory)."""
    q = Path(p).expanduser()
    return (base / q).is_file() or q.is_file()


def read_image(path: str) -> np.ndarray | None:
    """The picture at ``path`` as BGR ``uint8`` (H x W x 3), turned upright by its EXIF
    orientation; grey, palette, 16-bit, CMYK and alpha pictures converted (the alpha dropped).
    None if it is no file (missing, a folder) or not a picture OpenCV decodes (HEIC, text,
    empty): checked before reading, so a missing file neither blocks nor makes OpenCV log."""
    import cv2

    try:
        if not Path(path).is_file():
            return None
        data = np.fromfile(path, np.uint8)  # bytes first: any file name on any system
    except OSError:
        return None
    if not data.size:
        return None
    try:
        return cv2.imdecode(data, cv2.IMREAD_COLOR)  # EXIF orientation applied (OpenCV >= 3.1)
    except cv2.error:
        return None


def image_features(paths: Iterable[str], progress: Callable | None = None, groups: Sequence[Any] | None = None,
                   sample_of: Callable[[np.ndarray], Any] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Tracker rows for still images (one tracker, re-detecting the face in every image; BLINK
    against the median openness of the images of the same ``groups`` entry, each image's sitting,
    or of all of them: :meth:`.webcam.GazeTracker.reflag_blinks`), and
    the paths that could not be read: their rows are empty (flag NO_FACE), so one missing or
    broken file does not end an evaluation. ``frame.attrs["small_faces_found"]``: the images
    whose face only the search for small faces found (:mod:`.face_mesh`);
    ``frame.attrs["image_sizes"]``: each image's ``"WxH"`` (None where unreadable).
    ``sample_of``: the landmarks of a picture (BGR) from elsewhere, a :class:`.webcam.FaceSample`
    (``benchmarks/page_accuracy.py``: the page's face mesh); default the tracker's Face Mesh."""
    rows, unreadable, sizes = [], [], []
    paths = list(paths)
    with GazeTracker(static_image_mode=True) as tracker:
        empty = tracker.process_image(np.zeros((8, 8, 3), np.uint8))  # a row without a face
        for p in (paths if progress is None else progress(paths, len(paths))):
            image = read_image(p)
            if image is None:
                unreadable.append(p)
                rows.append(dict(empty))
                sizes.append(None)
                continue
            if sample_of is None:
                rows.append(tracker.process_image(image))
                sizes.append(f"{image.shape[1]}x{image.shape[0]}")
            else:
                sample = sample_of(image)
                rows.append(tracker.process_sample(sample))
                sizes.append(f"{sample.width}x{sample.height}")
        tracker.reflag_blinks(rows, groups)  # against the sitting's pictures, whatever their order
        frame = pd.DataFrame(rows)
        frame.attrs["small_faces_found"] = tracker.small_faces_found
        frame.attrs["image_sizes"] = sizes
    return frame, unreadable


#: the tracker's flags that describe a picture with a face (how it was taken, not the gaze), as
#: :func:`picture_conditions` names their shares
PICTURE_FLAGS = (("too_dark", GazeFlag.TOO_DARK), ("blur", GazeFlag.BLUR), ("overexposed", GazeFlag.OVEREXPOSED),
                 ("blink", GazeFlag.BLINK), ("multiple_faces", GazeFlag.MULTIPLE_FACES))

_PICTURE_COLUMNS = ("flags", "face_brightness", "face_sharpness")  # what picture_conditions reads


def picture_conditions(features: pd.DataFrame) -> dict[str, float | None]:
    """How the pictures with a face were taken, from :func:`image_features`' rows: the median face
    box brightness (``brightness_median``, grey 0-255) and sharpness (``sharpness_median``,
    ``face_sharpness``: ~0.04-0.055 for a sharp face, motion blur below 0.015), and the share of
    those pictures that each of :data:`PICTURE_FLAGS` marks (``too_dark_ratio``, ...). Values are
    None without a face. These say whether a person's error comes with dim, blurred or
    over-exposed pictures (docs/gaze.md, "Picture conditions"), which the synthetic benchmarks can
    only simulate."""
    flags = features["flags"].to_numpy(dtype=np.int64)
    face = (flags & GazeFlag.NO_FACE) == 0
    out: dict[str, float | None] = {}
    for key, column in (("brightness_median", "face_brightness"), ("sharpness_median", "face_sharpness")):
        values = features[column].to_numpy(dtype=np.float64)[face] if column in features else np.array([])
        values = values[np.isfinite(values)]
        out[key] = float(np.median(values)) if len(values) else None
    for name, bit in PICTURE_FLAGS:
        out[f"{name}_ratio"] = float(((flags[face] & int(bit)) != 0).mean()) if face.any() else None
    return out


#: evaluation protocols of :func:`evaluate_manifest`
PROTOCOLS = ("leave-session-out", "one-round")


def protocol_splits(sessions: np.ndarray, protocol: str = "leave-session-out",
                    targets: np.ndarray | None = None) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    """(calibration session, calibrate mask, predict mask) per model one person's evaluation fits.

    * ``leave-session-out``: per session, calibrate on all the other sessions and predict that
      session (the first item names the predicted session). A person with a single session:
      its rows in 4 folds instead (the first item names the fold: ``"fold 1 of 4"``); given ``targets``
      (n x 2), folds of targets, each target's rows in one fold. Images of one dot share its
      fixation error and the posture and light of that moment, so with a dot's other images
      calibrating, its held-out ones look better predicted than a new round's would be (as
      within :class:`.GazeCalibration`'s own CV, ``group_targets``).
    * ``one-round``: per session, calibrate on that session alone (one calibration round) and
      predict all the other sessions: what a study sees after one calibration as the person
      moves. A person with a single session has nothing to predict: no splits.
    """
    sessions = np.asarray(sessions)
    unique = pd.unique(sessions)
    if protocol == "one-round":
        return [(s, sessions == s, sessions != s) for s in unique] if len(unique) >= 2 else []
    if protocol != "leave-session-out":
        raise ValueError(f"unknown protocol {protocol!r} (one of {', '.join(PROTOCOLS)})")
    if len(unique) >= 2:
        return [(s, sessions != s, sessions == s) for s in unique]
    n = len(sessions)
    dots = np.zeros(n, np.intp)  # the target of each row
    if targets is not None:
        dots = np.unique(np.asarray(targets, np.float64).reshape(n, 2), axis=0, return_inverse=True)[1].ravel()
    n_dots = int(dots.max(initial=0)) + 1
    if n_dots >= 2:  # a target's rows in one fold
        folds = GroupKFold(min(4, n_dots), shuffle=True, random_state=0).split(np.zeros(n), groups=dots)
    else:
        folds = KFold(min(4, n), shuffle=True, random_state=0).split(np.zeros(n)) if n >= 2 else []
    idx, folds = np.arange(n), list(folds)
    # named so that no one takes a fold for a session ("0" could be one)
    return [(f"fold {i + 1} of {len(folds)}", np.isin(idx, train), np.isin(idx, test))
            for i, (train, test) in enumerate(folds)]


class Split(NamedTuple):
    """One split's predictions (:func:`split_predictions`)."""

    name: Any  #: the predicted session, the calibrating one (one-round), or the fold
    predicted: np.ndarray  #: mask of the person's rows predicted
    pred: np.ndarray  #: their predictions (n x 2 px)
    kind: str | None  #: the fitted model's kind ("sight", "one-stage", "blend"); None: no model
    guessed: np.ndarray | None = None  #: which of them are the calibration targets' mean
    fallback: np.ndarray | None = None  #: which of them the model's fallback made (no sight point)


def split_predictions(features: pd.DataFrame, targets: np.ndarray, sessions: np.ndarray,
                      make_model: Callable[[], GazeCalibration], protocol: str,
                      ) -> list[Split]:
    """The predictions of each split of :func:`protocol_splits` (:class:`Split`). A guessed row
    is predicted as the calibration targets' mean: no face, a feature the model needs missing,
    or no model; a fallback row by the model's fallback (no sight point).

    Calibration rows are the usable ones (face found, eyes open); with rows of several sessions
    (sittings) the model's hyper-parameters, and (``auto``) which of the sight, one-stage and
    blend models is kept, are chosen leave-one-session-out; within one session the
    hyper-parameters by folds over its targets (``auto``: the blend). Too few usable
    calibration rows: the calibration targets' mean is the guess.
    """
    usable = (features["flags"].to_numpy(dtype=np.int64) & UNUSABLE) == 0
    out = []
    for name, train, test in protocol_splits(sessions, protocol, targets):
        fit_rows = train & usable
        groups = sessions[fit_rows]
        model = make_model()
        try:
            model.fit(features[fit_rows], targets[fit_rows],
                      groups=groups if len(pd.unique(groups)) >= 2 else None)
        except ValueError:  # too few usable calibration samples
            n = int(test.sum())
            out.append(Split(name, test, np.tile(targets[train].mean(axis=0), (n, 1)), None, np.ones(n, bool),
                             np.zeros(n, bool)))
            continue
        out.append(Split(name, test, model.predict(features[test]), getattr(model, "model_kind_", None),
                         ~model.predictable(features[test]), model.by_fallback(features[test])))
    return out


#: where the error comes from (:func:`person_errors` given the sessions)
ERROR_PARTS = ("bias_px", "spread_px", "session_offset_px", "error_without_offset_px")


def _group_means(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Each row's group mean of ``values`` (n x 2)."""
    n = np.bincount(group)
    return np.stack([np.bincount(group, values[:, k]) / n for k in range(2)], axis=1)[group]


def _error_parts(targets: np.ndarray, sessions: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Sums over the rows with a prediction (``pred`` of rows with ``targets``, ``sessions``):
    [rows, bias, squared spread, its degrees of freedom, session offset, error without it].

    Grouped by (session, target), the images of one dot in one sitting: a row's *bias* is the
    distance from its group's mean prediction to the target, its *spread* its squared distance
    from that mean (degrees of freedom: rows - groups). Grouped by session: a row's *offset* is
    the length of its session's mean error vector, and its *error without it* the length of its
    error less that vector."""
    ok = np.isfinite(pred).all(axis=1)
    pred, targets, sessions = pred[ok], targets[ok], np.asarray(sessions)[ok]
    if not len(pred):
        return np.zeros(6)
    dot = pd.factorize(pd.MultiIndex.from_arrays([sessions, targets[:, 0], targets[:, 1]]))[0]
    centre = _group_means(pred, dot)
    offset = _group_means(pred - targets, pd.factorize(sessions)[0])
    return np.array([len(pred), np.linalg.norm(centre - targets, axis=1).sum(), ((pred - centre) ** 2).sum(),
                     len(pred) - dot.max() - 1, np.linalg.norm(offset, axis=1).sum(),
                     np.linalg.norm(pred - targets - offset, axis=1).sum()])


def person_errors(targets: np.ndarray, splits: list[Split],
                  protocol: str, sessions: np.ndarray | None = None) -> dict[str, Any]:
    """One person's figures from :func:`split_predictions`.

    ``leave-session-out``: every row is predicted once; ``error_px`` is the mean over rows.
    ``one-round``: each session calibrates once and the other sessions' rows are predicted;
    ``error_px`` is the mean over calibrating sessions of each one's mean error (every round
    counts the same, however many rows the others have); ``rounds`` lists them.
    ``median_error_px``: the median over all predictions made. ``guessed_ratio`` (splits of
    :func:`split_predictions`): the share of the predictions made that are the calibration
    targets' mean (no face, a feature the model needs missing, no model), and ``fallback_ratio``
    the share made by a sight model's or a blend's one-stage fallback (a face whose line of
    sight could not be found, :meth:`.GazeCalibration.by_fallback`). ``models``: how many of the
    fitted calibrations were of each kind (:attr:`.GazeCalibration.model_kind_`).
    ``held_out`` (leave-session-out): each predicted session's (or fold's) mean error, so one
    session that no calibration fits stands out.

    Given ``sessions``, where the error comes from (:func:`_error_parts`), averaged as
    ``error_px`` is (over rows, or over calibrating sessions):

    * as eye trackers report it, over the images of one dot in one session: ``bias_px``, the
      distance from their mean prediction to the dot (accuracy in the eye-tracking sense: what
      averaging many pictures would leave), and ``spread_px``, the root-mean-square distance of
      the predictions from that mean (precision: picture-to-picture noise, which averaging
      removes; None with one image per dot);
    * ``session_offset_px``: the length of a predicted session's mean error vector, and
      ``error_without_offset_px``: the error once each session's mean error vector is taken
      away (found here from the session's own targets): what is left after the constant
      correction per session the study site's continuous calibration from clicks estimates
      (:class:`.calibration.InteractionRecalibrator`). The mean vector minimises the squared
      error, not the mean distance, so with small or scattered offsets this can exceed
      ``error_px`` by a little.
    """
    splits = [Split(*s) for s in splits]  # (plain tuples of its first four fields too)
    errs = [np.linalg.norm(s.pred - targets[s.predicted], axis=1) for s in splits]
    pooled = np.concatenate(errs) if errs else np.empty(0)
    pooled = pooled[np.isfinite(pooled)]
    kinds = [s.kind for s in splits if s.kind is not None]
    out: dict[str, Any] = {"error_px": None, "median_error_px": None,
                           "models": {k: kinds.count(k) for k in sorted(set(kinds))},
                           "guessed_ratio": None, "fallback_ratio": None, _per_split_key(protocol): []}
    if splits and all(s.guessed is not None for s in splits):
        # the share of the predictions made that are the targets' mean (each ~600 px off on a laptop)
        guessed = np.concatenate([s.guessed for s in splits])
        out["guessed_ratio"] = float(guessed.mean()) if len(guessed) else None
    if splits and all(s.fallback is not None for s in splits):
        fallback = np.concatenate([s.fallback for s in splits])
        out["fallback_ratio"] = float(fallback.mean()) if len(fallback) else None
    if sessions is not None:
        out.update(dict.fromkeys(ERROR_PARTS))
    if not len(pooled):
        return out
    out["median_error_px"] = float(np.median(pooled))
    each = [{"session": str(s.name), "error_px": float(np.nanmean(e)) if np.isfinite(e).any() else None,
             "n_predicted": int(np.isfinite(e).sum())} for s, e in zip(splits, errs)]
    out[_per_split_key(protocol)] = each
    if protocol == "one-round":
        out["error_px"] = float(np.mean([r["error_px"] for r in each if r["error_px"] is not None]))
    else:
        out["error_px"] = float(np.mean(pooled))
    if sessions is not None:
        sums = np.array([_error_parts(targets[s.predicted], np.asarray(sessions)[s.predicted], s.pred)
                         for s in splits])
        if protocol != "one-round":  # each row once: pool the splits
            sums = sums.sum(axis=0, keepdims=True)
        for key, (i, n) in zip(ERROR_PARTS, ((1, 0), (2, 3), (4, 0), (5, 0))):  # _error_parts' sums
            has = sums[:, n] > 0  # one-round: each round counts the same
            value = sums[has, i] / sums[has, n]
            out[key] = float(np.mean(np.sqrt(value) if key == "spread_px" else value)) if has.any() else None
    return out


def _per_split_key(protocol: str) -> str:
    """The key of a person's per-split figures: ``rounds`` (one-round) or ``held_out``."""
    return "rounds" if protocol == "one-round" else "held_out"


def _mean(values: list[float | None]) -> float | None:
    """The mean of the values that are not None (None if none is)."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _make_kind(kind: str) -> Callable[[], GazeCalibration]:
    """A factory of the built-in calibration model ``kind`` as the evaluation fits it."""
    return lambda: GazeCalibration(fill_missing=True, kind=kind)


def _one_line(e: BaseException, limit: int = 200) -> str:
    """``ErrorType: message`` on one line, at most ``limit`` characters of message."""
    message = " ".join(str(e).split())
    return f"{type(e).__name__}: {message[:limit]}" if message else type(e).__name__


def _no_prediction_reason(n: int, n_sessions: int, protocol: str) -> str:
    """Why a person's evaluation made no prediction (``error_px`` None)."""
    if protocol == "one-round" and n_sessions < 2:
        return ("one session: one-round needs two or more (one calibrates, the others are predicted); "
                "leave-session-out scores it by folds of its targets")
    if n < 2:
        return "one image: nothing to calibrate on"
    return "no prediction could be made"


def _evaluate_person(rows: pd.DataFrame, progress: Callable | None, make_model: Callable[[], GazeCalibration],
                     protocol: str, others: list[str], features_of: Callable = image_features,
                     ) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
    """One person's entry of :func:`evaluate_manifest`, the rows :func:`picture_conditions` reads,
    and the paths that could not be read. A compared kind whose fit fails is None in
    ``compared`` (its reason under the entry's ``_compare_failed``, for the caller to warn)."""
    features, bad = features_of(rows["image"], progress, rows["session"].tolist())
    targets = rows[["x", "y"]].to_numpy(dtype=np.float64)
    sessions = rows["session"].to_numpy()
    # none of the pictures read (a wrong folder): no figure, rather than every image's mean guess
    nothing_read = len(bad) == len(rows)
    splits = [] if nothing_read else split_predictions(features, targets, sessions, make_model, protocol)
    flags = features["flags"].to_numpy(dtype=np.int64)
    found = int(((flags & GazeFlag.NO_FACE) == 0).sum())
    size = features["face_size"].to_numpy(dtype=np.float64)
    n_sessions = int(len(pd.unique(sessions)))
    entry = {
        **person_errors(targets, splits, protocol, sessions),  # None: nobody to calibrate on / nothing to predict
        "n": len(rows),
        "sessions": n_sessions,
        "face_found_ratio": found / len(rows),
        # found only by the search for faces too small for the mesh's own detector
        "small_face_ratio": features.attrs.get("small_faces_found", 0) / len(rows),
        "usable_ratio": float(((flags & UNUSABLE) == 0).mean()),  # face found, eyes open
        # eye span (outer corners) / picture width: small faces give noisy landmarks
        "face_size_median": float(np.nanmedian(size)) if np.isfinite(size).any() else None,
        # predicted as the targets' mean, like pictures without a face (a wrong folder shows here)
        "unreadable_images": len(bad),
        # "WxH": count. Sessions at different sizes of one camera may differ in field of view
        # (a 4:3 mode cropped from a 16:9 sensor), which the assumed focal length cannot know
        "image_sizes": dict(sorted(Counter(z for z in features.attrs.get("image_sizes", []) if z).items())),
        # dim, blurred, over-exposed pictures (the tracker's flags, brightness and sharpness)
        "picture": picture_conditions(features),
    }
    entry["reason"] = None if entry["error_px"] is not None else (
        f"none of its {len(rows)} images could be read" if nothing_read
        else _no_prediction_reason(len(rows), n_sessions, protocol))
    if others:  # the same features and splits, each other kind fitted in turn
        entry["compared"], entry["compared_models"], failed = {}, {}, {}
        for k in others:
            entry["compared_models"][k] = {}
            if nothing_read:
                entry["compared"][k] = None
                continue
            try:
                theirs = split_predictions(features, targets, sessions, _make_kind(k), protocol)
                errors = person_errors(targets, theirs, protocol)
                # what was fitted for it (a round mostly without a line of sight: one-stage)
                entry["compared"][k], entry["compared_models"][k] = errors["error_px"], errors["models"]
            except Exception as e:  # noqa: BLE001 - the main model's figures stand without this comparison
                entry["compared"][k], failed[k] = None, _one_line(e)
        if failed:
            entry["_compare_failed"] = failed
    # only what picture_conditions reads: a person's rows hold the eye patches (hundreds of columns)
    return entry, features[[c for c in _PICTURE_COLUMNS if c in features]], bad


def _failed_person(rows: pd.DataFrame, others: list[str], error: Exception, protocol: str) -> dict[str, Any]:
    """The entry of a person whose evaluation raised ``error``: every figure None (the keys of a
    scored person's entry), and why."""
    return {
        "error_px": None, "median_error_px": None, "models": {}, "guessed_ratio": None, "fallback_ratio": None,
        _per_split_key(protocol): [],
        **dict.fromkeys(ERROR_PARTS),
        "n": len(rows), "sessions": int(rows["session"].nunique()), "face_found_ratio": None,
        "small_face_ratio": None, "usable_ratio": None, "face_size_median": None, "unreadable_images": None,
        "image_sizes": {}, "picture": None,
        "reason": f"evaluation failed ({_one_line(error)})",
        **({"compared": dict.fromkeys(others), "compared_models": {k: {} for k in others}} if others else {}),
    }


def evaluate_manifest(path: str | Path, progress: Callable | None = None,
                      make_model: Callable[[], GazeCalibration] | None = None,
                      protocol: str = "leave-session-out", kind: str = "auto",
                      compare: bool | None = None, warn: Callable[[str], None] | None = None,
                      features: Callable | None = None) -> dict[str, Any]:
    """Calibration accuracy per person on a manifest of images with known targets.

    The manifest: :func:`read_manifest`. Each person is evaluated on its own: a person whose
    evaluation fails (an error in the pipeline or the fit) gets ``error_px`` None and a one-line
    ``reason`` (``"evaluation failed (ErrorType: message)"``), and the others are scored; every
    person without a figure has a ``reason`` (one session under ``one-round``, ...), None where
    scored. ``warn``: called with one line for each such failure, for the unreadable images (the
    first path: paths appear only here, not in the result) and for repeated rows
    (``duplicate_rows``: rows that repeat a person's image within one session).

    ``protocol`` (:func:`protocol_splits`): ``leave-session-out`` calibrates on all of a
    person's other sessions and predicts each session; ``one-round`` calibrates on one session
    alone and predicts the others, averaged over which session calibrates. ``kind``: the
    :class:`.GazeCalibration` model (ignored with ``make_model``).

    ``compare``: also evaluate the built-in models ``sight``, ``one-stage`` and ``blend`` other
    than ``kind`` (never ``auto``; with ``make_model`` all three) on the same features and
    splits, so one run shows which model suits these faces. None (default): compare when
    ``kind`` is ``auto`` and no ``make_model`` is given. Each person's images go through Face
    Mesh once either way; comparing fits each compared kind once more per split (about twice
    auto's fitting time: +1.8 s to auto's 1.5 s and Face Mesh's ~1.3 s on a synthetic 96-image
    manifest of 2 people x 3 sessions). Adds per person ``compared`` ({kind: ``error_px`` or
    None}) and at the top ``compared`` ({kind: {``mean_error_px`` over the people it predicts,
    ``people_better_than_main``: on how many people its ``error_px`` is below the main
    model's}}); without comparing neither key is there.

    ``features``: where the tracker rows come from, called as :func:`image_features` (paths,
    progress, sittings) and returning what it does; default the server's pipeline, Face Mesh in
    Python (``benchmarks/page_accuracy.py`` passes the page's face mesh, run in Chromium).
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r} (one of {', '.join(PROTOCOLS)})")
    manifest = read_manifest(path)
    if kind not in KINDS:
        raise UserError(f"unknown calibration model {kind!r} (one of {', '.join(KINDS)})")
    # said before Face Mesh starts for anyone (a wrong folder)
    if not any(Path(p).is_file() for p in manifest["image"]):
        raise UserError(f"{path}: none of its {len(manifest)} images is there (first: {manifest['image'].iloc[0]}; "
                        "paths are read relative to the manifest's folder)")

    custom = make_model is not None
    make_model = make_model or _make_kind(kind)
    if compare is None:
        compare = kind == "auto" and not custom
    others = [k for k in KINDS if k != "auto" and (custom or k != kind)] if compare else []
    per_person: dict[str, dict[str, Any]] = {}
    all_features: list[pd.DataFrame] = []
    found_total = 0
    unreadable: list[str] = []
    for person, rows in manifest.groupby("person", sort=True):
        try:
            # one BLAS thread: the fits are many small SVDs and solves, which threads only make
            # contend (the same figures and wall time; 264 images: 25-29 s of CPU, 14-17 s on one)
            with threadpool_limits(1):
                entry, picture_rows, bad = _evaluate_person(rows, progress, make_model, protocol, others,
                                                            features or image_features)
        except Exception as e:  # noqa: BLE001 - one person's failure must not cost the others' figures
            entry, picture_rows, bad = _failed_person(rows, others, e, protocol), None, []
            if warn is not None:
                warn(f"person {person}: {entry['reason']}")
        for k, reason in entry.pop("_compare_failed", {}).items():
            if warn is not None:
                warn(f"person {person}: {k} not compared: {reason}")
        per_person[str(person)] = entry
        unreadable += bad
        if picture_rows is not None:
            found_total += int(((picture_rows["flags"].to_numpy(dtype=np.int64) & GazeFlag.NO_FACE) == 0).sum())
            all_features.append(picture_rows)
    if len(unreadable) == len(manifest):
        raise UserError(f"{path}: none of the {len(manifest)} images could be read (first: {unreadable[0]})")
    if unreadable and warn is not None:  # the paths only here, never in the result (they may name people)
        warn(f"{len(unreadable)} of the {len(manifest)} images could not be read (missing, a folder or not a "
             f"picture OpenCV decodes; predicted as the targets' mean), first: {unreadable[0]}")
    duplicates = int(manifest.duplicated(["person", "session", "image"]).sum())
    if duplicates and warn is not None:
        warn(f"{duplicates} row(s) repeat an image already listed for the same person and session; each row "
             "counts as one prediction")
    errors = [p["error_px"] for p in per_person.values() if p["error_px"] is not None]
    compared = {}
    for k in others:
        theirs = [p["compared"][k] for p in per_person.values() if p["compared"][k] is not None]
        fitted: Counter[str] = Counter()
        for p in per_person.values():
            fitted.update(p.get("compared_models", {}).get(k, {}))
        compared[k] = {
            "mean_error_px": float(np.mean(theirs)) if theirs else None,  # over the people it predicts
            "models": dict(sorted(fitted.items())),  # the calibrations fitted for it, by the kind fitted
            "people_better_than_main": sum(
                1 for p in per_person.values()
                if p["compared"][k] is not None and p["error_px"] is not None and p["compared"][k] < p["error_px"]),
        }
    result = {
        "protocol": protocol,
        "model": None if custom else kind,
        "mean_error_px": float(np.mean(errors)) if errors else None,  # over the people with predictions
        **{f"mean_{k}": _mean([p[k] for p in per_person.values()]) for k in ERROR_PARTS},
        "mean_guessed_ratio": _mean([p.get("guessed_ratio") for p in per_person.values()]),
        "mean_fallback_ratio": _mean([p.get("fallback_ratio") for p in per_person.values()]),
        "per_person": per_person,
        "face_found_ratio": found_total / len(manifest),
        "n": int(len(manifest)),
        "people": len(per_person),
        "people_without_prediction": sorted(p for p, r in per_person.items() if r["error_px"] is None),
        "unreadable_images": len(unreadable),
        "picture": picture_conditions(  # over every image
            pd.concat(all_features, ignore_index=True) if all_features else pd.DataFrame({"flags": []})),
        # rows that repeat (person, session, image): each still counts as a prediction
        "duplicate_rows": duplicates,
        # images listed under two or more sessions of one person: with leave-session-out or
        # one-round, such an image calibrates the prediction of itself (the figures look better)
        "images_in_several_sessions": int((manifest.groupby(["person", "image"])["session"].nunique() > 1).sum()),
    }
    if compare:
        result["compared"] = compared
    return result
