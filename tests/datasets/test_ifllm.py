"""The IFLLM reader on a synthetic release with every quirk, and on the real sample."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from gazepref import UserError, schema
from gazepref.cli import main
from gazepref.datasets.ifllm import open_release

from .synthetic_ifllm import build


@pytest.fixture
def release(tmp_path: Path):
    facts = build(tmp_path / "rel")
    return open_release(tmp_path / "rel"), facts


def test_turns_map_preferences_and_clean_quirks(release):
    rel, _ = release
    turns = {t.turn_id: t for t in rel.turns()}
    assert turns["10"].pairwise and turns["10"].choice == schema.RIGHT  # 2.0 = right
    assert turns["11"].choice == schema.LEFT  # 1.0 = left
    assert turns["10"].responses[1].model == "deepseek-ai/DeepSeek-V3"  # CR-LF removed
    assert turns["10"].modifiers == ["respond using bullet points"]
    assert turns["10"].prompt_sent.endswith(" respond using bullet points")
    assert turns["11"].modifiers == [] and turns["11"].prompt_sent == turns["11"].prompt
    assert not turns["12"].pairwise and turns["12"].better_than_previous is None  # NaN on first
    assert turns["13"].better_than_previous is False  # 0.0 = worse
    assert turns["13"].epoch_ms is None  # 0000-00-00 tolerated
    assert [turns["10"].index, turns["11"].index] == [0, 1]
    assert turns["11"].context[0] == {"role": "user", "content": "capital of France?"}
    assert turns["10"].responses[0].likert == 4 and turns["12"].responses[0].likert == 4


def test_tasks_include_registrations_without_queries(release):
    rel, _ = release
    tasks = {t.task_id: t for t in rel.tasks()}
    assert set(tasks) == {"worker_aaa/1", "worker_aaa/2", "worker_bbb/1"}
    assert tasks["worker_aaa/1"].kind == "pairwise" and tasks["worker_aaa/2"].kind == "pointwise"
    assert tasks["worker_aaa/1"].calibration_accuracy == 78
    assert rel.streams("worker_bbb/1") == {}
    with pytest.raises(UserError):
        rel.streams("worker_zzz/9")


def test_streams_dedup_malformed_and_six_columns(release):
    rel, facts = release
    s = rel.streams("worker_aaa/1")
    assert s["gaze"].num_rows == facts["pairwise_gaze_unique"]  # doubled rows dropped
    t = s["gaze"].column("t").to_numpy()
    assert np.all(np.diff(t) > 0)
    assert rel.report.skipped["rel_gaze_two"] == facts["malformed"]
    p = rel.streams("worker_aaa/2")
    hits = p["hits"]
    assert set(hits.column("camera_ok").to_pylist()) == {-1}  # 6-column file: unknown
    assert hits.filter(hits.column("char_index").to_numpy() >= 0).num_rows == 50


@pytest.mark.parametrize("offset", [0, 4, -4])
def test_hour_offset_detected_and_turns_assigned(tmp_path: Path, offset: int):
    build(tmp_path / "r", hour_offset=offset)
    rel = open_release(tmp_path / "r")
    assert rel.clock_offset_hours("worker_aaa/1") == -offset  # what to add to the timestamps
    g = rel.streams("worker_aaa/1")["gaze"]
    t, turn = g.column("t").to_numpy(), g.column("turn").to_numpy()
    assert np.all(turn[t < 5_000] == -1)
    assert np.all(turn[(t >= 5_000) & (t < 20_000)] == 0)
    assert np.all(turn[t >= 20_000] == 1)


def test_summary_counts_synthetic(release):
    rel, facts = release
    s = rel.summary()
    assert s["workers"] == 2 and s["tasks"] == 3 and s["queries"] == 4
    assert (s["pairwise"], s["pairwise_labelled"], s["pointwise"]) == (2, 2, 2)
    assert s["gaze_samples"] == facts["pairwise_gaze_unique"] + facts["pointwise_gaze"]
    assert s["mouse_samples"] == facts["mouse"]
    assert s["malformed_rows_skipped"] == facts["malformed"]


def test_layout_errors_are_user_errors(tmp_path: Path, capsys):
    with pytest.raises(UserError, match="no such folder"):
        open_release(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="query_logs_table.csv"):
        open_release(tmp_path / "empty")
    assert main(["data", "summary", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gazepref: error:")


def _independent_counts(root: Path) -> dict:
    """Counts computed with the csv module alone, as an oracle for the reader."""
    with open(root / "query_logs_table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    pairwise = [r for r in rows if r["llm_response_2"]]
    gaze = mouse = malformed = 0
    for d in (root / "user_behavior").glob("*/*"):
        gaze += len(set((d / "abs_gaze.csv").read_text().splitlines()))
        mouse += len((d / "abs_mouse.csv").read_text().splitlines())
        for f in d.glob("rel_*.csv"):
            with open(f, newline="") as fh:
                lens = [len(r) for r in csv.reader(fh)]
            width = max(set(lens), key=lens.count)
            malformed += sum(n != width for n in lens)
    return {
        "queries": len(rows),
        "pairwise": len(pairwise),
        "pairwise_labelled": sum(r["preference"] in ("1.0", "2.0") for r in pairwise),
        "pointwise": len(rows) - len(pairwise),
        "gaze_samples": gaze,
        "mouse_samples": mouse,
        "malformed_rows_skipped": malformed,
    }


def test_summary_on_real_sample_matches_independent_count(ifllm_sample: Path, capsys):
    assert main(["data", "summary", str(ifllm_sample), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    expected = _independent_counts(ifllm_sample)
    assert {k: got[k] for k in expected} == expected
    assert got["workers"] == 6 and got["tasks_with_behavior"] == 11


def test_real_sample_alignment_fits_the_text(ifllm_sample: Path):
    """Once aligned, on-text char_index values fit the assigned response's length."""
    rel = open_release(ifllm_sample)
    by_task = rel.turns_by_task()
    fit = total = 0
    for tid in rel.behavior_dirs:
        turns = by_task[tid]
        h = rel.streams(tid)["hits"]
        ci, turn, pos = (h.column(c).to_numpy() for c in ("char_index", "turn", "position"))
        on = (ci >= 0) & (turn >= 0)
        lengths = np.array([[len(t.responses[p].text) if p < len(t.responses) else 0 for p in (0, 1)]
                            for t in turns])
        fit += int((ci[on] <= lengths[turn[on], pos[on]]).sum())
        total += int(on.sum())
    assert total > 10_000 and fit / total > 0.99
