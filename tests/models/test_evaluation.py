import json

import numpy as np
import pandas as pd
import pytest

from gazepref.models import evaluation as ev
from gazepref.models.fusion import LateFusion, causal_worker_scale
from gazepref.models.implicit_models import ImplicitModel
from gazepref.models.text_models import LengthRule, StructureBT

from .synthetic import make_frame


def _data(rule: str, seed: int = 0, n_workers: int = 15) -> ev.RewardData:
    X = make_frame(n_workers=n_workers, per_worker=8, rule=rule, seed=seed)
    R = pd.DataFrame(columns=["turn_id", "worker", "prompt", "text", "likert"])
    return ev.RewardData(X, X["y"].to_numpy(int), R)


def test_grouped_cv_never_shares_a_worker():
    d = _data("random")
    for seed in (0, 1, 2):
        for tr, te in ev.splits(d, "group", 5, seed):
            assert not set(d.groups[tr]) & set(d.groups[te])
    # the anchor's random protocol does share workers (that is its flaw)
    shared = any(set(d.groups[tr]) & set(d.groups[te]) for tr, te in ev.splits(d, "random", 5, 0))
    assert shared


def test_known_signal_and_shuffled_labels():
    d = _data("gaze")
    p = ev.cross_val_predict(lambda: ImplicitModel("logistic", sources=("gaze",)), d, "group", 5, 0)
    assert ev.metrics(d.y, p)["accuracy"] > 0.9
    # fused: gaze decides, text is noise → the fused model still finds it
    p = ev.cross_val_predict(lambda: LateFusion(StructureBT(), sources=("gaze", "mouse")), d, "group", 5, 0)
    assert ev.metrics(d.y, p)["accuracy"] > 0.85
    r = _data("random", seed=4, n_workers=25)
    p = ev.cross_val_predict(lambda: ImplicitModel("logistic"), r, "group", 5, 0)
    assert 0.35 < ev.metrics(r.y, p)["accuracy"] < 0.65


def test_evaluate_report_shape_and_gain_ci():
    d = _data("longer")
    models = {"length_rule": ("text", LengthRule), "implicit_logistic": ("implicit", lambda: ImplicitModel("logistic")),
              "late_fusion": ("fused", lambda: LateFusion(LengthRule())),
              "personalized": ("personalized", lambda: __import__("gazepref.models.personalized", fromlist=["x"]).PersonalizedModel(LengthRule(), implicit=False))}
    rep = ev.evaluate(d, models, seeds=(0, 1), folds=3, n_boot=200)
    for track in ("text", "implicit", "fused", "personalized"):
        assert {"accuracy", "auc", "n"} <= set(rep[track])
        assert rep[track]["n"] == len(d.y)
    assert rep["text"]["accuracy"] > 0.95
    for track in ("fused", "personalized"):
        g = rep[f"gain_{track}_vs_best_text"]
        assert g["ci_low"] <= g["gain"] <= g["ci_high"] and g[track] == rep[track]["model"]
    md = ev.markdown(rep)
    assert "| length_rule |" in md and "Gain of personalized over" in md


def test_metrics_and_ece():
    y = np.array([1, 0, 1, 0])
    m = ev.metrics(y, np.array([0.9, 0.1, 0.8, 0.3]))
    assert m["accuracy"] == 1.0 and m["auc"] == 1.0 and m["n"] == 4
    assert ev.ece(np.array([1, 1]), np.array([0.99, 0.99])) < 0.02
    assert ev.ece(np.array([0, 0]), np.array([0.99, 0.99])) > 0.9


def test_bootstrap_gain_zero_for_identical():
    y = np.array([1, 0, 1, 1, 0, 0])
    p = np.array([0.7, 0.2, 0.4, 0.6, 0.3, 0.8])
    g = ev.bootstrap_gain(y, p, p, np.array(list("aabbcc")), n_boot=100)
    assert g["gain"] == 0 and g["ci_low"] == 0 and g["ci_high"] == 0


@pytest.mark.parametrize("groups, has_ci", [("aaaaaa", False), ("aaabbb", True)])
def test_bootstrap_gain_has_no_ci_from_one_participant(groups, has_ci):
    """Resampling one participant gives that participant every time: the "CI" was the gain itself
    (zero width) and p_gain_le_0 0 or 1, which read as certainty (``--train A --test B`` with one
    test participant)."""
    y = np.array([1, 0, 1, 1, 0, 0])
    a, b = np.array([0.9, 0.1, 0.9, 0.9, 0.1, 0.1]), np.full(6, 0.4)
    g = ev.bootstrap_gain(y, a, b, np.array(list(groups)), n_boot=200)
    assert g["gain"] == pytest.approx(0.5) and g["n_participants"] == len(set(groups))
    assert all(np.isfinite(g[k]) == has_ci for k in ("ci_low", "ci_high", "p_gain_le_0"))


