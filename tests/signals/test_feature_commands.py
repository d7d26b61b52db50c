"""``gazepref features``: its summary counts what ``data summary`` counts under the same names."""
from __future__ import annotations

import json

from gazepref.cli import main


def test_features_summary_names_match_data_summary(ifllm_sample, tmp_path, capsys):
    """The features summary's task count is ``data summary``'s ``tasks_with_turns`` (it said
    ``tasks``, 15, where ``data summary`` says ``tasks``: 47 registrations), and its time has its
    unit in its name (``elapsed_s``, as ``simulate_s``, ``train_runtime_s``; it said ``seconds``)."""
    assert main(["data", "summary", str(ifllm_sample), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(["features", str(ifllm_sample), "--out", str(tmp_path / "f"), "--jobs", "1", "--no-sentences",
                 "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["tasks_with_turns"] == summary["tasks_with_turns"] == 15 and "tasks" not in stats
    assert stats["gaze_samples"] == summary["gaze_samples"]
    assert stats["elapsed_s"] >= 0 and "seconds" not in stats
