"""The cost of storing a webcam gaze chunk, the ways side by side in one run.

    .venv/bin/python benchmarks/gaze_store.py [--chunks 300] [--rows 15] [--db URL]

``before``: the one autocommit INSERT the webcam paths used before frames were stored once
(:func:`gazepref.capture_site.chunks.insert_chunks` on the site's autocommit engine);
``store_gaze``: :func:`gazepref.capture_site.gaze_store.store_gaze` (a transaction under the
task's lock: which frames are stored already, then the insert). Each way stores ``--chunks``
chunks of ``--rows`` new tracker rows (the common case: a page's next frames) into a task of its
own, the ways taking turns chunk by chunk so that the machine's load falls on each alike; prints
the median, p90 and p99 of a chunk's store in ms. ``--db``: a PostgreSQL URL, ``sqlite`` (a file in
a fresh instance folder), default a throwaway PostgreSQL server of Debian's binaries
(``benchmarks/faults.py``'s).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from faults import ThrowawayPostgres  # noqa: E402
from ingest import make_participants  # noqa: E402

from gazepref import store  # noqa: E402
from gazepref.capture_site.app import create_app  # noqa: E402
from gazepref.capture_site.chunks import insert_chunks  # noqa: E402
from gazepref.capture_site.gaze_store import store_gaze  # noqa: E402
from gazepref.capture_site.runtime import site  # noqa: E402
from gazepref.signals.gaze_batch import rows_to_chunk_batch  # noqa: E402

ORIGIN = 1.7e12 + 0.125


def tracker_rows(t0: float, n: int) -> list[dict[str, float]]:
    """Rows shaped as the tracker's (gaze, confidence, flags, a dozen eye features)."""
    return [{"t": round(t0 + 66.67 * i, 2), "x": 800.0 + i, "y": 450.0 - i, "confidence": 0.9, "flags": 0}
            | {f"eye_f{k}": 0.01 * k + 0.001 * i for k in range(12)} for i in range(n)]


def before(task: int, seq: int, rows: list[dict[str, float]]) -> int:
    chunk = store.chunk_from_batch(task, "gaze", seq, rows_to_chunk_batch(rows), clock_origin_epoch_ms=ORIGIN)
    with site().statements.connect() as conn:
        return len(rows) if insert_chunks(conn, task, ORIGIN, [chunk], set_anchor=False) else 0


def now(task: int, seq: int, rows: list[dict[str, float]]) -> int:
    return store_gaze(task, seq, ORIGIN, rows, set_anchor=False)


WAYS = {"before": before, "store_gaze": now}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=300)
    ap.add_argument("--rows", type=int, default=15)
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    pg = None if args.db else ThrowawayPostgres()
    url = None if args.db == "sqlite" else args.db or pg.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tasks = [task for task, _ in make_participants(Path(tmp), len(WAYS), database_url=url,
                                                           prefix=f"gs{time.time_ns() % 10**8}-")]
            app = create_app(tmp, {"DATABASE_URL": url} if url else None)
            took: dict[str, list[float]] = {name: [] for name in WAYS}
            with app.app_context():
                for i in range(-20, args.chunks):  # (the first 20: warm-up, not counted)
                    rows = tracker_rows(1000.0 + 1000.0 * (i + 20), args.rows)
                    for (name, way), task in zip(WAYS.items(), tasks):
                        t0 = time.perf_counter()
                        n = way(task, i + 20, rows)
                        dt = (time.perf_counter() - t0) * 1000
                        assert n == args.rows, (name, n)
                        if i >= 0:
                            took[name].append(dt)
            app.extensions["gazepref"].dispose()
    finally:
        if pg is not None:
            pg.stop()
    print(f"{'SQLite' if url is None else 'PostgreSQL'}, {args.chunks} chunks of {args.rows} rows each way (ms per chunk):")
    for name, ms in took.items():
        q = statistics.quantiles(ms, n=100)
        print(f"  {name:12s} median {statistics.median(ms):.3f}  p90 {q[89]:.3f}  p99 {q[98]:.3f}")


if __name__ == "__main__":
    main()
