"""On-disk cache of a recording's comparison table (the reward models' implicit features), keyed
by every file of the recording and by the code the table comes from."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..files import whole_file

#: bump to invalidate every cached table
FEATURES_VERSION = "2"


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of the code the cached table comes from (the readers, the signal processing, the
    models' feature code): after any change there the table is computed afresh."""
    import gazepref.datasets
    import gazepref.signals

    h = hashlib.sha1()
    roots = [Path(d) for m in (gazepref.datasets, gazepref.signals) for d in m.__path__]
    files = [f for r in roots for f in sorted(r.rglob("*.py"))]
    files += [Path(__file__).with_name(n) for n in ("implicit_features.py", "comparisons.py")]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_path(rec, kind: str) -> Path | None:
    """Where the table of the recording ``rec`` is cached: keyed by its content
    (:func:`gazepref.datasets.sources.fingerprint`: every file's size and time for a folder; the
    turns, labels and stream chunks for a study in the database) and by :func:`code_fingerprint`.
    None when the recording cannot say what it holds (an in-memory recording)."""
    from gazepref.datasets.sources import fingerprint

    fp = fingerprint(rec)
    if fp is None:
        return None
    h = hashlib.sha1(f"{fp}|{FEATURES_VERSION}|{kind}|{code_fingerprint()}".encode()).hexdigest()[:16]
    from ..settings import cache_dir

    return cache_dir("reward", f"{kind}-{h}.parquet")


def comparison_table(rec, progress: bool = False, cache: bool = True) -> pd.DataFrame:
    """The signal processor's comparison table of the recording ``rec``
    (:func:`gazepref.signals.features.comparison_table`), without its off-limits columns, from the
    cache when it holds it."""
    from gazepref.signals import features as sf

    cp = cache_path(rec, "comparisons") if cache else None
    if cp is not None and cp.exists():
        return pd.read_parquet(cp)
    table = sf.comparison_table(rec, progress=progress)
    table = table[[c for c in table.columns if c == "turn_id" or not sf.off_limits(c)]]
    if cp is not None:
        with whole_file(cp) as tmp:  # another process reading the cache never sees half a file
            table.to_parquet(tmp, index=False)
    return table
