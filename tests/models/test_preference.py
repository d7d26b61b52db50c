"""Preference data sets: orientation, label sources, de-duplication, worker splits, saving."""
from __future__ import annotations

import json

import pytest

from gazepref import UserError, schema
from gazepref.datasets import preference as P
from gazepref.datasets.recording import open_recording


def _turn(tid="w1/1", worker="w1", idx=0, a="answer one", b="answer two", choice=schema.LEFT, likert=(None, None),
          kind="pairwise", prompt="q?", better=None, context=None, turn_id=None):
    resp = [schema.Response(0, "m0", a, likert[0])]
    if kind == "pairwise":
        resp.append(schema.Response(1, "m1", b, likert[1]))
    return schema.Turn(turn_id=turn_id or f"{tid}#{idx}", task_id=tid, participant_id=worker, index=idx, kind=kind,
                       prompt=prompt, responses=resp, prompt_sent=prompt, context=context or [],
                       choice=choice if kind == "pairwise" else None, better_than_previous=better)


@pytest.fixture(scope="module")
def sample_turns(ifllm_sample):
    return open_recording(ifllm_sample).turns()


def test_human_orientation_on_ifllm(sample_turns, tmp_path):
    by_id = {t.turn_id: t for t in sample_turns}
    pairs = P.build_pairs(sample_turns, "human")
    labelled = [t for t in sample_turns if t.pairwise and t.choice is not None]
    assert len(pairs) == len(labelled) > 10
    assert {p.chosen_position for p in pairs} == {0, 1}  # both LEFT and RIGHT choices occur
    for p in pairs:
        t = by_id[p.turn_id]
        assert p.chosen == t.responses[t.choice].text  # chosen = what the participant preferred
        assert p.rejected == t.responses[1 - t.choice].text
        assert p.chosen_position == t.choice and p.chosen_model == t.responses[t.choice].model
        assert p.prompt[-1] == {"role": "user", "content": t.prompt_sent}
        assert p.prompt[:-1] == t.context  # multi-turn context as chat messages
        assert 0.5 <= p.confidence <= 1.0
    # IFLLM's query table: preference 2.0 = right; one known row of the sample
    t = next(t for t in labelled if t.task_id == "worker_5a944891/163" and t.index == 0)
    assert t.choice == schema.RIGHT
    p = next(p for p in pairs if p.turn_id == t.turn_id)
    assert p.chosen_model.startswith("claude") and p.chosen == t.responses[1].text
    # ... and the saved data set keeps the orientation, in TRL's conversational format
    P.save({"train": pairs, "test": []}, tmp_path / "pairs")
    ds = P.load(tmp_path / "pairs")
    row = next(r for r in ds["train"] if r["turn_id"] == t.turn_id)
    assert row["chosen"] == [{"role": "assistant", "content": t.responses[1].text}]
    assert row["rejected"][0]["content"] == t.responses[0].text
    line = next(json.loads(x) for x in (tmp_path / "pairs" / "train.jsonl").read_text().splitlines()
                if json.loads(x)["turn_id"] == t.turn_id)
    assert line["chosen"][0]["content"] == t.responses[1].text


def test_multi_turn_context_on_ifllm(sample_turns):
    later = [t for t in sample_turns if t.pairwise and t.index > 0 and t.choice is not None]
    assert later
    p = P.build_pairs(later, "human")[0]
    assert len(p.prompt) >= 3 and p.prompt[0]["role"] == "user" and p.prompt[1]["role"] == "assistant"
    short = P.build_pairs(later, "human", context_messages=0)[0]
    assert short.prompt == p.prompt[-1:]


def test_human_confidence_from_likert_agreement():
    agree = P.label_turn(_turn(choice=schema.LEFT, likert=(5, 2)), "human")
    tie = P.label_turn(_turn(choice=schema.LEFT, likert=(3, 3)), "human")
    contra = P.label_turn(_turn(choice=schema.LEFT, likert=(1, 4)), "human")
    assert agree.confidence == 1.0 and tie.confidence == 0.8 and contra.confidence == 0.6
    assert agree.chosen == contra.chosen == "answer one"


