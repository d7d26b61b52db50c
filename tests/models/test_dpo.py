"""DPO/KTO training with TRL on a tiny model built from config (CPU, nothing downloads)."""
from __future__ import annotations

import json

import pytest

from gazepref import UserError
from gazepref.datasets import preference as P
from gazepref.models.align_config import AlignConfig, TrainConfig, load_config

pytest.importorskip("trl")

COLOURS = ["red", "blue", "green", "black", "white", "pink", "gray", "brown"]


def toy_pairs(n: int = 16) -> list[P.PreferencePair]:
    """A learnable preference: the chosen answer is always 'yes , gladly', the rejected 'no'."""
    out = []
    for i in range(n):
        c = COLOURS[i % len(COLOURS)]
        out.append(P.PreferencePair(
            prompt=[{"role": "user", "content": f"please paint the {c} box number {i}"}],
            chosen="yes , gladly", rejected="no , never", confidence=0.9 if i % 2 else 0.7, label_source="human",
            margin=1.0, participant_id=f"w{i % 4}", task_id=f"w{i % 4}/1", turn_id=str(i), turn=i))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from gazepref.models.tiny_lm import TinyModelConfig, build_tiny_model

    texts = [m["content"] for p in toy_pairs() for m in p.prompt] + ["yes , gladly", "no , never", "maybe"]
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts,
                                TinyModelConfig(hidden_size=32, intermediate_size=64, max_positions=64)))


def _cfg(steps: int, **train) -> AlignConfig:
    cfg = AlignConfig()
    cfg.train = TrainConfig(steps=steps, batch_size=4, learning_rate=5e-3, max_length=64, logging_steps=1,
                            save_steps=1000, bf16=False, **train)
    cfg.model.dtype = "float32"
    return cfg


def _log(path) -> list[dict]:
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


def test_dpo_margin_rises_on_learnable_pairs(tiny, tmp_path):
    from gazepref.models.dpo import train_dpo

    ds = P.to_dataset_dict({"train": toy_pairs()})["train"]
    s = train_dpo(ds, _cfg(8), tmp_path, tiny)
    margins = [r["rewards/margins"] for r in _log(tmp_path) if "rewards/margins" in r]
    assert len(margins) == 8
    assert margins[0] == pytest.approx(0.0, abs=1e-6)  # policy == reference at the start
    assert sum(margins[-3:]) / 3 > sum(margins[:3]) / 3 + 0.5
    assert margins[-1] > 0.5
    acc = [r["rewards/accuracies"] for r in _log(tmp_path) if "rewards/accuracies" in r]
    assert acc[-1] == 1.0
    assert s["steps"] == 8 and s["loss_type"] == ["sigmoid"] and s["steps_per_s"] > 0
    assert (tmp_path / "model" / "config.json").exists() and (tmp_path / "model" / "tokenizer.json").exists()
    hist = json.loads((tmp_path / "log_history.json").read_text())
    assert any("rewards/margins" in h for h in hist)


def test_robust_and_sft_losses(tiny, tmp_path):
    from gazepref.models.dpo import dpo_args, train_dpo

    pairs = toy_pairs()
    conf = [p.confidence for p in pairs]  # mean 0.8 → ε = 0.2
    args, eps = dpo_args(_cfg(1, loss="robust"), tmp_path, conf, len(pairs))
    assert args.loss_type == ["robust"] and eps == pytest.approx(0.2) and args.label_smoothing == pytest.approx(0.2)
    args, _ = dpo_args(_cfg(1, loss="sigmoid+sft", sft_weight=0.5), tmp_path, conf, len(pairs))
    assert args.loss_type == ["sigmoid", "sft"] and args.loss_weights == [1.0, 0.5]
    ds = P.to_dataset_dict({"train": pairs})["train"]
    s = train_dpo(ds, _cfg(1, loss="robust"), tmp_path / "robust", tiny)
    assert s["label_smoothing"] == pytest.approx(0.2) and s["steps"] == 1
    s = train_dpo(ds, _cfg(1, loss="sigmoid+sft"), tmp_path / "sft", tiny)
    assert s["loss_weights"] == [1.0, 0.2]


