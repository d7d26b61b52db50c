"""``gazepref.models.align_config``: values a run cannot use are one-line user errors before any step."""
from __future__ import annotations

import pytest

from gazepref import UserError
from gazepref.cli import main
from gazepref.models.align_config import AlignConfig


@pytest.mark.parametrize("section, key, value, needle", [
    ("model", "lora_r", -1, "lora_r"),
    ("data", "test_fraction", 1.0, "test_fraction"),
    ("train", "batch_size", 0, "batch_size"),
])
def test_unusable_values_are_user_errors(section, key, value, needle):
    with pytest.raises(UserError, match=needle):
        AlignConfig.from_dict({section: {key: value}})


def test_negative_lora_rank_fails_before_any_step(ifllm_sample, tmp_path, capsys):
    """--lora-r -1 was a peft ValueError traceback after the pairs had been built."""
    assert main(["align", str(ifllm_sample), "--tiny", "--lora-r", "-1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lora" in err[0] and not (tmp_path / "run" / "pairs").exists()


@pytest.mark.parametrize("section, key, value", [
    ("train", "steps", "ten"),
    ("train", "steps", 8.5),
    ("train", "bf16", "yes"),
    ("train", "learning_rate", "fast"),
    ("train", "label_smoothing", "high"),
    ("model", "path", 3),
    ("model", "lora_target_modules", [1, 2]),
    ("data", "context_messages", "all"),
])
def test_values_of_the_wrong_type_are_user_errors(section, key, value):
    """A config value of the wrong type was stored as given and failed as a traceback inside the
    trainer (``steps = "ten"``: ``'>' not supported between 'str' and 'int'``), after the pairs."""
    with pytest.raises(UserError, match=rf"\[{section}\] {key}"):
        AlignConfig.from_dict({section: {key: value}})


@pytest.mark.parametrize("text, section, key, expected", [
    ("train:\n  learning_rate: 5e-6\n", "train", "learning_rate", 5e-6),  # YAML 1.1 reads 5e-6 as a string
    ("train:\n  beta: 1\n", "train", "beta", 1.0),
    ("train:\n  steps: 8.0\n", "train", "steps", 8),
    ("data:\n  context_messages: null\n", "data", "context_messages", None),
    ("model:\n  lora_target_modules: [q_proj, v_proj]\n", "model", "lora_target_modules", ["q_proj", "v_proj"]),
    ("train:\n  label_smoothing: auto\n", "train", "label_smoothing", "auto"),
])
def test_yaml_numbers_are_read_as_numbers(tmp_path, text, section, key, expected):
    """The docs' configs are TOML; in YAML ``learning_rate: 5e-6`` is the *string* '5e-6', which
    reached TRL as it was."""
    from gazepref.models.align_config import load_config

    p = tmp_path / "align.yaml"
    p.write_text(text)
    got = getattr(getattr(load_config(p), section), key)
    assert got == expected and type(got) is type(expected)


def test_wrongly_typed_config_fails_before_any_step(ifllm_sample, tmp_path, capsys):
    p = tmp_path / "align.toml"
    p.write_text('[train]\nsteps = "ten"\n')
    assert main(["align", str(ifllm_sample), "--tiny", "--config", str(p), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "steps" in err[0] and not (tmp_path / "run" / "pairs").exists()


@pytest.mark.parametrize("model, says", [
    ("{tmp}/no/such/model", "no such model folder"),
    ("~/no-such-model-folder-here", "no such model folder"),
    ("{tmp}", "not a Hugging Face model folder"),  # a folder without config.json
])
def test_a_wrong_model_path_fails_before_any_step(ifllm_sample, tmp_path, capsys, model, says):
    """A --model path that does not exist was taken for a hub name and failed in the train step
    ("Repo id must be in the form 'repo_name' ..."), after the pairs; a folder that is no model
    failed there too."""
    run = tmp_path / "run"
    assert main(["align", str(ifllm_sample), "--model", model.format(tmp=tmp_path), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and not (run / "pairs").exists()
