import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gazepref import UserError
from gazepref.cli import main
from gazepref.models import evaluation as ev
from gazepref.models.scoring import Score, load_reward_model, train_reward_model

from .synthetic import make_frame


@pytest.fixture
def synth_data():
    X = make_frame(n_workers=10, per_worker=8, rule="longer")
    return ev.RewardData(X, X["y"].to_numpy(int), pd.DataFrame(columns=["turn_id", "worker", "prompt", "text", "likert"]))


def test_save_load_round_trip_and_score_api(tmp_path, synth_data):
    rm = train_reward_model(synth_data, model="late_fusion", text_model="structure_bt")
    rm.save(tmp_path / "rm")
    rm2 = load_reward_model(tmp_path / "rm")
    assert rm2.manifest["model"] == "late_fusion" and rm2.manifest["track"] == "fused"
    test = make_frame(n_workers=2, per_worker=5, seed=9)
    a, b = rm.score_frame(test), rm2.score_frame(test)
    assert np.allclose(a["reward"], b["reward"]) and (a["source"] == "fused").all()
    long_, short = "word " * 80, "word."
    s = rm2.score([{"prompt": "q", "response_0": long_, "response_1": short}, ("q", short, long_),
                   {"prompt": "q", "response": long_}, ("q", short)])
    assert [x.kind for x in s] == ["pair", "pair", "response", "response"]
    assert s[0].reward > 0 and s[1].reward < 0  # longer wins, whichever side (orientation)
    assert np.isclose(s[0].p_first, 1 - s[1].p_first)
    assert s[2].reward > s[3].reward
    for x in s:
        reward, conf = x  # unpacks as (reward, confidence)
        assert 0.5 <= conf <= 1.0
    assert s[0].source == "text"  # no implicit features for a bare pair
    with pytest.raises(UserError):
        load_reward_model(tmp_path)