def test_label_smoothing_from_confidence():
    t = TrainConfig()
    assert t.label_smoothing_for([1.0, 1.0]) == 0.0
    assert t.label_smoothing_for([0.75, 0.85]) == pytest.approx(0.2)
    assert t.label_smoothing_for([0.5, 0.5]) == 0.49  # capped below 0.5
    assert t.label_smoothing_for([]) == 0.0
    assert TrainConfig(label_smoothing=0.1).label_smoothing_for([0.5]) == 0.1


def test_resume_from_checkpoint(tiny, tmp_path):
    from gazepref.models.dpo import train_dpo

    ds = P.to_dataset_dict({"train": toy_pairs(8)})["train"]
    cfg = _cfg(2)
    cfg.train.save_steps = 2
    first = train_dpo(ds, cfg, tmp_path, tiny)
    assert first["resumed_from"] is None and (tmp_path / "checkpoints" / "checkpoint-2").is_dir()
    cfg.train.steps = 3
    second = train_dpo(ds, cfg, tmp_path, tiny)
    assert second["resumed_from"].endswith("checkpoint-2") and second["steps"] == 3
    steps = [r["step"] for r in _log(tmp_path) if "loss" in r]
    assert steps == [1, 2, 3]  # step 3 continued from the checkpoint, not from scratch


def test_lora_dpo(tiny, tmp_path):
    pytest.importorskip("peft")
    from gazepref.models.dpo import train_dpo

    cfg = _cfg(1)
    cfg.model.lora_r = 4
    cfg.model.lora_target_modules = ["q_proj", "v_proj"]
    s = train_dpo(P.to_dataset_dict({"train": toy_pairs(8)})["train"], cfg, tmp_path, tiny)
    assert s["lora"] and (tmp_path / "adapter").is_dir() and (tmp_path / "model" / "config.json").exists()


def test_kto_on_unpaired(tiny, tmp_path):
    from gazepref.models.kto import balance_weights, train_kto

    ex = []
    for p in toy_pairs(12):
        ex.append(P.UnpairedExample(p.prompt, p.chosen, True, 0.8, "likert", p.participant_id, p.task_id, p.turn_id, 0))
        if int(p.turn_id) % 3:
            ex.append(P.UnpairedExample(p.prompt, p.rejected, False, 0.8, "likert", p.participant_id, p.task_id, p.turn_id, 0))
    ds = P.to_dataset_dict({"train": ex})["train"]
    s = train_kto(ds, _cfg(2), tmp_path, tiny)
    assert s["steps"] == 2 and s["n_desirable"] == 12 and s["n_undesirable"] == 8
    assert s["undesirable_weight"] == pytest.approx(1.5) and s["desirable_weight"] == 1.0
    log = _log(tmp_path)
    assert any("kl" in r for r in log) and any("rewards/chosen" in r for r in log)
    assert balance_weights([True, False]) == (1.0, 1.0)
    assert balance_weights([True, False, False]) == (2.0, 1.0)


def test_config_files(tmp_path):
    (tmp_path / "a.toml").write_text('[data]\nlabel_source = "ratings"\n[train]\nloss = "robust"\nsteps = 7\n')
    cfg = load_config(tmp_path / "a.toml")
    assert cfg.data.label_source == "ratings" and cfg.train.loss == "robust" and cfg.train.steps == 7
    (tmp_path / "b.yaml").write_text("train:\n  algorithm: kto\nmodel:\n  lora_r: 8\n")
    cfg = load_config(tmp_path / "b.yaml")
    assert cfg.train.algorithm == "kto" and cfg.model.lora_r == 8
    (tmp_path / "c.toml").write_text("[train]\nlos = 'robust'\n")
    with pytest.raises(UserError, match="unknown key"):
        load_config(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text("[train]\nloss = 'hinge'\n")
    with pytest.raises(UserError, match="unknown loss"):
        load_config(tmp_path / "d.toml")
    with pytest.raises(UserError):
        load_config(tmp_path / "missing.toml")


def test_fallback_chat_template(tiny):
    from transformers import AutoTokenizer

    from gazepref.models.dpo import ensure_chat_template

    tok = AutoTokenizer.from_pretrained(tiny)
    assert not ensure_chat_template(tok)  # has one: kept
    tok.chat_template = None
    assert ensure_chat_template(tok)
    msgs = [{"role": "user", "content": "paint the box"}]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": "yes"}], tokenize=False)
    assert full.startswith(prompt) and full.rstrip().endswith(tok.eos_token)
