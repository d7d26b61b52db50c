"""Export a study from the dashboard through the foundation's exporters (gazepref.datasets).

Parquet (``export_parquet``) or the IFLLM release layout (``export_ifllm``), both written from
the study's database rows seen as a ``StoreRecording``: consenting participants only,
pseudonyms only (no platform id, no salt); the demographics answers only on request
(``demographics=True``: a separate ``demographics.csv`` with a note that they may identify
people); the CSV files' text exactly as stored unless ``spreadsheet_safe`` (formula-like text
cells get a leading ``'``). Stored values a format cannot hold are skipped, never an error; their
counts are in the manifest's ``skipped`` and ``skipped.json``. Webcam frames kept by a study with
``[gaze] keep_frames = true`` are added as ``frames/<pseudonym>/...jpg`` with ``frames/frames.csv``
(:func:`gazepref.datasets.store_recording.export_frames`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from .. import store
from ..datasets.export import FORMATS, export_recording
from ..datasets.store_recording import StoreRecording

__all__ = ["FORMATS", "export_study"]


def export_study(session: Session, study: store.Study, out_dir: str | Path, fmt: str = "parquet",
                 demographics: bool = False, spreadsheet_safe: bool = False) -> dict[str, Any]:
    """Write ``study`` to the new folder ``out_dir`` in ``fmt`` as ``gazepref data export SLUG``
    does (:func:`gazepref.datasets.export.export_recording`: with ``demographics``, also
    ``demographics.csv``; with ``spreadsheet_safe``, the CSV files for a spreadsheet; kept
    frames; ``skipped.json``); returns the exporter's manifest."""
    return export_recording(StoreRecording(session, study), out_dir, fmt, demographics=demographics,
                            spreadsheet_safe=spreadsheet_safe)
