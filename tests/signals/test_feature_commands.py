"""``gazepref features``: its summary counts what ``data summary`` counts under the same names."""
from __future__ import annotations

import json

from gazepref.cli import main


def test_features_summary_names_match_data_summary(ifllm_sample, tmp_path, capsys):
    """The features summary's task count is ``data summary``'s ``tasks_with_turns`` (it said
    ``tasks``, 15, where ``data summary`` says ``tasks``: 47 registrations), and its time has its
    unit in its name (``elapsed_s``, as ``simulate_s``, ``train_runtime_s``; it said ``seconds``)."""
    assert main(["data", "summary", str(ifllm_sample), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(["features", str(ifllm_sample), "--out", str(tmp_path / "f"), "--jobs", "1", "--no-sentences",
                 "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["tasks_with_turns"] == summary["tasks_with_turns"] == 15 and "tasks" not in stats
    assert stats["gaze_samples"] == summary["gaze_samples"]
    assert stats["elapsed_s"] >= 0 and "seconds" not in stats


def test_overwrite_replaces_only_a_folder_the_same_command_wrote(ifllm_sample, tmp_path, capsys):
    """An export and a feature table share a file name (``responses.parquet``): ``features
    --overwrite`` into an export replaced the export's answers with the feature table (the export
    then unreadable) and ``data export --overwrite`` into a feature folder mixed the two. Each
    replaces only its own kind of folder, and an export replaces all of an earlier one (the
    demographics asked for before do not stay behind)."""
    export, feats = tmp_path / "export", tmp_path / "features"
    assert main(["data", "export", str(ifllm_sample), "--out", str(export), "--demographics", "--json"]) == 0
    assert (export / "DEMOGRAPHICS_README.txt").exists()
    answers = (export / "responses.parquet").read_bytes()
    capsys.readouterr()
    assert main(["features", str(ifllm_sample), "--out", str(export), "--overwrite", "--jobs", "1",
                 "--no-sentences"]) == 2
    assert "is not a folder gazepref features wrote" in capsys.readouterr().err
    assert (export / "responses.parquet").read_bytes() == answers

    assert main(["features", str(ifllm_sample), "--out", str(feats), "--jobs", "1", "--no-sentences", "--json"]) == 0
    tables = sorted(p.name for p in feats.iterdir())
    capsys.readouterr()
    assert main(["data", "export", str(ifllm_sample), "--out", str(feats), "--overwrite"]) == 2
    assert "is not a folder data export wrote" in capsys.readouterr().err
    assert sorted(p.name for p in feats.iterdir()) == tables
    (feats / "Thumbs.db").write_bytes(b"\0")
    assert main(["features", str(ifllm_sample), "--out", str(feats), "--overwrite", "--jobs", "1", "--no-sentences",
                 "--json"]) == 0

    (export / ".DS_Store").write_bytes(b"\0")  # a file browser's: never a reason to refuse
    assert main(["data", "export", str(ifllm_sample), "--out", str(export), "--overwrite", "--json"]) == 0
    assert not any(p.name.startswith(("demographics", "DEMOGRAPHICS", ".DS")) for p in export.iterdir())
    assert main(["data", "summary", str(export), "--json"]) == 0
    capsys.readouterr()

    # an IFLLM release (the same file names as an IFLLM-layout export) is never taken for an export
    import shutil

    release = tmp_path / "release"
    shutil.copytree(ifllm_sample, release)
    before = sorted(str(p.relative_to(release)) for p in release.rglob("*"))
    assert main(["data", "export", str(export), "--to", "ifllm", "--out", str(release), "--overwrite"]) == 2
    assert "is not a folder data export wrote" in capsys.readouterr().err
    assert sorted(str(p.relative_to(release)) for p in release.rglob("*")) == before
    # nor is the recording being exported replaced by its own export
    assert main(["data", "export", str(export), "--out", str(export), "--overwrite"]) == 2
    assert "holds the recording being exported" in capsys.readouterr().err
    assert main(["data", "summary", str(export), "--json"]) == 0