def test_train_test_with_one_test_participant_says_no_ci():
    from gazepref.models.evaluation_report import markdown

    a, b = _data("longer", seed=0, n_workers=8), _data("longer", seed=5, n_workers=1)
    b.X["worker"] = "t" + b.X["worker"]
    models = {"length_rule": ("text", LengthRule), "late_fusion": ("fused", lambda: LateFusion(LengthRule()))}
    rep = ev.train_test(a, b, models, n_boot=100)
    g = rep["gain_fused_vs_best_text"]
    assert g["n_participants"] == 1 and not np.isfinite(g["ci_low"])
    text = markdown(rep)
    assert "no CI (1 participant" in text and "nan" not in text.lower()


def test_worker_scaling_is_causal():
    X = make_frame(n_workers=2, per_worker=6, rule="gaze")
    cols = ["gaze_d_share", "gaze_d_log_dwell"]
    glob = np.ones(len(cols))  # the population scale comes from the training set
    a = causal_worker_scale(X, cols, glob)
    X2 = X.copy()
    late = (X2["worker"] == "w0") & (X2["seq"] >= 4)
    X2.loc[late, cols] = 100.0
    b = causal_worker_scale(X2, cols, glob)
    early = (X["worker"] == "w0") & (X["seq"] < 4)
    np.testing.assert_allclose(a.loc[early, cols], b.loc[early, cols])


def test_train_test_on_disjoint_workers():
    a, b = _data("longer", seed=0, n_workers=8), _data("longer", seed=5, n_workers=4)
    b.X["worker"] = "t" + b.X["worker"]
    models = {"length_rule": ("text", LengthRule), "late_fusion": ("fused", lambda: LateFusion(LengthRule()))}
    rep = ev.train_test(a, b, models, n_boot=100)
    assert rep["text"]["accuracy"] > 0.95 and rep["n"] == len(b.y) and rep["protocol"] == "train_test"
    assert "gain_fused_vs_best_text" in rep


def test_worker_scaling_accepts_float32_columns():
    X = make_frame(n_workers=2, per_worker=4)
    X["tf_d_x"] = np.ones(len(X), dtype=np.float32)
    out = causal_worker_scale(X, ["tf_d_x", "gaze_d_share"])
    assert out["tf_d_x"].dtype == np.float64 and np.isfinite(out["tf_d_x"]).all()


def test_worker_centring_is_causal_and_removes_a_side_habit():
    X = make_frame(n_workers=2, per_worker=12, rule="random", seed=3)
    cols = ["gaze_d_share"]
    X["gaze_d_share"] = np.where(X["worker"] == "w0", 0.3, -0.3)  # each always looks more at one side
    glob = np.ones(1)
    out = causal_worker_scale(X, cols, glob, centre=True)
    for w in ("w0", "w1"):
        v = out.loc[X["worker"] == w].sort_values("seq")["gaze_d_share"].abs().to_numpy()
        assert v[0] == pytest.approx(0.3)  # no earlier turns: nothing to subtract
        assert v[-1] < 0.5 * v[0] and np.all(np.diff(v) < 0)  # the habit fades out as it repeats
    plain = causal_worker_scale(X, cols, glob)  # scaling alone keeps (here: inflates) the habit
    assert (plain["gaze_d_share"].abs() >= out["gaze_d_share"].abs() - 1e-12).all()
    X2 = X.copy()
    late = (X2["worker"] == "w0") & (X2["seq"] >= 6)
    X2.loc[late, cols] = -5.0
    b = causal_worker_scale(X2, cols, glob, centre=True)
    early = (X["worker"] == "w0") & (X["seq"] <= 6)  # the changed turn itself sees only earlier ones
    np.testing.assert_allclose(out.loc[early & (X["seq"] < 6), cols], b.loc[early & (X["seq"] < 6), cols])
    assert not np.allclose(out.loc[early, cols], b.loc[early, cols])  # the changed row differs (its own value)


def test_centred_fusion_is_listed_and_fits():
    d = _data("gaze", seed=1, n_workers=6)
    models = ev.default_models()
    assert models["late_fusion_length_centred"][0] == "fused"
    m = ev.fit_model(models["late_fusion_length_centred"][1](), d.X, d.y, d.ratings)
    acc = float((m.predict(d.X) == d.y).mean())
    assert acc > 0.8  # the gaze rule is learnable through the centred features


