import numpy as np
import pandas as pd

from gazepref.models.personalized import HIST_COLUMNS, history_features, model_rule_accuracy

from .synthetic import make_frame


def test_history_never_uses_the_turn_itself_or_later_turns():
    X = make_frame(n_workers=3, per_worker=9, rule="random", seed=2)
    X["model_0"] = np.where(X["seq"] % 2 == 0, "m_a", "m_c")
    h = history_features(X)
    for cut in (0, 3, 6):
        Y = X.copy()
        later = Y["seq"] >= cut
        Y.loc[later, "y"] = 1 - Y.loc[later, "y"]  # flip the turn's own and all later labels
        h2 = history_features(Y)
        upto = (X["seq"] <= cut).to_numpy()  # rows up to and including the cut use only labels before it
        assert np.allclose(h.loc[upto, list(HIST_COLUMNS)], h2.loc[upto, list(HIST_COLUMNS)])
    # a worker's first turn has no history
    first = X["seq"] == 0
    assert np.allclose(h.loc[first, ["hist_d_model", "hist_rule_model", "hist_d_task_side"]], 0)


def test_model_preferred_earlier_rule():
    X = make_frame(n_workers=2, per_worker=6, rule="random", seed=1)
    X["y"] = 1.0  # each person always prefers m_a (left)
    r = model_rule_accuracy(X)
    assert r["accuracy"] == 1.0 and r["n"] == 2 * 5  # all but the first turn of each worker
    # other workers' choices never enter
    h = history_features(X)
    assert (h.loc[X["seq"] == 0, "hist_s_n"] == 0).all()


def _ratings_for(X, likert_of):
    """A ratings table with one rating per response of each row of ``X`` (``likert_of(row, k)``)."""
    rows = []
    for _, r in X.iterrows():
        for k in (0, 1):
            rows.append({"turn_id": r["turn_id"], "task_id": r["task_id"], "worker": r["worker"], "index": r["index"],
                         "epoch_ms": r["epoch_ms"], "model": r[f"model_{k}"], "prompt": r["prompt"],
                         "text": r[f"text_{k}"], "likert": likert_of(r, k)})
    return pd.DataFrame(rows)


def test_rating_history_reads_only_earlier_ratings():
    X = make_frame(n_workers=2, per_worker=9, rule="random", seed=4)
    X["model_0"] = np.where(X["seq"] % 2 == 0, "m_a", "m_b")
    X["model_1"] = np.where(X["seq"] % 2 == 0, "m_b", "m_a")
    R = _ratings_for(X, lambda r, k: 5 if r[f"model_{k}"] == "m_a" else 2)  # everyone likes m_a
    h = history_features(X, ratings=R)["hist_d_rating_model"]
    first = (X["seq"] == 0).to_numpy()
    assert np.allclose(h[first], 0)  # nothing rated before
    later = ~first
    assert (np.sign(h[later]) == np.where(X.loc[later, "model_0"] == "m_a", 1, -1)).all()
    for cut in (2, 5):
        R2 = R.copy()
        at_or_after = R2["turn_id"].isin(X.loc[X["seq"] >= cut, "turn_id"])
        R2.loc[at_or_after, "likert"] = 6 - R2.loc[at_or_after, "likert"]  # the turn's own and later ratings
        h2 = history_features(X, ratings=R2)["hist_d_rating_model"]
        upto = (X["seq"] <= cut).to_numpy()
        assert np.allclose(h[upto], h2[upto]) and not np.allclose(h, h2)
    # without ratings the column is there and zero; another worker's ratings never count
    assert np.allclose(history_features(X)["hist_d_rating_model"], 0)
    only_w1 = history_features(X, ratings=R[R["worker"] == "w1"])["hist_d_rating_model"]
    assert np.allclose(only_w1[(X["worker"] == "w0").to_numpy()], 0)


def test_rating_history_on_the_ifllm_sample(ifllm_sample):
    from gazepref.datasets.recording import open_recording
    from gazepref.models.comparisons import comparison_frame, rated_responses

    rec = open_recording(ifllm_sample)
    X, R = comparison_frame(rec), rated_responses(rec)
    assert {"task_id", "index", "epoch_ms", "model"} <= set(R.columns) and R["likert"].between(1, 5).all()
    assert R["epoch_ms"].notna().all()
    h = history_features(X, ratings=R)
    assert (h["hist_d_rating_model"] != 0).any()
    # pointwise turns count too: the sample's ratings outnumber its pairwise responses
    assert len(R) > 2 * len(X)
