"""Kept webcam frames exported from the study database (``store_recording.export_frames``)."""
from __future__ import annotations

import csv
from pathlib import Path

from gazepref import store
from gazepref.datasets.store_recording import export_frames


def test_frames_of_page_loads_sharing_seqs_each_get_their_own_file(tmp_path: Path):
    """Chunks are keyed by page load, so reloaded pages that lost their saved counter keep frames
    of the same (task, seq, index), even at the same page-clock time: each frame is its own file,
    named the same way by every export (the earliest stored keeps the plain name)."""
    sessions = store.init_db(store.make_engine(store.sqlite_url(tmp_path / "db.sqlite")))
    with sessions() as s:
        study = store.Study(slug="s", name="S", salt="x")
        p = store.Participant(study=study, pseudonym="p1", consent=True)
        task = store.Task(participant=p, index=0, kind="pairwise")
        s.add_all([study, p, task])
        s.flush()
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