def test_a_tie_earns_half_credit_on_either_label():
    """p = 0.5 predicts neither side: it must not count as a vote for the right response."""
    y = np.array([1, 1, 0, 0])
    p = np.array([0.5, 0.9, 0.5, 0.2])
    assert ev.metrics(y, p)["accuracy"] == pytest.approx(0.75)
    assert ev.metrics(1 - y, 1 - p)["accuracy"] == pytest.approx(0.75)  # mirrored: the same
    g = ev.bootstrap_gain(y, p, np.full(4, 0.5), np.array(list("aabb")), n_boot=50)
    assert g["gain"] == pytest.approx(0.25)


def test_grouped_cv_of_one_worker_is_a_clear_error():
    from gazepref import UserError

    d = _data("longer", n_workers=1)
    with pytest.raises(UserError, match="at least 2 participants"):
        ev.evaluate(d, {"length_rule": ev.default_models()["length_rule"]}, seeds=(0,), n_boot=10)


def test_data_without_implicit_features():
    """A recording without trajectories: implicit-only models are left out of the default set and
    say why when asked for; the fused models fall back to the text score."""
    from gazepref import UserError

    d = _data("longer")
    X = d.X.drop(columns=[c for c in d.X if c.startswith(("gaze_", "mouse_"))])
    usable = ev.applicable_models(ev.default_models(), X)
    assert "implicit_logistic" not in usable and "ablation_gaze" not in usable
    assert {"length_rule", "late_fusion_worker_cal", "personalized"} <= set(usable)
    with pytest.raises(UserError, match="no implicit feature columns"):
        ImplicitModel("gbm").fit(X, d.y)
    assert set(ev.applicable_models(ev.default_models(), d.X)) == set(ev.default_models())


def test_feature_cache_is_keyed_by_every_file_and_the_code(ifllm_sample, tmp_path, monkeypatch):
    """A changed trajectory file or changed feature/reader code must not reuse cached features."""
    import os
    import shutil

    from gazepref.datasets.recording import open_recording
    from gazepref.signals.plots.synthetic import site_like

    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "rec"
    shutil.copytree(ifllm_sample, path)
    from gazepref.models import feature_cache

    rec = open_recording(path)
    key = feature_cache.cache_path(rec, "comparisons")
    assert key == feature_cache.cache_path(open_recording(path), "comparisons") and key.parent == tmp_path / "cache" / "reward"
    traj = next(f for f in sorted((path / "user_behavior").rglob("*")) if f.is_file())
    st = traj.stat()
    os.utime(traj, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    moved = feature_cache.cache_path(rec, "comparisons")
    assert moved != key
    monkeypatch.setattr(feature_cache, "code_fingerprint", lambda: "other code")
    assert feature_cache.cache_path(rec, "comparisons") not in (key, moved)
    assert feature_cache.cache_path(site_like(), "comparisons") is None  # an in-memory recording: no cache


def test_families_of_the_comparison_table(ifllm_sample, tmp_path, monkeypatch):
    """``features=``: the in-box family (default; ``hits`` its old name), the table's other pairwise
    measures in antisymmetric form, or both; the implicit models read whichever is there."""
    from gazepref.models.implicit_features import implicit_columns, is_pairwise, swap_implicit

    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path))
    inbox = ev.load_data(ifllm_sample)
    assert ev.load_data(ifllm_sample, features="hits").X.equals(inbox.X)
    sig = ev.load_data(ifllm_sample, features="signals")
    both = ev.load_data(ifllm_sample, features="both")
    ci, cs, cb = (implicit_columns(d.X) for d in (inbox, sig, both))
    assert ci and all(c.startswith(("gaze_d_", "mouse_d_")) for c in ci)
    assert cs and not set(ci) & set(cs) and {"d_g_dwell_ms", "g_share_l", "m_first_side"} <= set(cs)
    assert set(cb) == set(ci) | set(cs)
    assert all(is_pairwise(c) for c in cb)
    assert np.nanmax(np.abs(sig.X["g_share_l"])) <= 0.5  # centred: swapping the sides negates it
    assert swap_implicit(sig.X[cs]).equals(-sig.X[cs])
    p = ImplicitModel("logistic").fit(sig.X, sig.y).predict_proba(sig.X)[:, 1]
    assert np.isfinite(p).all()
    with pytest.raises(ValueError, match="unknown features"):
        ev.load_data(ifllm_sample, features="nope")


