"""``gazepref data summary|export``: one vocabulary with the rest of gazepref (participants, tasks,
turns: the recording schema and the feature tables' keys), whatever the source's own words are."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gazepref.cli import main

#: names of the IFLLM release (worker, query) or older gazepref outputs that the outputs no longer use
OLD_WORDS = ("worker", "quer", "turn_index", "behavior")


def _keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _keys(v)}
    return set()


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # stdout holds the JSON and nothing else


def test_summary_names_participants_tasks_turns(ifllm_sample: Path, tmp_path: Path, capsys):
    s = _json(capsys, ["data", "summary", str(ifllm_sample), "--json"])
    assert (s["participants"], s["tasks"], s["turns"]) == (6, 47, 47)
    assert (s["participants_with_turns"], s["participants_with_samples"]) == (6, 6)
    assert (s["tasks_with_turns"], s["tasks_with_samples"]) == (15, 11)
    # turns by kind are counted as turns, the way `study simulate` and `align` count them
    assert s["pairwise_turns"] + s["pointwise_turns"] == s["turns"] and s["pairwise_turns"] > 0
    assert 0 < s["pairwise_turns_labelled"] <= s["pairwise_turns"]
    assert 0 <= s["pointwise_turns_labelled"] <= s["pointwise_turns"]
    assert not {"pairwise", "pointwise", "pairwise_labelled", "pointwise_labelled"} & set(s)
    # the IFLLM file names under malformed_by_file are the release's own: only the keys' words count
    old = {k for k in _keys({k: v for k, v in s.items() if k != "malformed_by_file"}) if k.startswith(OLD_WORDS)}
    assert not old
    # the exports' manifests count the same things under the same names
    pq = _json(capsys, ["data", "export", str(ifllm_sample), "--out", str(tmp_path / "pq"), "--json"])
    ifl = _json(capsys, ["data", "export", str(ifllm_sample), "--to", "ifllm", "--out", str(tmp_path / "ifl"),
                         "--json"])
    assert pq["turns"] == ifl["turns"] == s["turns"]
    assert not {k for k in _keys(pq) | _keys(ifl) if any(w in k for w in OLD_WORDS)}
    # and the summary of an export reads the same counts back
    back = _json(capsys, ["data", "summary", str(tmp_path / "pq"), "--json"])
    same = ("participants", "tasks", "turns", "pairwise_turns", "pairwise_turns_labelled", "gaze_samples")
    assert {k: back[k] for k in same} == {k: s[k] for k in same}
    # ... under every key but the IFLLM files' own (a script reading tasks_with_turns of an IFLLM
    # folder got a KeyError on its Parquet export)
    own = {"format", "malformed_by_file", "page_reloads_fixed"}
    assert {k: v for k, v in back.items() if k not in own} == {k: v for k, v in s.items() if k not in own}


@pytest.mark.parametrize("argv", [["data", "summary", "--help"], ["data", "--help"]])
def test_summary_help_uses_the_same_words(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    out = capsys.readouterr().out
    assert "participants, tasks, turns" in " ".join(out.split())
    assert "workers, tasks" not in out and "queries and" not in out
