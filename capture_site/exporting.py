"""Export a study from the dashboard through the foundation's exporters (gazepref.datasets).

Parquet (``export_parquet``) or the IFLLM release layout (``export_ifllm``), both written from
the study's database rows seen as a ``StoreRecording``: consenting participants only,
pseudonyms only (no platform id, no salt, no demographics).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from .. import UserError, store

FORMATS = ("parquet", "ifllm")


def export_study(session: Session, study: store.Study, out_dir: str | Path, fmt: str = "parquet") -> dict[str, Any]:
    """Write ``study`` to the new folder ``out_dir`` in ``fmt``; returns the exporter's manifest."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r} (expected one of {', '.join(FORMATS)})")
    from ..datasets.export import export_ifllm, export_parquet
    from ..datasets.store_recording import StoreRecording

    write = export_parquet if fmt == "parquet" else export_ifllm
    return write(StoreRecording(session, study), out_dir)