def test_seeds_that_give_the_same_folds_are_run_once():
    """Leave-one-worker-out (folds = workers) gives every seed the same folds: the folds are fitted
    once, and the figures are those of running every seed."""
    d = _data("gaze", n_workers=4)
    fits = []

    def factory():
        fits.append(1)
        return ImplicitModel("logistic")

    seeds = (0, 1, 2)
    each = [ev.metrics(d.y, ev.cross_val_predict(factory, d, "group", 4, s))["accuracy"] for s in seeds]
    fits.clear()
    rep = ev.evaluate(d, {"implicit_logistic": ("implicit", factory)}, folds=4, seeds=seeds, n_boot=10)
    assert rep["seeds"] == [0, 1, 2] and rep["seeds_run"] == 1 and len(fits) == 4  # one fit per worker
    row = rep["models"]["implicit_logistic"]
    assert row["accuracy"] == pytest.approx(np.mean(each)) and row["accuracy_std"] == pytest.approx(np.std(each))
    assert "4 folds × 1 seed run (the 3 seeds give only 1 distinct fold assignment)" in ev.markdown(rep)


def test_seeds_with_different_folds_are_each_run():
    d = _data("gaze", n_workers=6)
    seeds = (0, 1, 2, 3)
    factory = lambda: ImplicitModel("logistic")  # noqa: E731
    partitions = {frozenset(frozenset(te.tolist()) for _, te in ev.splits(d, "group", 3, s)) for s in seeds}
    assert len(partitions) == 4, "3 folds of 6 workers: each seed shuffles the workers differently"
    each = [ev.metrics(d.y, ev.cross_val_predict(factory, d, "group", 3, s))["accuracy"] for s in seeds]
    rep = ev.evaluate(d, {"implicit_logistic": ("implicit", factory)}, folds=3, seeds=seeds, n_boot=10)
    assert rep["seeds_run"] == 4 and "3 folds × 4 seeds;" in ev.markdown(rep)
    assert rep["models"]["implicit_logistic"]["accuracy"] == pytest.approx(np.mean(each))


@pytest.mark.parametrize("seeds, says", [(1, "3 folds × 1 seed;"), (2, "3 folds × 2 seeds;")],
                         ids=["one-seed", "two-seeds"])
def test_markdown_table_of_the_sample_says_its_units(ifllm_sample, tmp_path, seeds, says):
    """``reward evaluate --markdown`` on the IFLLM sample: the accuracy column holds percentages
    (72.2, not 0.722) and its heading says so, as the HTML report's and docs' tables do; one seed is
    "1 seed"."""
    from gazepref.cli import main

    md = tmp_path / "table.md"
    assert main(["reward", "evaluate", str(ifllm_sample), "--models", "length_rule", "--seeds", str(seeds),
                 "--folds", "3", "--markdown", str(md)]) == 0
    text = md.read_text()
    assert says in text
    head, _, row = [ln for ln in text.splitlines() if ln.startswith("| ")][:3]
    assert head.split(" | ")[2] == "accuracy %"
    assert 50 < float(row.split(" | ")[2].split(" ± ")[0]) <= 100


@pytest.mark.parametrize("folds", [3, 5, 6, 10])
def test_grouped_folds_reported_as_run(ifllm_sample, capsys, folds):
    """The sample's 18 labelled comparisons come from 5 workers: grouped CV runs at most 5 folds
    (leave-one-worker-out). The report's ``folds`` is what ran (``folds_asked`` what was asked,
    when more), and --folds 10 runs as --folds 6 does (it was refused as 'too few comparisons'
    while --folds 6 ran and was reported as 6 folds)."""
    from gazepref.cli import main

    assert main(["reward", "evaluate", str(ifllm_sample), "--models", "length_rule", "--seeds", "1",
                 "--folds", str(folds), "--json"]) == 0
    out, err = capsys.readouterr()
    rep = json.loads(out)
    assert rep["participants"] == 5 and rep["folds"] == min(folds, 5)
    assert rep.get("folds_asked") == (folds if folds > 5 else None)
    assert ("runs 5 folds (leave-one-participant-out)" in err) == (folds > 5)


@pytest.mark.parametrize("models, expected", [
    ("length_rule", ["length_rule", "ablation_text_feedback", "ablation_text+text_feedback",
                     "ablation_fused+text_feedback"]),
    ("length_rule,ablation_text_feedback", ["length_rule", "ablation_text_feedback", "ablation_text+text_feedback",
                                            "ablation_fused+text_feedback"]),
])
def test_text_feedback_ablation_runs_with_named_models(models, expected):
    """``--text-feedback --models length_rule`` classified every next message (slow) and then ran
    none of the ablation the flag asks for: with --models its models were left out unless named."""
    from gazepref.models.reward_commands import _models

    assert list(_models(models, text_feedback=True)) == expected
    assert list(_models("length_rule", text_feedback=False)) == ["length_rule"]
