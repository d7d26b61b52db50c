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
