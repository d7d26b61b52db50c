"""On-disk cache of a recording's comparison table (the reward models' implicit features), keyed
by every file of the recording and by the code the table comes from."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import pandas as pd

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


def cache_path(path: str | os.PathLike, kind: str) -> Path | None:
    """Where the table of the recording at ``path`` is cached: keyed by the size and time of every
    file of the recording (trajectories included) and by :func:`code_fingerprint`; None for a
    source that is not a recording folder."""
    p = Path(path).expanduser().resolve()
    if not any((d / "query_logs_table.csv").exists() for d in (p, p / "dataset")) and not (p / "manifest.json").exists():
        return None
    h = hashlib.sha1(f"{p}|{FEATURES_VERSION}|{kind}|{code_fingerprint()}".encode())
    for f in sorted(p.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h = h.hexdigest()[:16]
    base = os.environ.get("GAZEPREF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gazepref")
    return Path(base) / "reward" / f"{kind}-{h}.parquet"


def comparison_table(path: str | os.PathLike, rec=None, progress: bool = False, cache: bool = True) -> pd.DataFrame:
    """The signal processor's comparison table of the recording at ``path``
    (:func:`gazepref.signals.features.comparison_table`; ``rec`` the recording opened already),
    without its off-limits columns, from the cache when it holds it."""
    from gazepref.signals import features as sf

    cp = cache_path(path, "comparisons") if cache and path is not None else None
    if cp is not None and cp.exists():
        return pd.read_parquet(cp)
    table = sf.comparison_table(rec if rec is not None else path, progress=progress)
    table = table[[c for c in table.columns if c == "turn_id" or not sf.off_limits(c)]]
    if cp is not None:
        cp.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(cp, index=False)
    return table
