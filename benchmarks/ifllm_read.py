"""How fast the IFLLM reader gets through a release: `data summary` and every task's streams.

    .venv/bin/python benchmarks/ifllm_read.py [PATH]   # default: the dev archive in ../shared, unpacked to the cache

Prints wall time, samples/s and peak RSS for (1) the summary (every trajectory file parsed once,
threads) and (2) building every task's streams with turn assignment and clock-offset detection.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from gazepref.datasets.archive import unpack
from gazepref.datasets.ifllm import open_release

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path", nargs="?", help="IFLLM-layout folder (default: the dev archive, unpacked to the cache)")
    a = ap.parse_args(argv)
    if a.path:
        path = Path(a.path)
    else:
        path = unpack(REPO.parent / "shared" / "ifllm" / "ifllm-dev.tar.gz", "ifllm-dev")
    t0 = time.perf_counter()
    s = open_release(path).summary()
    t_summary = time.perf_counter() - t0
    rel = open_release(path)
    t0 = time.perf_counter()
    n = 0
    for tid in rel.behavior_dirs:
        n += sum(t.num_rows for t in rel.streams(tid).values())
    t_streams = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"release: {path}")
    print(f"turns {s['turns']}, task folders {s['tasks_with_samples']}, unique gaze samples {s['gaze_samples']}, "
          f"malformed rows skipped {s['malformed_rows_skipped']}")
    print(f"summary:          {t_summary:6.2f} s  ({s['gaze_samples'] / t_summary:,.0f} gaze samples/s)")
    print(f"all task streams: {t_streams:6.2f} s  ({n:,} rows, {n / t_streams:,.0f} rows/s)")
    print(f"peak RSS:         {rss:6.0f} MB")


if __name__ == "__main__":
    main()
