import numpy as np
import pandas as pd
import pytest

from gazepref import schema
from gazepref.models import comparisons as comp
from gazepref.models.text_models import EmbeddingBT, LengthRule, OrdinalLikert, StructureBT, TfidfBT

from .synthetic import make_frame


def test_orientation_longer_always_chosen(frame_longer):
    """Toy set where the longer answer is always chosen: a trained model must predict exactly that,
    whichever side the longer answer is on (y = 1 means LEFT = response 0 preferred)."""
    X = frame_longer
    y = X["y"].to_numpy(int)
    for model in (StructureBT(), LengthRule(), TfidfBT(max_features=200)):
        m = model.fit(X, y)
        test = make_frame(n_workers=3, seed=7)
        p = m.predict_proba(test)[:, 1]
        longer_left = test["text_0"].str.len() > test["text_1"].str.len()
        assert ((p > 0.5) == longer_left).mean() > (0.75 if isinstance(model, TfidfBT) else 0.95), type(model).__name__
        # swapping sides flips the prediction (no position bias)
        q = m.predict_proba(comp.swap(test))[:, 1]
        assert np.allclose(p, 1 - q, atol=1e-9)


def test_the_length_rule_picks_the_longer_answer_even_where_training_favours_the_shorter(frame_longer):
    """The length rule is the untrained baseline: trained on pairs where the *shorter* answer was
    chosen, its slope came out negative and it predicted "shorter wins" (27.8 % on the IFLLM
    sample, where the rule scores 72.2 %). The scale stays positive: the longer answer is still
    picked, with a probability near 0.5; trained where the longer wins, the scale is fitted."""
    X = frame_longer
    flipped = LengthRule().fit(X, 1 - X["y"].to_numpy(int))
    test = make_frame(n_workers=3, seed=7)
    longer_left = (test["text_0"].str.len() > test["text_1"].str.len()).to_numpy()
    p = flipped.predict_proba(test)[:, 1]
    assert ((p > 0.5) == longer_left).mean() > 0.95 and np.abs(p - 0.5).max() < 1e-3
    fitted = LengthRule().fit(X, X["y"].to_numpy(int)).predict_proba(test)[:, 1]
    assert ((fitted > 0.5) == longer_left).mean() > 0.95 and np.abs(fitted - 0.5).mean() > 0.1


def test_label_orientation_from_turns():
    t = schema.Turn("1", "w/1", "w", 0, "pairwise", "q", [schema.Response(0, "a", "short"),
                                                          schema.Response(1, "b", "a much longer answer")],
                    choice=schema.LEFT)
    u = schema.Turn("2", "w/1", "w", 1, "pairwise", "q2", [schema.Response(0, "a", "x"), schema.Response(1, "b", "y")],
                    choice=schema.RIGHT)
    df = comp.comparison_frame([t, u])
    assert df.set_index("turn_id").loc["1", "y"] == 1.0  # LEFT → y = 1 (response 0 preferred)
    assert df.set_index("turn_id").loc["2", "y"] == 0.0
    assert df.set_index("turn_id").loc["1", "next_query"] == "q2"
    assert "likert" not in df.columns


def test_shuffled_labels_near_chance():
    X = make_frame(n_workers=20, per_worker=10, rule="random", seed=3)
    y = X["y"].to_numpy(int)
    tr = X["worker"].isin([f"w{i}" for i in range(12)]).to_numpy()
    m = StructureBT().fit(X[tr], y[tr])
    acc = ((m.predict_proba(X[~tr])[:, 1] > 0.5) == y[~tr]).mean()
    assert 0.3 < acc < 0.7


def test_embedding_bt_learns_a_topic():
    """MiniLM head: the answer about cooking wins over the one about taxes (few texts, fast)."""
    good = ["Boil the pasta in salted water for ten minutes.", "Roast the vegetables with olive oil and garlic.",
            "Whisk eggs and sugar, then bake the cake.", "Simmer the tomato sauce with basil.",
            "Grill the fish with lemon and herbs.", "Knead the bread dough and let it rise."]
    bad = ["File your tax return before April.", "Deductions lower your taxable income.",
           "The auditor checked the ledger.", "Capital gains are taxed differently.",
           "Keep receipts for business expenses.", "Quarterly estimated payments are due."]
    rows = []
    for i in range(6):
        for j in range(6):
            left_good = (i + j) % 2 == 0
            a, b = (good[i], bad[j]) if left_good else (bad[j], good[i])
            rows.append({"prompt": "tell me something", "text_0": a, "text_1": b, "worker": f"w{i}", "y": float(left_good)})
    X = pd.DataFrame(rows)
    m = EmbeddingBT(C=1.0, structure=False).fit(X, X["y"].to_numpy(int))
    test = pd.DataFrame({"prompt": ["x", "x"], "text_0": ["Fry the onions until golden.", "Your refund was delayed."],
                         "text_1": ["The IRS sent a notice.", "Stir the soup slowly."], "worker": ["t", "t"]})
    assert list(m.predict(test)) == [1, 0]


