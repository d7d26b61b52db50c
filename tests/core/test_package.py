"""The package layout: one `gazepref` namespace, no shadowing of Hugging Face `datasets`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gazepref.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def test_import_datasets_from_repo_root_is_hugging_face():
    code = "import datasets, gazepref.datasets.ifllm as r; print(datasets.__file__); print(r.__name__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    hf_file, ours = out.stdout.split()
    assert "site-packages" in hf_file and ours == "gazepref.datasets.ifllm"
    for name in ("models", "signals", "datasets", "capture_site"):
        assert not (REPO / name / "__init__.py").exists(), f"{name}/__init__.py would shadow on sys.path"


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"serve", "data"} <= set(sub.choices)
    for name in sub.choices:
        try:
            main([name, "--help"])
        except SystemExit as e:
            assert e.code == 0
        assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("argv, says", [
    (["reward", "evaluate", "--protocol", "bogus", "x"],
     "gazepref reward evaluate: error: argument --protocol: invalid choice: 'bogus'"),
    (["reward", "ordinal", "evaluate", "x", "--folds", "many"], "argument --folds: invalid int value: 'many'"),
    (["align", "x", "--label-source", "bogus"], "argument --label-source: invalid choice: 'bogus'"),
    (["data", "schema", "--nope"], "unrecognized arguments: --nope"),
    ([], "the following arguments are required: COMMAND"),
])
def test_a_usage_mistake_is_one_line_on_stderr(capsys, argv, says):
    """As every user mistake (README): one line, exit status 2; argparse printed its usage block
    (9-15 lines) before the error. The line says where the usage is."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and err[0].endswith("--help)"), err


def test_data_schema_lists_every_stream(capsys):
    import json

    from gazepref import schema

    assert main(["data", "schema", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == set(schema.STREAMS)
    assert [c["name"] for c in doc["gaze"]["columns"]][:3] == ["t", "x", "y"]


def test_output_paths_that_cannot_be_written_are_one_line_errors(ifllm_sample, tmp_path, capsys):
    """--out naming a file where a folder is written, or a non-empty folder: exit 2 and one line,
    never a traceback, and nothing there is replaced."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    full = tmp_path / "full"
    full.mkdir()
    (full / "responses.parquet").write_text("an earlier run")
    for argv, message in [
        (["data", "export", str(ifllm_sample), "--out", str(a_file)], "notes.txt"),
        (["features", str(ifllm_sample), "--out", str(a_file)], "is a file"),
        (["features", str(ifllm_sample), "--out", str(full)], "use --overwrite"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert a_file.read_text() == "keep me" and (full / "responses.parquet").read_text() == "an earlier run"
