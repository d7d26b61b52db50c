"""Export a study from the dashboard through the foundation's exporters (gazepref.datasets).

Parquet (``export_parquet``) or the IFLLM release layout (``export_ifllm``), both written from
the study's database rows seen as a ``StoreRecording``: consenting participants only,
pseudonyms only (no platform id, no salt); the demographics answers only on request
(``demographics=True``: a separate ``demographics.csv`` with a note that they may identify people). Stored values a format cannot hold
are skipped, never an error; their counts are in the manifest's ``skipped`` and ``skipped.json``. Webcam frames kept by a study with
``[gaze] keep_frames = true`` are added as ``frames/<pseudonym>/...jpg`` with ``frames/frames.csv``
(:func:`gazepref.datasets.store_recording.export_frames`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from .. import UserError, store
from ..datasets.store_recording import export_frames

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