def test_ordinal_likert_uses_ratings_as_targets(frame_longer):
    X = frame_longer
    # ratings: longer responses rated higher
    texts = pd.concat([X["text_0"], X["text_1"]]).tolist()
    lik = [min(5, 1 + len(t) // 150) for t in texts]
    R = pd.DataFrame({"prompt": ["q"] * len(texts), "text": texts, "likert": lik, "worker": ["w"] * len(texts),
                      "turn_id": ["t"] * len(texts)})
    m = OrdinalLikert(embedding=False).fit(X, X["y"].to_numpy(int), ratings=R)
    r = m.reward(["q", "q"], ["short.", " ".join(["word"] * 200)])
    assert r[1] > r[0] and 1.0 <= r.min() and r.max() <= 5.0
    with pytest.raises(ValueError):
        OrdinalLikert().fit(X, X["y"].to_numpy(int))


@pytest.mark.parametrize("n,d", [(60, 300), (150, 1000)])
def test_many_feature_fits_solve_the_objective_in_the_pairs_span(n, d):
    """With more features than pairs the Bradley-Terry head is solved in the span of the pairs
    (:class:`_PairSpanLR`): the optimum of the same objective as a feature-space solve (sklearn's
    L-BFGS, run to a tight tolerance), and the grid of :func:`bt_path` (one Gram matrix, warm
    starts) gives each C's fit of :func:`fit_bt`."""
    from sklearn.linear_model import LogisticRegression

    from gazepref.models.text_models import _PairSpanLR, bt_path, choose_c, fit_bt

    rng = np.random.default_rng(n)
    D = rng.normal(size=(n, d)) * (rng.random(d) < 0.3)
    y = (D @ rng.normal(size=d) + rng.normal(0, 2, n) > 0).astype(int)
    Cs = (0.003, 0.1, 1.0)
    path = bt_path(D, y, Cs)
    for C, (sc, lr) in zip(Cs, path):
        sc1, lr1 = fit_bt(D, y, C)
        assert isinstance(lr1, _PairSpanLR)
        np.testing.assert_allclose(lr.coef_, lr1.coef_, atol=1e-6)
        A = sc.transform(np.vstack([D, -D]))
        ref = LogisticRegression(C=C, fit_intercept=False, tol=1e-10, max_iter=10_000).fit(A, np.r_[y, 1 - y])
        np.testing.assert_allclose(lr.coef_, ref.coef_, atol=1e-4 * max(1.0, np.abs(ref.coef_).max()))
    groups = np.arange(n) % 6
    assert choose_c(D, y, groups, Cs) in Cs


def test_newton_heads_with_an_intercept_solve_sklearns_objective():
    """:class:`OrdinalLikert`'s heads (an unpenalised intercept, rare positives among them) are
    Newton solves of sklearn's objective: the same weights as its L-BFGS run to a tight tolerance."""
    from sklearn.linear_model import LogisticRegression

    from gazepref.models.text_models import _NewtonLR

    rng = np.random.default_rng(3)
    F = rng.normal(size=(300, 40))
    for share in (0.5, 0.03):
        t = (F @ rng.normal(size=40) + rng.logistic(size=300) > np.quantile(F @ rng.normal(size=40), 1 - share)).astype(int)
        assert 0 < t.sum() < 300
        head = _NewtonLR(0.1, fit_intercept=True).fit(F, t)
        ref = LogisticRegression(C=0.1, tol=1e-10, max_iter=10_000).fit(F, t)
        np.testing.assert_allclose(head.coef_, ref.coef_, atol=1e-5)
        np.testing.assert_allclose(head.intercept_, ref.intercept_, atol=1e-5)
        np.testing.assert_allclose(head.predict_proba(F), ref.predict_proba(F), atol=1e-6)