def test_ratings_source_drops_ties_and_orients(sample_turns):
    pairs = P.build_pairs(sample_turns, "ratings")
    by_id = {t.turn_id: t for t in sample_turns}
    assert pairs
    for p in pairs:
        t = by_id[p.turn_id]
        lik = {r.text: r.likert for r in t.responses}
        assert lik[p.chosen] > lik[p.rejected]
        assert p.margin == lik[p.chosen] - lik[p.rejected]
    assert P.label_turn(_turn(likert=(4, 4)), "ratings") is None
    p = P.label_turn(_turn(likert=(2, 5), choice=None), "ratings")
    assert p.chosen == "answer two" and p.confidence == pytest.approx(0.875)


def test_reward_model_source_with_length_baseline(sample_turns):
    score = P.text_turn_score(P.LengthBaselineScorer())
    pairs = P.build_pairs(sample_turns, "text_rm", score)
    pairwise = [t for t in sample_turns if t.pairwise]
    assert len(pairs) == len(pairwise)  # an RM labels unlabelled turns too
    for p in pairs:
        assert len(p.chosen.split()) > len(p.rejected.split())
        assert 0.5 < p.confidence <= 1.0 and p.label_source == "text_rm"
    with pytest.raises(UserError):
        P.build_pairs(sample_turns, "fused_rm")  # needs a scorer
    with pytest.raises(UserError):
        P.build_pairs(sample_turns, "coin")


def test_dedup_merges_duplicates_and_drops_conflicts():
    turns = [
        _turn("w1/1", "w1", 0, choice=schema.LEFT, likert=(5, 1)),
        _turn("w2/1", "w2", 0, choice=schema.LEFT, likert=(3, 3)),  # same pair, same label
        _turn("w1/2", "w1", 0, a="x", b="y", choice=schema.LEFT),
        _turn("w2/2", "w2", 0, a="y", b="x", choice=schema.LEFT),  # same texts, opposite label
        _turn("w3/1", "w3", 0, a="same", b="same"),  # identical responses: no preference
    ]
    st = P.BuildStats()
    pairs = P.build_pairs(turns, "human", stats=st)
    assert len(pairs) == 1 and pairs[0].confidence == 1.0
    assert st.duplicates_merged == 1 and st.conflicts_dropped == 2


def test_split_by_worker(sample_turns):
    pairs = P.build_pairs(sample_turns, "text_rm", P.text_turn_score(P.LengthBaselineScorer()))
    sp = P.split_by_worker(pairs, test_fraction=0.3, seed=1)
    tr, te = {p.participant_id for p in sp["train"]}, {p.participant_id for p in sp["test"]}
    assert tr and te and not tr & te
    assert len(sp["train"]) + len(sp["test"]) == len(pairs)
    assert P.split_by_worker(pairs, 0.3, seed=1) == sp  # deterministic
    assert set(P.split_workers(["a"]).values()) == {"train"}


def test_unpaired_examples_for_kto(sample_turns, tmp_path):
    ex = P.build_unpaired(sample_turns)
    by_id = {t.turn_id: t for t in sample_turns}
    assert ex and {e.label for e in ex} == {True, False}
    for e in ex:
        t = by_id[e.turn_id]
        assert not t.pairwise and e.completion == t.responses[0].text
        if t.better_than_previous is not None:
            assert e.label == t.better_than_previous
        else:
            assert e.label == (t.responses[0].likert >= 4)
    both = P.build_unpaired(sample_turns, include_pairwise=True)
    assert len(both) > len(ex)
    P.save(P.split_by_worker(both), tmp_path / "kto", kind="unpaired")
    ds = P.load(tmp_path / "kto")
    assert set(ds["train"].column_names) >= {"prompt", "completion", "label", "confidence"}
    assert P.is_preference_data(tmp_path / "kto")


