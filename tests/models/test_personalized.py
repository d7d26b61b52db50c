import numpy as np

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
