"""Caching and running the steps of ``gazepref align`` (:mod:`gazepref.models.align`).

Each step writes one sub-folder of the run's ``OUT`` with a ``step.json`` (its input fingerprint
and result). :class:`Step` skips a step whose fingerprint is unchanged and whose outputs exist;
:class:`StepRunner` runs the steps in order, reruns the forced ones and every step after them, and
under ``accelerate launch`` lets the main process do the data steps first.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .. import schema

__all__ = ["STEPS", "Step", "StepRunner", "fingerprint", "source_fingerprint"]

STEPS = ("features", "reward", "pairs", "train", "eval")


def fingerprint(obj: Any) -> str:
    """A short hash of a JSON-able value (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def source_fingerprint(source: Any, turns: list[schema.Turn] | None) -> str:
    """Content of the recording's turns plus what its source holds: a recording's
    :func:`gazepref.datasets.sources.fingerprint` (a folder's files, a study's rows and chunks), or
    the size and mtime of the files at a path."""
    from ..datasets.sources import fingerprint, folder_fingerprint

    h = hashlib.sha256()
    if hasattr(source, "turns"):
        h.update(str(fingerprint(source)).encode())
    elif Path(source).exists():
        h.update(folder_fingerprint(source).encode())
    else:
        h.update(str(source).encode())
    for t in turns or []:
        h.update(json.dumps(t.to_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


class Step:
    """One step's folder, its fingerprint and ``step.json``."""

    def __init__(self, out: Path, name: str, inputs: dict[str, Any], forced: bool):
        self.dir = out / name
        self.name = name
        self.fingerprint = fingerprint(inputs)
        self.forced = forced

    def cached(self) -> dict[str, Any] | None:
        f = self.dir / "step.json"
        if self.forced or not f.exists():
            return None
        try:
            d = json.loads(f.read_text())
        except ValueError:
            return None
        if d.get("fingerprint") != self.fingerprint or d.get("status") != "done":
            return None
        return d.get("result")

    def begin(self, keep: bool = False) -> Path:
        """Start the step in a clean folder; with ``keep``, an interrupted run of the same inputs
        (same fingerprint, not forced) keeps its folder so that training resumes from a checkpoint."""
        prev = None
        try:
            prev = json.loads((self.dir / "step.json").read_text()).get("fingerprint")
        except (OSError, ValueError):
            pass
        if self.dir.exists() and not (keep and not self.forced and prev == self.fingerprint):
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "step.json").write_text(json.dumps({"fingerprint": self.fingerprint, "status": "running"}))
        return self.dir

    def done(self, result: dict[str, Any]) -> None:
        (self.dir / "step.json").write_text(json.dumps({"fingerprint": self.fingerprint, "status": "done",
                                                        "result": result}, indent=2, default=str))


class StepRunner:
    """Runs the steps of one alignment run in order and keeps the report.

    Parameters
    ----------
    out
        The run's folder.
    force
        Steps to redo (with every step after the first of them); ``"all"`` redoes all.
    state
        ``accelerate.PartialState`` under ``accelerate launch`` (WORLD_SIZE > 1), else None: then
        every process runs the run; the main process does each data/eval step first and the others
        find it cached; the ``train`` step runs on all.
    progress
        Say on stderr what each step does: running (then done, with its seconds), skipped and why, or
        cached.
    report
        The run's report; each step adds ``report["steps"][name] = {"status", "elapsed_s", "result"}``.
    """

    def __init__(self, out: Path, force: tuple[str, ...], state: Any, progress: bool, report: dict[str, Any]):
        self.out, self.state, self.report = out, state, report
        self.main_process = state is None or state.is_main_process
        self.progress = progress and self.main_process
        self.first_forced = min((STEPS.index(f) if f != "all" else 0 for f in force), default=len(STEPS))
        self.fingerprints: dict[str, str] = {}

    def say(self, msg: str) -> None:
        if self.progress:
            print(f"[align] {msg}", file=sys.stderr)

    def __call__(self, name: str, inputs: dict[str, Any], fn: Callable[[Path], dict[str, Any]],
                 keep: bool = False, skip: Callable[[], str | None] | None = None) -> dict[str, Any]:
        """Run step ``name`` as ``fn(step_folder)`` unless ``inputs`` (with the fingerprints of the
        steps before, which the caller includes) are those of its cached result; its result.
        ``skip``: why the step has nothing to do (None: it runs), asked before it is said to run."""
        st = Step(self.out, name, {"step": name, **inputs}, forced=STEPS.index(name) >= self.first_forced)
        self.fingerprints[name] = st.fingerprint
        if self.state is None or name == "train":
            return self._run(st, fn, keep, all_processes=name == "train", skip=skip)
        with self.state.main_process_first():
            if not self.main_process:
                st.forced = False  # the main process has just (re)done it
            return self._run(st, fn, keep, all_processes=False, skip=skip)

    def _run(self, st: Step, fn: Callable[[Path], dict[str, Any]], keep: bool, all_processes: bool,
             skip: Callable[[], str | None] | None = None) -> dict[str, Any]:
        state = self.state if all_processes else None
        t0 = time.perf_counter()
        cached = st.cached()
        if state is not None:
            state.wait_for_everyone()  # every process has read the cache before the main one changes it
        if cached is not None:
            why = cached.get("skipped")
            self.say(f"{st.name}: skipped ({why}; unchanged)" if why else f"{st.name}: cached")
            # (a step skipped last time is skipped again, not "cached": it never ran)
            self.report["steps"][st.name] = {"status": "skipped" if why else "cached", "elapsed_s": 0.0,
                                             "result": cached}
            return cached
        why = skip() if skip is not None else None
        if why is None:
            self.say(f"{st.name}: running")
        if self.main_process:
            st.begin(keep=keep)
        if state is not None:
            state.wait_for_everyone()
        res = {"skipped": why} if why is not None else fn(st.dir)
        if self.main_process:
            st.done(res)
        if state is not None:
            state.wait_for_everyone()
        seconds = round(time.perf_counter() - t0, 3)
        if res.get("skipped"):  # known before it ran, or found by the step (e.g. no held-out prompts)
            self.say(f"{st.name}: skipped ({res['skipped']})")
        else:
            self.say(f"{st.name}: done in {seconds:.1f} s")
        self.report["steps"][st.name] = {"status": "skipped" if res.get("skipped") else "ran",
                                         "elapsed_s": seconds, "result": res}
        return res
