"""Kept webcam frames exported from the study database (``store_recording.export_frames``)."""
from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import pytest

from gazepref import store
from gazepref.datasets.store_recording import export_frames


def _one_task(s, anchor: float | None = None):
    """A study with one consenting participant and one pairwise task (its clock anchored at
    ``anchor``), flushed: ``(study, participant, task)``."""
    study = store.Study(slug="s", name="S", salt="x")
    p = store.Participant(study=study, pseudonym="p1", consent=True)
    task = store.Task(participant=p, index=0, kind="pairwise", clock_anchor_epoch_ms=anchor)
    s.add_all([study, p, task])
    s.flush()
    return study, p, task


def test_frames_of_page_loads_sharing_seqs_each_get_their_own_file(tmp_path: Path):
    """Chunks are keyed by page load, so reloaded pages that lost their saved counter keep frames
    of the same (task, seq, index), even at the same page-clock time: each frame is its own file,
    named the same way by every export (the earliest stored keeps the plain name)."""
    sessions = store.init_db(store.make_engine(store.sqlite_url(tmp_path / "db.sqlite")))
    with sessions() as s:
        study, p, task = _one_task(s)
        for load in range(3):  # three page loads' frame seq 0, index 0 and 1, at the same page times
            for i in range(2):
                s.add(store.GazeFrame(participant_id=p.id, task_id=task.id, seq=0, index=i, t=100.0 * i,
                                      data=b"\xff\xd8" + bytes([load, i])))
        s.commit()
        names = []
        for out in ("a", "b"):
            assert export_frames(s, study, tmp_path / out) == 6
            with open(tmp_path / out / "frames" / "frames.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            names.append([r["file"] for r in rows])
            assert len(set(names[-1])) == 6, names[-1]
            stored = {(tmp_path / out / r["file"]).read_bytes() for r in rows}
            assert stored == {b"\xff\xd8" + bytes([load, i]) for load in range(3) for i in range(2)}
        assert names[0] == names[1]
        assert (tmp_path / "a" / "frames" / "p1" / f"task{task.id}" / "000000-00.jpg").read_bytes() == b"\xff\xd8\x00\x00"


def test_task_frames_say_their_page_load_and_their_time_on_the_task_clock(tmp_path: Path):
    """A frame's ``t`` counts from its page load's clock origin: two page loads of one task (the
    second lost its counter, so both have a chunk seq 0, with overlapping page times) keep frames
    whose index rows tell the page loads apart (``clock_origin_epoch_ms``) and put every frame on
    Unix time (``epoch_ms``) and on the task clock of the streams (``t_task``); a calibration's
    frames (no page load stored) leave them empty."""
    import pyarrow as pa

    anchor, first, second = 1_700_000_000_000.0, 1_700_000_000_500.25, 1_700_000_090_000.5
    sessions = store.init_db(store.make_engine(store.sqlite_url(tmp_path / "db.sqlite")))
    with sessions() as s:
        study, p, task = _one_task(s, anchor)
        cal = store.Calibration(participant_id=p.id, kind="calibration")
        s.add(cal)
        s.flush()
        loads = [(first, 0, [100.0, 200.0]), (first, 1, [300.0]), (second, 0, [150.0, 250.0])]
        for origin, seq, times in loads:
            s.add(store.make_chunk(task.id, "gaze", seq, pa.table({"t": times, "x": [1.0] * len(times),
                                                                    "y": [2.0] * len(times)}),
                                   clock_origin_epoch_ms=origin))
            for i, t in enumerate(times):
                s.add(store.GazeFrame(participant_id=p.id, task_id=task.id, seq=seq, index=i, t=t,
                                      data=b"\xff\xd8" + bytes([seq, i])))
        s.add(store.GazeFrame(participant_id=p.id, calibration_id=cal.id, seq=0, index=0, t=42.0, data=b"\xff\xd8"))
        s.commit()
        assert export_frames(s, study, tmp_path / "out") == 6
    with open(tmp_path / "out" / "frames" / "frames.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    got = sorted((float(r["t"]), r["clock_origin_epoch_ms"], r["epoch_ms"], r["t_task"]) for r in rows if r["task_id"])
    want = sorted((t, repr(origin), repr(origin + t), repr(t + (origin - anchor)))
                  for origin, _, times in loads for t in times)
    assert got == want
    [calibration] = [r for r in rows if r["calibration_id"]]
    assert (calibration["clock_origin_epoch_ms"], calibration["epoch_ms"], calibration["t_task"]) == ("", "", "")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_task_frames_t_task_is_the_time_of_its_gaze_row_in_the_streams(tmp_path: Path, kind, request, monkeypatch):
    """``t_task`` is on the task clock exactly as the streams' ``t`` (:func:`store.read_stream`,
    the exported ``streams/gaze``): a reader joins a frame to its gaze row on it. Page times with
    sub-millisecond parts (``performance.now()``) and a reloaded page's origin off the anchor by a
    fraction of a ms must not be rounded or shifted in another order than the streams' are. The
    pictures are fetched a few at a time (here one: the page-load lookups run between fetches of
    the open result, a server-side cursor on PostgreSQL)."""
    from gazepref.datasets import store_recording

    monkeypatch.setattr(store_recording, "FRAMES_PER_FETCH", 1)
    anchor, reload = 1_700_000_000_000.0, 1_700_000_012_345.6789
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            url = store.sqlite_url(tmp_path / "db.sqlite")
        else:
            url = stack.enter_context(request.getfixturevalue("own_postgres_database")("gp_frames"))
        _check_t_task(tmp_path, url, anchor, reload)


def _check_t_task(tmp_path: Path, url: str, anchor: float, reload: float) -> None:
    import pyarrow as pa

    engine = store.make_engine(url)
    sessions = store.init_db(engine)
    with sessions() as s:
        study, p, task = _one_task(s, anchor)
        for seq, origin, times in [(0, anchor, [100.0625, 200.56789]), (1, reload, [33.3125, 1234.56785])]:
            s.add(store.make_chunk(task.id, "gaze", seq, pa.table({"t": times, "x": [1.0] * len(times),
                                                                    "y": [2.0] * len(times)}),
                                   clock_origin_epoch_ms=origin))
            for i, t in enumerate(times):
                s.add(store.GazeFrame(participant_id=p.id, task_id=task.id, seq=seq, index=i, t=t, data=b"\xff\xd8"))
        s.commit()
        assert export_frames(s, study, tmp_path / "out") == 4
        stream_t = store.read_stream(s, task, "gaze").column("t").to_pylist()
    with open(tmp_path / "out" / "frames" / "frames.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    engine.dispose()
    assert sorted(float(r["t_task"]) for r in rows) == sorted(stream_t)


@pytest.mark.parametrize("state, expected", [
    ({}, (None, None, None)),  # the webcam off, or the camera step not reached
    ({"gaze": "calibrated"}, ("calibrated", None, None)),
    ({"gaze": "failed"}, ("failed", None, None)),  # a failed calibration, then mouse only
    ({"gaze": "uncalibrated"}, ("uncalibrated", None, None)),
    ({"gaze": "skipped", "setup": {"camera_error": None}}, ("skipped", None, None)),
    ({"gaze": "no-camera", "setup": {"camera_error": "not-found"}}, ("no-camera", "not-found", None)),
    ({"setup": {"camera_error": "denied"}, "screened_out": {"reason": "no-camera"}}, ("no-camera", "denied", "no-camera")),
    ({"screened_out": {"reason": "calibration-failed"}}, ("failed", None, "calibration-failed")),
    # screened out at a later camera step (recalibrate_every): that step's outcome, not the first's
    ({"gaze": "calibrated", "screened_out": {"reason": "no-camera", "camera": "no-camera"}},
     ("no-camera", None, "no-camera")),
    ({"screened_out": {"reason": "no-camera", "camera": "skipped"}}, ("skipped", None, "no-camera")),
    ({"gaze": "something else"}, (None, None, None)),
])
def test_the_webcam_outcome_of_a_participant(state, expected):
    from gazepref.datasets.store_recording import webcam_outcome

    out = webcam_outcome(state)
    assert (out["webcam"], out["camera_error"], out["screened_out"]) == expected
