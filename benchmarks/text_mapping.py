"""Benchmark of the word-box mapping (``text_mapping._map_by_boxes``) on a simulated study.

    .venv/bin/python benchmarks/text_mapping.py [--participants N] [--seed S] [--repeat R]

Runs ``gazepref study simulate --participants N --effect 0.8`` (whose export maps every task's
gaze and mouse samples onto words) and ``gazepref reward evaluate`` on its output in this
process, recording every call of ``_map_by_boxes`` (one per task, stream and turn, with the
layout and scroll the datasets readers hand it). Each recorded call is then run with the former
pandas implementation (kept in ``tests/datasets/text_mapping_reference.py``) and the current one:
the results must be identical (every WordHits array bit for bit, dtypes included) and the
best-of-R wall time per call is printed, with the totals and the speed-up.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("position", "word", "char_start", "char_index", "rel_x", "rel_y", "char_end")


def reference():
    """The former pandas ``_map_by_boxes``."""
    path = REPO / "tests" / "datasets" / "text_mapping_reference.py"
    spec = importlib.util.spec_from_file_location("text_mapping_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.map_by_boxes_reference


def record_calls(participants: int, seed: int, out: Path) -> list[tuple]:
    """The arguments of every ``_map_by_boxes`` call the simulate export and reward evaluate make."""
    from gazepref.cli import main
    from gazepref.datasets import text_mapping

    calls: list[tuple] = []
    real = text_mapping._map_by_boxes

    def spy(*args):
        calls.append(args)
        return real(*args)

    text_mapping._map_by_boxes = spy
    try:
        argv = ["study", "simulate", "--participants", str(participants), "--effect", "0.8", "--seed", str(seed),
                "--out", str(out)]
        with contextlib.redirect_stdout(io.StringIO()):  # the commands' own reports
            assert main(argv) == 0
            assert main(["reward", "evaluate", str(out)]) == 0
    finally:
        text_mapping._map_by_boxes = real
    return calls


def best_ms(fn, args, repeat: int):
    best, res = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from gazepref.datasets.text_mapping import _map_by_boxes

    old_impl = reference()
    with tempfile.TemporaryDirectory() as tmp:
        calls = record_calls(a.participants, a.seed, Path(tmp) / "study")
    old_ms, new_ms, samples, on_word = [], [], 0, 0
    for args in calls:
        o_ms, old = best_ms(old_impl, args, a.repeat)
        n_ms, new = best_ms(_map_by_boxes, args, a.repeat)
        for f in FIELDS:
            u, v = getattr(old, f), getattr(new, f)
            if u.dtype != v.dtype or u.shape != v.shape or u.tobytes() != v.tobytes():
                raise SystemExit(f"DIFFERENT: {f} in a call with {len(u)} samples")
        old_ms.append(o_ms)
        new_ms.append(n_ms)
        samples += len(new.position)
        on_word += int((new.word >= 0).sum())
    old_ms, new_ms = np.array(old_ms), np.array(new_ms)
    print(f"calls               {len(calls)} (identical results: all; {samples} samples, {on_word} on a word)")
    print(f"old ms/call         mean {old_ms.mean():.2f}  median {np.median(old_ms):.2f}  max {old_ms.max():.2f}")
    print(f"new ms/call         mean {new_ms.mean():.2f}  median {np.median(new_ms):.2f}  max {new_ms.max():.2f}")
    print(f"total old / new ms  {old_ms.sum():.0f} / {new_ms.sum():.0f}  (speed-up {old_ms.sum() / new_ms.sum():.1f}x)")


if __name__ == "__main__":
    main()
