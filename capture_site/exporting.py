"""Export a study from the dashboard through the foundation's exporters (gazepref.datasets).

Parquet (``export_parquet``) or the IFLLM release layout (``export_ifllm``), both written from
the study's database rows seen as a ``StoreRecording``: consenting participants only,
pseudonyms only (no platform id, no salt); the demographics answers only on request
(``demographics=True``: a separate ``demographics.csv`` with a note that they may identify people). Stored values a format cannot hold
are skipped, never an error; their counts are in the manifest's ``skipped`` and ``skipped.json``. Webcam frames kept by a study with
``[gaze] keep_frames = true`` are added as ``frames/<pseudonym>/...jpg`` with ``frames/frames.csv``
(:func:`export_frames`).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import UserError, store

FORMATS = ("parquet", "ifllm")


def export_study(session: Session, study: store.Study, out_dir: str | Path, fmt: str = "parquet",
                 demographics: bool = False) -> dict[str, Any]:
    """Write ``study`` to the new folder ``out_dir`` in ``fmt`` (with ``demographics``, also
    ``demographics.csv``); returns the exporter's manifest."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r} (expected one of {', '.join(FORMATS)})")
    from ..datasets.export import export_ifllm, export_parquet
    from ..datasets.store_recording import StoreRecording

    write = export_parquet if fmt == "parquet" else export_ifllm
    rec = StoreRecording(session, study)
    manifest = write(rec, out_dir)
    if demographics:
        from ..datasets.export import export_demographics

        n = sum(1 for p in rec.participants() if p.consented)
        manifest = {**manifest, "demographics": export_demographics(rec.demographics(), out_dir, n_participants=n)}
    frames = export_frames(session, study, out_dir)
    if frames:
        manifest = {**manifest, "frames": frames}
    if any((manifest.get("skipped") or {}).values()):  # stored values the format cannot hold
        (Path(out_dir) / "skipped.json").write_text(json.dumps(manifest["skipped"], indent=2))
    return manifest


FRAME_COLUMNS = ("participant", "task", "calibration", "kind", "seq", "index", "t", "file")


def export_frames(session: Session, study: store.Study, out_dir: str | Path) -> int:
    """Write the study's kept webcam frames (consenting participants) as JPEG files under
    ``out_dir/frames/<pseudonym>/`` (``task<task id>/<seq>-<index>.jpg``,
    ``<calibration|validation><id>/<index>.jpg``) and an index ``frames/frames.csv`` with the
    columns :data:`FRAME_COLUMNS` (``task``: the exported task id ``<pseudonym>/<task id>``;
    ``t``: page clock ms). Returns the number of frames; writes nothing when there are none."""
    P, F, C = store.Participant, store.GazeFrame, store.Calibration
    rows = session.execute(
        select(P.pseudonym, F.task_id, F.calibration_id, C.kind, F.seq, F.index, F.t, F.data)
        .join(P, F.participant_id == P.id).outerjoin(C, F.calibration_id == C.id)
        .where(P.study_id == study.id, P.consent.is_(True))
        .order_by(P.pseudonym, F.task_id, F.calibration_id, F.seq, F.index)
    )
    root = Path(out_dir) / "frames"
    index_rows = []
    for pseudonym, task_id, cal_id, kind, seq, i, t, data in rows:
        if task_id is not None:
            rel = f"{pseudonym}/task{task_id}/{seq:06d}-{i:02d}.jpg"
            task, cal, kind = f"{pseudonym}/{task_id}", "", "task"
        else:
            rel, task, cal = f"{pseudonym}/{kind}{cal_id}/{i:04d}.jpg", "", str(cal_id)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        index_rows.append((pseudonym, task, cal, kind, seq, i, t, f"frames/{rel}"))
    if index_rows:
        with open(root / "frames.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(FRAME_COLUMNS)
            w.writerows(index_rows)
    return len(index_rows)
