"""``gazepref align`` end to end on the IFLLM sample with a tiny model; win rate and LLM judge."""
from __future__ import annotations

import json

import pytest

from gazepref.cli import main

pytest.importorskip("trl")

FAST = ["--tiny", "--steps", "2", "--max-length", "96", "--context-messages", "0", "--max-prompts", "2",
        "--max-new-tokens", "4", "--json"]


def _run(capsys, *argv) -> dict:
    assert main(["align", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_align_end_to_end_dpo_cached_and_forced(ifllm_sample, tmp_path, capsys):
    out = tmp_path / "run"
    rep = _run(capsys, str(ifllm_sample), "--out", str(out), "--loss", "robust", *FAST)
    st = rep["steps"]
    assert [st[k]["status"] for k in ("features", "reward", "pairs", "train", "eval")] == \
        ["skipped", "skipped", "ran", "ran", "ran"]
    counts = st["pairs"]["result"]["counts"]
    assert counts["train"] > 0 and counts["test"] > 0
    tr = {json.loads(x)["participant_id"] for x in (out / "pairs" / "train.jsonl").read_text().splitlines()}
    te = {json.loads(x)["participant_id"] for x in (out / "pairs" / "test.jsonl").read_text().splitlines()}
    assert tr and te and not tr & te
    train = st["train"]["result"]
    assert train["steps"] == 2 and train["loss_type"] == ["robust"] and 0 < train["label_smoothing"] < 0.5
    assert len((out / "train" / "metrics.jsonl").read_text().splitlines()) >= 2
    ev = st["eval"]["result"]
    assert ev["prompts"] == 2 and 0.0 <= ev["win_rate"] <= 1.0 and ev["scorer"] == "length-baseline"
    md = (out / "eval" / "win_rate.md").read_text()
    assert "| length-baseline | 2 |" in md
    assert len(json.loads((out / "eval" / "win_rate.json").read_text())["rows"]) == 2

    rep = _run(capsys, str(ifllm_sample), "--out", str(out), "--loss", "robust", *FAST)
    # the steps that ran are cached; those skipped are skipped again, not "cached" (they never ran)
    assert [rep["steps"][k]["status"] for k in ("features", "reward", "pairs", "train", "eval")] == \
        ["skipped", "skipped", "cached", "cached", "cached"]

    rep = _run(capsys, str(ifllm_sample), "--out", str(out), "--loss", "robust", "--force", "eval", *FAST)
    assert rep["steps"]["train"]["status"] == "cached" and rep["steps"]["eval"]["status"] == "ran"

    # a preference data set (this run's pairs) is a source too: data steps skipped, pairs copied
    from gazepref.models.align import run
    from gazepref.models.align_config import AlignConfig

    capsys.readouterr()
    rep = run(str(out / "pairs"), tmp_path / "from_pairs", AlignConfig(), until="pairs", progress=True)
    assert rep["source_kind"] == "pairs" and rep["steps"]["pairs"]["result"]["counts"] == counts
    said = capsys.readouterr().err
    assert "[align] features: skipped (source is a preference data set)" in said and "features: running" not in said
    assert "[align] reward: skipped (source is a preference data set)" in said and "reward: running" not in said
    assert rep["steps"]["features"]["status"] == rep["steps"]["reward"]["status"] == "skipped"


def test_align_kto_with_text_rm_labels(ifllm_sample, tmp_path, capsys):
    out = tmp_path / "kto"
    rep = _run(capsys, str(ifllm_sample), "--out", str(out), "--algorithm", "kto", "--label-source", "text_rm",
               "--reward-model", "length-baseline", *FAST)
    st = rep["steps"]
    assert st["reward"]["status"] == "ran" and st["reward"]["result"]["turns_scored"] == 23  # every pairwise turn
    assert st["train"]["result"]["algorithm"] == "kto" and st["train"]["result"]["steps"] == 2
    rows = [json.loads(x) for x in (out / "pairs" / "train.jsonl").read_text().splitlines()]
    assert {r["label"] for r in rows} == {True, False}
    assert (out / "eval" / "win_rate.md").exists()


def test_fused_reward_model_labels(ifllm_sample, tmp_path):
    """features → reward → pairs with a fused reward model of issue 6 (trained here on the sample)."""
    from gazepref.datasets.recording import open_recording
    from gazepref.models.align import RewardModelScorer, load_reward_model, run
    from gazepref.models.align_config import AlignConfig
    from gazepref.models.scoring import train_reward_model

    rm_dir = train_reward_model(str(ifllm_sample), model="late_fusion", text_model="structure_bt").save(tmp_path / "rm")
    cfg = AlignConfig()
    cfg.data.label_source, cfg.data.reward_model = "fused_rm", str(rm_dir)
    rep = run(str(ifllm_sample), tmp_path / "out", cfg, until="pairs")
    st = rep["steps"]
    assert st["features"]["status"] == "ran" and st["features"]["result"]["turns_with_features"] > 0
    ev = st["reward"]["result"]["evidence"]
    assert ev.get("fused", 0) > 0  # implicit features were used where the turn had trajectories
    rewards = {json.loads(x)["turn_id"]: json.loads(x) for x in
               (tmp_path / "out" / "reward" / "rewards.jsonl").read_text().splitlines()}
    turns = {t.turn_id: t for t in open_recording(ifllm_sample).turns()}
    rows = [json.loads(x) for x in (tmp_path / "out" / "pairs" / "train.jsonl").read_text().splitlines()]
    rows += [json.loads(x) for x in (tmp_path / "out" / "pairs" / "test.jsonl").read_text().splitlines()]
    assert rows
    for r in rows:  # orientation: z > 0 means the left response is preferred
        z = rewards[r["turn_id"]]["reward"]
        t = turns[r["turn_id"]]
        assert r["chosen"][0]["content"] == t.responses[0 if z > 0 else 1].text
        assert r["confidence"] == pytest.approx(rewards[r["turn_id"]]["confidence"])
    reward, conf = RewardModelScorer(load_reward_model(str(rm_dir)), "rm").score(
        [{"role": "user", "content": "hi"}], "hello there")
    assert isinstance(reward, float) and 0.5 <= conf <= 1.0


def test_align_user_errors(ifllm_sample, tmp_path, capsys):
    assert main(["align", str(ifllm_sample), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and len(err.strip().splitlines()) == 1
    assert main(["align", str(tmp_path / "nothing"), "--out", str(tmp_path / "y"), "--tiny"]) == 2
    assert "no such" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()  # a bad source writes nothing (no run folder, no align_config.json)
    assert main(["align", str(ifllm_sample), "--out", str(tmp_path / "z"), "--tiny", "--label-source",
                 "fused_rm", "--reward-model", str(tmp_path / "no_rm")]) == 2
    assert "reward model" in capsys.readouterr().err
    # a folder that is no reward model: refused before the features step (after it before)
    (tmp_path / "not_rm").mkdir()
    assert main(["align", str(ifllm_sample), "--out", str(tmp_path / "w"), "--tiny", "--label-source",
                 "fused_rm", "--reward-model", str(tmp_path / "not_rm")]) == 2
    captured = capsys.readouterr()
    assert "not a gazepref reward model" in captured.err and "features" not in captured.err + captured.out
    assert not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def sample_pairs(ifllm_sample, tmp_path_factory):
    """The sample's preference data set (human labels), as ``align`` writes it to ``OUT/pairs``."""
    from gazepref.models.align import run
    from gazepref.models.align_config import AlignConfig

    out = tmp_path_factory.mktemp("align") / "run"
    run(str(ifllm_sample), out, AlignConfig(), until="pairs")
    return out / "pairs"


@pytest.mark.parametrize("flags", [["--label-source", "text_rm", "--reward-model", "rm"],
                                   ["--label-source", "ratings"], ["--label-source", "feedback_pairs"],
                                   ["--config", "ratings.toml"]], ids=["text_rm", "ratings", "feedback", "config"])
def test_align_label_source_with_a_preference_data_set_is_a_user_error(sample_pairs, tmp_path, capsys, flags):
    """A preference data set is labelled already: a label source given with one was ignored
    silently (the steps said only "source is a preference data set"); now it is a one-line error
    naming why, before anything is written. The default label source runs (test above)."""
    (tmp_path / "ratings.toml").write_text('[data]\nlabel_source = "ratings"\n')
    flags = [str(tmp_path / f) if f.endswith(".toml") or f == "rm" else f for f in flags]
    out = tmp_path / "run"
    assert main(["align", str(sample_pairs), "--out", str(out), *FAST, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a preference data set, labelled already" in err[0]
    assert repr(flags[flags.index("--label-source") + 1] if "--label-source" in flags else "ratings") in err[0]
    assert not out.exists()


@pytest.mark.parametrize("content, says", [
    (None, "is a chat log (line 1 is a conversation), not a preference data set: mine its text feedback with "
           "--label-source feedback_pairs"),
    ('{"question": "q", "answer": "a"}\n', "line 1: not a preference record (DPO: prompt, chosen, rejected; KTO: "
                                          "prompt, completion, label); it has answer, question"),
    ("\n", "no record (an empty preference data set)"),
], ids=["chat-log", "other-records", "empty"])
def test_a_jsonl_file_that_holds_no_preference_records_is_refused_before_anything_is_written(
        feedback_log, tmp_path, capsys, content, says):
    """``align chats.jsonl`` without a label source (what one types after docs/feedback_mining.md):
    the file was taken for a preference data set, the pairs step wrote it as one, a tiny model was
    built, and only the train step said "training data lacks columns". Now one line, nothing written."""
    source = feedback_log
    if content is not None:
        source = tmp_path / "other.jsonl"
        source.write_text(content)
    out = tmp_path / "run"
    assert main(["align", str(source), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not out.exists()


def _free_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (a port just bound and released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("judge", ["nothing listens", "answers 503"])
def test_align_unreachable_judge_fails_before_training(ifllm_sample, tmp_path, capsys, fake_openai, judge):
    url = _free_port_url() if judge == "nothing listens" else fake_openai(lambda body: (503, {"error": "busy"})).url
    out = tmp_path / "run"
    assert main(["align", str(ifllm_sample), "--out", str(out), *FAST, "--judge-url", url]) == 2
    err = capsys.readouterr().err
    assert url in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (out / "train").exists() and not (out / "pairs").exists()  # nothing ran, nothing trained


def test_align_checks_an_answering_judge_once_before_training(ifllm_sample, tmp_path, capsys, fake_openai):
    srv = fake_openai(_longer_answer_or_ok)
    rep = _run(capsys, str(ifllm_sample), "--out", str(tmp_path / "run"), *FAST, "--judge-url", srv.url,
               "--judge-model", "fake")
    assert rep["steps"]["train"]["status"] == "ran" and rep["steps"]["eval"]["status"] == "ran"
    check = srv.requests[0][2]
    assert "Answer A:" not in check["messages"][-1]["content"] and check["max_tokens"] <= 4
    # one check, then one request per held-out comparison
    assert len(srv.requests) == 1 + rep["steps"]["eval"]["result"]["prompts"]


def _longer_answer_or_ok(body: dict) -> str:
    return _longer_answer(body) if "Answer A:" in body["messages"][-1]["content"] else "A"


def _longer_answer(body: dict) -> str:
    """A fake judge: prefers the answer with more words."""
    text = body["messages"][-1]["content"]
    a = text.split("Answer A:\n", 1)[1].split("\n\nAnswer B:\n", 1)
    return "A" if len(a[0].split()) >= len(a[1].split("\n\nBetter answer")[0].split()) else "B"


def test_win_rate_with_llm_judge(tmp_path, fake_openai):
    from gazepref.datasets.preference import LengthBaselineScorer
    from gazepref.models.tiny_lm import TinyModelConfig, build_tiny_model
    from gazepref.models.win_rate import OpenAIJudge, evaluate

    prompts = [[{"role": "user", "content": f"tell me about cats {i}"}] for i in range(3)]
    model = str(build_tiny_model(tmp_path / "m", ["tell me about cats dogs birds 0 1 2"],
                                 TinyModelConfig(hidden_size=16, intermediate_size=32, max_positions=64)))
    judge = OpenAIJudge(fake_openai(_longer_answer).url, "fake")
    tot = evaluate(model, model, prompts, LengthBaselineScorer(), tmp_path / "eval", max_new_tokens=4, judge=judge)
    # the same model on both sides, greedy: every comparison is a tie for the scorer ...
    assert tot["ties"] == 3 and tot["win_rate"] == 0.5
    # ... and the judge (equal lengths → "A") picks by the random order: decided every time
    assert tot["judge_decisions"] == 3 and 0.0 <= tot["judge_win_rate"] <= 1.0
    md = (tmp_path / "eval" / "win_rate.md").read_text()
    assert "| LLM judge | 3 |" in md
