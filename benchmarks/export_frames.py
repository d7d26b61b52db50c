"""What exporting a study's kept webcam frames costs (``store_recording.export_frames``: the
``frames/`` folder of ``gazepref data export`` and the dashboard's export).

    .venv/bin/python benchmarks/export_frames.py [--tasks 20] [--frames 1000] [--kb 9]

Builds a SQLite study of ``--tasks`` tasks, each with ``--frames`` kept frames of ``--kb`` KB (a
320x240 JPEG at quality ~0.8 is ~8-10 KB) in 15-frame gaze chunks of one page load, plus a second
page load sharing the first chunk seqs (a reload: the ambiguous case that decodes chunks), then
exports them; prints the frames, the seconds and the peak Python memory (tracemalloc) in MB. The
pictures of the whole study (``tasks * frames * kb``) are what a peak of that order would mean
held at once.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
from sqlalchemy import select

from gazepref import store
from gazepref.datasets.store_recording import export_frames

CHUNK = 15


def build(path: Path, tasks: int, frames: int, kb: int) -> None:
    sessions = store.init_db(store.make_engine(store.sqlite_url(path)))
    jpeg = b"\xff\xd8" + bytes(kb * 1024 - 2)
    with sessions() as s:
        study = store.Study(slug="bench", name="Bench", salt="x")
        p = store.Participant(study=study, pseudonym="p1", consent=True)
        s.add_all([study, p])
        s.flush()
        for k in range(tasks):
            task = store.Task(participant=p, index=k, kind="pairwise", clock_anchor_epoch_ms=1.7e12)
            s.add(task)
            s.flush()
            loads = [(1.7e12, frames), (1.7e12 + 60_000.5, min(frames, 4 * CHUNK))]
            for origin, n in loads:
                for seq, start in enumerate(range(0, n, CHUNK)):
                    times = [100.0 * i + 0.25 for i in range(start, min(n, start + CHUNK))]
                    s.add(store.make_chunk(task.id, "gaze", seq, pa.table({"t": times, "x": [1.0] * len(times),
                                                                            "y": [2.0] * len(times)}),
                                           clock_origin_epoch_ms=origin))
                    s.add_all(store.GazeFrame(participant_id=p.id, task_id=task.id, seq=seq, index=i, t=t, data=jpeg)
                              for i, t in enumerate(times))
            s.commit()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--kb", type=int, default=9)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "db.sqlite"
        build(db, a.tasks, a.frames, a.kb)
        sessions = store.init_db(store.make_engine(store.sqlite_url(db)))
        with sessions() as s:
            study = s.scalars(select(store.Study)).one()
            tracemalloc.start()
            t0 = time.perf_counter()
            n = export_frames(s, study, Path(tmp) / "out")
            seconds = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    print(json.dumps({"frames": n, "pictures_mb": round(n * a.kb * 1024 / 1e6, 1), "seconds": round(seconds, 2),
                      "peak_mb": round(peak / 1e6, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