def test_score_turns_from_a_recording(ifllm_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    from gazepref.datasets.recording import open_recording

    d = ev.load_data(ifllm_sample)
    rm = train_reward_model(d, model="late_fusion", text_model="length_rule")
    rec = open_recording(ifllm_sample)
    turns = [t for t in rec.turns() if t.pairwise][:4]
    s = rm.score(turns, recording=rec)
    assert len(s) == 4 and all(isinstance(x, Score) and x.kind == "pair" for x in s)
    assert {x.source for x in s} <= {"fused", "text"}


def test_cli_evaluate_train_score(ifllm_sample, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    models = "length_rule,structure_bt,implicit_logistic,late_fusion,personalized"
    assert main(["reward", "evaluate", str(ifllm_sample), "--json", "--models", models, "--seeds", "1",
                 "--folds", "3"]) == 0
    rep = json.loads(capsys.readouterr().out)
    for track in ("text", "implicit", "fused", "personalized"):
        assert {"accuracy", "auc", "n"} <= set(rep[track]) and rep[track]["n"] == 18
    assert "gain_fused_vs_best_text" in rep and rep["protocol"] == "group"
    out = tmp_path / "rm"
    assert main(["reward", "train", str(ifllm_sample), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert main(["reward", "score", str(out), str(ifllm_sample), "--out", str(tmp_path / "s.parquet"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    df = pd.read_parquet(tmp_path / "s.parquet")
    # one row per comparison (pairwise turn), counted as features and reward train count them
    assert res["comparisons"] == len(df) >= 18 and "pairs" not in res
    assert {"turn_id", "reward", "confidence", "p_first"} <= set(df.columns)
    assert list(df.columns[:4]) == ["task_id", "participant_id", "turn_id", "turn"]  # the feature tables' keys
    capsys.readouterr()
    assert main(["reward", "evaluate", "--train", str(ifllm_sample)]) == 2
    assert "give either SOURCE" in capsys.readouterr().err  # the usage's word (was DATA)
    assert main(["reward", "evaluate"]) == 2
    assert "give SOURCE" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sample_rm(ifllm_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "rm"
    assert main(["reward", "train", str(ifllm_sample), "--out", str(out), "--model", "length_rule"]) == 0
    return out


@pytest.fixture(scope="module")
def sample_comparisons(ifllm_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    assert main(["features", str(ifllm_sample), "--out", str(out), "--no-sentences", "--overwrite"]) == 0
    return pd.read_parquet(out / "comparisons.parquet")


def _read_scores(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"turn_id": str})
    if path.suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text()))  # one JSON list
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl", ".json"])
def test_scores_file_keys_join_the_feature_table(ifllm_sample, sample_rm, sample_comparisons, tmp_path, suffix):
    """``reward score``'s file names its keys as ``gazepref features`` does (task_id, participant_id,
    turn_id, turn): it joins comparisons.parquet one to one on them; ``.json`` is one JSON list."""
    scores = tmp_path / f"s{suffix}"
    assert main(["reward", "score", str(sample_rm), str(ifllm_sample), "--out", str(scores)]) == 0
    df, comp = _read_scores(scores), sample_comparisons
    keys = ["task_id", "participant_id", "turn_id", "turn"]
    assert list(df.columns[:4]) == keys
    df["turn_id"] = df["turn_id"].astype(str)
    both = df.merge(comp[keys + ["model_l", "model_r"]].astype({"turn_id": str}), on=keys, validate="1:1")
    assert len(both) == len(df) == len(comp) == 23
    assert (both["model_0"] == both["model_l"]).all() and (both["model_1"] == both["model_r"]).all()


def test_score_recording_is_the_scores_file(ifllm_sample, sample_rm, sample_comparisons, tmp_path):
    """The API's ``score_recording`` gives the rows ``reward score`` writes, keyed as the feature
    tables (it returned the internal comparison frame: ``worker``, ``index``, the texts, every
    feature and the participant's choice ``y`` beside the scores)."""
    from gazepref.datasets.recording import open_recording

    df = load_reward_model(sample_rm).score_recording(open_recording(ifllm_sample))
    assert list(df.columns) == ["task_id", "participant_id", "turn_id", "turn", "model_0", "model_1", "reward",
                                "p_first", "confidence", "source", "reward_0", "reward_1"]  # docs/reward_models.md
    scores = tmp_path / "s.parquet"
    assert main(["reward", "score", str(sample_rm), str(ifllm_sample), "--out", str(scores)]) == 0
    pd.testing.assert_frame_equal(df, pd.read_parquet(scores), check_dtype=False)
    keys = ["task_id", "participant_id", "turn_id", "turn"]
    assert len(df.merge(sample_comparisons[keys], on=keys, validate="1:1")) == len(sample_comparisons)


def test_personalized_model_scores_with_history(ifllm_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    from gazepref.datasets.recording import open_recording

    d = ev.load_data(ifllm_sample)
    rm = train_reward_model(d, model="personalized", text_model="length_rule")
    rm.save(tmp_path / "p")
    df = load_reward_model(tmp_path / "p").score_recording(open_recording(ifllm_sample))
    assert len(df) >= 18 and (df["source"] == "personalized").all()
    assert df["confidence"].between(0.5, 1.0).all()


def _sample_subset(src: Path, dst: Path, workers: set[str]) -> Path:
    """A copy of the IFLLM sample holding only ``workers`` (tables filtered, folders linked)."""
    dst.mkdir()
    for table in ("query_logs_table.csv", "task_table.csv", "record_info_table.csv"):
        df = pd.read_csv(src / table, dtype=str, keep_default_na=False)
        df[df["user_id"].isin(workers)].to_csv(dst / table, index=False)
    (dst / "user_behavior").mkdir()
    for w in workers:
        (dst / "user_behavior" / w).symlink_to(src / "user_behavior" / w, target_is_directory=True)
    return dst


def test_cli_train_test_leaves_shared_workers_out_of_the_test(ifllm_sample, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    workers = sorted(p.name for p in (ifllm_sample / "user_behavior").iterdir())
    train = _sample_subset(ifllm_sample, tmp_path / "train", set(workers[:4]))
    models = "length_rule,late_fusion,personalized"
    # the whole sample as the test: the 4 training workers are left out of it, with a note
    assert main(["reward", "evaluate", "--train", str(train), "--test", str(ifllm_sample), "--json",
                 "--models", models]) == 0
    out = capsys.readouterr()
    rep = json.loads(out.out)
    assert rep["test_participants_left_out"] == 4 and "left out of the test" in out.err
    held = _sample_subset(ifllm_sample, tmp_path / "held", set(workers[4:]))
    assert main(["reward", "evaluate", "--train", str(train), "--test", str(held), "--json", "--models", models]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["test_participants_left_out"] == 0
    assert alone["n"] == rep["n"] > 0 and alone["participants_test"] == rep["participants_test"] >= 1
    assert alone["text"]["accuracy"] == rep["text"]["accuracy"]
    # nothing left to test on: a clear error
    assert main(["reward", "evaluate", "--train", str(ifllm_sample), "--test", str(train)]) == 2
    assert "hold out whole participants" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["personalized", "late_fusion_worker_cal"])
def test_a_turn_scored_alone_gets_its_reward_in_the_whole_recording(ifllm_sample, tmp_path, monkeypatch, name):
    """The person's earlier choices and their per-person feature scale come from their other turns,
    so scoring one later turn with its recording must not lose them."""
    import dataclasses

    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    from gazepref.datasets.recording import open_recording

    rm = train_reward_model(ev.load_data(ifllm_sample), model=name, text_model="length_rule")
    rec = open_recording(ifllm_sample)
    whole = rm.score_recording(rec).set_index("turn_id")
    later = [t for t in rec.turns() if t.pairwise][-5:]
    alone = [rm.score([t], recording=rec)[0] for t in later]
    together = rm.score(later[::-1], recording=rec)[::-1]
    for t, a, b in zip(later, alone, together):
        assert a.reward == pytest.approx(whole.loc[t.turn_id, "reward"], abs=1e-9)
        assert b.reward == pytest.approx(a.reward, abs=1e-9) and a.source == whole.loc[t.turn_id, "source"]
    with pytest.raises(UserError, match="not pairwise turns of this recording"):
        rm.score([dataclasses.replace(later[0], turn_id="no-such-turn")], recording=rec)


def test_turns_without_trajectories_fall_back_to_the_text_model(synth_data):
    """Context columns (``*_s_*``) are present without trajectories; the gaze/pointer differences
    are NaN, and they decide whether a turn has implicit evidence."""
    rm = train_reward_model(synth_data, model="implicit_gbm", text_model="structure_bt")
    assert any("_s_" in c for c in rm.feature_columns)
    test = make_frame(n_workers=2, per_worker=4, seed=3)
    bare = [c for c in test if c.startswith(("gaze_", "mouse_")) and "_d_" in c]
    test.loc[:3, bare] = np.nan
    s = rm.score_frame(test)
    assert (s["source"][:4] == "text").all() and (s["source"][4:] != "text").all()
    assert np.allclose(s["reward"][:4], rm.text_model.decision_function(test.iloc[:4]))


def test_cli_evaluate_a_recording_without_trajectories(ifllm_sample, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    bare = tmp_path / "bare"
    bare.mkdir()
    for table in ("query_logs_table.csv", "task_table.csv", "record_info_table.csv"):
        shutil.copy(ifllm_sample / table, bare / table)
    assert main(["reward", "evaluate", str(bare), "--json", "--seeds", "1", "--folds", "3"]) == 0
    out = capsys.readouterr()
    rep = json.loads(out.out)
    assert "implicit_logistic" in out.err and "implicit" not in rep
    assert rep["fused"]["n"] == rep["text"]["n"] >= 18
    assert main(["reward", "evaluate", str(bare), "--models", "implicit_logistic", "--seeds", "1", "--folds", "3"]) == 2
    assert "no implicit feature columns" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["{", "[]"])
def test_a_broken_model_manifest_is_a_user_error(tmp_path, text):
    """A truncated or foreign manifest.json is a one-line error naming it, not a JSON traceback."""
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(UserError, match="manifest.json"):
        load_reward_model(tmp_path)


def test_nothing_to_score(tmp_path, synth_data, capsys):
    """A recording without pairwise turns: the API gives an empty frame with the score columns and
    ``reward score`` a one-line error (both were a StandardScaler traceback on 0 samples)."""
    from .synthetic import make_frame as _frame

    rm = train_reward_model(synth_data, model="late_fusion", text_model="structure_bt")
    empty = rm.score_frame(_frame(n_workers=2, per_worker=5, seed=9).iloc[0:0])
    assert len(empty) == 0 and {"reward", "p_first", "confidence", "source", "reward_0", "reward_1"} <= set(empty)
    rm.save(tmp_path / "rm")
    src = tmp_path / "pointwise_only"
    src.mkdir()
    (src / "query_logs_table.csv").write_text(
        "query_ID,user_id,task_id,user_query,llm_response_1,llm_response_2,llm_name_1,llm_name_2,likert_1,"
        "likert_2,preference,adjustment,query_timestamp\n"
        "1,worker_a,2,hello,hi there,,m1,,4,,,0,2025-10-01 10:00:00\n")
    rc = main(["reward", "score", str(tmp_path / "rm"), str(src), "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no pairwise turns" in err[0] and not (tmp_path / "s.csv").exists()
    assert main(["reward", "score", str(tmp_path / "rm"), str(src), "--out", str(tmp_path / "s.txt")]) == 2
    capsys.readouterr()  # a mistyped folder is not made (it was, anywhere: /nonexistent/s.csv)
    assert main(["reward", "score", str(tmp_path / "rm"), str(src), "--out", str(tmp_path / "nope" / "s.csv")]) == 2
    assert "no such folder for --out" in capsys.readouterr().err and not (tmp_path / "nope").exists()


@pytest.mark.parametrize("flag, value, needle", [("--folds", "1", "--folds must be at least 2"),
                                                 ("--seeds", "0", "--seeds must be at least 1")])
def test_evaluate_checks_folds_and_seeds(ifllm_sample, flag, value, needle, capsys):
    """--folds 1 was reported as 'needs comparisons of at least 2 workers', --seeds 0 was a
    scikit-learn traceback after the whole evaluation."""
    assert main(["reward", "evaluate", str(ifllm_sample), "--models", "length_rule", flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_cli_evaluate_runs_leave_one_worker_out_once(ifllm_sample, tmp_path, monkeypatch, capsys):
    """5 workers with comparisons, 5 grouped folds: every seed gives the same folds, run once and said so."""
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    assert main(["reward", "evaluate", str(ifllm_sample), "--json", "--models", "length_rule,structure_bt",
                 "--folds", "5", "--seeds", "3"]) == 0
    captured = capsys.readouterr()
    rep = json.loads(captured.out)
    assert rep["participants"] == 5 and rep["seeds"] == [0, 1, 2] and rep["seeds_run"] == 1
    assert "note: the 3 seeds give 1 distinct fold assignment(s) (leave-one-participant-out)" in captured.err
    assert rep["models"]["structure_bt"]["accuracy_std"] == 0.0


def test_cli_reward_outputs_name_participants(ifllm_sample, tmp_path, monkeypatch, capsys):
    """``reward evaluate`` / ``reward train`` count participants (the recording schema's word, as
    ``data summary`` and the report do), and ``reward train --json`` says where the model went (its
    ``model`` was the folder until the manifest's model name overwrote it)."""
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    assert main(["reward", "evaluate", str(ifllm_sample), "--json", "--models", "length_rule,late_fusion",
                 "--folds", "5", "--seeds", "1"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["participants"] == 5 and rep["gain_fused_vs_best_text"]["n_participants"] == 5
    assert "workers" not in rep and "n_workers" not in rep["gain_fused_vs_best_text"]
    assert main(["reward", "evaluate", str(ifllm_sample), "--models", "length_rule,late_fusion",
                 "--folds", "5", "--seeds", "1"]) == 0
    assert "(5 participants)" in capsys.readouterr().out
    assert main(["reward", "train", str(ifllm_sample), "--model", "length_rule", "--out", str(tmp_path / "rm"),
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["out"] == str(tmp_path / "rm") and got["model"] == "length_rule"
    assert got["trained_on"] == {"comparisons": 18, "participants": 5}
    saved = json.loads(next((tmp_path / "rm").glob("*.json")).read_text())
    assert saved["trained_on"] == got["trained_on"]


@pytest.mark.parametrize("keep", [0, 1])
def test_cli_evaluate_too_few_participants_is_one_line(ifllm_sample, tmp_path, monkeypatch, capsys, keep):
    """Grouped CV on comparisons of fewer than 2 participants: the error alone, one line (a note
    that "CV runs 0 folds (leave-one-participant-out)" came first)."""
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    q = pd.read_csv(ifllm_sample / "query_logs_table.csv", dtype=str, keep_default_na=False)
    labelled = sorted(set(q.loc[q["preference"].isin(["1.0", "2.0"]) & (q["llm_response_2"] != ""), "user_id"]))
    src = _sample_subset(ifllm_sample, tmp_path / "one", set(labelled[:keep]))
    assert main(["reward", "evaluate", str(src), "--models", "length_rule", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "at least 2 participants" in err


def test_train_writes_only_a_new_folder_or_with_overwrite_its_own(ifllm_sample, tmp_path, capsys):
    """``reward train --out`` into a folder holding something else (an export: its manifest.json
    was replaced by the model's, and the export no longer read) is refused, before the training;
    a model folder written before is replaced only with ``--overwrite``."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text('{"format": "gazepref-parquet"}')
    (export / "tasks.parquet").write_bytes(b"PAR1")
    args = ["reward", "train", str(ifllm_sample), "--model", "length_rule"]
    for argv in ([*args, "--out", str(export)], [*args, "--out", str(export), "--overwrite"]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(export) in err, err
    assert (export / "manifest.json").read_text() == '{"format": "gazepref-parquet"}'
    model = tmp_path / "rm"
    assert main([*args, "--out", str(model)]) == 0
    assert main([*args, "--out", str(model)]) == 2 and "use --overwrite" in capsys.readouterr().err
    assert main([*args, "--out", str(model), "--overwrite"]) == 0
    assert load_reward_model(model).manifest["model"] == "length_rule"
