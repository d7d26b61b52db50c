"""The command line's shared output (``gazepref.cli.emit``)."""
from __future__ import annotations

import json
import math

import numpy as np

from gazepref.cli import emit


def test_emit_json_is_strict_json(capsys):
    """``--json`` output must parse with a strict JSON parser (jq, JavaScript): a metric that is not
    defined (NaN, e.g. a fold without pairs) or infinite is ``null``, not the bare ``NaN`` token."""
    result = {"accuracy": 0.5, "spearman": math.nan, "per_fold": [{"agreement": float("nan")}, {"agreement": 1.0}],
              "big": math.inf, "np": np.float64("nan"), "pair": (np.float32(0.25), -math.inf), "n": 3}
    emit(result, True)
    out = capsys.readouterr().out

    def strict(token):
        raise ValueError(f"non-standard JSON token {token}")

    parsed = json.loads(out, parse_constant=strict)
    assert parsed == {"accuracy": 0.5, "spearman": None, "per_fold": [{"agreement": None}, {"agreement": 1.0}],
                      "big": None, "np": None, "pair": [0.25, None], "n": 3}
    assert result["spearman"] != result["spearman"]  # the caller's object is left as it was


def test_an_error_is_one_line_even_when_its_cause_spans_several(tmp_path, capsys):
    """A UserError quoting a library's message (pandas' CSV tokenizer ends its own with a line
    break) still prints as one line on stderr, exit 2, nothing on stdout."""
    from gazepref.cli import main

    bad = tmp_path / "manifest.csv"
    bad.write_text("image,x\na.jpg,1\nb.jpg,2,3,4\n")
    assert main(["gaze", "evaluate", str(bad), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("gazepref: error: ")
    assert "not a readable CSV" in err and "Expected 2 fields" in err
