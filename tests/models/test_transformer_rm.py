import numpy as np
import pytest

from .synthetic import make_frame

pytest.importorskip("trl")


def test_tiny_reward_trainer_runs_and_scores(tmp_path):
    from gazepref.models.transformer_rm import TransformerRM

    X = make_frame(n_workers=4, per_worker=4, rule="longer")
    m = TransformerRM(output_dir=str(tmp_path / "rm"), max_steps=3, batch_size=4, max_length=64)
    m.fit(X, X["y"].to_numpy(int))
    z = m.decision_function(X.head(5))
    assert z.shape == (5,) and np.isfinite(z).all()
    p = m.predict_proba(X.head(5))[:, 1]
    assert np.allclose(p, 1 / (1 + np.exp(-z)))
    r = m.reward(["q"], ["alpha beta."])
    assert r.shape == (1,)
