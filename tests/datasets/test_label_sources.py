"""The one list of label sources: every source is accepted by the command line and the config,
documented in docs/alignment.md, and a new source joins everything by one entry."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from gazepref import UserError, schema
from gazepref.cli import build_parser
from gazepref.datasets import label_sources as L
from gazepref.datasets import preference as P
from gazepref.models.align_config import AlignConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "alignment.md"


def _documented() -> set[str]:
    """The names in the first column of docs/alignment.md's label-source table."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("| label source |"))
    names: set[str] = set()
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return names


def _config(name: str) -> AlignConfig:
    cfg = AlignConfig()
    cfg.data.label_source = name
    if L.PAIRS not in L.get(name).gives:
        cfg.train.algorithm = "kto"
    return cfg


@pytest.mark.parametrize("name", L.names())
def test_every_source_is_accepted_and_documented(name):
    src = L.get(name)
    args = build_parser().parse_args(["align", "data", "--out", "o", "--tiny", "--label-source", name])
    assert args.label_source == name
    assert _config(name).validate().data.label_source == name
    assert name in _documented()
    assert src.description and callable(src.function())
    assert set(src.gives) <= {L.PAIRS, L.UNPAIRED} and src.gives
    assert not src.implicit_features or src.reward_model  # implicit features are read by a reward model


def test_the_docs_name_no_other_source():
    assert _documented() == set(L.names())


def test_unknown_sources_are_refused_everywhere(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["align", "data", "--out", "o", "--tiny", "--label-source", "coin"])
    assert "coin" in capsys.readouterr().err
    with pytest.raises(UserError, match="one of human, ratings"):
        _config("human").apply({"data": {"label_source": "coin"}}).validate()
    with pytest.raises(UserError, match="unknown label source 'coin'"):
        P.build_pairs([], "coin")
    with pytest.raises(UserError, match="unknown label source 'coin'"):
        P.build_unpaired([], pair_source="coin")


def _turn(task: str, index: int, text: str, feedback: str | None = None) -> schema.Turn:
    return schema.Turn(turn_id=f"{task}#{index}", task_id=task, participant_id=task.split("/")[0], index=index,
                       kind="pointwise", prompt="write a haiku", prompt_sent="write a haiku",
                       responses=[schema.Response(0, "m", text, None)], context=[], feedback_text=feedback)


def revisions(turns, options, stats):
    """A source spanning turns: an answer followed by a complaint loses to the next answer of the
    task (pairs), and the complained-about answer is undesirable on its own (unpaired)."""
    turns = list(turns)
    for a, b in zip(turns, turns[1:]):
        if a.task_id != b.task_id:
            continue
        if not a.feedback_text:
            stats.unlabelled_or_tied += 1
            continue
        stats.labelled += 1
        prompt = P.prompt_messages(a, options.context_messages)
        yield P.PreferencePair(prompt, b.responses[0].text, a.responses[0].text, 0.9, options.source, 1.0,
                               a.participant_id, a.task_id, b.turn_id, b.index)
        yield P.UnpairedExample(prompt, a.responses[0].text, False, 0.9, options.source, a.participant_id,
                                a.task_id, a.turn_id, a.index)


@pytest.fixture
def registered():
    src = L.register(L.LabelSource("test_revisions", "an answer complained about, and its revision",
                                   f"{__name__}:revisions", gives=(L.PAIRS, L.UNPAIRED)))
    only_kto = L.register(L.LabelSource("test_kto_only", "unpaired examples only", revisions, gives=(L.UNPAIRED,)))
    yield src, only_kto
    L.unregister(src.name)
    L.unregister(only_kto.name)


def test_a_new_source_joins_by_one_entry(registered):
    src, only_kto = registered
    with pytest.raises(ValueError, match="exists"):
        L.register(L.LabelSource("human", "again", revisions))
    turns = [_turn("w1/1", 0, "roses are red", feedback="that is no haiku"), _turn("w1/1", 1, "old pond / frog"),
             _turn("w1/1", 2, "again"), _turn("w2/1", 0, "autumn moon", feedback="meh")]
    st = P.BuildStats()
    pairs = P.build_pairs(turns, src.name, stats=st)
    assert [(p.chosen, p.rejected, p.label_source) for p in pairs] == [("old pond / frog", "roses are red",
                                                                       "test_revisions")]
    assert st.labelled == 1 and st.unlabelled_or_tied == 1 and st.kept == 1
    # KTO: the source's unpaired example, both sides of its pair, and the turns' own pointwise rules
    # (none here: no ratings) -- at their turns, in recording order
    ex = P.build_unpaired(turns, include_pairwise=True, pair_source=src.name)
    assert [(e.completion, e.label, e.label_source) for e in ex] == [
        ("roses are red", False, "test_revisions"), ("old pond / frog", True, "test_revisions_pair")]
    assert P.build_unpaired(turns, include_pairwise=False, pair_source=src.name)[0].completion == "roses are red"
    # the command line and the config take it; an unpaired-only source needs KTO
    args = build_parser().parse_args(["align", "data", "--out", "o", "--tiny", "--label-source", src.name])
    assert args.label_source == src.name
    assert _config(src.name).validate()
    with pytest.raises(UserError, match="unpaired examples only"):
        _config("human").apply({"data": {"label_source": only_kto.name}}).validate()
    with pytest.raises(UserError, match="unpaired examples only"):
        P.build_pairs(turns, only_kto.name)
    assert _config(only_kto.name).validate().train.algorithm == "kto"
