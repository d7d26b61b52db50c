"""Benchmark of the feature pipeline on the IFLLM dev archive (or any IFLLM-layout folder).

    .venv/bin/python benchmarks/features.py [--jobs N] [--data DIR] [--out DIR]

Unpacks ``../shared/ifllm/ifllm-dev.tar.gz`` into ``$GAZEPREF_CACHE`` (default
``~/.cache/gazepref``)``/ifllm-dev`` if needed, runs ``features.build`` (+ writing the Parquet
tables) and prints wall time, gaze samples/s and peak RSS of the whole process tree (sampled every
20 ms from /proc: the parent plus its worker processes at the same moment).
Target (issue 5): the full release, ~1.83 M unique gaze samples, in ≤ 30 s with ≤ 2 GB peak on
the 2-core dev machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = Path(os.environ.get("GAZEPREF_SHARED", REPO.parent / "shared")) / "ifllm" / "ifllm-dev.tar.gz"


def dev_data() -> Path:
    """The dev archive, unpacked once into the cache folder (never the repo)."""
    from gazepref.datasets.archive import unpack

    if not ARCHIVE.exists():
        raise SystemExit(f"dev archive not found: {ARCHIVE}")
    dest = unpack(ARCHIVE, "ifllm-dev")
    return dest / "dataset" if (dest / "dataset").exists() else dest


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


class PeakRSS(threading.Thread):
    """Peak of the summed RSS of this process and all its descendants."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval, self.peak_kb, self._halt = interval, 0, threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._halt.is_set():
            pids, todo = [], [me]
            while todo:
                p = todo.pop()
                pids.append(p)
                todo += _children(p)
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in pids))
            time.sleep(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak_kb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="IFLLM-layout folder (default: the dev archive, unpacked to the cache)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", help="where to write the tables (default: a temporary folder)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    data = Path(args.data) if args.data else dev_data()

    from gazepref.signals import features

    mon = PeakRSS()
    mon.start()
    t0 = time.perf_counter()
    res = features.build(data, jobs=args.jobs)
    with tempfile.TemporaryDirectory() as tmp:
        features.write(res, args.out or tmp)
    wall = time.perf_counter() - t0
    peak_tree = mon.stop()
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    g = res.stats["gaze_samples"]
    out = {
        "data": str(data),
        "jobs": args.jobs,
        "tasks": res.stats["tasks_with_turns"],
        "responses": res.stats["responses"],
        "comparisons": res.stats["comparisons"],
        "gaze_samples": g,
        "wall_s": round(wall, 2),
        "gaze_samples_per_s": round(g / wall),
        "peak_rss_tree_mb": round(peak_tree / 1024, 1),
        "peak_rss_parent_mb": round(self_kb / 1024, 1),
        "peak_rss_largest_worker_mb": round(child_kb / 1024, 1),
        "cpu_s": round(sum(os.times()[:4]), 2),
        "loadavg_1min": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:<28} {v}")


if __name__ == "__main__":
    main()
