"""The webcam calibration rounds of an export, one row each: the columns of ``calibrations.parquet``
(Parquet) and ``calibration_table.csv`` (IFLLM layout), and reading them back from either, so an
export exported again (Parquet to Parquet, to the IFLLM layout and back) keeps them."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .recording import _py

#: the IFLLM layout's file of the rounds (a site study's export; the release has none)
CALIBRATION_TABLE = "calibration_table.csv"
#: the Parquet export's file of the rounds
CALIBRATIONS_PARQUET = "calibrations.parquet"

CALIBRATION_COLUMNS = [
    "participant_id", "step", "kind", "attempt", "attempts", "created_at", "passed", "accuracy_px", "accuracy_deg",
    "precision_px", "data_loss", "in_roi", "quality", "fallback", "webgazer_score_pct", "distance_cm", "px_per_cm",
    "viewport_w", "viewport_h", "n_targets", "frames", "usable_frames_min", "starved_targets", "cv_error_px", "error",
    "points", "mesh_thread", "mesh_ms_per_picture",
]
#: text columns (a CSV reader would take a pseudonym ``0042`` or a word ``True`` for a number or a flag)
TEXT_COLUMNS = ("participant_id", "kind", "quality", "fallback", "error", "points", "mesh_thread")


def rounds_from_frame(df: pd.DataFrame) -> list[dict]:
    """The rows of a rounds table as written (columns it lacks, from an older export: None)."""
    out = []
    for r in df.to_dict("records"):
        out.append({c: _py(r.get(c)) for c in CALIBRATION_COLUMNS})
    return out


def read_parquet_rounds(folder: Path) -> list[dict] | None:
    """The rounds of a Parquet export (None: it has no ``calibrations.parquet``)."""
    path = folder / CALIBRATIONS_PARQUET
    return rounds_from_frame(pd.read_parquet(path)) if path.exists() else None


def read_csv_rounds(folder: Path) -> list[dict] | None:
    """The rounds of an IFLLM-layout export of a site study (None: no ``calibration_table.csv``):
    text columns as text, ``passed`` as a flag, times as UTC."""
    path = folder / CALIBRATION_TABLE
    if not path.exists():
        return None
    df = pd.read_csv(path, dtype={c: "string" for c in TEXT_COLUMNS}, keep_default_na=False,
                     na_values={c: [""] for c in CALIBRATION_COLUMNS if c not in TEXT_COLUMNS})
    for c in TEXT_COLUMNS:
        if c in df:
            df[c] = df[c].replace("", pd.NA)
    if "passed" in df:
        df["passed"] = df["passed"].map(lambda v: {"True": True, "False": False, True: True, False: False}.get(v))
    if "created_at" in df:
        df["created_at"] = pd.to_datetime(df["created_at"], utc=True, format="ISO8601")
    return rounds_from_frame(df)  # (``points`` stays its JSON text, as in Parquet)