@pytest.mark.parametrize("source", ["human", "ratings"])
def test_unpaired_build_stats_count_the_turns(sample_turns, source):
    """The KTO data's build stats (pairs/manifest.json, ``align --json``) count the recording as the
    pairs' stats do: its pairwise turns (they said 0), and as unlabelled the pairwise turns the
    source could not label and the pointwise turns without a label (they said 0)."""
    pst, ust = P.BuildStats(), P.BuildStats()
    pairs = P.build_pairs(sample_turns, source, stats=pst)
    ex = P.build_unpaired(sample_turns, include_pairwise=True, pair_source=source, stats=ust)
    assert ust.turns == pst.turns == len(sample_turns)
    assert ust.pairwise_turns == pst.pairwise_turns == sum(t.pairwise for t in sample_turns) == 23
    pointwise = [t for t in sample_turns if not t.pairwise]
    labelled_pointwise = {e.turn_id for e in ex if e.label_source in ("better_than_previous", "likert")}
    assert ust.unlabelled_or_tied == pst.unlabelled_or_tied + len(pointwise) - len(labelled_pointwise) > 0
    assert ust.labelled == 2 * len(pairs) + len(labelled_pointwise) and ust.kept == len(ex)


def test_unpaired_likert_rules():
    ex = P.build_unpaired([
        _turn("w/1", "w", 1, kind="pointwise", likert=(5, None), better=False),  # disagree → 0.6
        _turn("w/1", "w", 2, a="b", kind="pointwise", likert=(2, None)),  # likert only
        _turn("w/1", "w", 3, a="c", kind="pointwise", likert=(3, None)),  # neutral: skipped
    ])
    assert [(e.label, e.confidence) for e in ex] == [(False, 0.6), (False, 0.7)]


def test_load_errors(tmp_path):
    with pytest.raises(UserError):
        P.load(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(UserError):
        P.load(tmp_path / "x.txt")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UserError):
        P.load(tmp_path / "bad.jsonl")


def test_rows_name_participant_and_turn_as_the_feature_tables_do(sample_turns, tmp_path):
    """Pair and example rows carry the feature tables' keys (participant_id, task_id, turn_id, turn),
    and the manifest counts participants per split."""
    pairs = P.build_pairs(sample_turns, "human")
    man = P.save(P.split_by_worker(pairs, 0.3, seed=1), tmp_path / "pairs")
    by_id = {t.turn_id: t for t in sample_turns}
    for line in (tmp_path / "pairs" / "train.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert not {"worker", "turn_index"} & set(row)
        t = by_id[row["turn_id"]]
        assert (row["participant_id"], row["task_id"], row["turn"]) == (t.participant_id, t.task_id, t.index)
    assert set(man["participants"]) == {"train", "test"} and "workers" not in man
    assert sum(man["participants"].values()) == len({p.participant_id for p in pairs})
    ex = P.build_unpaired(sample_turns)[0].to_row()
    assert {"participant_id", "turn"} <= set(ex) and not {"worker", "turn_index"} & set(ex)


@pytest.mark.parametrize("layout", ["jsonl", "folder", "hf"])
def test_load_reads_the_old_column_names(sample_turns, tmp_path, layout):
    """Data sets written before the rename (``worker``, ``turn_index``) load with the new names."""
    rows = [p.to_row() for p in P.build_pairs(sample_turns, "human")]
    old = [{("worker" if k == "participant_id" else "turn_index" if k == "turn" else k): v for k, v in r.items()}
           for r in rows]
    path = tmp_path / "old"
    path.mkdir()
    if layout == "hf":
        from datasets import Dataset, DatasetDict

        DatasetDict({"train": Dataset.from_list(old)}).save_to_disk(str(path / "hf"))
    else:
        (path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
        path = path / "train.jsonl" if layout == "jsonl" else path
    ds = P.load(path)["train"]
    assert {"participant_id", "turn"} <= set(ds.column_names) and not {"worker", "turn_index"} & set(ds.column_names)
    assert ds["participant_id"] == [r["participant_id"] for r in rows] and ds["turn"] == [r["turn"] for r in rows]
