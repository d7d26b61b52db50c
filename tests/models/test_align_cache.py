"""The steps of ``gazepref align`` (:class:`gazepref.models.align_cache.StepRunner`): what the
progress lines say is what happens to each step, run, skipped (and why) or cached."""
from __future__ import annotations

from gazepref.models.align_cache import StepRunner


def _runner(out, report):
    return StepRunner(out, force=(), state=None, progress=True, report=report)


def test_progress_lines_say_what_each_step_does(tmp_path, capsys):
    calls = []

    def work(folder):
        calls.append(folder.name)
        return {"path": str(folder / "x")}

    report = {"steps": {}}
    step = _runner(tmp_path, report)
    step("features", {"a": 1}, work, skip=lambda: "not needed for label source 'likert'")
    step("reward", {"a": 1}, lambda folder: {"skipped": "found nothing to score"})  # found while running
    step("pairs", {"a": 1}, work, skip=lambda: None)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[align] features: skipped (not needed for label source 'likert')"
    assert lines[1:3] == ["[align] reward: running", "[align] reward: skipped (found nothing to score)"]
    assert lines[3] == "[align] pairs: running" and lines[4].startswith("[align] pairs: done in ")
    assert len(lines) == 5 and calls == ["pairs"], "a step skipped beforehand never runs"
    assert [s["status"] for s in report["steps"].values()] == ["skipped", "skipped", "ran"]
    assert report["steps"]["features"]["result"] == {"skipped": "not needed for label source 'likert'"}
    # the time has its unit in its name, as every other time in the JSON outputs (it was "seconds")
    assert all(set(s) == {"status", "elapsed_s", "result"} for s in report["steps"].values())

    report = {"steps": {}}
    step = _runner(tmp_path, report)  # the same inputs again: cached, a skip still says why
    step("features", {"a": 1}, work, skip=lambda: "not needed for label source 'likert'")
    step("pairs", {"a": 1}, work, skip=lambda: None)
    assert capsys.readouterr().err.splitlines() == [
        "[align] features: skipped (not needed for label source 'likert'; unchanged)", "[align] pairs: cached"]
    assert calls == ["pairs"] and [s["status"] for s in report["steps"].values()] == ["skipped", "cached"]
